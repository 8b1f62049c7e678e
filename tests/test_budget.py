"""bench/budget.py: the work a profile implies, and the wall time it projects to from rates or FLOPs."""
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import budget  # noqa: E402


def by_name(work):
    return {w.name: w for w in work}


def test_work_follows_the_params_files():
    full, long_ = by_name(budget.profile_work("full")), by_name(budget.profile_work("full-long"))
    assert {w.chapter for w in full.values()} == set(budget.CHAPTERS)
    r18 = full["train resnet18"]
    # ResNet-18's own 60 epochs (model_epochs) x (50,000 - val 5,000); the other models 40
    assert r18.units == 60 * 45_000 and r18.steps == pytest.approx(60 * 45_000 / 512)
    assert full["train resnet50"].units == 40 * 45_000
    assert long_["train resnet18"].units == 200 * 45_000  # full-long: 200 epochs
    assert full["train ddpm"].steps == pytest.approx(150 * 45_000 / 128)
    assert full["DDPM ancestral sampling (500 images)"].units == 500 * 1000  # a timing sample
    assert full["DDIM spacing comparison (3 more settings x 5000 images)"].units == 5000 * (100 + 20 + 20)
    # reference 50,000 + two floors + VAE, DCGAN, DDPM + 5 DCGAN snapshots + 3 DDIM settings, 5,000 each
    assert full["FID Inception features"].units == 50_000 + 2 * 5_000 + (3 + 5 + 3) * 5_000
    assert full["train mpl"].units == 65_000 and full["train uda"].units == 30_000  # mpl_total_steps
    assert long_["train mpl"].units == long_["train uda"].units == 300_000
    sweep = [w for name, w in full.items() if name.startswith("sweep cell") and ":" not in name]
    assert len(sweep) == 10
    assert sum(w.steps for w in sweep) == pytest.approx(2 * 10 * 45_000 * sum(1 / b for b in (16, 32, 64, 128, 256)))
    smoke = by_name(budget.profile_work("smoke"))
    assert smoke["train resnet18"].units < r18.units / 1000


def test_projection_divides_each_workload_by_its_rate():
    work = [budget.Work("01_supervised", "a", 1000, "images", "train:x", "train:x", 10),
            budget.Work("02_generative", "b", 50, "steps", "ssl:y", "ssl:y", 50),
            budget.Work("02_generative", "c", 7, "images", "nope", "nope")]
    seconds, missing = budget.project(work, {"train:x": 100.0, "ssl:y": 5.0})
    assert seconds["01_supervised"] == 10 and seconds["02_generative"] == 10 and seconds["total"] == 20
    assert missing == ["c"]
    est = budget.flop_estimate(work, {"train:x": 1e12, "ssl:y": 1e9}, tflops=10, step_ms=100)
    assert est["01_supervised"] == pytest.approx(100)        # 1e15 FLOP at 1e13 FLOP/s
    assert est["02_generative"] == pytest.approx(5)          # 50 steps x 100 ms beats 5e10 FLOP / 1e13 FLOP/s
    assert est["01_supervised_pflop"] == pytest.approx(1.0)


def test_rates_from_a_cpu_check_are_scaled_to_the_presented_batch():
    check = {"classifiers": {"resnet18": 50.0}, "ddpm": {"images_per_s": 4.0, "s_per_image_step": 0.1},
             "mpl": {"labelled_batch": 2, "unlabelled_batch": 14, "mpl_s_per_step": 0.5, "uda_s_per_step": 0.25,
                     "supervised_s_per_step": 0.05},
             "inception": {"error": "no weights"}}
    rates = budget.unit_rates(check)
    assert rates["embed:resnet18"] == 150 and rates["unet_forward"] == pytest.approx(10)
    assert rates["ssl:mpl"] == pytest.approx(2 / 128 / 0.5)  # one presented step = 64 measured ones
    assert rates["train:wrn28_2"] == pytest.approx(40)  # 2 labelled images per 0.05 s
    assert "inception" not in rates
    _, missing = budget.project(budget.profile_work("full"), rates)
    assert "FID Inception features" in missing and "train mpl" not in missing
    assert rates["eval:resnet18"] == 150  # a forward pass: a third of a training step
    assert rates["compile"] == 1 / budget.ASSUMED_COMPILE_S and rates["disk"] == budget.ASSUMED_DISK_GB_S
    measured = budget.unit_rates({"compile": {"s_per_graph": 30.0}, "disk": {"gb_per_s": 2.5}})
    assert measured["compile"] == pytest.approx(1 / 30) and measured["disk"] == 2.5


def test_every_run_pays_for_evaluation_checkpoints_and_compilation_by_its_chapters_rule():
    full = by_name(budget.profile_work("full"))
    # chapter 1: 60 epochs at batch 512 = 5,273 steps < compile_min_steps 10,000: eager, no compilation row
    assert "train resnet18: compilation" not in full
    assert full["train resnet18 (presented recipe): compilation"].units == 1  # 14,062 steps at batch 128
    assert not any(name.startswith("sweep cell") and name.endswith("compilation") for name in full)  # sweep_compile
    assert full["train mpl: compilation"].units == 2 and full["train ddpm: compilation"].units == 1
    assert "MPL finetune: compilation" not in full  # 5,000 steps
    # one validation pass per epoch of the flip-TTA'd (2 views) 5,000 validation images, the test once
    assert full["train resnet18: evaluation"].units == 60 * 2 * 5_000
    assert full["train resnet18: test"].units == 2 * 10_000
    # last.pt per evaluation and best.pt at most as often, plus the final one: weights + SGD momentum
    n = budget.parameters("resnet18")
    assert full["train resnet18: checkpoint writes"].units == pytest.approx((2 * 60 + 1) * n * 4 * 2 / 1e9)
    # DDPM: Adam (2 slots) + weights + EMA, every ddpm_checkpoint_every_epochs (10) of 150
    ddpm = full["train ddpm: checkpoint writes"]
    assert ddpm.units == pytest.approx((2 * 15 + 1) * budget.parameters("gen:ddpm") * 16 / 1e9)


def test_flop_estimate_charges_compilation_and_checkpoints_at_their_assumed_rates():
    work = [budget.Work("01_supervised", "c", 2, "graphs", "compile", ""),
            budget.Work("01_supervised", "d", 5.0, "GB", "disk", "")]
    est = budget.flop_estimate(work, {})
    assert est["01_supervised"] == pytest.approx(2 * budget.ASSUMED_COMPILE_S + 5.0 / budget.ASSUMED_DISK_GB_S)
    assert est["01_supervised_pflop"] == 0


def test_a_gpu_run_starts_with_its_projected_wall_time():
    flops = {"train:resnet18": 3e9}
    work = budget.profile_work("full")
    t4 = budget.start_line("full", "cuda (Tesla T4)", flops=flops, peak_tflops=60.0)
    h100 = budget.start_line("full", "cuda (NVIDIA H100)", flops=flops, peak_tflops=600.0)
    hours = [float(line.split("projected wall time ")[1].split(" h")[0]) for line in (t4, h100)]
    expected = [budget.flop_estimate(work, flops, tflops=budget.SUSTAINED_FRACTION * peak)["total"] / 3600
                for peak in (60.0, 600.0)]
    assert hours == [round(h, 1) for h in expected] and hours[0] > hours[1]
    assert "10% of the 60 TFLOP/s a matmul probe measured" in t4 and t4.startswith("[run_all] profile full on cuda (Tesla T4)")
    # a device check saved on the same GPU takes precedence
    check = {"device": "cuda (NVIDIA H100)", "classifiers": {"resnet18": 1e9}}
    line = budget.start_line("full", "cuda (NVIDIA H100)", flops=flops, peak_tflops=600.0, measured=check)
    assert "measured on this GPU" in line and "left out" in line
    other = budget.start_line("full", "cuda (Tesla T4)", flops=flops, peak_tflops=60.0, measured=check)
    assert "FLOP-based" in other


def test_grouped_convolutions_backward_is_counted_once_per_gradient():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from lib.models import build_model

    def flops(fn, counter):
        with counter as fc:
            fn()
        return fc.get_total_flops()

    torch.manual_seed(0)
    x = torch.randn(2, 32, 8, 8, requires_grad=True)
    for conv in (nn.Conv2d(32, 64, 3, padding=1), nn.Conv2d(32, 32, 3, padding=1, groups=32),
                 nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1)):
        fwd = flops(lambda: conv(x), FlopCounterMode(display=False))
        total = flops(lambda: conv(x).sum().backward(), budget.flop_counter())
        assert total == 3 * fwd  # forward, input gradient, weight gradient: each the same multiply-adds
        if conv.groups == 1:  # torch's own formula agrees where it is right
            assert total == flops(lambda: conv(x).sum().backward(), FlopCounterMode(display=False))
    model = build_model("efficientnet_b0", width=1.0)
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    train = flops(lambda: F.cross_entropy(model(images), labels).backward(), budget.flop_counter())
    with torch.no_grad():
        forward = flops(lambda: model.eval()(images), budget.flop_counter())
    assert 2 < train / forward < 4
