"""The full profile's targets: settings read from params, evidence and expected values stated, measured values
read from a full-profile run's tables (empty until one exists), met or not by the target's direction."""
import json

import pandas as pd

from lib.report.targets import TARGETS, targets_frame


def write_full_run(root):
    full = root / "full"
    for ch in ("01_supervised", "02_generative", "03_semi_supervised"):
        (full / ch).mkdir(parents=True)
    pd.DataFrame({"model": ["resnet18", "resnet50", "resnet101", "drn_c_26", "drn_d_22", "efficientnet_b0"],
                  "reproduced test acc (%)": [95.31, 95.0, 94.2, 92.0, 92.5, 90.1]}).to_csv(
        full / "01_supervised" / "accuracy.csv", index=False)
    pd.DataFrame({"model": ["floor: real training images", "VAE", "DCGAN", "DDPM, DDIM 100 steps",
                            "DDPM, DDIM 100 steps (trailing)"],
                  "FID": [2.1, 120.0, 41.5, 24.0, 19.2], "images scored": [5000] * 5}).to_csv(
        full / "02_generative" / "fid.csv", index=False)
    pd.DataFrame({"result": ["presented 30k steps", "this run: MPL (student)", "this run: MPL + finetune"],
                  "top-1 test acc (%)": [94.49, 94.8, 94.95]}).to_csv(
        full / "03_semi_supervised" / "results.csv", index=False)
    (full / "run.json").write_text(json.dumps({"seconds": 9900}))


def test_without_a_full_run_every_target_rests_on_projection(tmp_path):
    df = targets_frame(tmp_path, tmp_path / "no-budget.json")
    assert len(df) == len(TARGETS) == 6
    assert (df["measured (full profile)"] == "").all() and (df["met"] == "").all()
    assert df["evidence"].str.len().gt(40).all() and df["expected from evidence"].str.len().gt(10).all()
    settings = dict(zip(df["target"], df["setting (full profile)"]))
    assert settings["ResNet-18 test accuracy >= 95.0%"] == "strong recipe, 60 epochs, Cutout-16"
    assert settings["MPL top-1 >= 95.0% on CIFAR-10-4K"].startswith("MPL 65,000 steps")
    assert "not recorded" in df.set_index("target").loc["whole report <= 3 h on one H100/H200-class GPU",
                                                         "expected from evidence"]


def test_a_full_run_fills_in_measured_values_and_whether_each_target_is_met(tmp_path):
    write_full_run(tmp_path)
    budget = tmp_path / "budget.json"
    budget.write_text(json.dumps({"full": {"hours": [{"tflops": 100, "total": 2.5}, {"tflops": 60, "total": 3.9}]}}))
    df = targets_frame(tmp_path, budget).set_index("target")
    got = df[["measured (full profile)", "met"]].to_dict("index")
    assert got["ResNet-18 test accuracy >= 95.0%"] == {"measured (full profile)": "95.31%", "met": "yes"}
    chapter1 = got["every chapter-1 model at or above its presented accuracy"]
    assert chapter1["met"] == "no" and "5 of 6" in chapter1["measured (full profile)"]
    assert "resnet101 94.20 < 94.5" in chapter1["measured (full profile)"]
    assert got["DCGAN FID (5k) <= 60"]["met"] == "yes"
    ddpm = got["DDPM FID (5k) <= 20"]  # the best DDPM row counts
    assert ddpm["met"] == "yes" and ddpm["measured (full profile)"].startswith("19.20 (DDPM, DDIM 100 steps (trailing)")
    assert got["MPL top-1 >= 95.0% on CIFAR-10-4K"] == {"measured (full profile)": "94.95% (MPL + finetune)",
                                                       "met": "no"}
    hours = df.loc["whole report <= 3 h on one H100/H200-class GPU"]
    assert hours["met"] == "yes" and hours["measured (full profile)"].startswith("2.75 h")
    assert hours["expected from evidence"].startswith("2.50 h at 100 TFLOP/s, 3.90 h at 60 TFLOP/s")
