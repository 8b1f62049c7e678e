"""Google Colab set-up, called from each notebook's first cell (which does nothing outside Colab).

Colab already has torch, torchvision, numpy, pandas, matplotlib and scikit-learn.
:func:`setup_colab` installs only the requirements it lacks, at the pinned versions, never touching
torch or torchvision (reinstalling them would replace Colab's CUDA build). With ``keep_on_drive`` it
mounts Google Drive and points outputs, checkpoints and the dataset cache there, so a disconnected
session resumes where it stopped. :func:`gpu_profile` says which profile ``auto`` gives the session's GPU
(:func:`lib.profiles.auto_choice`, the choice ``run_all.sh`` makes) and how long it is projected to take.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEVER_INSTALL = {"torch", "torchvision", "jupyterlab"}  # Colab's own builds stay


def missing_requirements(requirements: str | Path = ROOT / "requirements.txt") -> list[str]:
    """Pinned requirement lines whose distribution is not installed (torch and torchvision
    excluded)."""
    missing = []
    for line in Path(requirements).read_text().splitlines():
        spec = line.split("#", 1)[0].strip()
        if not spec:
            continue
        name = re.split(r"[=<>!~\[ ]", spec, maxsplit=1)[0]
        if name.lower() in NEVER_INSTALL:
            continue
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(spec)
    return missing


def setup_colab(*, keep_on_drive: bool = True, drive_root: str = "/content/drive",
                drive_folder: str = "MyDrive/cifar10-report") -> dict:
    """Install what is missing and optionally keep outputs on Drive; returns what it did (printed in
    the cell)."""
    done = {"installed": missing_requirements(), "outputs": None}
    if done["installed"]:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *done["installed"]],
                       check=True)
    if keep_on_drive:
        from google.colab import drive

        drive.mount(drive_root)
        base = Path(drive_root) / drive_folder
        os.environ["CIFAR_REPORT_OUTPUTS"] = str(base / "outputs")
        os.environ["CIFAR_REPORT_CACHE"] = str(base / "cache")
        done["outputs"] = os.environ["CIFAR_REPORT_OUTPUTS"]
    return done


def gpu_profile(*, limit: float | None = None) -> str:
    """One line: the profile ``auto`` runs on this session's GPU, its projected hours per chapter, and why."""
    import torch

    from .profiles import AUTO_HOURS, auto_choice

    if not torch.cuda.is_available():
        return ("No GPU in this session, so profile auto runs quick on the CPU; for the colab profile choose "
                "Runtime > Change runtime type > T4 GPU")
    name = torch.cuda.get_device_name()
    return auto_choice(name, limit=AUTO_HOURS if limit is None else limit).line(name)
