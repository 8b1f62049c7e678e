"""Chapter 3 trained with several seeds: the seeds MPL, UDA and supervised train with, the runs the
plan lists for them, the results table's per-seed, mean and std columns, and, at smoke size, the
whole chapter with ``seeds: [0, 1]``."""
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lib import params as P
from lib import storage
from lib.chapters import semi_supervised as S


def smoke(**overrides):
    return P.load("03_semi_supervised", "smoke", {"data": "synthetic", **overrides})


def test_training_seeds_of_the_methods():
    assert S.training_seeds(P.load("03_semi_supervised", "full-long")) == [0, 1, 2]
    for profile in ("smoke", "quick", "colab", "full"):  # one seed: the runs stay those of `seed`
        assert S.training_seeds(P.load("03_semi_supervised", profile)) == [0]
    with pytest.raises(ValueError, match=r"must include seed \(0\).*finetune.*seeds: \[0, 1\]"):
        S.training_seeds(smoke(seeds=[1]))


def test_the_plan_trains_each_method_once_per_seed_and_keeps_the_seed_runs_folder(tmp_path):
    one, two = smoke(), smoke(seeds=[0, 1], data_parallel=["mpl"])
    plan1, plan2 = (S.plan(p, profile_dir=tmp_path) for p in (one, two))
    extra = [r for r in plan2 if r.name not in {q.name for q in plan1}]
    assert [r.name for r in extra] == ["mpl-s1", "uda-s1", "supervised-s1"]
    assert [r.work for r in extra] == ["train mpl seed 1", "train uda seed 1", "train supervised seed 1"]
    assert [r.data_parallel for r in extra] == [True, False, False]  # marked as mpl is
    folders1 = {r.name: r.folder.name for r in plan1 if r.name != "finetune"}
    folders2 = {r.name: r.folder.name for r in plan2 if r.name != "finetune"}
    assert all(folders2[n] == f for n, f in folders1.items())  # seed 0's runs: the same hash as before
    # ... the hash they had before seeds existed: the same keys, no training seed of their own
    splits = S.load_ssl_splits(one)
    for kind in S.KINDS:
        before = storage.run_dir(tmp_path, kind, {
            "kind": kind, **{k: one[k] for k in S.TRAIN_KEYS}, "total_steps": S.steps_of(kind, one),
            "data": splits.source, "sizes": splits.sizes()})
        assert folders1[kind] == before.name
    assert folders2["mpl-s1"].startswith("mpl-s1-")
    # the seed keys the folder: another training seed on the same split is another run
    assert S.ssl_folder("mpl", splits, one, ckpt_root=tmp_path, seed=2).name.startswith("mpl-s2-")
    assert S.ssl_folder("mpl", splits, one, ckpt_root=tmp_path, seed=2) != \
        S.ssl_folder("mpl", splits, one, ckpt_root=tmp_path, seed=1)


def fake_run(name, seed, acc):
    return SimpleNamespace(name=name, seed=seed, test={"acc": acc, "top5": 0.99}, val_acc=0.5,
                           best_step=4, steps=8, wall_time_s=1.0, seconds_per_step=0.1, device="cpu",
                           compilation={})


def test_results_table_adds_each_seed_mean_and_std_only_with_several_seeds():
    kw = {"profile": "smoke", "source": "synthetic", "n_test": 200, "std": {"paper": 0.07}}
    presented = {"paper": 96.11, "presented 30k steps": 94.49}
    mpl = [fake_run("mpl", 0, 0.905), fake_run("mpl-s1", 1, 0.9), fake_run("mpl-s2", 2, 0.87)]
    uda = [fake_run("uda", 0, 0.8), fake_run("uda-s1", 1, 0.85), fake_run("uda-s2", 2, 0.82)]
    sup = [fake_run("supervised", 0, 0.6), fake_run("supervised-s1", 1, 0.62),
           fake_run("supervised-s2", 2, 0.58)]
    runs = {"mpl": mpl[0], "finetune": fake_run("finetune", 0, 0.91), "uda": uda[0],
            "supervised": sup[0]}
    plain = S.results_table(runs, presented, **kw)
    alone = {"mpl": mpl[:1], "uda": uda[:1], "supervised": sup[:1]}
    pd.testing.assert_frame_equal(plain, S.results_table(runs, presented, seeds=alone, **kw))
    df = S.results_table(runs, presented, seeds={"mpl": mpl, "uda": uda, "supervised": sup}, **kw)
    mean, std = S.seed_columns(3)
    assert (mean, std) == ("top-1 test acc mean over 3 seeds (%)", "top-1 test acc std over 3 seeds (pp)")
    per_seed = [f"top-1 test acc seed {s} (%)" for s in (0, 1, 2)]
    at = list(plain.columns).index("± std (%)") + 1
    assert list(df.columns) == list(plain.columns[:at]) + per_seed + [mean, std, "seeds"] + \
        list(plain.columns[at:])
    pd.testing.assert_frame_equal(df[plain.columns], plain)  # the seed runs' columns unchanged
    rows = df.set_index("result")
    m = rows.loc["this run: " + S.LABELS["mpl"]]
    assert m[per_seed].tolist() == [90.5, 90.0, 87.0]
    assert m[mean] == 89.17 and m[std] == round(np.std([90.5, 90.0, 87.0], ddof=1), 2)
    assert rows["seeds"].tolist()[2:] == [3, 1, 3, 3]  # the finetune: one run
    ft = rows.loc["this run: " + S.LABELS["finetune"]]
    assert pd.isna(ft[mean]) and ft[per_seed[0]] == 91.0 and pd.isna(ft[per_seed[1]])
    assert rows.loc["paper", per_seed + [mean, std, "seeds"]].isna().all()  # cited rows: no seeds


def test_accuracy_interval_of_one_run_or_of_a_methods_seeds():
    import torch

    from lib.evaluate import intervals as I

    labels = torch.arange(400) % 10

    def run(name, wrong):  # logits right on every image but the first ``wrong``
        logits = torch.nn.functional.one_hot(labels, 10).float()
        logits[:wrong] = logits[:wrong].roll(1, dims=1)
        return SimpleNamespace(name=name, test={"logits": logits, "labels": labels})

    one, two = run("mpl", 40), run("mpl-s1", 120)
    correct = np.arange(400) >= 40
    assert S.accuracy_interval(one) == I.mean_interval(correct).scaled(100)
    both = S.accuracy_interval([one, two])
    assert both.estimate == pytest.approx(80.0)  # (90 + 70) / 2
    assert both.low <= 70.0 and both.high >= 90.0  # the two seeds' spread is in the interval
    with pytest.raises(ValueError, match="other images"):
        S.accuracy_interval([one, SimpleNamespace(name="x", test={"logits": one.test["logits"],
                                                                  "labels": labels.roll(1)})])


# ------------------------------------------------------------------------------ the chapter at smoke size
def test_smoke_chapter_with_two_seeds_reports_mean_std_and_seed_coverage(tmp_path):
    """MPL, UDA and supervised with seeds 0 and 1 on the smoke profile's synthetic split."""
    from conftest import run_all, smoke_params

    from lib.report import load_per_example

    params = smoke_params(tmp_path, "03_semi_supervised", seeds=[0, 1], twomoon_seeds=2,
                          twomoon_steps=50)
    proc = run_all(tmp_path / "out", "--profile", "smoke", "--only", "03", "--data", "synthetic",
                   env_extra={"CIFAR_REPORT_PARAMS_DIR": str(params)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ch3 = tmp_path / "out" / "smoke" / "03_semi_supervised"
    res = pd.read_csv(ch3 / "results.csv")
    res = res[res["result"].str.startswith("this run: ")].set_index("result")
    methods = ["this run: " + S.LABELS[k] for k in S.KINDS]
    mean, std = S.seed_columns(2)
    per_seed = res.loc[methods, ["top-1 test acc seed 0 (%)", "top-1 test acc seed 1 (%)"]]
    assert (res.loc[methods, "seeds"] == 2).all()
    np.testing.assert_allclose(res.loc[methods, mean], per_seed.mean(axis=1), atol=0.01)
    np.testing.assert_allclose(res.loc[methods, std], per_seed.std(axis=1, ddof=1), atol=0.01)
    assert (res.loc[methods, "top-1 test acc (%)"] == per_seed["top-1 test acc seed 0 (%)"]).all()
    assert pd.isna(res.loc["this run: " + S.LABELS["finetune"], mean])  # the finetune: one run
    for kind in S.KINDS:  # per seed run, own hash
        for name in (kind, f"{kind}-s1"):
            assert str(load_per_example(ch3, f"ssl-{name}")["run"]).startswith(name + "-")
    assert (ch3 / "results_seeds.png").is_file()
    found = pd.read_csv(ch3 / "findings.csv", keep_default_na=False)
    beat = found[found["claim"].str.startswith("MPL beats UDA")].iloc[0]
    assert beat["covers"].startswith("2 seeds and test sampling") and "over 2 seeds" in beat["evidence"]
    cmp = pd.read_csv(ch3 / "comparison.csv").set_index("key")
    mpl = per_seed.loc["this run: " + S.LABELS["mpl"]].mean()
    assert cmp.loc["3.6/mpl", "reproduced"] == pytest.approx(mpl, abs=0.01)
    assert json.loads((ch3 / "params.json").read_text())["seeds"] == [0, 1]
