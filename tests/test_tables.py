"""The one table renderer (lib.report.tables): whole tables, full cells, formats chosen per column, and
the frame Report.table returns computing like a DataFrame and showing itself with the renderer."""
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd

from lib import report as R
from lib.report.tables import HTML, ReportFrame, column_kind, format_value, markdown, render


class Cells(HTMLParser):
    """Header and body cells of a rendered table, as text."""

    def __init__(self, page: str):
        super().__init__()
        self.head, self.rows, self.cell, self.where = [], [], None, None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag in ("thead", "tbody"):
            self.where = tag
        elif tag == "tr" and self.where == "tbody":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            (self.head if self.where == "thead" else self.rows[-1]).append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def wide_frame(rows: int = 70) -> pd.DataFrame:
    """70 rows (past pandas' 60-row display limit) and 25 columns (past its 20)."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({f"metric {i}": rng.random(rows) for i in range(20)})
    df.insert(0, "model", [f"model {i}" for i in range(rows)])
    df["test acc (%)"] = np.linspace(10, 99.5, rows)
    df["parameters"] = np.arange(rows, dtype=np.int64) * 123_457
    df["note"] = ["a long note that says exactly why this row differs from the presented one, "
                  "in more words than pandas shows"] + [None] * (rows - 1)
    df.loc[3, "metric 0"] = np.nan
    df["compiled"] = [i % 2 == 0 for i in range(rows)]
    return df


def test_a_wide_long_frame_renders_whole():
    df = wide_frame()
    assert df.shape == (70, 25)
    page = render(df)
    cells = Cells(page)
    assert cells.head == [str(c) for c in df.columns]  # every column, no index column
    assert len(cells.rows) == 70 and all(len(r) == 25 for r in cells.rows)
    assert "NaN" not in page and "None" not in page and "nan" not in page
    assert "..." not in page and "…" not in page and "rows ×" not in page
    note = df["note"][0]
    assert cells.rows[0][df.columns.get_loc("note")] == note  # full text, not cut
    assert cells.rows[1][df.columns.get_loc("note")] == ""  # missing text: an empty cell
    assert cells.rows[3][df.columns.get_loc("metric 0")] == "—"  # missing number: a dash
    acc = [r[df.columns.get_loc("test acc (%)")] for r in cells.rows]
    assert acc[0] == "10.00" and acc[-1] == "99.50" and all(re.fullmatch(r"\d+\.\d\d", a) for a in acc)
    params = [r[df.columns.get_loc("parameters")] for r in cells.rows]
    assert params[:3] == ["0", "123,457", "246,914"] and params[-1] == f"{69 * 123_457:,}"
    assert [r[df.columns.get_loc("compiled")] for r in cells.rows[:2]] == ["yes", "no"]
    assert 'class="report-table"' in page and "overflow-x:auto" in page  # wide: scrolls sideways


def test_the_index_is_a_column_only_when_named():
    df = pd.DataFrame({"acc (%)": [91.234, 92.0]}, index=["resnet18", "drn_c_26"])
    assert Cells(render(df)).head == ["acc (%)"]
    named = df.rename_axis("model")
    cells = Cells(render(named))
    assert cells.head == ["model", "acc (%)"] and cells.rows == [["resnet18", "91.23"], ["drn_c_26", "92.00"]]
    assert Cells(render(df[df["acc (%)"] > 92])).head == ["acc (%)"]  # a filtered index says nothing


def test_formats_follow_the_column_name_then_its_values():
    assert column_kind("presented test acc (%)", [93.79]) == "percent"
    assert column_kind("difference (pp)", [-0.5]) == "percent"
    assert column_kind("95% low", [0.9, 543.741]) == "number"  # a confidence level, not a unit
    assert column_kind("FID (train stats)", [558.04]) == "fid"
    for name in ("wall time (s)", "s / image", "sampling s / image", "top-10 ms/query",
                 "s to sample 5,000 (extrapolated)"):
        assert column_kind(name, [1.5]) == "seconds", name
    assert column_kind("steps", [6.0, None, 12.0]) == "count"  # whole floats beside a gap
    assert column_kind("lr", [0.0001, 0.001]) == "number"
    assert column_kind("notes", [None, float("nan")]) == "text"
    assert format_value(548.2213, "fid") == "548.22" and format_value(5, "percent") == "5.00"
    assert [format_value(v, "seconds") for v in (0.43291, 18.0, 70.34, 2164.3, 0.00012)] == \
        ["0.433", "18", "70.3", "2,164", "0.00012"]
    assert format_value(147075.0, "count") == "147,075" and format_value(np.int64(50000), "number") == "50,000"
    assert [format_value(v, "number") for v in (0.9555, 0.0001, 13.973, -2.0000000000000004, 1.0728e-06)] == \
        ["0.9555", "0.0001", "13.973", "-2", "1.07e-06"]
    assert format_value(pd.NA, "count") == "—" and format_value(None, "text") == ""
    assert format_value("60-70", "number") == "60-70"
    assert column_kind("same", [np.True_, np.False_]) == "flag" and format_value(np.False_, "flag") == "no"


def test_a_column_of_numbers_sits_right_and_one_with_words_left():
    df = pd.DataFrame({"this run": [0.0005, "SGD, momentum 0.9", 128], "steps": [8, None, 30_000]})
    page = render(df)
    assert re.findall(r'<th class="(\w+)">', page) == ["text", "num"]
    assert re.findall(r'<td class="(\w+)">', page) == ["text", "num"] * 3
    assert Cells(page).rows == [["0.0005", "8"], ["SGD, momentum 0.9", "—"], ["128", "30,000"]]


def test_html_cells_pass_and_text_is_escaped():
    df = pd.DataFrame({"chapter": [HTML('<a href="01_supervised.html">1</a>')], "claim": ["a < b & c"]})
    page = render(df, table_id="findings", row_classes=["holds"])
    assert '<a href="01_supervised.html">1</a>' in page and "a &lt; b &amp; c" in page
    assert '<table id="findings">' in page and '<tr class="holds">' in page


def test_report_table_saves_the_frame_as_it_is_and_returns_one_that_renders(tmp_path):
    df = wide_frame(5)
    rep = R.Report("04_extras", {"profile": "smoke"}, out_root=tmp_path, data_source="synthetic", device="cpu")
    shown = rep.table(df, "quality", item="4.1", title="Quality")
    assert (rep.staging / "quality.csv").read_text() == df.to_csv(index=False)  # CSV untouched
    assert (rep.staging / "quality.md").read_text() == f"**Quality**\n\n{markdown(df)}\n"  # whole, no nan
    assert isinstance(shown, ReportFrame) and shown.equals(df)
    from IPython.core.formatters import DisplayFormatter

    bundle, _ = DisplayFormatter().format(shown)  # what a notebook cell stores as its output
    assert bundle["text/html"] == render(df)
    for derived in (shown.drop(columns=["note"]), shown[shown["parameters"] > 0], shown.assign(x=1),
                    shown.head(2), pd.concat([shown, shown])):
        assert isinstance(derived, ReportFrame) and "report-table" in derived._repr_html_()
    assert isinstance(rep.comparison_table(), ReportFrame)


def test_markdown_writes_every_row_and_column_and_no_nan():
    df = pd.DataFrame({"model": ["a", "b", None], "acc (%)": [93.79, np.nan, 10.0], "n": [1, 2, 3]})
    md = markdown(df)
    lines = md.splitlines()
    assert len(lines) == 2 + len(df)
    assert "nan" not in md.lower() and "None" not in md
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines]
    assert cells[0] == ["model", "acc (%)", "n"]
    assert cells[2:] == [["a", "93.79", "1"], ["b", "—", "2"], ["—", "10", "3"]]
