"""How the exported handout reads, per page of ``<profile_dir>/html``: table cells showing a missing
value as text ("NaN", "None", ...), columns and rows pandas elided ("..."), cells it truncated
(text cut to "...something..."), script and stylesheet URLs fetched from the network, raw ``$``
math left for a script to typeset, and the page size.

    python bench/handout_counts.py outputs/<profile> [--markdown]
"""
from __future__ import annotations

import argparse
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

MISSING = {"nan", "none", "nat", "<na>"}
ELIDED = {"...", "…"}
# $...$ or $$...$$ with no space inside the delimiters, as Markdown math is written
RAW_MATH = re.compile(r"\$\$[^$]+\$\$|\$(?=\S)[^$\n]*?\S\$")
EXTERNAL = re.compile(r"^(https?:)?//", re.I)
SKIPPED = {"script", "style", "code", "pre", "math", "textarea"}


class Counts(HTMLParser):
    """Walks one page and counts; see the module docstring for what."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.nan_cells = self.elided_columns = self.elided_rows = self.truncated_cells = 0
        self.external_scripts = self.external_styles = self.raw_math = self.tables = 0
        self.cell: list[str] | None = None
        self.row: list[str] = []
        self.in_head = False
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and EXTERNAL.match(a.get("src") or ""):
            self.external_scripts += 1
        if tag == "link" and "stylesheet" in (a.get("rel") or "") and EXTERNAL.match(
                a.get("href") or ""):
            self.external_styles += 1
        if tag in SKIPPED:
            self.skip += 1
        elif tag == "table":
            self.tables += 1
        elif tag == "thead":
            self.in_head = True
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in SKIPPED:
            self.skip = max(0, self.skip - 1)
        elif tag == "thead":
            self.in_head = False
        elif tag in ("td", "th") and self.cell is not None:
            text = " ".join("".join(self.cell).split())
            self.row.append(text)
            self.nan_cells += text.lower() in MISSING
            self.elided_columns += self.in_head and text in ELIDED
            self.truncated_cells += text not in ELIDED and text.endswith(("...", "…"))
            self.cell = None
        elif tag == "tr":
            self.elided_rows += bool(self.row) and all(t in ELIDED for t in self.row)

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)
        if not self.skip:
            self.raw_math += len(RAW_MATH.findall(data))


def html_counts(text: str) -> dict:
    """The counts of one page's HTML (a file's text, or the DOM a browser built from it)."""
    c = Counts()
    c.feed(text)
    # an @import inside <style>, or a script module's import(), also reaches the network
    imports = len(re.findall(r"@import\s+(url\()?['\"]?https?://", text))
    modules = len(re.findall(r"import\(\s*['\"]https?://", text))
    # pandas' footer of an elided frame: "60 rows × 25 columns"
    footers = len(re.findall(r"\d+ rows × \d+ columns", text))
    return {"tables": c.tables, "NaN cells": c.nan_cells,
            "elided columns": c.elided_columns, "elided rows": c.elided_rows,
            "truncated cells": c.truncated_cells, "elision footers": footers,
            "external scripts": c.external_scripts + modules,
            "external styles": c.external_styles + imports,
            "raw $ math": c.raw_math}


def page_counts(page: Path) -> dict:
    return {"page": page.name, **html_counts(page.read_text(encoding="utf-8")),
            "bytes": page.stat().st_size}


def profile_counts(profile_dir: str | Path) -> list[dict]:
    """One row per exported page: every chapter page (class and code version), report.html and
    index.html."""
    pages = sorted(Path(profile_dir, "html").glob("*.html"))
    if not pages:
        raise FileNotFoundError(f"no exported pages under {Path(profile_dir, 'html')}")
    return [page_counts(p) for p in pages]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile_dir", help="outputs/<profile>, the folder holding html/")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args(argv)
    rows = profile_counts(args.profile_dir)
    cols = list(rows[0])
    if args.markdown:
        print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        for r in rows:
            print("| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v)
                                    for v in r.values()) + " |")
        return 0
    widths = [max(len(c), *(len(f"{r[c]:,}" if isinstance(r[c], int) else r[c]) for r in rows))
              for c in cols]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join((f"{v:,}" if isinstance(v, int) else v).rjust(w)
                        for v, w in zip(r.values(), widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
