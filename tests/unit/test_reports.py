"""Reports: figure builders on synthetic data, and the single-file offline HTML written by write_report."""

import re

import numpy as np
import plotly.graph_objects as go
import plotly.offline
import pytest

from interp.errors import ConfigError, DataError
from interp.figures import bar_figure, curves_figure, heatmap_figure, heatmap_grid_figure
from interp.reports import Section, Table, read_report_data, write_report

STEPS = [0, 10, 20, 40]
SEEDS = [[0.1, 0.4, 0.7, 0.9], [0.2, 0.5, 0.6, 1.0], [0.0, 0.3, 0.8, 0.8]]


def _series() -> list[dict]:
    return [
        {"name": "eta_M", "x": STEPS, "ys": SEEDS},
        {"name": "eta_S", "x": STEPS, "ys": [[0.5, 0.5, 0.5, 0.5]], "dash": "dash"},
    ]


def test_curves_figure_has_a_band_and_a_mean_line_per_series():
    fig = curves_figure(_series(), title="t", x_title="step", y_title="accuracy")
    assert len(fig.data) == 4
    band, line = fig.data[0], fig.data[1]
    assert band.fill == "toself" and band.showlegend is False and band.mode == "lines"
    assert line.name == "eta_M" and line.legendgroup == band.legendgroup == "eta_M"
    np.testing.assert_allclose(line.y, np.mean(SEEDS, axis=0))
    # The band is a closed polygon: the seeds' max left to right, then their min right to left.
    assert list(band.x) == STEPS + STEPS[::-1]
    np.testing.assert_allclose(band.y, list(np.max(SEEDS, axis=0)) + list(np.min(SEEDS, axis=0))[::-1])
    assert "min–max" in fig.layout.legend.title.text and "min–max" in band.name
    assert "over 3 seeds" in line.hovertemplate
    assert fig.data[3].line.dash == "dash"
    np.testing.assert_allclose(fig.data[3].y, [0.5] * 4)
    assert fig.layout.meta["ftmech"]["series"][0]["ys"] == SEEDS


def test_curves_figure_bootstrap_band_contains_the_mean_and_is_labelled():
    pytest.importorskip("interp.stats")
    fig = curves_figure(_series()[:1], title="t", x_title="step", y_title="acc", band="bootstrap")
    data = fig.layout.meta["ftmech"]["series"][0]
    mean, low, high = (np.array(data[k]) for k in ("mean", "low", "high"))
    assert np.all(low <= mean) and np.all(mean <= high)
    assert np.all(low >= np.min(SEEDS, axis=0) - 1e-12) and np.all(high <= np.max(SEEDS, axis=0) + 1e-12)
    assert np.all(high - low < np.ptp(SEEDS, axis=0) + 1e-12) and np.any(high > low)
    assert "bootstrap" in fig.layout.legend.title.text


def test_curves_figure_log_axis_and_input_checks():
    fig = curves_figure(
        [{"name": "revival", "x": [1, 10, 100], "ys": [[0.1, 0.5, 0.9]]}],
        title="t",
        x_title="step",
        y_title="acc",
        log_x=True,
        reference_lines={"chance": 0.33},
    )
    assert fig.layout.xaxis.type == "log"
    assert fig.layout.shapes[0].y0 == 0.33 and fig.layout.annotations[0].text == "chance"
    with pytest.raises(DataError, match="log axis"):
        curves_figure(_series(), title="t", x_title="s", y_title="a", log_x=True)
    with pytest.raises(DataError, match="shape"):
        curves_figure([{"name": "a", "x": [1, 2, 3], "ys": [[1, 2]]}], title="t", x_title="s", y_title="a")
    with pytest.raises(DataError, match="NaN"):
        curves_figure(
            [{"name": "a", "x": [1, 2], "ys": [[1, float("nan")]]}], title="t", x_title="s", y_title="a"
        )
    with pytest.raises(DataError, match="keys"):
        curves_figure([{"name": "a", "x": [1], "y": [1]}], title="t", x_title="s", y_title="a")
    with pytest.raises(ConfigError, match="band"):
        curves_figure(_series(), title="t", x_title="s", y_title="a", band="sem")


def test_bar_figure_means_and_asymmetric_error_bars():
    ys = [[0.9, 0.5], [0.7, 0.6], [0.8, 0.4]]
    fig = bar_figure(
        [{"name": "O_PT", "x": ["pretrained", "eta_M"], "ys": ys}], title="t", x_title="", y_title="acc"
    )
    (bar,) = fig.data
    mean = np.mean(ys, axis=0)
    np.testing.assert_allclose(bar.y, mean)
    np.testing.assert_allclose(bar.error_y.array, np.max(ys, axis=0) - mean)
    np.testing.assert_allclose(bar.error_y.arrayminus, mean - np.min(ys, axis=0))
    assert list(bar.x) == ["pretrained", "eta_M"]


def test_heatmaps_keep_repeated_token_labels_apart():
    tokens = ["<bos>", "a", "b", "a"]
    pattern = np.tril(np.ones((4, 4))) / np.arange(1, 5)[:, None]
    fig = heatmap_figure(pattern, x_labels=tokens, y_labels=tokens, title="attention", zmin=0, zmax=1)
    (trace,) = fig.data
    np.testing.assert_allclose(trace.z, pattern)
    assert list(trace.x) == [0, 1, 2, 3]  # positions: the two "a" columns stay separate
    assert list(fig.layout.xaxis.ticktext) == ["&lt;bos&gt;", "a", "b", "a"]
    assert fig.layout.yaxis.autorange == "reversed"
    with pytest.raises(DataError, match="shape"):
        heatmap_figure(pattern[:3], x_labels=tokens, y_labels=tokens, title="t")

    grid = heatmap_grid_figure(
        {"compiled": pattern, "fine-tuned": pattern.T}, x_labels=tokens, y_labels=tokens, title="g"
    )
    assert len(grid.data) == 2 and all(t.coloraxis == "coloraxis" for t in grid.data)
    assert (grid.layout.coloraxis.cmin, grid.layout.coloraxis.cmax) == (0.0, 1.0)
    assert [a.text for a in grid.layout.annotations] == ["compiled", "fine-tuned"]


def test_table_escapes_text_and_checks_its_shape():
    table = Table.from_records([{"claim": "a <b>", "value": 0.12345, "n": 3, "ci": None}])
    text = table.to_html()
    assert "a &lt;b&gt;" in text and '<td class="num">0.123</td>' in text and "<td>–</td>" in text
    with pytest.raises(ConfigError, match="cells"):
        Table(columns=("a", "b"), rows=(("x",),))


def _report(tmp_path):
    fig = curves_figure(_series(), title="curves", x_title="step", y_title="acc")
    plain = go.Figure(go.Scatter(x=np.arange(3), y=np.array([1.0, np.nan, 3.0]), name="raw"))
    sections = [
        Section(title="Curves", content=fig, caption="Caption one: mean and min–max."),
        Section(title="Plain figure", content=plain, caption="Caption two: a figure not built here."),
        Section(
            title="Verdicts",
            content=Table(columns=("task", "verdict"), rows=(("count", "wrapped"),)),
            caption="Caption three.",
        ),
    ]
    path = write_report(
        tmp_path / "report.html",
        title="Study </script> report",
        intro_html="<p>Intro.</p>",
        sections=sections,
        data={"summary": {"auc": np.float64(0.5), "steps": float("inf")}},
    )
    return path, fig


def test_write_report_is_one_offline_file_with_plotly_once_and_every_section(tmp_path):
    path, fig = _report(tmp_path)
    text = path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left behind
    plotly_js = plotly.offline.get_plotlyjs()
    assert text.count(plotly_js[:200]) == 1 and len(text) < len(plotly_js) * 1.1
    assert text.count("Plotly.newPlot(") == 2
    for i, caption in enumerate(["Caption one", "Caption two", "Caption three"], start=1):
        assert f'id="section-{i}"' in text and caption in text and f'href="#section-{i}"' in text
    assert 'id="figure-1"' in text and 'id="figure-2"' in text and 'id="table-3"' in text
    tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", text, re.I)
    assert not [t for t in tags if re.search(r"\b(?:src|href)\s*=", t, re.I)]
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert "</script> report" not in text  # the title is escaped
    assert fig.layout.meta is not None  # the caller's figure is left as it was


def test_the_data_block_parses_and_holds_the_numbers(tmp_path):
    path, _ = _report(tmp_path)
    data = read_report_data(path)
    assert data["title"] == "Study </script> report"
    assert [s["kind"] for s in data["sections"]] == ["figure", "figure", "table"]
    curves = data["sections"][0]["data"]
    assert curves["kind"] == "curves" and curves["series"][0]["ys"] == SEEDS
    np.testing.assert_allclose(curves["series"][0]["mean"], np.mean(SEEDS, axis=0))
    raw = data["sections"][1]["data"]["traces"][0]
    assert raw["name"] == "raw" and raw["y"] == [1.0, None, 3.0]
    assert data["sections"][2]["data"] == {"columns": ["task", "verdict"], "rows": [["count", "wrapped"]]}
    assert data["data"] == {"summary": {"auc": 0.5, "steps": None}}


def test_sections_need_a_caption_and_known_content():
    with pytest.raises(ConfigError, match="caption"):
        Section(title="t", content=go.Figure(), caption=" ")
    with pytest.raises(ConfigError, match="content"):
        Section(title="t", content="<p>html</p>", caption="c")
