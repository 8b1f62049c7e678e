"""Where outputs live and how they are written: paths, atomic writes, run folders and the checkpoint
index.

Layout under ``outputs/<profile>/`` (or ``$CIFAR_REPORT_OUTPUTS/<profile>/``)::

    <chapter>/                 tables, figures and provenance of one chapter (see lib.report)
    checkpoints/<chapter>/     one folder per training run, named <run>-<hash of what shaped it>
    tensorboard/<chapter>/     TensorBoard event files
    cache/<chapter>/           features and statistics that are expensive to recompute

Every file is written to a temporary name and renamed into place, so a crash never leaves half a
file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .params import params_hash

ROOT = Path(__file__).resolve().parent.parent
# chapters 2 and 4 reuse its classifiers through the index below
SUPERVISED_CHAPTER = "01_supervised"


def default_out_root() -> Path:
    return Path(os.environ.get("CIFAR_REPORT_OUTPUTS", ROOT / "outputs"))


def work_dir(profile_dir: str | Path, kind: str, chapter: str, *names: str) -> Path:
    """``<profile_dir>/<kind>/<chapter>/<names...>`` (created), e.g. a chapter's checkpoints."""
    path = Path(profile_dir, kind, chapter, *names)
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir(root: str | Path, name: str, shaped_by: dict) -> Path:
    """The checkpoint folder of run ``name``: keyed by everything that shapes training, so a changed
    parameter starts a new run instead of resuming a stale one."""
    return Path(root) / f"{name}-{params_hash(shaped_by)}"


# -------------------------------------------------------------------------------- atomic writes
def _atomic(path: str | Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def save_atomic(obj, path: str | Path) -> None:
    """``torch.save`` to a temporary file, then rename."""
    _atomic(path, lambda tmp: torch.save(obj, tmp))


def write_text_atomic(path: str | Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text))


def load_checkpoint(path: str | Path, *, what: str = "checkpoint") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    return torch.load(path, map_location="cpu", weights_only=False)


# -------------------------------------------------------------------------------- checkpoint index
def index_path(profile_dir: str | Path, chapter: str = SUPERVISED_CHAPTER) -> Path:
    return Path(profile_dir) / "checkpoints" / chapter / "index.json"


def record_checkpoint(ckpt_root: str | Path, run_name: str, info: dict) -> None:
    """Keep ``<ckpt_root>/index.json``: run name -> best checkpoint and what built it."""
    path = Path(ckpt_root) / "index.json"
    index = json.loads(path.read_text()) if path.is_file() else {}
    index[run_name] = info
    write_text_atomic(path, json.dumps(index, indent=2, default=str))


def indexed_checkpoint(profile_dir: str | Path, run_name: str) -> tuple[Path, dict]:
    """``(checkpoint path, info)`` of chapter 1's run ``run_name`` under ``outputs/<profile>``;
    fails with the command to run first when chapter 1 has not produced it."""
    profile_dir = Path(profile_dir)
    path = index_path(profile_dir)
    hint = (f"run chapter 1 first: ./run_all.sh --profile {profile_dir.name} --only 01 "
            f"(or open notebooks/{SUPERVISED_CHAPTER} with profile = {profile_dir.name!r})")
    if not path.is_file():
        raise FileNotFoundError(f"no chapter-1 checkpoints under {path.parent}; {hint}")
    index = json.loads(path.read_text())
    if run_name not in index or not index[run_name].get("checkpoint"):
        raise FileNotFoundError(
            f"chapter 1 has no checkpoint for {run_name!r} in {path} (it has {sorted(index)}); "
            f"add it to `models` in params/{SUPERVISED_CHAPTER}.yaml and {hint}")
    info = index[run_name]
    checkpoint = path.parent / info["checkpoint"]
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} listed in {path} is missing; {hint}")
    return checkpoint, info
