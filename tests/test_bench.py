"""bench/gpu_check.sh runs end to end on a CPU (shrunk), without network or data, and prints its table last."""
import json
import os
import subprocess
import sys

from conftest import ROOT, SHARED_WEIGHTS


def test_gpu_check_runs_on_cpu_and_projects_every_chapter(tmp_path):
    args = [str(ROOT / "bench" / "gpu_check.sh")]
    if SHARED_WEIGHTS.is_file():
        args += ["--fid-weights", str(SHARED_WEIGHTS)]
    env = {**os.environ, "BENCH_DIR": str(tmp_path), "CIFAR_REPORT_PYTHON": sys.executable}
    env.pop("CIFAR10_ROOT", None)
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout
    assert "using the synthetic stand-in" in out  # no data given: it says so
    lines = out.strip().splitlines()
    assert lines[-1].startswith("full log:")  # the short table comes last
    tail = lines[-30:]
    assert any(line.startswith("projected full profile: total") for line in tail)
    assert any(line.startswith("FLOP-based estimate, full profile") for line in tail)
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    sections = ("startup", "classifiers", "ddpm", "dcgan", "vae", "mpl", "flops", "disk", "accuracy_run",
                "ddpm_layout")
    for section in sections:
        assert "error" not in result[section], result[section]
    assert [k for k in result if k in sections] == list(sections)  # in the order of information per second
    assert result["accuracy_run"]["epochs"] == 1 and len(result["accuracy_run"]["val_acc_by_epoch"]) == 1
    assert result["ddpm_layout"]["faster_for_sampling"] in ("contiguous", "channels_last")
    assert result["classifiers"]["efficientnet_b0@224"] > 0 and result["disk"]["gb_per_s"] > 0
    # the projection counts every overhead: compilation (assumed on a CPU), evaluation, checkpoints
    assert "compile" not in result and result["projection_missing"] == []
    assert result["ddpm"]["params"] == 35_746_307
    chapters = {"01_supervised", "02_generative", "03_semi_supervised", "04_extras", "total"}
    assert set(result["projection_s"]) >= chapters and set(result["flop_estimate_s"]) >= chapters
    assert 2.9e9 < result["flops"]["train:resnet18"] < 3.8e9  # ~3 x the 1.1 GFLOP forward pass of CIFAR ResNet-18
    assert 30e9 < result["flops"]["train:ddpm"] < 45e9        # ~3 x Ho et al.'s 12 GFLOP U-Net forward
    assert all(v > 0 for v in result["projection_s"].values())
    if "error" in result["inception"]:  # no FID weights anywhere: the table says so and the exit code is 1
        assert proc.returncode == 1 and "inception: FAILED" in out
    else:
        assert proc.returncode == 0, out[-2000:] + proc.stderr[-2000:]
        assert result["inception"]["images_per_s"] > 0


def test_compile_comparison_is_cut_off_before_the_limit():
    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_check

    assert gpu_check.compile_gain_in_child(0.5) == {"skipped": "compilation did not finish within the 0 s left"}
