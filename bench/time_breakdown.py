"""Where a finished report's time went: per chapter, its wall time and its largest cells.

    python bench/time_breakdown.py outputs/quick [--top 5]

Reads the executed notebooks papermill wrote (``outputs/<profile>/notebooks/*.ipynb``, each code
cell's ``papermill.duration``) and the run's ``run.json`` (each chapter's wall time, notebook
start-up and HTML export included). Prints one table per chapter: the ``--top`` slowest cells,
named by their first line of code, with seconds and share of the chapter; and the run's total.
Saves the rows as ``$BENCH_DIR/time_breakdown_<profile>.json``. Run it on a report made on an
otherwise idle machine: cells that share the cores with another process take several times longer.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import record


def first_line(source: str | list) -> str:
    """The first line of a cell that is code (not a comment or blank), at most 90 characters."""
    text = "".join(source) if isinstance(source, list) else source
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line if len(line) <= 90 else line[:87] + "..."
    return "(comments only)"


SAVED = re.compile(r"\"([\w-]+)\",\s*item=")  # report.table(df, "name", item=...), .figure, .per_example


def saved_names(source: str | list) -> str:
    """What a cell saves (``report.table(df, "name", item=...)`` and the like), comma-separated."""
    text = "".join(source) if isinstance(source, list) else source
    return ", ".join(dict.fromkeys(SAVED.findall(text)))


def cell_times(notebook: Path) -> list[dict]:
    """Every code cell of an executed notebook with its duration (s), in order."""
    try:
        nb = json.loads(notebook.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"time_breakdown.py: cannot read {notebook}: {err}") from None
    rows = []
    for i, cell in enumerate(c for c in nb.get("cells", []) if c.get("cell_type") == "code"):
        duration = (cell.get("metadata", {}).get("papermill") or {}).get("duration")
        if duration is not None:
            src = cell.get("source", "")
            rows.append({"cell": i, "code": first_line(src), "saves": saved_names(src),
                         "seconds": float(duration)})
    return rows


def breakdown(profile_dir: Path, top: int = 5) -> tuple[list[dict], dict]:
    """The ``top`` slowest cells of each chapter (with the chapter's cell total and wall time), and
    the chapters' wall times from ``run.json`` (empty when the run did not write one)."""
    run_path = profile_dir / "run.json"
    run = json.loads(run_path.read_text()) if run_path.is_file() else {}
    walls = run.get("chapters", {})
    rows = []
    notebooks = sorted((profile_dir / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise SystemExit(f"time_breakdown.py: no executed notebooks under {profile_dir / 'notebooks'}")
    for nb in notebooks:
        cells = cell_times(nb)
        total = sum(c["seconds"] for c in cells)
        for c in sorted(cells, key=lambda c: -c["seconds"])[:top]:
            rows.append({"chapter": nb.stem, **c, "share of cells (%)": round(100 * c["seconds"] / total, 1)
                         if total else 0.0, "chapter cells (s)": round(total, 1),
                         "chapter wall time (s)": walls.get(nb.stem)})
    return rows, walls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("profile_dir", type=Path, help="a finished run: outputs/<profile>")
    ap.add_argument("--top", type=int, default=5, help="cells shown per chapter")
    args = ap.parse_args()
    rows, walls = breakdown(args.profile_dir, args.top)
    import pandas as pd

    df = pd.DataFrame(rows)
    df["seconds"] = df["seconds"].round(1)
    print(df.to_string(index=False))
    largest = sorted(rows, key=lambda r: -r["seconds"])[:args.top]
    summary = (f"profile {args.profile_dir.name}: "
               + (f"{sum(walls.values()):,.0f} s in all ("
                  + ", ".join(f"{ch[:2]} {s:,.0f} s" for ch, s in walls.items()) + "); " if walls else "")
               + f"largest cells: " + "; ".join(f"{r['chapter'][:2]} {r['code'][:40]} {r['seconds']:.0f} s"
                                               for r in largest))
    print(summary)
    record.save(f"time_breakdown_{args.profile_dir.name}", df.to_dict("records"), summary,
                extra={"chapters": walls})
    return 0


if __name__ == "__main__":
    sys.exit(main())
