"""Shared fixtures: the repository root, ../shared when present, and tiny data sets made on the fly."""
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
SHARED_ARCHIVE = SHARED / "datasets" / "cifar10-jpeg.tar.gz"
SHARED_WEIGHTS = SHARED / "weights" / "pt_inception-2015-12-05-6726825d.pth"

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def one_thread():
    """One torch thread for tests of many small ops (far faster than two on a shared, busy CPU); restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def shared_archive() -> Path:
    if not SHARED_ARCHIVE.is_file():
        pytest.skip("../shared/datasets/cifar10-jpeg.tar.gz not present")
    return SHARED_ARCHIVE


@pytest.fixture
def shared_weights() -> Path:
    if not SHARED_WEIGHTS.is_file():
        pytest.skip(f"../shared/weights/{SHARED_WEIGHTS.name} (FID Inception weights) not present")
    return SHARED_WEIGHTS


def smoke_data_arg() -> str:
    """The data the end-to-end smoke report uses: $CIFAR10_ROOT, else ../shared's archive, else synthetic."""
    if os.environ.get("CIFAR10_ROOT"):
        return os.environ["CIFAR10_ROOT"]
    return str(SHARED_ARCHIVE) if SHARED_ARCHIVE.is_file() else "synthetic"


def run_all(out, *args, env_extra=None):
    """Run ./run_all.sh with outputs under ``out`` and this interpreter's packages."""
    import subprocess

    env = {**os.environ, "CIFAR_REPORT_OUTPUTS": str(out), "CIFAR_REPORT_PYTHON": sys.executable,
           **(env_extra or {})}
    return subprocess.run([str(ROOT / "run_all.sh"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=3600)


@pytest.fixture(scope="session")
def smoke_report(tmp_path_factory):
    """The whole smoke report, built once per test session: (outputs/smoke folder, completed process)."""
    out = tmp_path_factory.mktemp("outputs")
    proc = run_all(out, "--profile", "smoke", "--data", smoke_data_arg())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / "smoke", proc


def smoke_params(tmp_path, chapter: str, **smoke) -> Path:
    """A copy of params/ under ``tmp_path`` whose smoke profile of ``chapter`` also sets ``smoke``; for
    chapter 1 it starts from a few hundred images, one sweep cell and no extra DRNs (pass it as
    CIFAR_REPORT_PARAMS_DIR)."""
    import yaml

    from lib import params as P

    small = {"01_supervised": dict(activation_map_models=[], sweep_batch_sizes=[64], sweep_lrs=[0.001],
                                   train_subset=300, val_size=50, sweep_train_subset=200, cam_images=8)}
    folder = tmp_path / "params"
    folder.mkdir()
    for f in P.PARAMS_DIR.glob("*.yaml"):
        doc = yaml.safe_load(f.read_text())
        if f.stem == chapter:
            doc["profiles"]["smoke"].update({**small.get(chapter, {}), **smoke})
        (folder / f.name).write_text(yaml.safe_dump(doc))
    return folder
