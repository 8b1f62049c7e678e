"""Every bench saves what it printed as JSON beside it, with where and how it was measured.

``save(name, rows, summary)`` writes ``$BENCH_DIR/<name>.json`` (default ``outputs/bench/``): the command line,
git commit, UTC date, machine (CPU, cores, memory, torch threads, GPU), the rows of the printed table and a
one-line summary. ``python scripts/readme.py record outputs/bench/<name>.json`` files it under
``bench/records/`` and the README's Measurements section is generated from those records.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib.report import git_commit  # noqa: E402  (the commit every output's provenance names)


def machine() -> dict:
    """What the numbers were measured on."""
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def describe_machine(m: dict) -> str:
    gpu = m.get("gpu")
    base = f"{m.get('cores')} cores, {m.get('memory_gib', '?')} GiB"
    return f"{gpu} ({base})" if gpu else f"CPU only ({base})"


def save(name: str, rows: list[dict], summary: str, *, out_dir: str | Path | None = None,
         extra: dict | None = None, quiet: bool = False) -> Path:
    """Write the record of one bench run and return its path."""
    out = Path(out_dir or os.environ.get("BENCH_DIR", ROOT / "outputs" / "bench"))
    out.mkdir(parents=True, exist_ok=True)
    argv = [Path(sys.argv[0]).resolve().relative_to(ROOT).as_posix(), *sys.argv[1:]] \
        if Path(sys.argv[0]).resolve().is_relative_to(ROOT) else sys.argv
    record = {"bench": name, "command": "python " + shlex.join(argv), "commit": git_commit(),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "summary": summary, "rows": rows, **(extra or {})}
    path = out / f"{name}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str))
    os.replace(tmp, path)
    if not quiet:
        print(f"[record] {path}")
    return path
