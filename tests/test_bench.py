"""bench/gpu_check.sh as an offline GPU node would run it, proven on the CPU (shrunk): only the measuring
packages, no environment made, nothing installed but the wheels it is given, results only in --out."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from conftest import ROOT, SHARED_ARCHIVE, SHARED_WEIGHTS

# what an offline CUDA image often lacks: the notebook tool chain (and what only the report needs)
NOT_ON_THE_NODE = ("papermill", "nbconvert", "jupytext", "ipykernel", "pytest", "pytorch_grad_cam", "seaborn",
                   "tensorboard", "matplotlib", "sklearn")


def node_env(tmp_path: Path, hidden=NOT_ON_THE_NODE) -> dict:
    """An environment whose python3 has this interpreter's packages except ``hidden`` ones: a fresh venv
    seeing a folder of links to every other entry of this site-packages, as a node's image would."""
    import sysconfig

    real = Path(sysconfig.get_paths()["purelib"])
    seen = tmp_path / "node_packages"
    seen.mkdir()
    for entry in real.iterdir():
        top = entry.name.split("-")[0].split(".")[0]
        if top not in hidden and top.lstrip("_") not in hidden:
            (seen / entry.name).symlink_to(entry)
    venv = tmp_path / "node_python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    own = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; "
                               "print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True,
                              check=True).stdout.strip())
    # a site dir, so the linked packages' own .pth files are processed as in the real one
    (own / "node.pth").write_text(f"import site; site.addsitedir({str(seen)!r})\n")
    env = {**os.environ, "CIFAR_REPORT_PYTHON": str(venv / "bin" / "python")}
    for key in ("CIFAR10_ROOT", "BENCH_DIR", "TORCH_HOME", "PYTHONPATH"):
        env.pop(key, None)
    return env


def gpu_check(*args, env, timeout=1800):
    return subprocess.run([str(ROOT / "bench" / "gpu_check.sh"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_the_node_python_lacks_the_notebook_tool_chain(tmp_path):
    env = node_env(tmp_path)
    py = env["CIFAR_REPORT_PYTHON"]
    for name in ("seaborn", "papermill", "pytest", "sklearn"):
        proc = subprocess.run([py, "-c", f"import {name}"], env=env, capture_output=True, text=True)
        assert f"No module named '{name}'" in proc.stderr
    assert subprocess.run([py, "-c", "import torch, torchvision, timm, diffusers, pytorch_fid"], env=env).returncode == 0


def test_gpu_check_runs_offline_with_only_the_measuring_packages(tmp_path):
    env = node_env(tmp_path)
    had_venv = (ROOT / ".venv").exists()
    data = str(SHARED_ARCHIVE) if SHARED_ARCHIVE.is_file() else "synthetic"
    args = ["--data", data, "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]
    if SHARED_WEIGHTS.is_file():
        args += ["--fid-weights", str(SHARED_WEIGHTS)]
    proc = gpu_check(*args, env=env)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gpu_check.json", "gpu_check.log"]
    assert list((tmp_path / "work").iterdir()) == []  # the working folder is gone
    assert (ROOT / ".venv").exists() == had_venv and "[setup]" not in proc.stderr  # no environment made
    lines = out.strip().splitlines()
    assert lines[-1].startswith("full log:")  # the short table comes last
    result = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    sections = ("startup", "steps", "classifiers", "step_floor", "finetune", "ddpm_sampling", "inception",
                "fid_cpu", "flops", "disk", "accuracy_run", "ddpm_layout")
    for section in sections:
        assert "error" not in result[section] and "skipped" not in result[section], result[section]
    assert [k for k in result if k in sections] == list(sections)  # in the order the budget needs them
    # every method's step, eager, with 0 host syncs per step; one compiled on a CPU (aot_eager), one graph
    assert set(result["steps"]["eager"]) == {"resnet18", "mpl", "uda", "ddpm", "supervised", "vae", "dcgan"}
    assert all(s == {"eager": 0.0} for s in result["syncs"].values()), result["syncs"]
    c = result["compiled"]["resnet18"]
    assert c["graphs"] == 1 and c["eager_calls"] == 0 and c["backend"] == "aot_eager" and "error" not in c
    assert result["mpl"]["labelled_batch"] == 2 and result["mpl"]["mpl_s_per_step"] > 0  # what budget.py reads
    assert set(result["step_floor"]["resnet18"]) == {"2", "4"} and result["finetune"]["batch"] == 8
    assert result["ddpm"]["params"] == 35_746_307 and result["ddpm"]["s_per_image_step"] > 0
    assert result["inception"]["images_per_s"] > 0 and result["fid_cpu"]["frechet_s"] > 0
    weights = "pytorch-fid's" if SHARED_WEIGHTS.is_file() else "random (no --fid-weights): speed only"
    assert result["inception"]["weights"] == weights
    assert result["accuracy_run"]["epochs"] == 1 and len(result["accuracy_run"]["val_acc_by_epoch"]) == 1
    assert result["ddpm_layout"]["faster_for_sampling"] in ("contiguous", "channels_last")
    assert 2.9e9 < result["flops"]["train:resnet18"] < 3.8e9  # ~3 x the 1.1 GFLOP forward pass of CIFAR ResNet-18
    assert 30e9 < result["flops"]["train:ddpm"] < 45e9        # ~3 x Ho et al.'s 12 GFLOP U-Net forward
    chapters = {"01_supervised", "02_generative", "03_semi_supervised", "04_extras", "total"}
    assert set(result["projection_s"]) >= chapters and set(result["flop_estimate_s"]) >= chapters
    assert result["projection_missing"] == [] and all(v > 0 for v in result["projection_s"].values())
    assert any(line.startswith("projected full profile: total") for line in lines[-60:])
    assert result["wall_s"] < result["limit_s"]


def test_a_cut_check_keeps_every_section_it_finished(tmp_path):
    proc = gpu_check("--out", str(tmp_path), "--work", str(tmp_path), "--limit-s", "40", env=node_env(tmp_path),
                     timeout=120)
    assert proc.returncode in (0, 124), proc.stderr[-2000:]  # ended by itself, or cut by the shell at 40 s
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert "torch" in result["startup"] and result["wall_s"] <= 40  # measured and saved before the cut
    names = [s[0] for s in __import__("gpu_check").SECTIONS]
    present = [k for k in result if k in names]
    assert present == names[:len(present)]  # saved in order, nothing after a gap
    for name in present[1:]:  # each one saved is either whole or says why it was skipped
        assert "skipped" in result[name] or "error" not in result[name], result[name]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("gpu_check.") and p.is_dir()] == []


def test_a_missing_measuring_package_is_one_line_with_the_remedy(tmp_path):
    env = node_env(tmp_path, hidden=(*NOT_ON_THE_NODE, "diffusers"))
    proc = gpu_check("--out", str(tmp_path / "out"), env=env, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"gpu_check.sh: {env['CIFAR_REPORT_PYTHON']} lacks: diffusers. Where pip reaches a package index, run bench/wheels.sh "
        f"DIR --only diffusers --python-version {sys.version_info[0]}.{sys.version_info[1]}, bring DIR here and "
        "rerun with --wheels DIR."]
    assert not (tmp_path / "out" / "gpu_check.json").exists()


def wheel_of(dist_name: str, tmp: Path) -> Path:
    """A wheel of an installed pure-Python distribution, zipped from its installed files."""
    from importlib import metadata

    dist = metadata.distribution(dist_name)
    name = f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}-py3-none-any.whl"
    path = tmp / name
    with zipfile.ZipFile(path, "w") as z:
        for f in dist.files:
            src = Path(dist.locate_file(f))
            if src.is_file() and "__pycache__" not in f.parts and ".." not in f.parts:  # no scripts
                z.write(src, f.as_posix())
    return path


def test_wheels_fill_only_what_the_node_lacks(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel_of("pytorch-fid", wheels)
    env = node_env(tmp_path, hidden=(*NOT_ON_THE_NODE, "pytorch_fid"))
    proc = gpu_check("--wheels", str(wheels), "--out", str(tmp_path / "out"), "--work", str(tmp_path),
                     "--limit-s", "40", env=env, timeout=300)
    assert "lacks" not in proc.stderr, proc.stderr
    result = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert result["startup"]["packages"]["pytorch_fid"] == "0.3.0"  # imported from the installed wheel
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("gpu_check.")] == []  # site removed


def test_wheels_sh_lists_the_closure_without_torch():
    proc = subprocess.run([str(ROOT / "bench" / "wheels.sh"), "--list", "--only", "pytorch-fid,diffusers"],
                          cwd=ROOT, env={**os.environ, "CIFAR_REPORT_PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = {line.split("==")[0] for line in proc.stdout.split()}
    assert {"pytorch-fid", "scipy", "diffusers", "huggingface-hub", "safetensors"} <= names
    assert not names & {"torch", "torchvision", "numpy", "pillow", "triton"}
    assert not any(n.startswith("nvidia-") for n in names)
    skipped = subprocess.run([str(ROOT / "bench" / "wheels.sh"), "--list", "--only", "pytorch-fid", "--skip",
                              "scipy"], cwd=ROOT, env={**os.environ, "CIFAR_REPORT_PYTHON": sys.executable},
                             capture_output=True, text=True, timeout=120)
    assert skipped.stdout.split() == ["pytorch-fid==0.3.0"]


def test_on_a_gpu_data_is_required(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_check as g

    monkeypatch.setattr(g, "pick_device", lambda name: __import__("torch").device("cuda"))
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--out", str(tmp_path)])
    monkeypatch.delenv("CIFAR10_ROOT", raising=False)
    assert g.main() == 2
    assert not (tmp_path / "gpu_check.json").exists()


def test_plan_table_lists_every_section_within_the_cut():
    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_check as g

    table = g.plan_table()
    assert [row.split("`")[1] for row in table.splitlines()[2:-1]] == [s[0] for s in g.SECTIONS]
    assert sum(s[1] for s in g.SECTIONS) <= g.GPU_LIMIT_S


def test_the_steps_feed_the_budget_its_rates():
    sys.path.insert(0, str(ROOT / "bench"))
    import budget
    import gpu_check as g

    steps = {"eager": {"ddpm": {"batch": 128, "eager_s_per_step": 0.1}, "mpl": {"batch": "128+896",
                                                                                 "eager_s_per_step": 0.2}},
             "compiled": {"mpl": {"batch": "128+896", "eager_s_per_step": 0.2, "compiled_s_per_step": 0.16,
                                  "compile_s": 60.0, "graphs": 2}}}
    results: dict = {}
    g.derive_from_steps(results, steps)
    assert results["ddpm"] == {"batch": 128, "steps_per_s": 10.0, "images_per_s": 1280.0}
    assert results["mpl"] == {"labelled_batch": 128, "unlabelled_batch": 896, "mpl_s_per_step": 0.2}
    assert results["compiled"]["mpl"]["batch"] == 128 and results["compiled"]["mpl"]["unlabelled_batch"] == 896
    rates = budget.unit_rates(results)
    assert rates["ssl:mpl"] == 5.0 and rates["ssl:mpl@compiled"] == 1 / 0.16  # steps/s at the full batch
    assert rates["compile:mpl"] == 1 / 60.0


def test_the_gpu_page_shows_the_check_plan_as_the_code_has_it():
    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_check as g

    readme = (ROOT / "docs" / "gpu.md").read_text()
    start, end = "<!-- gpu_check_plan:start -->\n", "\n<!-- gpu_check_plan:end -->"
    assert readme[readme.index(start) + len(start):readme.index(end)] == g.plan_table()


def test_interval_cost_reads_each_chapters_provenance(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import interval_cost

    ch = tmp_path / "quick" / "03_semi_supervised"
    (ch / "per_example").mkdir(parents=True)
    (ch / "per_example" / "ssl-mpl.npz").write_bytes(b"x" * 2048)
    (ch / "provenance.json").write_text(json.dumps({"wall_time_s": 400.0, "findings_s": 0.5,
                                                    "intervals_s": {"intervals": 1.5, "two-moons seeds": 18.0}}))
    [row] = interval_cost.cost_rows(tmp_path / "quick")
    assert row["total (s)"] == 20.0 and row["share (%)"] == 5.0 and row["per_example (KB)"] == 2.0
    assert row["two-moons seeds (s)"] == 18.0


def test_time_breakdown_names_the_slowest_cells_of_each_chapter(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import time_breakdown

    def cell(source, seconds):
        return {"cell_type": "code", "source": source, "metadata": {"papermill": {"duration": seconds}}}

    nbs = tmp_path / "quick" / "notebooks"
    nbs.mkdir(parents=True)
    (nbs / "01_supervised.ipynb").write_text(json.dumps({"cells": [
        cell("# set-up\nimport torch", 2.0), {"cell_type": "markdown", "source": "text", "metadata": {}},
        cell(["results = [train(n) for n in models]\n", 'report.table(acc, "accuracy", item="1.4")'], 90.0),
        cell("sweep()", 8.0)]}))
    (tmp_path / "quick" / "run.json").write_text(json.dumps({"chapters": {"01_supervised": 105}}))
    rows, walls = time_breakdown.breakdown(tmp_path / "quick", top=2)
    assert [(r["code"], r["seconds"]) for r in rows] == [("results = [train(n) for n in models]", 90.0),
                                                         ("sweep()", 8.0)]
    assert rows[0]["saves"] == "accuracy" and rows[1]["saves"] == ""
    assert rows[0]["share of cells (%)"] == 90.0 and rows[0]["chapter wall time (s)"] == 105 and walls
    with pytest.raises(SystemExit, match="no executed notebooks"):
        time_breakdown.breakdown(tmp_path / "empty")


def test_fid_distance_bench_times_both_routes_on_the_same_statistics():
    sys.path.insert(0, str(ROOT / "bench"))
    import fid_distance

    row = fid_distance.measure(20, 32, reference=50, repeats=1)
    assert row["relative difference"] < 1e-6
    assert row["pytorch-fid s"] > 0 and row["ours s (root kept)"] > 0 and row["generated images"] == 20
