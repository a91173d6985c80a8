"""Reports: one self-contained offline HTML file of ``Section``s (a figure or ``Table`` with a caption).

``write_report`` inlines plotly.js once, sets a Content-Security-Policy that forbids every network load,
and embeds the numbers behind every section as JSON (``<script type="application/json" id="ftmech-data">``);
``read_report_data`` reads them back. Figures come from ``interp.figures``; ``interp.render_check`` opens a
report in headless Chromium and says whether every figure drew.
"""

import dataclasses
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import plotly.offline

from interp.atomic_files import atomic_write_text
from interp.config import FTMECH_VERSION
from interp.errors import ConfigError, DataError

DATA_ID = "ftmech-data"
# Inline scripts and styles only: the browser refuses any network load, so a report cannot depend on one.
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:"


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
        toc_item, body, block = _section(i, section)
        toc.append(toc_item)
        bodies.append(body)
        blocks.append(block)
    payload = {"title": title, "ftmech_version": FTMECH_VERSION, "sections": blocks, "data": _plain(data)}
    data_json = json.dumps(payload, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    atomic_write_text(path, _document(title, intro_html, toc, bodies, data_json))
    return path


def _section(i: int, section: Section) -> tuple[str, str, dict[str, Any]]:
    """The ``i``-th section's table-of-contents entry, its HTML, and its entry in the data block."""
    section_id = f"section-{i}"
    toc_item = f'<li><a href="#{section_id}">{html.escape(section.title)}</a></li>'
    if isinstance(section.content, Table):
        inner = f'<div class="table-wrap" id="table-{i}">\n{section.content.to_html()}\n</div>'
        kind, default_data = "table", section.content.to_json()
    else:
        inner, default_data = _figure_html(section.content, f"figure-{i}")
        kind = "figure"
    body = (
        f'<section id="{section_id}">\n<h2>{i}. {html.escape(section.title)}</h2>\n<figure>\n{inner}\n'
        f"<figcaption>{html.escape(section.caption)}</figcaption>\n</figure>\n</section>"
    )
    block = {
        "id": section_id,
        "title": section.title,
        "caption": section.caption,
        "kind": kind,
        "data": _plain(section.data if section.data is not None else default_data),
    }
    return toc_item, body, block


def _document(title: str, intro_html: str, toc: list[str], bodies: list[str], data_json: str) -> str:
    """The whole page: head (CSP, styles, plotly.js), header, contents, sections, footer and data block."""
    return "\n".join(
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
