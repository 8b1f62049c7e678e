"""Compare two runs' tables: does a change that should not change results leave them identical?

    python bench/compare_tables.py BEFORE/quick AFTER/quick

Every ``0*/*.csv`` of BEFORE is compared with AFTER's, leaving out columns that time things (wall
time, seconds, images/s ...) and columns only AFTER has (reported as new). Rows AFTER adds at the
end are reported as new rows; everything else must be equal. Prints one line per table and a
summary; exits 1 when a table differs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

TIME_WORDS = ("wall time", "seconds", "time (s)", "images/s", "s / step", "s / image",
              "ms/query", "s to sample", "sampling s", "training time", "elapsed", "compiled")


def timed(column: str) -> bool:
    return any(w in column.lower() for w in TIME_WORDS)


def compare(before: Path, after: Path) -> tuple[list[str], int]:
    lines, differ = [], 0
    for fa in sorted(before.glob("0*/*.csv")):
        name = fa.relative_to(before)
        fb = after / name
        if not fb.is_file():
            lines.append(f"MISSING {name}")
            differ += 1
            continue
        da, db = pd.read_csv(fa), pd.read_csv(fb)
        new = [c for c in db.columns if c not in da.columns]
        gone = [c for c in da.columns if c not in db.columns]
        keep = [c for c in da.columns if c in db.columns and not timed(c)]
        extra_rows = len(db) - len(da)
        same = (not gone and extra_rows >= 0
                and da[keep].equals(db[keep].iloc[:len(da)].reset_index(drop=True)))
        notes = ([f"new columns {new}"] if new else []) + (
            [f"{extra_rows} new row(s)"] if extra_rows > 0 else [])
        if same:
            lines.append(f"same    {name}" + (f" ({'; '.join(notes)})" if notes else ""))
            continue
        differ += 1
        lines.append(f"DIFFERS {name}" + (f" (gone: {gone})" if gone else ""))
        for c in keep:
            a, b = da[c].tolist(), db[c].tolist()[:len(da)]
            if a != b and not (pd.Series(a).equals(pd.Series(b))):
                lines.append(f"    {c}: before {a[:6]} / after {b[:6]}")
    for fb in sorted(after.glob("0*/*.csv")):
        if not (before / fb.relative_to(after)).is_file():
            lines.append(f"new     {fb.relative_to(after)}")
    return lines, differ


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before", type=Path, help="outputs/<profile> of the run before the change")
    ap.add_argument("after", type=Path, help="outputs/<profile> of the run after it")
    args = ap.parse_args()
    for d in (args.before, args.after):
        if not any(d.glob("0*/*.csv")):
            sys.exit(f"compare_tables.py: no chapter tables (0*/*.csv) under {d}")
    lines, differ = compare(args.before, args.after)
    print("\n".join(lines))
    same = sum(line.startswith("same") for line in lines)
    print(f"{same} tables identical apart from time columns and additions, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
