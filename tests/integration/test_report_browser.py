"""A written report opens in headless Chromium with every figure drawn and no script errors.

Skipped where no Chromium binary is on PATH (CI installs Debian's ``chromium``). The page needs no
network: plotly.js is inline and the report's Content-Security-Policy blocks every outside load.
Set ``FTMECH_SCREENSHOT_DIR`` to keep the screenshot.
"""

import os
import shutil

import numpy as np
import pytest

from interp.figures import bar_figure, curves_figure, heatmap_grid_figure
from interp.render_check import check_report_renders, find_chromium
from interp.reports import Section, Table, write_report

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="no chromium binary on PATH (apt-get install chromium)"
)


def _sample_report(path):
    rng = np.random.default_rng(0)
    steps = [0, 250, 500, 1000, 2000, 4000]
    accuracy = [
        [float(np.clip(1 - np.exp(-s / 800) + rng.normal(0, 0.02), 0, 1)) for s in steps] for _ in range(3)
    ]
    revival_steps = [10, 30, 100, 300, 1000]
    revival = [[0.2, 0.4, 0.8, 0.95, 0.97], [0.25, 0.5, 0.85, 0.96, 0.98], [0.2, 0.35, 0.7, 0.9, 0.96]]
    tokens = ["<bos>", "a", "b", "a", "c"]
    pattern = np.tril(rng.random((5, 5)))
    pattern /= pattern.sum(axis=1, keepdims=True)
    sections = [
        Section(
            title="Accuracy during fine-tuning",
            content=curves_figure(
                [{"name": "η_M", "x": steps, "ys": accuracy}],
                title="O<sub>FT</sub> accuracy",
                x_title="step",
                y_title="accuracy",
                reference_lines={"chance": 0.33},
            ),
            caption="Mean over 3 seeds, band min–max.",
        ),
        Section(
            title="Revival",
            content=curves_figure(
                [{"name": "reverse FT", "x": revival_steps, "ys": revival}],
                title="Revival",
                x_title="step (log)",
                y_title="accuracy",
                log_x=True,
            ),
            caption="Log steps.",
        ),
        Section(
            title="Attention",
            content=heatmap_grid_figure(
                {"compiled": pattern, "fine-tuned": pattern[:, ::-1]},
                x_labels=tokens,
                y_labels=tokens,
                title="Attention",
                zmin=0,
                zmax=1,
            ),
            caption="Rows are queries, columns keys.",
        ),
        Section(
            title="Probes",
            content=bar_figure(
                [
                    {
                        "name": "O_PT",
                        "x": ["pretrained", "η_M"],
                        "ys": [[0.9, 0.6], [0.92, 0.55], [0.88, 0.62]],
                    }
                ],
                title="Probe accuracy",
                x_title="model",
                y_title="accuracy",
            ),
            caption="Bars are means, whiskers min–max.",
        ),
        Section(
            title="Verdicts",
            content=Table(columns=("task", "verdict"), rows=(("count", "wrapped"),)),
            caption="One row per task.",
        ),
    ]
    return write_report(path, title="Browser check", intro_html="<p>Synthetic data.</p>", sections=sections)


def test_every_figure_renders_without_errors(tmp_path):
    report = _sample_report(tmp_path / "report.html")
    check = check_report_renders(report, screenshot=tmp_path / "report.png", window_size=(1200, 2600))
    assert check.errors == ()
    assert (check.n_figures, check.n_rendered, check.not_rendered) == (4, 4, ())
    assert check.ok
    with open(check.screenshot, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("FTMECH_SCREENSHOT_DIR"):
        os.makedirs(os.environ["FTMECH_SCREENSHOT_DIR"], exist_ok=True)
        shutil.copy(check.screenshot, os.environ["FTMECH_SCREENSHOT_DIR"])


def test_the_check_sees_script_errors_blocked_loads_and_undrawn_plots(tmp_path):
    report = _sample_report(tmp_path / "report.html")
    planted = (
        '<div class="plotly-graph-div" id="never-plotted"></div>'
        '<script>throw new Error("planted failure");</script>'
        '<img src="https://example.invalid/pixel.png" alt="">'
    )
    broken = tmp_path / "broken.html"
    broken.write_text(report.read_text().replace("</main>", planted + "</main>"))
    check = check_report_renders(broken)
    assert not check.ok
    assert check.not_rendered == ("never-plotted",) and check.n_rendered == 4
    assert any("planted failure" in e for e in check.errors), check.errors
    assert any("blocked load" in e and "example.invalid" in e for e in check.errors), check.errors
