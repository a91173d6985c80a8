"""Plotly figures from plain data: lists, dicts and numpy arrays in, ``plotly.graph_objects.Figure`` out.

Means over seeds are computed here, so each figure shows its spread:

- ``curves_figure``: a mean line with a shaded band per series (accuracy vs steps, revival on log steps,
  accuracy vs neurons pruned, probe accuracy per layer).
- ``heatmap_figure`` / ``heatmap_grid_figure``: matrices such as attention patterns, side by side on one
  colour scale.
- ``bar_figure``: grouped bars of per-seed means with error bars.

Figures reach a page only through ``interp.reports.write_report``.
"""

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import plotly.colors
import plotly.graph_objects as go
import plotly.offline
from plotly.subplots import make_subplots

from interp.errors import ConfigError, DataError

Band = Literal["minmax", "bootstrap"]
BAND_LABELS = {"minmax": "min–max over seeds", "bootstrap": "95% bootstrap CI of the mean"}
PALETTE = plotly.colors.qualitative.Plotly
DASHES = ("solid", "dash", "dot", "dashdot", "longdash")
TEMPLATE = "plotly_white"


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
        _check_log_x(parsed)
    summaries = [(s, *_band(s.ys, band)) for s in parsed]
    fig = go.Figure()
    for s, low, high in summaries:
        fig.add_trace(_band_trace(s, low, high, band))
        fig.add_trace(_mean_trace(s, low, high, band))
    for label, value in (reference_lines or {}).items():
        fig.add_hline(
            y=value,
            line={"color": "#7b8794", "dash": "dash", "width": 1},
            annotation_text=label,
            annotation_position="bottom right",
        )
    legend = {"legend_title_text": f"line: mean · band: {BAND_LABELS[band]}"}
    x_axis = {"type": "log", "dtick": "D2"} if log_x else {}  # label 1, 2 and 5 per decade, not every digit
    texts = {"title": title, "x_title": x_title, "y_title": y_title}
    return _finish(
        fig, "curves", band, summaries, texts, legend, x_axis=x_axis, y_range=y_range, height=height
    )


def _check_log_x(parsed: list[_Series]) -> None:
    for s in parsed:
        bad = [v for v in s.x if not isinstance(v, (int, float)) or v <= 0]
        if bad:
            raise DataError(
                f"curves_figure series '{s.name}' has x = {bad[0]!r} on a log axis; drop x <= 0 (e.g. step 0)"
            )


def _band_trace(s: _Series, low: np.ndarray, high: np.ndarray, band: Band) -> go.Scatter:
    """The band of a series as a closed polygon, without a legend entry."""
    return go.Scatter(
        x=s.x + s.x[::-1],
        y=high.tolist() + low[::-1].tolist(),
        mode="lines",
        fill="toself",
        fillcolor=_rgba(s.color, 0.18),
        line={"width": 0},
        hoverinfo="skip",
        showlegend=False,
        legendgroup=s.name,
        name=f"{s.name}: {BAND_LABELS[band]} (n={s.ys.shape[0]})",
    )


def _mean_trace(s: _Series, low: np.ndarray, high: np.ndarray, band: Band) -> go.Scatter:
    """The mean of a series as a line (with markers when there are few points)."""
    return go.Scatter(
        x=s.x,
        y=s.mean.tolist(),
        mode="lines+markers" if len(s.x) <= 30 else "lines",
        line={"color": s.color, "dash": s.dash, "width": 2},
        marker={"size": 5},
        name=s.name,
        legendgroup=s.name,
        customdata=np.stack([low, high], axis=1).tolist(),
        hovertemplate=_hover(s, band, "x=%{x}"),
    )


def _hover(s: _Series, band: Band, x: str) -> str:
    """The hover text of a series' mean: the point, the mean over how many seeds, and the band."""
    return (
        f"<b>{s.name}</b><br>{x}<br>mean %{{y:.4g}} over {s.ys.shape[0]} seeds"
        f"<br>{BAND_LABELS[band]}: %{{customdata[0]:.4g}} – %{{customdata[1]:.4g}}<extra></extra>"
    )


def _finish(
    fig: go.Figure,
    kind: str,
    band: Band,
    summaries: list[tuple[_Series, np.ndarray, np.ndarray]],
    texts: Mapping[str, str],
    layout: Mapping[str, Any],
    *,
    x_axis: Mapping[str, Any],
    y_range: tuple[float, float] | None,
    height: int,
) -> go.Figure:
    """Titles, ``layout``, the axes, and the plotted data in ``layout.meta`` for a report's data block."""
    _layout(fig, **texts, height=height)
    fig.update_layout(**layout)
    if x_axis:
        fig.update_xaxes(**x_axis)
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    data = [_series_data(s, s.mean, low, high) for s, low, high in summaries]
    fig.layout.meta = {"ftmech": {"kind": kind, "band": band, "series": data}}
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
    summaries = [(s, *_band(s.ys, band)) for s in _parse_series(series, what="bar_figure")]
    fig = go.Figure()
    for s, low, high in summaries:
        mean = s.mean
        error = {"type": "data", "symmetric": False, "array": (high - mean).tolist()}
        fig.add_trace(
            go.Bar(
                x=[str(v) for v in s.x],
                y=mean.tolist(),
                name=s.name,
                marker={"color": s.color},
                error_y=error | {"arrayminus": (mean - low).tolist()},
                customdata=np.stack([low, high], axis=1).tolist(),
                hovertemplate=_hover(s, band, "%{x}"),
            )
        )
    layout = {"barmode": "group", "legend_title_text": f"bars: mean · whiskers: {BAND_LABELS[band]}"}
    texts = {"title": title, "x_title": x_title, "y_title": y_title}
    return _finish(fig, "bar", band, summaries, texts, layout, x_axis={}, y_range=y_range, height=height)


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


def _heatmap_meta(
    kind: str, x_labels: Sequence[Any], y_labels: Sequence[Any], **values: Any
) -> dict[str, Any]:
    """What a report's data block keeps of a heatmap: its kind, labels and values."""
    labels = {"x_labels": [str(v) for v in x_labels], "y_labels": [str(v) for v in y_labels]}
    return {"ftmech": {"kind": kind, **labels, **values}}


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
    fig.layout.meta = _heatmap_meta("heatmap", x_labels, y_labels, matrix=values.tolist())
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
    panels = {name: m.tolist() for name, m in matrices.items()}
    fig.layout.meta = _heatmap_meta("heatmap_grid", x_labels, y_labels, panels=panels)
    return fig
