"""The presentation's findings as checks over saved tables: each on hand-made tables where it holds, where
it fails, and where its table is missing."""
import pandas as pd
import pytest

from lib.chapters import findings as F


def write(folder, name, rows):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / f"{name}.csv", index=False)


def verdicts(found):
    return [f.verdict for f in found]


def accuracy(**acc):
    return [{"model": m, "reproduced test acc (%)": v} for m, v in acc.items()]


def test_chapter_1_findings(tmp_path):
    ch = tmp_path / "01_supervised"
    write(ch, "accuracy", accuracy(resnet18=93.8, resnet50=94.4, resnet101=94.5, drn_c_26=89.6,
                                   efficientnet_b0=86.8, **{"resnet18-presented-recipe": 80.0}))
    write(ch, "classification_report", [{"class": c, "recall": 0.5 if c == "cat" else 0.9}
                                        for c in ("airplane", "cat", "dog")] + [{"class": "accuracy"}])
    write(ch, "batch_lr_auc", [{"batch size": b, "learning rate": lr, "test AUC": auc}
                               for b, lr, auc in ((16, 1e-4, 0.96), (16, 1e-3, 0.95), (256, 1e-4, 0.91),
                                                  (256, 1e-3, 0.97))])
    write(ch, "cam_focus", [{"CAM of": c, "mean share of the map in the central box (%)": v,
                             "uniform map (%)": 25.0, "images": 1000}
                            for c, v in (("predicted class", 48.0), ("least likely class", 30.0))])
    found = F.supervised_findings(ch)
    assert verdicts(found) == [F.HOLDS] * 5
    assert found[1].evidence == "resnet18 93.80% < resnet50 94.40% < resnet101 94.50%"
    assert "mean recall of the 9 other classes 0.900 vs cat 0.500" in found[2].evidence

    write(ch, "accuracy", accuracy(resnet18=46.4, resnet50=38.7, resnet101=39.2, drn_d_22=46.8))  # quick run
    write(ch, "batch_lr_auc", [{"batch size": b, "learning rate": lr, "test AUC": auc}
                               for b, lr, auc in ((16, 1e-4, 0.57), (16, 1e-3, 0.70), (256, 1e-4, 0.44),
                                                  (256, 1e-3, 0.50))])
    found = F.supervised_findings(ch)
    assert verdicts(found) == [F.FAILS, F.FAILS, F.HOLDS, F.FAILS, F.HOLDS]
    assert found[0].evidence == "weakest ResNet resnet50 38.70% vs best other drn_d_22 46.80%"


def test_chapter_2_findings(tmp_path):
    ch = tmp_path / "02_generative"
    write(ch, "fid", [{"model": m, "FID": v, "images scored": 5000} for m, v in
                      (("floor: real training images", 2.0), ("VAE", 120.0), ("DCGAN", 40.0),
                       ("DDPM, DDIM 100 steps", 18.0))])
    write(ch, "sampling_times", [{"model / sampler": "DCGAN", "s / image": 1e-4},
                                 {"model / sampler": "DDPM, DDIM 100 steps", "s / image": 0.05}])
    write(ch, "vae_augmentation", [{"training images": t, "test acc (%)": a} for t, a in
                                   (("real images", 90.0), ("VAE reconstructions", 65.0),
                                    ("real + VAE reconstructions", 90.3))])
    assert verdicts(F.generative_findings(ch)) == [F.HOLDS] * 3
    write(ch, "vae_augmentation", [{"training images": t, "test acc (%)": a} for t, a in
                                   (("real images", 38.3), ("VAE reconstructions", 29.9),
                                    ("real + VAE reconstructions", 42.0))])  # reconstructions helped
    assert verdicts(F.generative_findings(ch))[2] == F.FAILS


def test_chapter_3_findings(tmp_path):
    ch = tmp_path / "03_semi_supervised"
    results = [{"result": "presented 30k steps", "top-1 test acc (%)": 94.49}] + [
        {"result": f"this run: {label}", "top-1 test acc (%)": v} for label, v in
        (("MPL (student)", 94.5), ("MPL + finetune", 94.6), ("UDA only (teacher, no MPL feedback)", 93.0),
         ("supervised only (labelled images)", 80.0))]
    write(ch, "results", results)
    write(ch, "twomoon_accuracy", [{"method": m, "accuracy on all points (%)": v} for m, v in
                                   (("supervised only", 80.0), ("pseudo-labelling", 85.0),
                                    ("Meta Pseudo Labels (student)", 85.0))])  # a tie counts
    found = F.semi_supervised_findings(ch)
    assert verdicts(found) == [F.HOLDS] * 3
    assert found[1].evidence == "MPL 94.50% -> MPL + finetune 94.60% (+0.10 pp)"
    results[1]["top-1 test acc (%)"] = 20.6
    write(ch, "results", results)
    assert verdicts(F.semi_supervised_findings(ch))[:2] == [F.FAILS, F.HOLDS]


def test_chapter_4_findings(tmp_path):
    ch = tmp_path / "04_extras"
    write(ch, "normalised_agreement", [
        {"Euclidean on": "raw features", "same ordered top-10 (%)": 0.74, "mean top-10 overlap (%)": 79.7},
        {"Euclidean on": "L2-normalised features", "same ordered top-10 (%)": 99.97,
         "mean top-10 overlap (%)": 100.0}])
    write(ch, "learned_vs_pixels", [{"metric": "cosine", "score": "mAP (%)", "learned better": True},
                                    {"metric": "euclidean", "score": "mAP (%)", "learned better": False}])
    assert verdicts(F.extras_findings(ch)) == [F.HOLDS, F.FAILS]


def test_missing_tables_are_not_run_and_the_frame_lists_every_check(tmp_path):
    df = F.findings(tmp_path)
    assert len(df) == 13 and set(df["verdict"]) == {F.NOT_RUN}
    assert all(df["evidence"].str.startswith("no data in this run"))
    assert list(df.columns) == ["chapter", "item", "claim", "verdict", "evidence", "source"]
    with pytest.raises(KeyError):
        F.findings(tmp_path, ["05_bonus"])
