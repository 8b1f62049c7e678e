"""bench/budget.py: the work a profile implies, and the wall time it projects to from rates or FLOPs."""
import json
import subprocess
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
    # optimiser steps as the chapters count them: whole epochs of the loader's full batches
    assert r18.units == 60 * 45_000 and r18.steps == 60 * (45_000 // 512)
    assert full["train resnet50"].units == 40 * 45_000
    assert long_["train resnet18"].units == 200 * 45_000  # full-long: 200 epochs
    # full-long's seeds [0, 1, 2]: each table model twice more, the same work; full trains seed 0 alone
    for model in ("resnet18", "efficientnet_b0"):
        assert long_[f"train {model} seed 1"].units == long_[f"train {model} seed 2"].units == \
            long_[f"train {model}"].units
    assert "train drn_a_18 seed 1" not in long_ and not any(" seed " in name for name in full)
    assert full["train ddpm"].steps == 150 * (45_000 // 128) == 52_650
    assert full["DDPM ancestral sampling (500 images)"].units == 500 * 1000  # a timing sample
    assert full["DDIM spacing comparison (3 more settings x 5000 images)"].units == 5000 * (100 + 20 + 20)
    # reference 50,000 + two floors + VAE, DCGAN, DDPM + 5 DCGAN snapshots + 3 DDIM settings, 5,000 each
    assert full["FID Inception features"].units == 50_000 + 2 * 5_000 + (3 + 5 + 3) * 5_000
    assert full["train mpl"].units == 65_000 and full["train uda"].units == 30_000  # mpl_total_steps
    assert long_["train mpl"].units == long_["train uda"].units == 300_000
    # chapter 3's methods with full-long's seeds [0, 1, 2]: twice more each, the same steps; no finetune
    for kind in ("mpl", "uda", "supervised"):
        assert [long_[f"train {kind} seed {s}"].units for s in (1, 2)] == [300_000, 300_000]
        assert long_[f"train {kind} seed 1: test"].units == long_[f"train {kind}: test"].units
    assert not any("finetune seed" in name for name in long_)
    assert "MPL, UDA and supervised with 2 more seeds" in budget.describe("full-long")["03_semi_supervised"]
    sweep = [w for name, w in full.items() if name.startswith("sweep cell") and ":" not in name]
    assert len(sweep) == 10
    assert sum(w.steps for w in sweep) == 2 * 10 * sum(45_000 // b for b in (16, 32, 64, 128, 256))
    smoke = by_name(budget.profile_work("smoke"))
    assert smoke["train resnet18"].units < r18.units / 1000
    # FID table: training floor (twice), test floor, VAE, DCGAN, DDPM-DDIM; 5 snapshots; 3 DDIM settings
    assert full["FID Fréchet distances (CPU)"].units == 3 + 3 + 5 + 3
    notebooks = [w for w in full.values() if w.rate.startswith("notebook:")]
    assert sorted(w.chapter for w in notebooks) == sorted([*budget.CHAPTERS, "04_extras"])  # + index page
    # batch sizes and which runs the chapters compile (compile_min_steps 10,000)
    assert (r18.batch, r18.compiled) == (512, False)
    presented = full["train resnet18 (presented recipe)"]
    assert presented.batch == 128 and presented.compiled
    assert full["sweep cell b16 lr0.001"].batch == 16 and not full["sweep cell b16 lr0.001"].compiled
    assert all(full[f"train {k}"].compiled for k in ("vae", "dcgan", "ddpm", "mpl", "uda", "supervised"))
    assert full["MPL finetune"].batch == 512 and not full["MPL finetune"].compiled
    assert full["2.2 classifier (real)"].batch == 256 and full["2.2 classifier (real + reconstructions)"].compiled


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


def test_rates_from_a_cpu_check_are_scaled_to_the_presented_batch(tmp_path):
    check = {"classifiers": {"resnet18": 50.0}, "ddpm": {"images_per_s": 4.0, "s_per_image_step": 0.1},
             "mpl": {"labelled_batch": 2, "unlabelled_batch": 14, "mpl_s_per_step": 0.5, "uda_s_per_step": 0.25,
                     "supervised_s_per_step": 0.05},
             "inception": {"error": "no weights"}}
    rates = budget.unit_rates(check, notebook_record=tmp_path / "none.json")
    assert rates["embed:resnet18"] == 150 and rates["unet_forward"] == pytest.approx(10)
    assert rates["ssl:mpl"] == pytest.approx(2 / 128 / 0.5)  # one presented step = 64 measured ones
    # no finetune measured: the supervised SSL step's labelled images per second, said so
    assert rates["train:wrn28_2"] == pytest.approx(40)  # 2 labelled images per 0.05 s
    assert rates.source["train:wrn28_2"] == "measured eager (supervised SSL step)"
    assert "inception" not in rates
    _, missing = budget.project(budget.profile_work("full"), rates)
    assert "FID Inception features" in missing and "train mpl" not in missing
    assert rates["eval:resnet18"] == 150  # a forward pass: a third of a training step
    assert rates["compile"] == 1 / budget.ASSUMED_COMPILE_S and rates["disk"] == budget.ASSUMED_DISK_GB_S
    assert rates.source["compile"].startswith("assumed") and rates.source["disk"].startswith("assumed")
    measured = budget.unit_rates({"disk": {"gb_per_s": 2.5}})
    assert measured["disk"] == 2.5 and measured.source["disk"] == "measured"


def test_every_run_pays_for_evaluation_checkpoints_and_compilation_by_its_chapters_rule():
    full = by_name(budget.profile_work("full"))
    # chapter 1: 60 epochs at batch 512 = 5,220 steps < compile_min_steps 10,000: eager, no compilation row
    assert "train resnet18: compilation" not in full
    assert full["train resnet18 (presented recipe): compilation"].units == 1  # 21,060 steps at batch 128
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
    work = [budget.Work("01_supervised", "c", 2, "graphs", "compile:resnet18", ""),
            budget.Work("01_supervised", "d", 5.0, "GB", "disk", ""),
            budget.Work("02_generative", "e", 14, "distances", "fid_cpu", "")]
    est = budget.flop_estimate(work, {})
    assert est["01_supervised"] == pytest.approx(2 * budget.ASSUMED_COMPILE_S + 5.0 / budget.ASSUMED_DISK_GB_S)
    assert est["02_generative"] == pytest.approx(14 * budget.ASSUMED_FRECHET_S)
    assert est["01_supervised_pflop"] == 0


def test_a_gpu_run_starts_with_its_projected_wall_time():
    flops = {"train:resnet18": 3e9}
    work = budget.profile_work("full")
    t4 = budget.start_line("full", "cuda (Tesla T4)", flops=flops, peak_tflops=60.0)
    h100 = budget.start_line("full", "cuda (NVIDIA H100)", flops=flops, peak_tflops=600.0)
    hours = [float(line.split("projected wall time ")[1].split(" h")[0]) for line in (t4, h100)]
    expected = [budget.flop_estimate(work, flops, tflops=budget.sustained_tflops(peak))["total"] / 3600
                for peak in (60.0, 600.0)]
    assert hours == [round(h, 1) for h in expected] and hours[0] > hours[1]
    # one throughput assumption: budget.py's default is the start line's rule applied to an H100's peak
    assert budget.ASSUMED_TFLOPS == budget.sustained_tflops(budget.PEAK_TFLOPS) == 0.1 * 989
    at_peak = budget.start_line("full", "cuda (NVIDIA H100)", flops=flops, peak_tflops=budget.PEAK_TFLOPS)
    default = budget.flop_estimate(work, flops)["total"] / 3600
    assert f"projected wall time {default:.1f} h" in at_peak
    assert "10% of the 60 TFLOP/s a matmul probe measured" in t4 and t4.startswith("[run_all] profile full on cuda (Tesla T4)")
    # a device check saved on the same GPU takes precedence
    check = {"device": "cuda (NVIDIA H100)", "classifiers": {"resnet18": 1e9}}
    line = budget.start_line("full", "cuda (NVIDIA H100)", flops=flops, peak_tflops=600.0, measured=check)
    assert "measured on this GPU" in line and "left out" in line
    other = budget.start_line("full", "cuda (Tesla T4)", flops=flops, peak_tflops=60.0, measured=check)
    assert "FLOP-based" in other


def check(**sections):
    """A gpu_check.json as bench/gpu_check.py writes it on a GPU, with ``sections`` replacing its parts."""
    base = {"classifiers": {"resnet18": 10_000.0, "resnet50": 4_000.0},
            "ddpm": {"images_per_s": 1_000.0, "s_per_image_step": 1e-4},
            "vae": {"images_per_s": 50_000.0}, "dcgan": {"images_per_s": 40_000.0},
            "mpl": {"labelled_batch": 128, "unlabelled_batch": 896, "mpl_s_per_step": 0.2,
                    "uda_s_per_step": 0.1, "supervised_s_per_step": 0.02},
            "compiled": {"resnet18": {"batch": 512, "eager_s_per_step": 0.05, "compiled_s_per_step": 0.04,
                                      "compile_s": 30.0, "graphs": 1, "error": None},
                         "mpl": {"batch": 128, "eager_s_per_step": 0.2, "compiled_s_per_step": 0.1,
                                 "compile_s": 50.0, "graphs": 3, "error": None},
                         "ddpm": {"error": "InductorError: out of resources"}}}
    return {**base, **sections}


def priced(rates, *names):
    work = by_name(budget.profile_work("full"))
    return [budget.price(work[n], rates) for n in names]


def test_a_run_its_chapter_compiles_is_priced_at_the_compiled_rate(tmp_path):
    rates = budget.unit_rates(check(), notebook_record=tmp_path / "none.json")
    eager, compiled = priced(rates, "train resnet18", "train resnet18 (presented recipe)")
    assert eager == (pytest.approx(60 * 45_000 / 10_000), "measured eager")  # 5,220 steps: eager
    # measured compiled: 512 images per 0.04 s beats the eager 10,000 images/s
    assert compiled == (pytest.approx(60 * 45_000 / (512 / 0.04)), "measured compiled")
    mpl, uda = priced(rates, "train mpl", "train uda")
    assert mpl == (pytest.approx(65_000 * 0.1), "measured compiled")
    # UDA: its eager step times MPL's measured speed-up (the same network), named
    assert uda == (pytest.approx(30_000 * 0.1 / 2), "measured eager x compile speed-up (mpl 2.00x)")
    # DDPM's compilation failed: the closest measured speed-up is none of VAE/DCGAN, so ResNet-18's or MPL's
    ddpm, = priced(rates, "train ddpm")
    assert ddpm[1].startswith("measured eager x compile speed-up") and ddpm[0] < 150 * 45_000 / 1_000
    # nothing compiled measured at all: the eager rate, marked
    plain = budget.unit_rates(check(compiled={}), notebook_record=tmp_path / "none.json")
    sec, how = priced(plain, "train ddpm")[0]
    assert sec == pytest.approx(150 * 45_000 / 1_000)
    assert how == "measured eager (the run compiles; no compile speed-up measured)"
    # compilation: measured graphs x seconds per graph of that workload, else assumed per graph
    mpl_c, r18_c, vae_c = priced(rates, "train mpl: compilation", "train resnet18 (presented recipe): compilation",
                                 "train vae: compilation")
    assert mpl_c == (pytest.approx(3 * 50.0), "measured") and r18_c == (pytest.approx(30.0), "measured")
    assert vae_c == (pytest.approx(budget.ASSUMED_COMPILE_S), f"assumed {budget.ASSUMED_COMPILE_S:g} s per graph")


def test_small_batches_pay_the_measured_floor_per_step(tmp_path):
    floors = {"resnet18": {"16": 0.006, "64": 0.012, "512": 0.02}}  # as JSON writes them: string keys
    points = {16: 0.006, 64: 0.012, 512: 0.02}
    assert budget.step_floor(points, 8) == 0.006  # no faster below the smallest measured batch
    assert budget.step_floor(points, 32) == pytest.approx(0.008)  # linear between measured sizes
    assert budget.step_floor(points, 1024) == pytest.approx(0.02 + 0.008 * 512 / 448)  # last slope extended
    assert budget.step_floor({128: 0.01}, 256) == pytest.approx(0.02)
    rates = budget.unit_rates(check(step_floor=floors), notebook_record=tmp_path / "none.json")
    work = by_name(budget.profile_work("full"))
    b16, b256 = priced(rates, "sweep cell b16 lr0.001", "sweep cell b256 lr0.001")
    assert b16 == (pytest.approx(work["sweep cell b16 lr0.001"].steps * 0.006), "step floor")
    assert b256[0] == pytest.approx(10 * 45_000 / 10_000) and b256[1] == "measured eager"  # the rate wins
    # compiled at batch 128: the floor shrinks by ResNet-18's measured compile speed-up (0.05 / 0.04)
    presented, = priced(rates, "train resnet18 (presented recipe)")
    floor128 = 0.012 + 0.008 * 64 / 448
    assert presented == (pytest.approx(work["train resnet18 (presented recipe)"].steps * floor128 / 1.25),
                         "step floor x compile speed-up")
    assert presented[0] > priced(budget.unit_rates(check()), "train resnet18 (presented recipe)")[0][0]
    # another model has no floor of its own
    assert priced(rates, "train resnet50")[0] == (pytest.approx(40 * 45_000 / 4_000), "measured eager")


def test_the_finetune_fid_distances_and_notebooks_have_their_own_rates(tmp_path):
    record = tmp_path / "notebook_overhead.json"
    record.write_text(json.dumps({"profile": "smoke", "machine": {"cores": 2},
                                  "overhead_s": {"01_supervised": 40.0, "02_generative": 55.0,
                                                 "03_semi_supervised": 30.0, "04_extras": 20.0, "report": 5.0}}))
    gpu = check(finetune={"model": "wrn28_2", "batch": 512, "s_per_step": 0.03}, fid_cpu={"frechet_s": 9.5})
    rates = budget.unit_rates(gpu, notebook_record=record)
    finetune, fid, nb2, index = priced(rates, "MPL finetune", "FID Fréchet distances (CPU)",
                                       "02_generative notebook + HTML export (beyond its workloads)",
                                       "report: index page + report.html")
    assert finetune == (pytest.approx(625 * 4_000 / (512 / 0.03)), "measured eager")  # not the SSL step's
    assert fid == (pytest.approx(14 * 9.5), "measured")
    assert nb2[1] == "measured (smoke re-run, CPU, 2 cores)" and index[0] == pytest.approx(5.0)
    work = budget.profile_work("full")
    seconds, missing = budget.project(work, rates)
    notebooks = sum(budget.price(w, rates)[0] for w in work if w.chapter == "02_generative" and not w.flops)
    assert notebooks >= 55.0 + 14 * 9.5 and "FID Fréchet distances (CPU)" not in missing
    # without measurements: the stated assumptions, in the FLOP-based estimate too
    assumed = budget.unit_rates(check(), notebook_record=tmp_path / "none.json")
    fid, nb = priced(assumed, "FID Fréchet distances (CPU)",
                     "04_extras notebook + HTML export (beyond its workloads)")
    assert fid[0] == pytest.approx(14 * budget.ASSUMED_FRECHET_S)
    assert fid[1] == f"assumed {budget.ASSUMED_FRECHET_S:g} s per distance"
    assert nb[0] == budget.ASSUMED_NOTEBOOK_S and nb[1].startswith(f"assumed {budget.ASSUMED_NOTEBOOK_S:g} s")
    with_nb = budget.flop_estimate(work, {}, notebook_record=record)
    without = budget.flop_estimate(work, {}, notebook_record=tmp_path / "none.json")
    assert without["01_supervised"] - with_nb["01_supervised"] == pytest.approx(budget.ASSUMED_NOTEBOOK_S - 40.0)


def test_the_table_names_the_rate_each_workload_used(tmp_path):
    work = budget.profile_work("full")
    flops = {"train:resnet18": 1.7e9, "ssl:mpl": 4e12}
    rates = budget.unit_rates(check(step_floor={"resnet18": {"16": 0.006, "128": 0.015, "512": 0.02}}),
                              notebook_record=tmp_path / "none.json")
    df = budget.work_table(work, rates, flops).set_index("workload")
    assert df.loc["train resnet18 (presented recipe)", "rate source"] == "step floor x compile speed-up"
    assert df.loc["train mpl", "rate source"] == "measured compiled"
    assert df.loc["sweep cell b16 lr0.001", "rate source"] == "step floor"
    assert df.loc["FID Inception features", "rate source"] == "none"  # not measured: no number invented
    assert df.loc["train mpl", "projected s"] == pytest.approx(6500) and df.loc["train mpl", "FLOP-based s"] > 0
    flop_only = budget.work_table(work, None, flops, tflops=50.0).set_index("workload")
    assert flop_only.loc["train mpl", "rate source"] == "FLOP-based at 50 TFLOP/s"
    assert flop_only.loc["train mpl", "projected s"] == pytest.approx(65_000 * 4e12 / 50e12, rel=1e-3)
    assert flop_only.loc["sweep cell b16 lr0.001", "rate source"] == "assumed step floor 5 ms"
    assert flop_only.loc["train ddpm: compilation", "rate source"].startswith("assumed")


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


def test_auto_chooses_the_largest_profile_that_fits_each_device():
    # hours per profile as measured on three GPUs (injected: no GPU needed)
    measured = {"NVIDIA T4": {"full-long": 400.0, "full": 30.0, "colab": 3.6, "quick": 0.3, "smoke": 0.02},
                "NVIDIA A100": {"full-long": 60.0, "full": 8.5, "colab": 1.0, "quick": 0.1, "smoke": 0.01},
                "NVIDIA H100": {"full-long": 25.0, "full": 2.8, "colab": 0.6, "quick": 0.05, "smoke": 0.01}}
    chosen = {gpu: budget.choose_profile(h, 4.0) for gpu, h in measured.items()}
    assert {gpu: c[0] for gpu, c in chosen.items()} == {"NVIDIA T4": "colab", "NVIDIA A100": "colab",
                                                        "NVIDIA H100": "full"}
    assert "projected 2.8 h, within --hours 4; larger profiles do not fit (full-long 25.0 h)" == chosen["NVIDIA H100"][1]
    assert budget.choose_profile(measured["NVIDIA A100"], 10.0)[0] == "full"
    assert budget.choose_profile(measured["NVIDIA T4"], 1.0)[0] == "quick"
    assert budget.choose_profile(measured["NVIDIA T4"], 0.001)[1].startswith("no profile fits --hours 0.001")
    # a record without some profiles: the smallest projected one, and a clear error when none is
    assert budget.choose_profile({"full": 30.0, "colab": 3.6}, 1.0) == (
        "colab", "no profile fits --hours 1; the smallest projected, colab, projects 3.6 h")
    with pytest.raises(ValueError, match="no projection of any profile"):
        budget.choose_profile({"laptop": 1.0}, 4.0)


def test_auto_projects_a_named_gpu_at_its_datasheet_and_another_at_its_probe():
    # pricing rows [chapter, FLOP, step-floor s, fixed s]: 1 PFLOP per profile step of size, 360 s fixed
    pricing = {"full": [["01_supervised", 4e16, 0.0, 360.0]], "colab": [["01_supervised", 1e16, 0.0, 360.0]],
               "quick": [["01_supervised", 1e14, 3600.0, 0.0]]}
    h100 = budget.auto_choice("NVIDIA H100 80GB HBM3", pricing=pricing, probe=lambda: pytest.fail("probed"))
    # 4e16 FLOP at 10% of 989 TFLOP/s = 404 s, + 360 s
    assert h100.profile == "full" and h100.hours["full"]["total"] == pytest.approx((4e16 / 98.9e12 + 360) / 3600)
    t4 = budget.auto_choice("Tesla T4", pricing=pricing, limit=1.0)  # full: 6,514 s; colab: 1,898 s
    assert t4.profile == "colab" and "NVIDIA T4's 65 TFLOP/s datasheet peak" in t4.line("Tesla T4")
    unknown = budget.auto_choice("NVIDIA GeForce RTX 4090", pricing=pricing, probe=lambda: 165.0, limit=1.0)
    assert unknown.peak_tflops == 165.0 and "a matmul probe measured" in unknown.peak_source
    assert t4.hours["quick"]["total"] == pytest.approx(1.0)  # its 3,600 s step floor beats its FLOPs' time
    assert [budget.device_key(n) for n in ("Tesla T4", "NVIDIA A100-SXM4-80GB", "NVIDIA L4", "NVIDIA H200",
                                           "NVIDIA GeForce RTX 4090")] == ["t4", "a100", "l4", "h200", None]


def test_the_recorded_pricing_gives_the_table_and_the_colab_profile_fits_a_sitting():
    from lib.profiles import DEVICES_RECORD, recorded_pricing

    rec = json.loads(DEVICES_RECORD.read_text())
    pricing = recorded_pricing()
    for row in rec["rows"]:
        for key, d in budget.DEVICES.items():  # the record's table is its pricing at each datasheet peak
            assert round(budget.projected_hours(pricing[row["profile"]], d.peak_tflops)["total"], 2) == row[key]
    colab = budget.projected_hours(pricing["colab"], budget.DEVICES["t4"].peak_tflops)
    assert all(colab[ch] <= budget.SITTING_HOURS for ch in budget.CHAPTERS) and colab["total"] <= budget.AUTO_HOURS
    assert budget.projected_hours(pricing["full"], budget.DEVICES["h100"].peak_tflops)["total"] < 3.0


def test_a_profile_over_the_limit_needs_yes():
    refusal = budget.over_limit("full", 30.0, 4.0, yes=False)
    assert "projected at 30.0 h on this GPU, over --hours 4: pass --yes" in refusal
    assert budget.over_limit("full", 30.0, 4.0, yes=True) == ""
    assert budget.over_limit("full", 2.8, 4.0, yes=False) == ""


def test_every_profile_on_every_device_from_the_datasheet_peaks():
    flops = {"train:resnet18": 3e9, "train:resnet50": 8e9}
    table = budget.device_table(flops, profiles=("full", "quick"))
    assert list(table.columns) == [*budget.DEVICES, *(f"t4 {ch}" for ch in budget.CHAPTERS)]
    assert list(table.index) == ["full", "quick"]
    assert table.loc["full", "t4"] > table.loc["full", "a100"] > table.loc["full", "h100"]
    assert table.loc["full", "h100"] == table.loc["full", "h200"]  # the same tensor cores
    assert table.loc["full", "h100"] == round(budget.profile_hours("full", flops, peak_tflops=989.0), 2)
    chapters = [table.loc["full", f"t4 {ch}"] for ch in budget.CHAPTERS]  # each chapter's hours on a T4
    assert chapters[0] == round(budget.profile_hours("full", flops, peak_tflops=65.0, chapter="01_supervised"), 2)
    assert sum(chapters) == pytest.approx(table.loc["full", "t4"], abs=0.03)
    assert all(d.source for d in budget.DEVICES.values()) and not budget.DEVICES["t4"].bf16


def test_help_lists_every_option():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "budget.py"), "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for option in ("--profile", "--tflops", "--devices", "--choose", "--limit-hours", "--yes"):
        assert option in out.stdout
    assert f"{budget.SUSTAINED_FRACTION * 100:.0f}% of --peak" in out.stdout
