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
import pickle
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
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
class WriteError(OSError):
    """A file could not be written (disk full, permissions); the previous version is intact."""

    def _render_traceback_(self):  # IPython/Jupyter show this line instead of a traceback
        return [f"{type(self).__name__}: {self}"]


def _atomic(path: str | Path, write) -> None:
    """Write through a temporary file and rename: a crash or a full disk never leaves half a file,
    and the previous version stays until the new one is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise WriteError(err.errno, f"could not write {path} ({err.strerror or err}); the previous "
                                    "version, if any, is intact: free space and re-run to go on "
                                    "from it") from err


def save_atomic(obj, path: str | Path) -> None:
    """``torch.save`` to a temporary file, then rename."""
    _atomic(path, lambda tmp: torch.save(obj, tmp))


def write_text_atomic(path: str | Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text))


def save_npz_atomic(path: str | Path, **arrays) -> None:
    """``numpy.savez_compressed`` to a temporary file, then rename."""
    import numpy as np

    def write(tmp: Path):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    _atomic(path, write)


# -------------------------------------------------------------------------------- safe loading
class CheckpointError(RuntimeError):
    """Not a project checkpoint (e.g. it holds pickled Python objects): never loaded."""

    def _render_traceback_(self):  # IPython/Jupyter show this line instead of a traceback
        return [f"{type(self).__name__}: {self}"]


class UnreadableFile(RuntimeError):
    """A file that exists but cannot be read (truncated, half-synced, corrupt)."""


RECOVERIES: list[dict] = []  # what this process recovered from; a chapter's provenance lists them


def recover(path: Path, reason: str, then: str) -> Path:
    """Move an unreadable ``path`` aside to ``<name>.corrupt``, say so in one line, remember it."""
    aside = path.with_name(path.name + ".corrupt")
    os.replace(path, aside)
    line = f"{path} could not be read ({reason}); moved to {aside.name}; {then}"
    print(f"[recovered] {line}", file=sys.stderr, flush=True)
    RECOVERIES.append({"path": str(path), "reason": reason, "moved_to": str(aside), "then": then})
    return aside


def torch_load(path: str | Path, **kw):
    """``torch.load(..., weights_only=True)``: tensors and plain containers only. Raises
    :class:`CheckpointError` for a file holding other objects, :class:`UnreadableFile` for a damaged
    one."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, **kw)
    except pickle.UnpicklingError as err:
        lines = str(err).strip().splitlines()
        if "weights only" in str(err).lower():
            raise CheckpointError(
                f"{path} is not a project checkpoint: it holds pickled Python objects, which are "
                "never loaded (they could run code). Delete it, or move it out of outputs/."
            ) from None
        raise UnreadableFile(lines[0] if lines else type(err).__name__) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as err:
        first = (str(err).strip().splitlines() or ["empty or truncated file"])[0].split(". ")[0]
        raise UnreadableFile(f"{type(err).__name__}: {first}") from None


def load_checkpoint(path: str | Path, *, what: str = "checkpoint") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    ck = torch_load(path)
    if not isinstance(ck, dict) or "method" not in ck:
        raise CheckpointError(f"{path} is not a project checkpoint (no 'method' state inside); "
                              "delete it or move it out of outputs/")
    return ck


def newest_readable(paths: list[Path]) -> dict | None:
    """The first of ``paths`` that exists and reads as a checkpoint; unreadable ones are moved aside
    (with a line saying so), and the next is tried."""
    for i, path in enumerate(paths):
        if not path.is_file():
            continue
        try:
            return load_checkpoint(path)
        except UnreadableFile as err:
            rest = [p.name for p in paths[i + 1:] if p.is_file()]
            recover(path, str(err), f"resuming from {rest[0]}" if rest else "starting from scratch")
    return None


# -------------------------------------------------------------------------------- checkpoint index
def index_path(profile_dir: str | Path, chapter: str = SUPERVISED_CHAPTER) -> Path:
    return Path(profile_dir) / "checkpoints" / chapter / "index.json"


def record_checkpoint(ckpt_root: str | Path, run_name: str, info: dict) -> None:
    """Keep ``<ckpt_root>/index.json``: run name -> best checkpoint and what built it. Runs trained
    at once by several processes (lib.train.launch) take turns: each update holds a file lock."""
    import fcntl

    path = Path(ckpt_root) / "index.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(".index.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
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


# ---------------------------------------------------------------------- one writer per profile
class ProfileBusy(RuntimeError):
    """Another run is writing the same outputs/<profile>/ folder."""

    def _render_traceback_(self):  # IPython/Jupyter show this line instead of a traceback
        return [f"{type(self).__name__}: {self}"]


LOCK_ENV = "CIFAR_REPORT_LOCK"  # set by run_all.sh: the lock it holds for its notebooks


def _holder(lock: Path) -> dict:
    try:
        return json.loads((lock / "holder.json").read_text())
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_profile(profile_dir: str | Path, *, command: str, pid: int | None = None) -> Path | None:
    """Take ``<profile_dir>/.lock`` (a folder, created atomically) for process ``pid`` (default:
    this one). Returns the lock, or None when the parent ``run_all.sh`` already holds it. A lock
    whose process is gone is taken over with a line saying so; a live one stops this run, saying
    who holds it."""
    lock = Path(profile_dir) / ".lock"
    if os.environ.get(LOCK_ENV) and Path(os.environ[LOCK_ENV]).resolve() == lock.resolve():
        return None
    pid = pid or os.getpid()
    me = {"pid": pid, "host": platform.node(), "command": command,
          "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    for _ in range(3):
        try:
            lock.mkdir(parents=True)
        except FileExistsError:
            holder = _holder(lock)
            if not holder:  # being created right now, or left empty by a crash: look again
                time.sleep(0.5)
                holder = _holder(lock)
            who = (f"pid {holder.get('pid')} on {holder.get('host')}, started "
                   f"{holder.get('started')}: {holder.get('command')}")
            same_host = holder.get("host") == me["host"]
            if holder and holder.get("pid") != pid and (not same_host or _alive(holder["pid"])):
                stale = "" if same_host else f", or delete {lock} if that run is gone"
                raise ProfileBusy(f"{Path(profile_dir)} is being written by another run ({who}); "
                                  f"wait for it to finish or stop it{stale}")
            if holder and holder.get("pid") != pid:
                print(f"[lock] taking over {lock}: its holder ({who}) is no longer running",
                      file=sys.stderr, flush=True)
            shutil.rmtree(lock, ignore_errors=True)
            continue
        write_text_atomic(lock / "holder.json", json.dumps(me))
        return lock
    raise ProfileBusy(f"could not take {lock}; delete it if no other run is writing {profile_dir}")


def unlock_profile(lock: Path | None) -> None:
    """Release a lock taken by :func:`lock_profile` (only if this process still holds it)."""
    if lock is not None and _holder(lock).get("pid") == os.getpid():
        shutil.rmtree(lock, ignore_errors=True)


def main(argv: list[str]) -> int:
    """``python -m lib.storage lock <profile_dir> <pid> <command...>`` (used by run_all.sh)."""
    if len(argv) >= 3 and argv[0] == "lock":
        try:
            lock_profile(argv[1], pid=int(argv[2]), command=" ".join(argv[3:]))
        except ProfileBusy as err:
            print(f"[run_all] {err}", file=sys.stderr)
            return 1
        return 0
    print(main.__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
