"""Reports: Plotly figures from plain data, and one self-contained offline HTML file per study.

The figure builders take lists, dicts and numpy arrays (means over seeds are computed here, so each
figure shows its spread) and return a ``plotly.graph_objects.Figure``:

- ``curves_figure``: a mean line with a shaded band per series (accuracy vs steps, revival on log steps,
  accuracy vs neurons pruned, probe accuracy per layer).
- ``heatmap_figure`` / ``heatmap_grid_figure``: matrices such as attention patterns, side by side on one
  colour scale.
- ``bar_figure``: grouped bars of per-seed means with error bars.
- ``Table``: a plain HTML table for text-heavy results (verdicts, the study's numbers beside ours).

``write_report`` puts ``Section``s (a figure or table with a caption) into one HTML file: plotly.js is
inlined once, a Content-Security-Policy forbids every network load, and the numbers behind every
section are embedded as JSON (``<script type="application/json" id="ftmech-data">``).
``check_report_renders`` opens a report in headless Chromium and says whether every figure drew.
"""

import dataclasses
import html
import json
import math
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import plotly.colors
import plotly.graph_objects as go
import plotly.io as pio
import plotly.offline
from plotly.subplots import make_subplots

from interp.atomic_files import atomic_write_text
from interp.config import FTMECH_VERSION
from interp.errors import ConfigError, DataError, FtmechError

Band = Literal["minmax", "bootstrap"]
BAND_LABELS = {"minmax": "min–max over seeds", "bootstrap": "95% bootstrap CI of the mean"}
PALETTE = plotly.colors.qualitative.Plotly
DASHES = ("solid", "dash", "dot", "dashdot", "longdash")
DATA_ID = "ftmech-data"
TEMPLATE = "plotly_white"
# Inline scripts and styles only: the browser refuses any network load, so a report cannot depend on one.
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:"


# ---------------------------------------------------------------------------------------------------
# Series over seeds


@dataclass(frozen=True)
class _Series:
    name: str
    x: list[Any]
    ys: np.ndarray  # (seed, point)
    color: str
    dash: str

    @property
    def mean(self) -> np.ndarray:
        return self.ys.mean(axis=0)


def _parse_series(series: Sequence[Mapping[str, Any]], *, what: str) -> list[_Series]:
    """Validate ``[{name, x, ys, color?, dash?}]``: ``ys`` is one list per seed, each as long as ``x``."""
    if isinstance(series, Mapping) or len(series) == 0:
        raise DataError(f"{what} needs a non-empty list of series dicts {{name, x, ys}}")
    allowed = {"name", "x", "ys", "color", "dash"}
    parsed = []
    for i, item in enumerate(series):
        unknown = set(item) - allowed
        if unknown or not {"name", "x", "ys"} <= set(item):
            raise DataError(
                f"{what} series {i} has keys {sorted(item)}; give name, x, ys (one list per seed) "
                "and optionally color, dash"
            )
        name, x = str(item["name"]), list(np.asarray(item["x"]).tolist())
        try:
            ys = np.asarray(item["ys"], dtype=float)
        except ValueError:
            raise DataError(f"{what} series '{name}': ys must be one equal-length list per seed") from None
        if ys.ndim != 2 or ys.shape[0] < 1 or ys.shape[1] != len(x) or len(x) == 0:
            raise DataError(
                f"{what} series '{name}': ys has shape {ys.shape} but x has {len(x)} points; "
                f"give ys as [seed][point], e.g. [[...{len(x)} values...] for each seed]"
            )
        if not np.all(np.isfinite(ys)):
            raise DataError(f"{what} series '{name}' has NaN or inf values; drop those points or seeds")
        dash = item.get("dash", "solid")
        if dash not in DASHES:
            raise DataError(f"{what} series '{name}': dash '{dash}' is not one of {', '.join(DASHES)}")
        parsed.append(_Series(name, x, ys, str(item.get("color", PALETTE[i % len(PALETTE)])), dash))
    return parsed


def _band(ys: np.ndarray, band: Band) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper edge per point: the seeds' min and max, or a bootstrap CI of their mean."""
    if band == "minmax":
        return ys.min(axis=0), ys.max(axis=0)
    if band == "bootstrap":
        from interp.stats import bootstrap_ci

        edges = np.array([bootstrap_ci(ys[:, j], n_resamples=2000, seed=0) for j in range(ys.shape[1])])
        return edges[:, 0], edges[:, 1]
    raise ConfigError(f"unknown band '{band}'; use one of {', '.join(BAND_LABELS)}")


def _series_data(s: _Series, mean: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict[str, Any]:
    """What a report's data block keeps of one plotted series: the per-seed values and their summary."""
    return {
        "name": s.name,
        "x": s.x,
        "ys": s.ys.tolist(),
        "mean": mean.tolist(),
        "low": low.tolist(),
        "high": high.tolist(),
    }


def _rgba(color: str, alpha: float) -> str:
    try:
        rgb = plotly.colors.convert_colors_to_same_type(color, "rgb")[0][0]
    except Exception:  # plotly raises a bare exception for colours it cannot parse
        raise DataError(f"colour {color!r} is not understood; give '#rrggbb' or 'rgb(r, g, b)'") from None
    r, g, b = plotly.colors.unlabel_rgb(rgb)
    return f"rgba({int(r)}, {int(g)}, {int(b)}, {alpha})"


def _layout(fig: go.Figure, *, title: str, x_title: str, y_title: str, height: int) -> None:
    fig.update_layout(
        template=TEMPLATE,
        title={"text": title},
        xaxis_title=x_title,
        yaxis_title=y_title,
        height=height,
        margin={"l": 70, "r": 30, "t": 60, "b": 60},
        hovermode="closest",
    )


def curves_figure(
    series: Sequence[Mapping[str, Any]],
    *,
    title: str,
    x_title: str,
    y_title: str,
    log_x: bool = False,
    band: Band = "minmax",
    y_range: tuple[float, float] | None = None,
    reference_lines: Mapping[str, float] | None = None,
    height: int = 420,
) -> go.Figure:
    """Mean over seeds as a line, with a shaded band, for each ``{name, x, ys}`` series.

    Two traces per series, in order: the band (a closed polygon, no legend entry) and the mean line.
    ``reference_lines`` draws labelled dashed horizontal lines (e.g. ``{"chance": 0.33}``).
    """
    parsed = _parse_series(series, what="curves_figure")
    if log_x:
        for s in parsed:
            bad = [v for v in s.x if not isinstance(v, (int, float)) or v <= 0]
            if bad:
                raise DataError(
                    f"curves_figure series '{s.name}' has x = {bad[0]!r} on a log axis; drop x <= 0 (e.g. step 0)"
                )
    fig = go.Figure()
    data = []
    for s in parsed:
        mean = s.mean
        low, high = _band(s.ys, band)
        n = s.ys.shape[0]
        fig.add_trace(
            go.Scatter(
                x=s.x + s.x[::-1],
                y=high.tolist() + low[::-1].tolist(),
                mode="lines",
                fill="toself",
                fillcolor=_rgba(s.color, 0.18),
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                legendgroup=s.name,
                name=f"{s.name}: {BAND_LABELS[band]} (n={n})",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=s.x,
                y=mean.tolist(),
                mode="lines+markers" if len(s.x) <= 30 else "lines",
                line={"color": s.color, "dash": s.dash, "width": 2},
                marker={"size": 5},
                name=s.name,
                legendgroup=s.name,
                customdata=np.stack([low, high], axis=1).tolist(),
                hovertemplate=(
                    f"<b>{s.name}</b><br>x=%{{x}}<br>mean %{{y:.4g}} over {n} seeds"
                    f"<br>{BAND_LABELS[band]}: %{{customdata[0]:.4g}} – %{{customdata[1]:.4g}}<extra></extra>"
                ),
            )
        )
        data.append(_series_data(s, mean, low, high))
    for label, value in (reference_lines or {}).items():
        fig.add_hline(
            y=value,
            line={"color": "#7b8794", "dash": "dash", "width": 1},
            annotation_text=label,
            annotation_position="bottom right",
        )
    _layout(fig, title=title, x_title=x_title, y_title=y_title, height=height)
    fig.update_layout(legend_title_text=f"line: mean · band: {BAND_LABELS[band]}")
    if log_x:
        fig.update_xaxes(type="log", dtick="D2")  # label 1, 2 and 5 per decade, not every digit
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    fig.layout.meta = {"ftmech": {"kind": "curves", "band": band, "series": data}}
    return fig


def bar_figure(
    series: Sequence[Mapping[str, Any]],
    *,
    title: str,
    x_title: str,
    y_title: str,
    band: Band = "minmax",
    y_range: tuple[float, float] | None = None,
    height: int = 420,
) -> go.Figure:
    """Grouped bars of the mean over seeds with error bars; each series is ``{name, x: categories, ys}``."""
    parsed = _parse_series(series, what="bar_figure")
    fig = go.Figure()
    data = []
    for s in parsed:
        mean = s.mean
        low, high = _band(s.ys, band)
        n = s.ys.shape[0]
        fig.add_trace(
            go.Bar(
                x=[str(v) for v in s.x],
                y=mean.tolist(),
                name=s.name,
                marker={"color": s.color},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (high - mean).tolist(),
                    "arrayminus": (mean - low).tolist(),
                },
                customdata=np.stack([low, high], axis=1).tolist(),
                hovertemplate=(
                    f"<b>{s.name}</b><br>%{{x}}<br>mean %{{y:.4g}} over {n} seeds"
                    f"<br>{BAND_LABELS[band]}: %{{customdata[0]:.4g}} – %{{customdata[1]:.4g}}<extra></extra>"
                ),
            )
        )
        data.append(_series_data(s, mean, low, high))
    _layout(fig, title=title, x_title=x_title, y_title=y_title, height=height)
    fig.update_layout(barmode="group", legend_title_text=f"bars: mean · whiskers: {BAND_LABELS[band]}")
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    fig.layout.meta = {"ftmech": {"kind": "bar", "band": band, "series": data}}
    return fig


# ---------------------------------------------------------------------------------------------------
# Heatmaps


def _matrix(matrix: Any, x_labels: Sequence[Any], y_labels: Sequence[Any], what: str) -> np.ndarray:
    values = np.asarray(matrix, dtype=float)
    if values.ndim != 2 or values.shape != (len(y_labels), len(x_labels)):
        raise DataError(
            f"{what}: matrix has shape {values.shape} but there are {len(y_labels)} y_labels (rows) and "
            f"{len(x_labels)} x_labels (columns)"
        )
    return values


def _heatmap_trace(
    values: np.ndarray, x_labels: Sequence[Any], y_labels: Sequence[Any], **kwargs: Any
) -> go.Heatmap:
    # Positions, not labels, on the axes: token labels repeat ("a b a"), and Plotly merges repeated categories.
    hover = [[f"{html.escape(str(yl))} → {html.escape(str(xl))}" for xl in x_labels] for yl in y_labels]
    return go.Heatmap(
        z=values.tolist(),
        x=list(range(len(x_labels))),
        y=list(range(len(y_labels))),
        text=hover,
        hovertemplate="row %{y}, column %{x}: %{text}<br>value %{z:.4g}<extra></extra>",
        **kwargs,
    )


def _label_axes(fig: go.Figure, x_labels: Sequence[Any], y_labels: Sequence[Any], **where: Any) -> None:
    fig.update_xaxes(
        tickmode="array",
        tickvals=list(range(len(x_labels))),
        ticktext=[html.escape(str(v)) for v in x_labels],
        **where,
    )
    fig.update_yaxes(
        tickmode="array",
        tickvals=list(range(len(y_labels))),
        ticktext=[html.escape(str(v)) for v in y_labels],
        autorange="reversed",  # row 0 at the top, as a matrix is printed
        **where,
    )


def heatmap_figure(
    matrix: Any,
    *,
    x_labels: Sequence[Any],
    y_labels: Sequence[Any],
    title: str,
    x_title: str = "",
    y_title: str = "",
    zmin: float | None = None,
    zmax: float | None = None,
    colorscale: str = "Viridis",
    height: int = 480,
) -> go.Figure:
    """One matrix (rows = ``y_labels``, columns = ``x_labels``), row 0 at the top; e.g. an attention pattern."""
    values = _matrix(matrix, x_labels, y_labels, "heatmap_figure")
    fig = go.Figure(_heatmap_trace(values, x_labels, y_labels, zmin=zmin, zmax=zmax, colorscale=colorscale))
    _layout(fig, title=title, x_title=x_title, y_title=y_title, height=height)
    _label_axes(fig, x_labels, y_labels)
    fig.layout.meta = {
        "ftmech": {
            "kind": "heatmap",
            "x_labels": [str(v) for v in x_labels],
            "y_labels": [str(v) for v in y_labels],
            "matrix": values.tolist(),
        }
    }
    return fig


def heatmap_grid_figure(
    panels: Mapping[str, Any],
    *,
    x_labels: Sequence[Any],
    y_labels: Sequence[Any],
    title: str,
    cols: int = 2,
    zmin: float | None = None,
    zmax: float | None = None,
    colorscale: str = "Viridis",
    panel_height: int = 320,
) -> go.Figure:
    """Several same-shape matrices side by side on one shared colour scale (e.g. compiled vs fine-tuned)."""
    if not panels:
        raise DataError("heatmap_grid_figure needs at least one panel {title: matrix}")
    if cols < 1:
        raise ConfigError(f"cols must be >= 1, got {cols}")
    matrices = {name: _matrix(m, x_labels, y_labels, f"panel '{name}'") for name, m in panels.items()}
    lo = float(min(m.min() for m in matrices.values())) if zmin is None else zmin
    hi = float(max(m.max() for m in matrices.values())) if zmax is None else zmax
    rows = math.ceil(len(matrices) / cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=list(matrices),
        horizontal_spacing=0.08,
        vertical_spacing=0.12 if rows > 1 else 0.0,
    )
    for i, values in enumerate(matrices.values()):
        trace = _heatmap_trace(values, x_labels, y_labels, coloraxis="coloraxis")
        fig.add_trace(trace, row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(
        template=TEMPLATE,
        title={"text": title},
        height=panel_height * rows + 80,
        coloraxis={"colorscale": colorscale, "cmin": lo, "cmax": hi},
        margin={"l": 60, "r": 30, "t": 90, "b": 40},
    )
    _label_axes(fig, x_labels, y_labels)
    fig.layout.meta = {
        "ftmech": {
            "kind": "heatmap_grid",
            "x_labels": [str(v) for v in x_labels],
            "y_labels": [str(v) for v in y_labels],
            "panels": {name: m.tolist() for name, m in matrices.items()},
        }
    }
    return fig


# ---------------------------------------------------------------------------------------------------
# Tables


@dataclass(frozen=True, kw_only=True)
class Table:
    """A plain HTML table: better than a plotted table for text (verdicts, the study's numbers beside ours)."""

    columns: tuple[str, ...]  # header cells
    rows: tuple[tuple[Any, ...], ...]  # str, int, float, bool or None cells; None prints as an en dash
    float_format: str = ".3g"  # format spec for float cells

    def __post_init__(self) -> None:
        if (
            isinstance(self.columns, (str, bytes))
            or not isinstance(self.columns, Sequence)
            or not self.columns
        ):
            raise ConfigError(f"Table columns must be a non-empty list of names, got {self.columns!r}")
        if not isinstance(self.rows, Sequence) or any(
            not isinstance(r, Sequence) or isinstance(r, str) for r in self.rows
        ):
            raise ConfigError("Table rows must be a list of rows, each a list of cells")
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "rows", tuple(tuple(r) for r in self.rows))
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ConfigError(
                    f"Table row {i} has {len(row)} cells but there are {len(self.columns)} columns"
                )
            for cell in row:
                if cell is not None and not isinstance(cell, (str, int, float, bool)):
                    raise ConfigError(
                        f"Table row {i} has a {type(cell).__name__} cell; use str, int, float or None"
                    )
        try:
            format(1.5, self.float_format)
        except ValueError:
            raise ConfigError(
                f"float_format {self.float_format!r} is not a format spec; e.g. '.3f'"
            ) from None

    @classmethod
    def from_records(
        cls, records: Sequence[Mapping[str, Any]], *, columns: Sequence[str] | None = None
    ) -> "Table":
        """One row per dict; the columns are the first record's keys unless given."""
        if columns is None:
            columns = list(records[0]) if records else []
        return cls(columns=tuple(columns), rows=tuple(tuple(r.get(c) for c in columns) for r in records))

    def _cell(self, value: Any) -> str:
        if value is None:
            return "<td>–</td>"
        if isinstance(value, bool):
            return f"<td>{'yes' if value else 'no'}</td>"
        if isinstance(value, (int, float)):
            text = format(value, self.float_format) if isinstance(value, float) else str(value)
            return f'<td class="num">{html.escape(text)}</td>'
        return f"<td>{html.escape(value)}</td>"

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.columns)
        body = "\n".join("<tr>" + "".join(self._cell(v) for v in row) + "</tr>" for row in self.rows)
        return f'<table class="ftmech-table">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'

    def to_json(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "rows": [list(r) for r in self.rows]}


# ---------------------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True, kw_only=True)
class Section:
    """One part of a report: a figure or a table, with a caption saying what it shows."""

    title: str  # heading, also the table-of-contents entry
    content: go.Figure | Table
    caption: str  # plain text: what is plotted and how to read it
    data: Any = None  # JSON-native numbers for the data block; None: the figure builder's data or the table

    def __post_init__(self) -> None:
        if not isinstance(self.title, str) or not self.title.strip():
            raise ConfigError("Section title must be a non-empty string")
        if not isinstance(self.caption, str) or not self.caption.strip():
            raise ConfigError(f"Section '{self.title}' needs a caption saying what it shows")
        if not isinstance(self.content, (go.Figure, Table)):
            raise ConfigError(
                f"Section '{self.title}' content must be a plotly Figure or a Table, got {type(self.content).__name__}"
            )


CSS = """
:root { --ink: #1f2933; --muted: #52606d; --rule: #e4e7eb; --accent: #2f6fb0; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.55;
  font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
.page { max-width: 1120px; margin: 0 auto; padding: 2rem 1.5rem 4rem; }
h1 { font-size: 1.9rem; margin: 0 0 .75rem; }
h2 { font-size: 1.3rem; margin: 0 0 .75rem; }
a { color: var(--accent); }
.intro { max-width: 80ch; }
nav.toc { margin: 1.5rem 0 2rem; padding: .75rem 1.25rem; background: #f5f7fa; border-radius: 6px; }
nav.toc h2 { font-size: 1rem; margin: 0 0 .25rem; color: var(--muted); }
nav.toc ol { margin: 0; padding-left: 1.5rem; columns: 2; column-gap: 2rem; }
section { border-top: 1px solid var(--rule); padding-top: 1.25rem; margin-top: 2rem; }
figure { margin: 0; }
figcaption { color: var(--muted); font-size: .95rem; max-width: 90ch; margin-top: .5rem; }
.plot { width: 100%; }
.table-wrap { overflow-x: auto; }
table.ftmech-table { border-collapse: collapse; font-size: .92rem; }
table.ftmech-table th, table.ftmech-table td { padding: .35rem .7rem; border-bottom: 1px solid var(--rule);
  text-align: left; vertical-align: top; }
table.ftmech-table thead th { background: #f5f7fa; border-bottom: 2px solid #cbd2d9; }
table.ftmech-table td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.ftmech-table tbody tr:hover { background: #fafbfc; }
footer { margin-top: 3rem; color: var(--muted); font-size: .85rem; }
"""


def write_report(
    path: str | Path,
    *,
    title: str,
    intro_html: str,
    sections: Sequence[Section],
    data: Any = None,
) -> Path:
    """Write one offline HTML report and return its path.

    ``intro_html`` is trusted HTML (the study's own text); titles and captions are escaped. ``data`` is
    extra JSON-native data for the data block (e.g. the study's summary). NaN and inf become null there.
    """
    if not sections:
        raise ConfigError("write_report needs at least one Section")
    path = Path(path)
    toc, bodies, blocks = [], [], []
    for i, section in enumerate(sections, start=1):
        section_id = f"section-{i}"
        toc.append(f'<li><a href="#{section_id}">{html.escape(section.title)}</a></li>')
        if isinstance(section.content, Table):
            inner = f'<div class="table-wrap" id="table-{i}">\n{section.content.to_html()}\n</div>'
            kind, default_data = "table", section.content.to_json()
        else:
            inner, default_data = _figure_html(section.content, f"figure-{i}")
            kind = "figure"
        bodies.append(
            f'<section id="{section_id}">\n<h2>{i}. {html.escape(section.title)}</h2>\n<figure>\n{inner}\n'
            f"<figcaption>{html.escape(section.caption)}</figcaption>\n</figure>\n</section>"
        )
        blocks.append(
            {
                "id": section_id,
                "title": section.title,
                "caption": section.caption,
                "kind": kind,
                "data": _plain(section.data if section.data is not None else default_data),
            }
        )
    payload = {"title": title, "ftmech_version": FTMECH_VERSION, "sections": blocks, "data": _plain(data)}
    data_json = json.dumps(payload, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    document = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{CSS}</style>",
            f"<script>{plotly.offline.get_plotlyjs()}</script>",
            "</head>",
            '<body>\n<div class="page">',
            f'<header>\n<h1>{html.escape(title)}</h1>\n<div class="intro">{intro_html}</div>\n</header>',
            '<nav class="toc">\n<h2>Contents</h2>\n<ol>\n' + "\n".join(toc) + "\n</ol>\n</nav>",
            "<main>\n" + "\n".join(bodies) + "\n</main>",
            f"<footer>Written by ftmech {FTMECH_VERSION}. Every number shown is in the JSON block "
            f"<code>#{DATA_ID}</code> of this file.</footer>",
            "</div>",
            f'<script type="application/json" id="{DATA_ID}">{data_json}</script>',
            "</body>\n</html>\n",
        ]
    )
    atomic_write_text(path, document)
    return path


def _figure_html(fig: go.Figure, div_id: str) -> tuple[str, Any]:
    """The figure's div and script (no plotly.js), and its data: the builder's, else the traces' x/y/z."""
    spec = fig.to_dict()  # a deep copy: the caller's figure is not changed
    meta = spec.get("layout", {}).pop("meta", None)
    if isinstance(meta, dict) and "ftmech" in meta:
        data = meta["ftmech"]
    else:  # a figure built elsewhere: its traces' own values, as plain lists rather than Plotly's base64
        keys = ("type", "name", "x", "y", "z")
        data = {
            "traces": [
                {k: _plain(getattr(t, k)) for k in keys if hasattr(t, k) and getattr(t, k) is not None}
                for t in fig.data
            ]
        }
    height = spec.get("layout", {}).get("height") or 450
    div = pio.to_html(
        spec,
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        default_height=f"{height}px",
        config={"displaylogo": False, "responsive": True},
    )
    return f'<div class="plot">{div}</div>', data


def _plain(value: Any) -> Any:
    """JSON-native copy: numpy arrays and scalars to lists and numbers, tuples to lists, NaN/inf to None."""
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and hasattr(value, "to_json"):
        return _plain(value.to_json())
    if value is None or isinstance(value, (str, int, bool)):
        return value
    raise DataError(f"report data must be JSON-native; got a {type(value).__name__}")


def read_report_data(path: str | Path) -> dict[str, Any]:
    """The JSON data block of a report written by ``write_report``."""
    text = Path(path).read_text()
    match = re.search(rf'<script type="application/json" id="{DATA_ID}">(.*?)</script>', text, re.S)
    if match is None:
        raise DataError(f"{path} has no ftmech data block; was it written by interp.reports.write_report?")
    return json.loads(match.group(1))


# ---------------------------------------------------------------------------------------------------
# Checking a report in a browser


@dataclass(frozen=True, kw_only=True)
class RenderCheck:
    """What headless Chromium saw: how many plot divs drew an SVG, and any script errors or blocked loads."""

    n_figures: int  # plot divs in the page
    n_rendered: int  # of those, how many drew their SVG with at least one trace
    not_rendered: tuple[str, ...]  # ids of the divs that did not draw
    errors: tuple[str, ...]  # window errors, console.error calls, unhandled rejections, CSP violations
    screenshot: str | None  # PNG path, when one was asked for

    @property
    def ok(self) -> bool:
        return self.n_rendered == self.n_figures and not self.errors

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
STATUS_ID = "ftmech-render-status"

# Runs before anything else in a copy of the page: records errors, then (after load) the render status.
_PROBE_JS = """
(function () {
  var errors = [];
  window.addEventListener("error", function (e) {
    var where = e.filename ? " (" + e.filename.split("/").pop() + ":" + e.lineno + ")" : "";
    errors.push("error: " + (e.message || (e.target && (e.target.src || e.target.href)) || "?") + where);
  }, true);
  window.addEventListener("unhandledrejection", function (e) { errors.push("unhandled rejection: " + e.reason); });
  document.addEventListener("securitypolicyviolation", function (e) {
    errors.push("blocked load: " + e.blockedURI + " (" + e.violatedDirective + ")");
  });
  var consoleError = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.map.call(arguments, String).join(" "));
    return consoleError.apply(console, arguments);
  };
  function status(final) {
    var divs = Array.prototype.slice.call(document.querySelectorAll(".plotly-graph-div"));
    var missing = divs.filter(function (d) {
      return !(d.querySelector("svg.main-svg") && d._fullData && d._fullData.length > 0);
    }).map(function (d) { return d.id; });
    if (missing.length && !final) { return false; }
    var out = document.createElement("pre");
    out.id = "__STATUS_ID__";
    out.style.display = "none";
    out.textContent = JSON.stringify({figures: divs.length, missing: missing, errors: errors});
    document.body.appendChild(out);
    return true;
  }
  window.addEventListener("load", function () {
    var tries = 0;
    (function poll() { if (!status(++tries > 50)) { setTimeout(poll, 100); } })();
  });
})();
""".replace("__STATUS_ID__", STATUS_ID)


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary on PATH, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def check_report_renders(
    path: str | Path,
    *,
    screenshot: str | Path | None = None,
    window_size: tuple[int, int] = (1200, 3000),
    timeout_s: float = 60.0,
    chromium: str | None = None,
) -> RenderCheck:
    """Open the report in headless Chromium (no network needed) and report which figures drew.

    A copy of the page gets a small script, run first, that records JavaScript errors, ``console.error``
    calls and loads blocked by the page's policy, and after load writes the render status into the DOM,
    which ``--dump-dom`` prints. ``screenshot`` (a PNG path) is taken of the original page.
    """
    path = Path(path).resolve()
    binary = chromium or find_chromium()
    if binary is None:
        raise FtmechError(
            "no Chromium binary on PATH; install it (apt-get install chromium) or pass chromium="
        )
    page = path.read_text()
    head = re.search(r"<head[^>]*>", page, re.I)
    if head is None:
        raise DataError(f"{path} has no <head>; check_report_renders needs an HTML page")
    probed = page[: head.end()] + f"<script>{_PROBE_JS}</script>" + page[head.end() :]
    with tempfile.TemporaryDirectory(prefix="ftmech-chromium-") as tmp:
        copy = Path(tmp) / path.name
        copy.write_text(probed)
        dom = _chromium(binary, tmp, ["--dump-dom", "--virtual-time-budget=15000", copy.as_uri()], timeout_s)
        shot = None
        if screenshot is not None:
            shot = Path(screenshot).resolve()
            shot.parent.mkdir(parents=True, exist_ok=True)
            width, height = window_size
            _chromium(
                binary,
                tmp,
                [f"--screenshot={shot}", f"--window-size={width},{height}", path.as_uri()],
                timeout_s,
            )
            if not shot.is_file():
                raise FtmechError(f"Chromium wrote no screenshot to {shot}")
    match = re.search(rf'<pre id="{STATUS_ID}"[^>]*>(.*?)</pre>', dom, re.S)
    if match is None:
        return RenderCheck(
            n_figures=0,
            n_rendered=0,
            not_rendered=(),
            errors=(
                "the page never reported its render status: it did not finish loading or a script broke",
            ),
            screenshot=str(shot) if shot else None,
        )
    status = json.loads(html.unescape(match.group(1)))
    return RenderCheck(
        n_figures=status["figures"],
        n_rendered=status["figures"] - len(status["missing"]),
        not_rendered=tuple(status["missing"]),
        errors=tuple(status["errors"]),
        screenshot=str(shot) if shot else None,
    )


def _chromium(binary: str, profile_root: str, args: list[str], timeout_s: float) -> str:
    profile = tempfile.mkdtemp(prefix="profile-", dir=profile_root)
    command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise FtmechError(f"Chromium did not finish within {timeout_s:.0f}s: {' '.join(command)}") from None
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        raise FtmechError(f"Chromium exited with {done.returncode}: {' | '.join(tail)}")
    return done.stdout
