"""The notebooks' first cell: a no-op outside Colab; in Colab (a stand-in google.colab module) it fetches the
project when lib/ is missing, installs only missing packages (never torch) and keeps outputs on Drive."""
import os
import subprocess
import sys
import types

import jupytext
import pytest
from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def colab_cell(py):
    cells = [c for c in jupytext.read(py).cells if c.cell_type == "code"]
    assert "google.colab" in cells[0].source, f"{py.name}: the first code cell must be the Colab set-up"
    return cells[0].source


def test_colab_cell_and_path_set_up_are_identical_in_every_notebook():
    """What must stay inline (it runs before lib/ can be imported) is one text, copied, never edited apart."""
    first = colab_cell(NOTEBOOKS[0])
    for py in NOTEBOOKS[1:]:
        assert colab_cell(py) == first, f"{py.name}: Colab cell differs from {NOTEBOOKS[0].name}'s"
    set_up = "ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / \"lib\" / \"params.py\").is_file())"
    for py in NOTEBOOKS:
        assert set_up in py.read_text(), f"{py.name}: the cell that puts lib/ on sys.path differs"
        assert set_up.split(" if ")[1].rstrip(")") in first


@pytest.fixture
def fake_colab(monkeypatch, tmp_path):
    mounted = []
    drive = types.SimpleNamespace(mount=lambda path: mounted.append(path))
    colab = types.ModuleType("google.colab")
    colab.drive = drive
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.drive", drive)
    calls = []

    def fake_run(cmd, check=False, **kw):
        calls.append(cmd)
        if cmd[:2] == ["git", "clone"]:
            os.symlink(ROOT, cmd[-1])  # "clone" = the checkout under test
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setenv("COLAB_REPO_DIR", str(tmp_path / "repo"))
    for var in ("CIFAR_REPORT_OUTPUTS", "CIFAR_REPORT_CACHE"):
        monkeypatch.delenv(var, raising=False)
    return types.SimpleNamespace(mounted=mounted, calls=calls, tmp=tmp_path)


@pytest.mark.parametrize("py", NOTEBOOKS, ids=lambda p: p.stem)
def test_cell_does_nothing_outside_colab(py, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    before = dict(os.environ)
    exec(colab_cell(py), {})
    assert calls == [] and dict(os.environ) == before


@pytest.mark.parametrize("py", NOTEBOOKS, ids=lambda p: p.stem)
def test_cell_in_colab_fetches_installs_missing_and_uses_drive(py, fake_colab, monkeypatch):
    from lib import colab

    monkeypatch.setattr(colab, "missing_requirements", lambda: ["timm==1.0.31"])
    empty = fake_colab.tmp / "content"
    empty.mkdir()
    monkeypatch.chdir(empty)  # no lib/ here: the cell must fetch the repository
    try:
        exec(colab_cell(py), {})
    finally:
        os.environ.pop("CIFAR_REPORT_OUTPUTS", None), os.environ.pop("CIFAR_REPORT_CACHE", None)
    clone = [c for c in fake_colab.calls if c[:2] == ["git", "clone"]]
    assert clone and clone[0][-1] == str(fake_colab.tmp / "repo")
    pip = [c for c in fake_colab.calls if "pip" in c]
    assert pip and pip[0][-1] == "timm==1.0.31"
    assert fake_colab.mounted == ["/content/drive"]
    assert os.path.realpath(os.getcwd()) == os.path.realpath(fake_colab.tmp / "repo" / "notebooks")


def test_missing_requirements_skips_torch_and_installed(tmp_path):
    from lib.colab import missing_requirements

    req = tmp_path / "requirements.txt"
    req.write_text("# comment\ntorch==2.14.1\ntorchvision==0.29.1\npytest==9.2.0  # installed\n"
                   "surely-not-installed-pkg==1.0\n")
    assert missing_requirements(req) == ["surely-not-installed-pkg==1.0"]
