"""The presentation's qualitative claims, each checked against this run's saved tables.

Every check is a pure function of one chapter's folder of CSV files
(``outputs/<profile>/<chapter>/``): it returns a :class:`Finding` with the verdict (``holds`` /
``does not hold`` / ``not run``) and the numbers it rests on. :func:`findings` runs them all; the
index page, each chapter's HTML and the README lead with them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from ..spec import PRESENTED

HOLDS, FAILS, NOT_RUN = "holds", "does not hold", "not run"


@dataclass
class Finding:
    chapter: str
    item: str        # SPEC item of the slide that makes the claim
    claim: str       # what the presentation says
    verdict: str     # holds / does not hold / not run
    evidence: str    # the numbers of this run the verdict rests on
    source: str      # the table they come from


def _read(folder: Path, name: str) -> pd.DataFrame | None:
    path = Path(folder) / f"{name}.csv"
    return pd.read_csv(path) if path.is_file() else None


def _finding(chapter, item, claim, source, check) -> Finding:
    """Run ``check() -> (bool, evidence)``; a missing table or row makes the finding ``not run``."""
    try:
        ok, evidence = check()
    except (KeyError, ValueError, IndexError, TypeError) as err:
        return Finding(chapter, item, claim, NOT_RUN, f"no data in this run ({err})", source)
    return Finding(chapter, item, claim, HOLDS if ok else FAILS, evidence, source)


def _need(df: pd.DataFrame | None, name: str) -> pd.DataFrame:
    if df is None:
        raise KeyError(f"{name}.csv missing")
    return df


# ---------------------------------------------------------------------------------- chapter 1
RESNET_DEPTH = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101}


def supervised_findings(folder: Path) -> list[Finding]:
    ch = "01_supervised"
    acc = _read(folder, "accuracy")
    sweep = _read(folder, "batch_lr_auc")
    report = _read(folder, "classification_report")
    focus = _read(folder, "cam_focus")

    def accuracies() -> dict[str, float]:
        df = _need(acc, "accuracy")
        return dict(zip(df["model"], df["reproduced test acc (%)"]))

    def resnets_beat_others():
        a = accuracies()
        res = {m: v for m, v in a.items() if m in RESNET_DEPTH}
        other = {m: v for m, v in a.items()  # the presented models, not extra rows
                 if m.startswith(("drn", "efficientnet")) and m in PRESENTED["accuracy"]}
        if not res or not other:
            raise KeyError("needs ResNet and DRN/EfficientNet rows")
        worst, best_other = min(res, key=res.get), max(other, key=other.get)
        return (res[worst] > other[best_other],
                f"weakest ResNet {worst} {res[worst]:.2f}% vs best other {best_other} "
                f"{other[best_other]:.2f}%")

    def deeper_is_better():
        a = accuracies()
        res = sorted((RESNET_DEPTH[m], m, a[m]) for m in a if m in RESNET_DEPTH)
        if len(res) < 2:
            raise KeyError("needs two ResNet depths")
        ok = all(x[2] < y[2] for x, y in zip(res, res[1:]))
        return ok, " < ".join(f"{m} {v:.2f}%" for _, m, v in res) if ok else \
            ", ".join(f"{m} {v:.2f}%" for _, m, v in res)

    def cat_is_hardest():
        df = _need(report, "classification_report").set_index("class")
        recall = df["recall"].dropna()
        classes = [c for c in recall.index if c not in ("accuracy", "macro avg", "weighted avg")
                   and not str(c).startswith("all ")]
        others = recall[[c for c in classes if c != "cat"]].mean()
        return (others > recall["cat"],
                f"mean recall of the 9 other classes {others:.3f} vs cat {recall['cat']:.3f}")

    def sweep_shape():
        df = _need(sweep, "batch_lr_auc")
        best = df.loc[df["test AUC"].idxmax()]
        big, small_lr, big_lr = (df["batch size"].max(), df["learning rate"].min(),
                                 df["learning rate"].max())
        small = (df[df["batch size"] == df["batch size"].min()]
                 .set_index("learning rate")["test AUC"])
        ok = (best["batch size"] == big and best["learning rate"] == big_lr
              and small[small_lr] > small[big_lr])
        return ok, (f"best test AUC {best['test AUC']:.4f} at batch {int(best['batch size'])} / lr "
                    f"{best['learning rate']:g}; batch {int(df['batch size'].min())}: "
                    f"lr {small_lr:g} {small[small_lr]:.4f} vs lr {big_lr:g} {small[big_lr]:.4f}")

    def cam_covers_object():
        df = _need(focus, "cam_focus").set_index("CAM of")
        col = "mean share of the map in the central box (%)"
        pred, wrong = df.loc["predicted class", col], df.loc["least likely class", col]
        uniform, n = df["uniform map (%)"].iloc[0], int(df["images"].iloc[0])
        return pred > wrong, (f"central-box share of the CAM: predicted class {pred:.2f}% vs least "
                              f"likely class {wrong:.2f}% (uniform {uniform:g}%, {n:,} images)")

    return [
        _finding(ch, "1.4", "The ResNets beat the DRNs and EfficientNet-B0", "accuracy.csv",
                 resnets_beat_others),
        _finding(ch, "1.4", "Deeper ResNets are slightly better (presented 93.79 < 94.39 < 94.5)",
                 "accuracy.csv", deeper_is_better),
        _finding(ch, "1.10", "Cat is the hardest class: the other nine average a higher accuracy "
                 "(recall)", "classification_report.csv", cat_is_hardest),
        _finding(ch, "1.7", "The best sweep cell is the largest batch with the larger learning "
                 "rate (presented 256 / 1e-3), and the smallest batch prefers the smaller rate",
                 "batch_lr_auc.csv", sweep_shape),
        _finding(ch, "1.3", "The CAM of the predicted class covers the object, a wrong class's "
                 "does not (measured: share of the map in the image's central quarter)",
                 "cam_focus.csv", cam_covers_object),
    ]


# ---------------------------------------------------------------------------------- chapter 2
def generative_findings(folder: Path) -> list[Finding]:
    ch = "02_generative"
    fid = _read(folder, "fid")
    times = _read(folder, "sampling_times")
    aug = _read(folder, "vae_augmentation")

    def fid_order():
        df = _need(fid, "fid")
        by = dict(zip(df["model"], df["FID"]))
        ddpm = min(v for k, v in by.items() if k.startswith("DDPM"))
        return (ddpm < by["DCGAN"] < by["VAE"],
                f"DDPM {ddpm:.2f}, DCGAN {by['DCGAN']:.2f}, VAE {by['VAE']:.2f} "
                f"({int(df['images scored'].max()):,} images scored)")

    def dcgan_faster():
        df = _need(times, "sampling_times").set_index("model / sampler")["s / image"]
        ddpm = min(v for k, v in df.items() if k.startswith("DDPM"))
        return df["DCGAN"] < ddpm, f"DCGAN {df['DCGAN']:.4g} s/image vs DDPM {ddpm:.4g} s/image"

    def no_augmentation_gain():
        df = _need(aug, "vae_augmentation").set_index("training images")["test acc (%)"]
        real, rec, both = (df["real images"], df["VAE reconstructions"],
                           df["real + VAE reconstructions"])
        return (rec < real and both <= real + 0.5,
                f"real {real:.2f}%, reconstructions only {rec:.2f}%, "
                f"real + reconstructions {both:.2f}%")

    return [
        _finding(ch, "2.4", "DDPM scores a lower (better) FID than DCGAN, and DCGAN than the VAE",
                 "fid.csv", fid_order),
        _finding(ch, "2.4", "DCGAN generates faster than DDPM", "sampling_times.csv", dcgan_faster),
        _finding(ch, "2.2", "VAE reconstructions do not help as training data (alone they score "
                 "below real images; added to them they gain no more than 0.5 pp)",
                 "vae_augmentation.csv", no_augmentation_gain),
    ]


# ---------------------------------------------------------------------------------- chapter 3
def semi_supervised_findings(folder: Path) -> list[Finding]:
    ch = "03_semi_supervised"
    results = _read(folder, "results")
    moons = _read(folder, "twomoon_accuracy")

    def ours() -> dict[str, float]:
        df = _need(results, "results")
        rows = df[df["result"].str.startswith("this run: ")]
        return {r.split(": ", 1)[1].split(" (")[0]: v
                for r, v in zip(rows["result"], rows["top-1 test acc (%)"])}

    def ordering():
        a = ours()
        mpl, uda, sup = a["MPL"], a["UDA only"], a["supervised only"]
        return mpl > uda > sup, f"MPL {mpl:.2f}%, UDA only {uda:.2f}%, supervised only {sup:.2f}%"

    def finetune_adds():
        a = ours()
        gain = a["MPL + finetune"] - a["MPL"]
        return gain > 0, (f"MPL {a['MPL']:.2f}% -> MPL + finetune {a['MPL + finetune']:.2f}% "
                          f"({gain:+.2f} pp)")

    def twomoon():
        df = _need(moons, "twomoon_accuracy").set_index("method")["accuracy on all points (%)"]
        mpl = df["Meta Pseudo Labels (student)"]
        others = df.drop("Meta Pseudo Labels (student)")
        return mpl >= others.max(), (f"MPL {mpl:.1f}% vs " + ", ".join(f"{k} {v:.1f}%"
                                                                      for k, v in others.items()))

    return [
        _finding(ch, "3.6", "MPL beats UDA alone, which beats supervised learning "
                 "on the 4,000 labels", "results.csv", ordering),
        _finding(ch, "3.6", "Finetuning on the labelled images adds a little "
                 "(presented 94.49 -> 94.61)", "results.csv", finetune_adds),
        _finding(ch, "3.2", "On two moons, MPL's boundary is at least as accurate as the others'",
                 "twomoon_accuracy.csv", twomoon),
    ]


# ---------------------------------------------------------------------------------- chapter 4
def extras_findings(folder: Path) -> list[Finding]:
    ch = "04_extras"
    agree = _read(folder, "normalised_agreement")
    vs = _read(folder, "learned_vs_pixels")

    def metrics_agree_after_normalising():
        df = _need(agree, "normalised_agreement").set_index("Euclidean on")
        raw, unit = df.loc["raw features"], df.loc["L2-normalised features"]
        key = "same ordered top-10 (%)"
        ok = raw[key] < 99 and unit["mean top-10 overlap (%)"] >= 99.9
        return ok, (f"same ordered top-10 as cosine: raw {raw[key]:.2f}%, L2-normalised "
                    f"{unit[key]:.2f}% (top-10 overlap {unit['mean top-10 overlap (%)']:.2f}%)")

    def learned_beat_pixels():
        df = _need(vs, "learned_vs_pixels")
        wins = df["learned better"].astype(str).str.lower().eq("true")
        return (bool(wins.all()) and len(df) > 0,
                f"learned features better on {int(wins.sum())} of {len(df)} "
                "(metric, score) pairs, same queries")

    return [
        _finding(ch, "4.1", "Cosine and Euclidean rankings differ on raw feature vectors and agree "
                 "once they are L2-normalised", "normalised_agreement.csv",
                 metrics_agree_after_normalising),
        _finding(ch, "4.1", "Learned features retrieve same-class images better than raw pixels "
                 "(P@k, mAP)", "learned_vs_pixels.csv", learned_beat_pixels),
    ]


CHECKS = {"01_supervised": supervised_findings, "02_generative": generative_findings,
          "03_semi_supervised": semi_supervised_findings, "04_extras": extras_findings}


def findings(profile_dir: str | Path, chapters=None) -> pd.DataFrame:
    """Every finding of ``chapters`` (default all) for the run in ``profile_dir``."""
    rows = []
    for ch in chapters or CHECKS:
        rows += [asdict(f) for f in CHECKS[ch](Path(profile_dir) / ch)]
    return pd.DataFrame(rows, columns=list(Finding.__dataclass_fields__))
