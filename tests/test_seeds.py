"""Chapter 1 trained with several seeds: the seeds a profile trains, the runs the plan lists for
them, the accuracy table's per-seed, mean and std columns, and, at smoke size, the whole chapter with
``seeds: [0, 1]``."""
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lib import params as P
from lib.chapters import supervised


def test_training_seeds_put_seed_first_and_reject_lists_without_it():
    assert supervised.training_seeds({"seed": 0, "seeds": []}) == [0]
    assert supervised.training_seeds({"seed": 2, "seeds": [0, 1, 2]}) == [2, 0, 1]
    assert supervised.training_seeds(P.load("01_supervised", "full-long")) == [0, 1, 2]
    for profile in ("smoke", "quick", "colab", "full"):  # one seed: the runs stay those of `seed`
        assert supervised.training_seeds(P.load("01_supervised", profile)) == [0]
    with pytest.raises(ValueError, match=r"must include seed \(0\).*seeds: \[0, 1, 2\]"):
        supervised.training_seeds({"seed": 0, "seeds": [1, 2], "chapter": "01_supervised"})
    with pytest.raises(ValueError, match="repeat a seed"):
        supervised.training_seeds({"seed": 0, "seeds": [0, 1, 1]})
    with pytest.raises(ValueError, match="must be integers"):
        supervised.training_seeds({"seed": 0, "seeds": [0, "1"]})
    assert [supervised.seed_run_name("resnet18", s, {"seed": 0}) for s in (0, 1)] == \
        ["resnet18", "resnet18-s1"]
    # the 1.8 table's epochs say how many seeds the accuracy table trained
    assert supervised.recipe_runs(P.load("01_supervised", "full-long"))["strong"] == \
        "200 (accuracy table, each model with 3 seeds)"
    assert supervised.recipe_runs(P.load("01_supervised", "full"))["strong"] == \
        "40, resnet18 60 (accuracy table)"


def test_the_plan_trains_each_table_model_once_per_seed_and_keeps_the_seed_runs_folder(tmp_path):
    one = P.load("01_supervised", "smoke", {"data": "synthetic"})
    two = {**one, "seeds": [0, 1]}
    plan1, plan2 = (supervised.plan(p, profile_dir=tmp_path) for p in (one, two))
    extra = [r for r in plan2 if r.name not in {q.name for q in plan1}]
    assert [r.name for r in extra] == [f"{m}-s1" for m in one["models"]]
    assert [r.work for r in extra] == [f"train {m} seed 1" for m in one["models"]]
    folders1 = {r.name: r.folder.name for r in plan1}
    folders2 = {r.name: r.folder.name for r in plan2}
    assert all(folders2[n] == f for n, f in folders1.items())  # seed 0's runs: the same hash as before
    assert folders2["resnet18-s1"].startswith("resnet18-s1-")
    # the seed keys the folder: another training seed on the same split is another run
    splits = supervised.load_splits(one)
    assert supervised.classifier_folder("resnet18", splits, one, ckpt_root=tmp_path, seed=2) != \
        supervised.classifier_folder("resnet18", splits, one, ckpt_root=tmp_path, seed=1,
                                     run_name="resnet18-s2")


def fake_run(name, seed, acc):
    return SimpleNamespace(name=name, seed=seed, test_acc=acc, val_acc=0.5, recipe_name="strong",
                           epochs=1, parameters=10, flops=1e9, wall_time_s=1.0, device="cpu",
                           compilation={})


def test_accuracy_table_adds_each_seed_mean_and_std_only_with_several_seeds():
    kw = {"profile": "smoke", "source": "synthetic", "n_test": 200}
    r18 = [fake_run("resnet18", 0, 0.905), fake_run("resnet18-s1", 1, 0.9),
           fake_run("resnet18-s2", 2, 0.87)]
    drn = [fake_run("drn_c_26", 0, 0.8), fake_run("drn_c_26-s1", 1, 0.85),
           fake_run("drn_c_26-s2", 2, 0.82)]
    base = fake_run("resnet18-presented-recipe", 0, 0.5)
    presented = {"resnet18": 93.79}
    plain = supervised.accuracy_table([r18[0], drn[0], base], presented, **kw)
    alone = {"resnet18": r18[:1], "drn_c_26": drn[:1]}
    pd.testing.assert_frame_equal(plain, supervised.accuracy_table([r18[0], drn[0], base], presented,
                                                                   seeds=alone, **kw))
    df = supervised.accuracy_table([r18[0], drn[0], base], presented,
                                   seeds={"resnet18": r18, "drn_c_26": drn}, **kw)
    mean, std = "test acc mean over 3 seeds (%)", "test acc std over 3 seeds (pp)"
    per_seed = [f"test acc seed {s} (%)" for s in (0, 1, 2)]
    assert list(df.columns) == (list(plain.columns[:plain.columns.get_loc("difference (pp)")])
                                + per_seed + [mean, std, "seeds"]
                                + list(plain.columns[plain.columns.get_loc("difference (pp)"):]))
    pd.testing.assert_frame_equal(df[plain.columns], plain)  # the seed runs' columns unchanged
    assert df[per_seed].iloc[0].tolist() == [90.5, 90.0, 87.0]
    assert df[mean].iloc[0] == 89.17 and df[std].iloc[0] == round(np.std([90.5, 90.0, 87.0], ddof=1), 2)
    assert df["seeds"].tolist() == [3, 3, 1]
    assert pd.isna(df[mean].iloc[2]) and df[per_seed[0]].iloc[2] == 50.0  # one run: no mean


# ------------------------------------------------------------------------------ the chapter at smoke size
def test_smoke_chapter_with_two_seeds_reports_mean_std_and_seed_coverage(tmp_path):
    """ResNet-18 and DRN-C-26 with seeds 0 and 1 on a few hundred synthetic images, at batch 16 so
    the seeds learn something and differ."""
    from conftest import run_all, smoke_params

    from lib.report import load_per_example

    params = smoke_params(tmp_path, "01_supervised", seeds=[0, 1], models=["resnet18", "drn_c_26"],
                          test_subset=100, strong_batch_size=16, strong_warmup_epochs=0.2)
    proc = run_all(tmp_path / "out", "--profile", "smoke", "--only", "01", "--data", "synthetic",
                   env_extra={"CIFAR_REPORT_PARAMS_DIR": str(params)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ch1 = tmp_path / "out" / "smoke" / "01_supervised"
    acc = pd.read_csv(ch1 / "accuracy.csv").set_index("model")
    mean, std = "test acc mean over 2 seeds (%)", "test acc std over 2 seeds (pp)"
    per_seed = acc.loc[["resnet18", "drn_c_26"], ["test acc seed 0 (%)", "test acc seed 1 (%)"]]
    assert (acc.loc[["resnet18", "drn_c_26"], "seeds"] == 2).all()
    np.testing.assert_allclose(acc.loc[per_seed.index, mean], per_seed.mean(axis=1), atol=0.01)
    np.testing.assert_allclose(acc.loc[per_seed.index, std], per_seed.std(axis=1, ddof=1), atol=0.01)
    assert (acc.loc[per_seed.index, "reproduced test acc (%)"] == per_seed["test acc seed 0 (%)"]).all()
    assert pd.isna(acc.loc["resnet18-presented-recipe", mean])  # the other recipe's row: one run
    for name in ("resnet18", "resnet18-s1", "drn_c_26", "drn_c_26-s1"):  # per seed run, own hash
        assert str(load_per_example(ch1, name)["run"]).startswith(name + "-")
    assert (ch1 / "accuracy_seeds.png").is_file()
    found = pd.read_csv(ch1 / "findings.csv", keep_default_na=False)
    beat = found[found["claim"].str.startswith("The ResNets beat")].iloc[0]
    assert beat["covers"].startswith("2 seeds and test sampling") and "over 2 seeds" in beat["evidence"]
    cmp = pd.read_csv(ch1 / "comparison.csv").set_index("key")
    assert cmp.loc["1.4/resnet18", "reproduced"] == pytest.approx(per_seed.loc["resnet18"].mean(), abs=0.01)
    assert json.loads((ch1 / "params.json").read_text())["seeds"] == [0, 1]
