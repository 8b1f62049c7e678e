"""One HTML renderer for every table the report shows: the tables a chapter displays (what
:meth:`lib.report.Report.table` returns renders itself with it) and the start page's tables.

Every row and column is shown, and every cell in full: long text wraps, a wide table scrolls
sideways inside the page. The index is a column only when it has a name. Missing values are an
empty cell in a text column and a dash in a numeric one. Numbers are formatted per column, by its
name first and its values second:

- percentages and percentage points (a name with ``(%)`` or ``(pp)``): two decimals;
- FIDs (a name with ``FID``): two decimals;
- seconds (``(s)``, ``s / image``, ``ms/query``, ``s to ...``): three significant figures, whole
  seconds from 100 on;
- counts (integers, or floats that are all whole numbers): thousands separators;
- other numbers: at most five significant figures and four decimals;
- booleans: yes / no.

The saved CSV and Markdown files are written from the frame itself and are never formatted.
"""
from __future__ import annotations

import html
import numbers
import re

import numpy as np
import pandas as pd

PERCENT = re.compile(r"\((?:%|pp)[),]")
FID = re.compile(r"\bFID\b")
SECONDS = re.compile(r"(?:^|[\s(])m?s(?:\)|\s*/|\s+to\b)")
DASH = "—"

STYLE = ("<style>div.report-table{overflow-x:auto;max-width:100%;margin:0 0 1em}"
         "div.report-table table{border-collapse:collapse;margin:0;table-layout:auto;"
         "font-size:13px}"
         "div.report-table th,div.report-table td{border:1px solid #d0d0d0;padding:3px 7px;"
         "vertical-align:top;max-width:none;line-height:1.35}"
         "div.report-table th{background:#f3f3f3}"
         "div.report-table th.num,div.report-table td.num{text-align:right}"
         "div.report-table th.text,div.report-table td.text{text-align:left}"
         "div.report-table td.num{white-space:nowrap;font-variant-numeric:tabular-nums}"
         # words wrap inside a column of their natural width, at most 28em (a header: 9em); the
         # table never squeezes a column narrower, it scrolls instead
         "div.report-table div.w{width:max-content;max-width:28em;white-space:normal}"
         "div.report-table th div.w{max-width:9em}div.report-table th.num div.w{margin-left:auto}"
         "</style>")


class HTML(str):
    """A cell already written as HTML (a link, a thumbnail): the renderer inserts it as it is."""


def _missing(v) -> bool:
    if isinstance(v, str):
        return False
    return v is None or bool(pd.api.types.is_scalar(v) and pd.isna(v))


def _is_bool(v) -> bool:
    return isinstance(v, (bool, np.bool_))


def _is_number(v) -> bool:
    return isinstance(v, numbers.Number) and not _is_bool(v)


def column_kind(name: str, values) -> str:
    """How a column's numbers are written: ``percent``, ``fid``, ``seconds``, ``count``,
    ``number``, ``flag`` or ``text`` (no number in it)."""
    present = [v for v in values if not _missing(v)]
    if present and all(_is_bool(v) for v in present):
        return "flag"
    nums = [v for v in present if _is_number(v)]
    if not nums:
        return "text"
    for kind, pattern in (("percent", PERCENT), ("fid", FID), ("seconds", SECONDS)):
        if pattern.search(name):
            return kind
    if all(float(v).is_integer() for v in nums):
        return "count"
    return "number"


def _general(v: float) -> str:
    if abs(v) >= 1e5:
        return f"{v:,.0f}"
    if abs(v) >= 1e-3 or v == 0:
        return f"{round(v, 4):.5g}"
    return f"{v:.3g}"


def format_value(v, kind: str) -> str:
    """``v`` as the column ``kind`` writes it (see the module docstring)."""
    if _missing(v):
        return "" if kind == "text" else DASH
    if _is_bool(v):
        return "yes" if v else "no"
    if not _is_number(v):
        return str(v)
    x = float(v)
    if kind in ("percent", "fid"):
        return f"{x:,.2f}"
    if kind == "seconds":
        return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"
    if isinstance(v, numbers.Integral) or (kind == "count" and x.is_integer()):
        return f"{int(x):,}"
    return _general(x)


def _cell(v, kind: str) -> str:
    return str(v) if isinstance(v, HTML) else html.escape(format_value(v, kind))


def _name(label) -> str:
    if isinstance(label, tuple):
        return " / ".join(str(x) for x in label if str(x))
    return str(label)


def render(df: pd.DataFrame, *, table_id: str | None = None,
           row_classes: list[str] | None = None, style: bool = True) -> str:
    """``df`` as one HTML table in a sideways-scrolling wrapper; ``row_classes`` gives each row a
    CSS class (e.g. a verdict's colour). Without ``style`` the page carries :data:`STYLE` once
    itself."""
    frame = df
    if any(n is not None for n in df.index.names):
        frame = df.reset_index()
    names = [_name(c) for c in frame.columns]
    columns = [frame.iloc[:, i].tolist() for i in range(len(names))]
    kinds = [column_kind(n, values) for n, values in zip(names, columns)]
    # a column of numbers only (and gaps) sits on the right, its header too; any words: the left
    sides = ["num" if k not in ("text", "flag")
             and all(_is_number(v) or _missing(v) for v in values) else "text"
             for k, values in zip(kinds, columns)]
    head = "".join(f'<th class="{side}"><div class="w">{html.escape(n)}</div></th>'
                   for n, side in zip(names, sides))
    rows = []
    for r, values in enumerate(frame.itertuples(index=False, name=None)):
        cls = row_classes[r] if row_classes and row_classes[r] else ""
        cells = "".join(f'<td class="num">{_cell(v, k)}</td>' if side == "num"
                        else f'<td class="text"><div class="w">{_cell(v, k)}</div></td>'
                        for v, k, side in zip(values, kinds, sides))
        rows.append(f"<tr class=\"{html.escape(cls)}\">{cells}</tr>" if cls
                    else f"<tr>{cells}</tr>")
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    return (f'{STYLE if style else ""}'
            '<div class="report-table" style="overflow-x:auto;max-width:100%">'
            f"<table{ident}><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


class ReportFrame(pd.DataFrame):
    """A DataFrame that a notebook shows with :func:`render`; it computes like any DataFrame, and
    what is derived from it (a selection, ``drop``, ``assign``) shows the same way."""

    @property
    def _constructor(self):
        return ReportFrame

    def _repr_html_(self) -> str:
        return render(self)


def shown(df: pd.DataFrame) -> ReportFrame:
    """``df`` as a :class:`ReportFrame` (the same data; nothing is formatted or copied)."""
    return df if isinstance(df, ReportFrame) else ReportFrame(df)


def markdown(df: pd.DataFrame) -> str:
    """``df`` as a Markdown table (the saved ``.md`` files and the generated docs): every row and
    column, no index, a missing value written as an em dash instead of ``nan``."""
    return df.astype(object).where(df.notna(), None).to_markdown(index=False, missingval=DASH)
