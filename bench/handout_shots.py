"""Before -> after screenshots of the exported handout: the same sections of two reports side by side.

    python bench/handout_shots.py BEFORE_PROFILE_DIR AFTER_PROFILE_DIR [--out DIR]

For each of the start page's findings table, chapter 2's FID section (2.4) and chapter 3's MPL
section (3.3: its formulas and the RandAugment table), headless Chromium draws the section of each
report 1200 px wide, with the network blocked (as a classroom without internet would see it), and
saves ``<name>-before.png`` and ``<name>-after.png`` (128-colour palette) under ``--out`` (default
``outputs/bench/handout_shots``). Prints each file with its size.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from readme import chromium, section_page  # noqa: E402

# (picture, page, section anchor or "" for the page's top, window height)
SECTIONS = (("start-page-findings", "index.html", "", 1400),
            ("chapter-2-fid", "02_generative.html", "2.4-Samples,-FID-and-diversity", 2600),
            ("chapter-3-mpl-formulas-randaugment", "03_semi_supervised.html", "3.3-The-MPL-algorithm", 1300))
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND"  # every host name fails: nothing leaves the machine


def shoot(html: Path, anchor: str, height: int, out: Path, tmp: Path) -> Path:
    """``html`` (cut to the section ``anchor`` when given) drawn 1200 px wide, saved as a palette PNG."""
    from PIL import Image

    source = html
    if anchor:
        source = tmp / f"section-{html.name}"
        source.write_text(section_page(html.read_text(), anchor))
    raw = tmp / "raw.png"
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", OFFLINE,
                    f"--user-data-dir={tmp}/profile", f"--window-size=1200,{height}", "--virtual-time-budget=5000",
                    f"--screenshot={raw}", source.resolve().as_uri()], capture_output=True, timeout=180, check=True)
    Image.open(raw).convert("RGB").quantize(colors=128).save(out, optimize=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before", type=Path, help="outputs/<profile> of the report before")
    ap.add_argument("after", type=Path, help="outputs/<profile> of the report after")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench" / "handout_shots")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, page, anchor, height in SECTIONS:
            for when, report in (("before", args.before), ("after", args.after)):
                html = report / "html" / page
                if not html.is_file():
                    sys.exit(f"handout_shots.py: no {html}; export the report first (./run_all.sh)")
                try:
                    path = shoot(html, anchor, height, args.out / f"{name}-{when}.png", Path(tmp))
                except ValueError:
                    sys.exit(f"handout_shots.py: {html} has no section with id {anchor!r}")
                print(f"{path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
