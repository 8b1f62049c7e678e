"""What the findings' intervals cost a finished run: seconds per chapter and the size of the saved per-example
results, read from the run's provenance (each chapter times its interval work as it runs).

    python bench/interval_cost.py outputs/quick

Per chapter: the seconds spent on bootstrap intervals (``intervals``), on the FID replicates and timing repeats
and two-moons seeds behind findings, and on the findings at ``finish``, against the chapter's wall time; and the
bytes under ``per_example/``. Saves the table as ``$BENCH_DIR/interval_cost_<profile>.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import record

CHAPTERS = ("01_supervised", "02_generative", "03_semi_supervised", "04_extras")


def cost_rows(profile_dir: Path) -> list[dict]:
    rows = []
    for ch in CHAPTERS:
        path = profile_dir / ch / "provenance.json"
        if not path.is_file():
            continue
        prov = json.loads(path.read_text())
        spent = prov.get("intervals_s") or {}
        findings = prov.get("findings_s") or 0.0
        total = sum(spent.values()) + findings
        size = sum(p.stat().st_size for p in (profile_dir / ch / "per_example").glob("*.npz"))
        rows.append({"chapter": ch, **{f"{k} (s)": v for k, v in spent.items()}, "findings (s)": findings,
                     "total (s)": round(total, 1), "chapter wall time (s)": prov["wall_time_s"],
                     "share (%)": round(100 * total / prov["wall_time_s"], 2),
                     "per_example (KB)": round(size / 1024, 1)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("profile_dir", type=Path, help="a finished run: outputs/<profile>")
    args = ap.parse_args()
    rows = cost_rows(args.profile_dir)
    if not rows:
        sys.exit(f"interval_cost.py: no chapter provenance under {args.profile_dir}")
    import pandas as pd

    df = pd.DataFrame(rows).fillna(0)
    print(df.to_string(index=False))
    summary = ("; ".join(f"{r['chapter'][:2]} {r['total (s)']:g} s of {r['chapter wall time (s)']:,.0f} s "
                         f"({r['share (%)']:g}%)" for r in rows)
               + f"; per-example results {sum(r['per_example (KB)'] for r in rows):,.0f} KB "
                 f"(profile {args.profile_dir.name})")
    print(summary)
    record.save(f"interval_cost_{args.profile_dir.name}", df.to_dict("records"), summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
