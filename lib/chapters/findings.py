"""The presentation's qualitative claims, each checked against this run's saved results, with how
sure the check is.

Every check reads one chapter's folder (``outputs/<profile>/<chapter>/``): its CSV tables and the
per-example results under ``per_example/`` (each test image's prediction, each query's score, the
FID replicates). A claim becomes a *margin*, positive on the claim's side, with a 95% bootstrap
interval (:mod:`lib.evaluate.intervals`); the verdict is **holds** (interval above zero), **does
not hold** (below), **not decided at this scale** (straddling) or **not run** (no data). Each
finding says what its interval covers.

:func:`chapter_findings` runs one chapter's checks; :meth:`lib.report.Report.finish` saves them as
``findings.csv`` beside the tables, and :func:`findings` reads those (computing any that are
missing). The index page, each chapter's HTML and the README lead with them.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..evaluate import intervals as I
from ..spec import PRESENTED, REFERENCE

HOLDS, FAILS, UNDECIDED, NOT_RUN = I.HOLDS, I.FAILS, I.UNDECIDED, "not run"
VERDICTS = (HOLDS, FAILS, UNDECIDED, NOT_RUN)
TEST_SAMPLING = ("test-set sampling only: images resampled (paired across the models compared), "
                 "one training run each")


def seeds_and_test_sampling(n: int) -> str:
    """What a two-level interval (:func:`lib.evaluate.intervals.seeds_bootstrap`) covers."""
    return (f"{n} seeds and test sampling: each model's {n} training runs resampled, then the test "
            "images (paired across the models compared)")


@dataclass
class Finding:
    chapter: str
    item: str        # SPEC item of the slide that makes the claim
    claim: str       # what the presentation says
    verdict: str     # holds / does not hold / not decided at this scale / not run
    margin: str      # the margin (positive = the claim's side) and its 95% interval, as text
    covers: str      # what the interval covers
    evidence: str    # the numbers of this run the verdict rests on
    source: str      # the files they come from
    estimate: float = math.nan
    low: float = math.nan
    high: float = math.nan
    unit: str = ""


@dataclass
class Margin:
    """What a check returns: the claim's margin with its interval (or, for a claim of several
    parts, one per part: the verdict reads each, :func:`lib.evaluate.intervals.verdict_all`, and
    the smallest is shown), and the numbers behind it."""

    interval: I.Interval | list[I.Interval]
    unit: str
    covers: str
    evidence: str
    fmt: str = ".2f"


def _read(folder: Path, name: str) -> pd.DataFrame | None:
    path = Path(folder) / f"{name}.csv"
    return pd.read_csv(path) if path.is_file() else None


def _need(df: pd.DataFrame | None, name: str) -> pd.DataFrame:
    if df is None:
        raise KeyError(f"{name}.csv missing")
    return df


def per_example(folder: Path, name: str) -> dict[str, np.ndarray]:
    """The arrays a chapter saved with :meth:`lib.report.Report.per_example` as ``name``."""
    from ..report import load_per_example

    return load_per_example(folder, name)


def _finding(chapter, item, claim, source, check) -> Finding:
    """Run ``check() -> Margin``; missing data makes the finding ``not run``."""
    try:
        m = check()
    except (KeyError, ValueError, IndexError, TypeError, FileNotFoundError) as err:
        return Finding(chapter, item, claim, NOT_RUN, "", "", f"no data in this run ({err})",
                       source)
    parts = m.interval if isinstance(m.interval, list) else [m.interval]
    iv = min(parts, key=lambda p: p.estimate)
    unit = f" {m.unit}" if m.unit else ""
    several = f" (the smallest of {len(parts)} parts)" if len(parts) > 1 else ""
    return Finding(chapter, item, claim, I.verdict_all(parts),
                   f"{iv.estimate:+{m.fmt}}{unit} [95%: {iv.low:+{m.fmt}}, {iv.high:+{m.fmt}}]"
                   + several, m.covers, m.evidence, source, iv.estimate, iv.low, iv.high, m.unit)


def _pct(iv: I.Interval) -> I.Interval:
    return iv.scaled(100)


def _correct(folder: Path, names) -> list[np.ndarray]:
    """Per-image correctness of runs ``names`` on the same test images (checked)."""
    saved = [per_example(folder, n) for n in names]
    labels = saved[0]["label"]
    for n, s in zip(names, saved):
        if not np.array_equal(s["label"], labels):
            raise ValueError(f"{n} was tested on other images than {names[0]}")
    return [s["correct"].astype(float) for s in saved]


def _pairs(pairs) -> tuple:
    """Samples and statistic for the paired margins mean(a) - mean(b) of ``(a, b)`` pairs (arrays
    over the same items), resampled together: one interval per pair."""
    samples = tuple(x for pair in pairs for x in pair)

    def stat(*x, axis):
        return np.stack([x[2 * i].mean(axis) - x[2 * i + 1].mean(axis)
                         for i in range(len(pairs))])

    return samples, stat


# ---------------------------------------------------------------------------------- chapter 1
RESNET_DEPTH = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101}


def _params(folder: Path) -> dict:
    path = Path(folder) / "params.json"
    if not path.is_file():
        raise KeyError("params.json missing")
    return json.loads(path.read_text())


def _presented_order(models) -> str:
    acc = PRESENTED["accuracy"]
    return " < ".join(f"{m} {acc[m]:g}" for m in models)


def _seeds(folder: Path) -> list[int]:
    """The training seeds of chapter 1's table models or chapter 3's methods in the run saved in
    ``folder`` (:func:`lib.chapters.supervised.training_seeds`); ``[]`` where it trained one seed."""
    path = Path(folder) / "params.json"
    p = json.loads(path.read_text()) if path.is_file() else {}
    if len(p.get("seeds") or []) < 2:
        return []
    from .supervised import training_seeds

    return training_seeds(p)


def _compared(folder: Path, models: list[str], seeds: list[int], prefix: str = "") -> tuple:
    """Samples and resampling of the paired margins of ``models``: their per-image correctness and
    :func:`lib.evaluate.intervals.bootstrap` with one training run each; with several ``seeds``,
    ``(seeds, images)`` per model and the two-level :func:`lib.evaluate.intervals.seeds_bootstrap`.
    The per-example results are saved as ``prefix`` + run name. Returns ``(correctness by model,
    resample, what the interval covers)``."""
    if not seeds:
        return (dict(zip(models, _correct(folder, [prefix + m for m in models]))), I.bootstrap,
                TEST_SAMPLING)
    from .supervised import seed_run_name

    names = [prefix + seed_run_name(m, s, {"seed": seeds[0]}) for m in models for s in seeds]
    c = np.array(_correct(folder, names)).reshape(len(models), len(seeds), -1)
    return dict(zip(models, c)), I.seeds_bootstrap, seeds_and_test_sampling(len(seeds))


def supervised_findings(folder: Path) -> list[Finding]:
    ch = "01_supervised"
    folder = Path(folder)
    acc = _read(folder, "accuracy")
    seeds = _seeds(folder)
    over = f" (means over {len(seeds)} seeds)" if seeds else ""

    def accuracies() -> dict[str, float]:
        df = _need(acc, "accuracy")
        df = df[df["status"] == "run"]
        if seeds:
            from .supervised import seed_columns

            return dict(zip(df["model"], df[seed_columns(len(seeds))[0]]))
        return dict(zip(df["model"], df["reproduced test acc (%)"]))

    def resnets_beat_others():
        a = accuracies()
        res = [m for m in a if m in RESNET_DEPTH and m in PRESENTED["accuracy"]]
        other = [m for m in a if m.startswith(("drn", "efficientnet"))
                 and m in PRESENTED["accuracy"]]
        if not res or not other:
            raise KeyError("needs ResNet and DRN/EfficientNet rows")
        c, resample, covers = _compared(folder, res + other, seeds)
        parts = resample(*_pairs([(c[r], c[o]) for r in res for o in other]))
        worst, best_other = min(res, key=a.get), max(other, key=a.get)
        return Margin([_pct(p) for p in parts], "pp", covers + "; one part per (ResNet, "
                      "other) pair",
                      f"weakest ResNet {worst} {a[worst]:.2f}% vs best other {best_other} "
                      f"{a[best_other]:.2f}%" + over)

    def deeper_is_better():
        a = accuracies()
        res = sorted((m for m in a if m in RESNET_DEPTH and m in PRESENTED["accuracy"]),
                     key=RESNET_DEPTH.get)
        if len(res) < 2:
            raise KeyError("needs two ResNet depths")
        c, resample, covers = _compared(folder, res, seeds)
        c = [c[m] for m in res]
        parts = resample(*_pairs(list(zip(c[1:], c))))
        return Margin([_pct(p) for p in parts], "pp", covers + "; one part per step up "
                      "in depth",
                      ", ".join(f"{m} {a[m]:.2f}%" for m in res) + over)

    def cat_has_lowest_recall():
        p = _params(folder)
        df = _need(acc, "accuracy")
        df = df[(df["status"] == "run") & df["model"].isin(p["models"])]
        if df.empty:
            raise KeyError("no model of `models` in accuracy.csv")
        best = df.loc[df["best val acc (%)"].idxmax(), "model"]
        s = per_example(folder, best)
        classes = list(PRESENTED["class_report"])
        cat = classes.index("cat")

        def stat(labels, correct, axis):
            r = I.class_recalls(labels, correct, axis=axis, classes=len(classes))
            return np.delete(r, cat, axis=0) - r[cat]

        parts = I.bootstrap((s["label"], s["correct"].astype(float)), stat)
        rec = I.class_recalls(s["label"], s["correct"], classes=len(classes))
        low2 = np.argsort(rec)[:2]
        return Margin([p.scaled(100) for p in parts], "pp of recall", TEST_SAMPLING +
                      f" ({best}, best on validation); one part per other class: its recall "
                      "minus cat's",
                      f"cat {rec[cat]:.3f}; lowest two: " + ", ".join(
                          f"{classes[i]} {rec[i]:.3f}" for i in low2))

    def bold_cells():
        df = _need(_read(folder, "batch_lr_auc"), "batch_lr_auc")
        model = _params(folder)["sweep_model"]
        cells = list(zip(df["batch size"], df["learning rate"]))
        bold = PRESENTED["batch_lr_bold"]
        for lr, b in bold.items():
            if (b, lr) not in cells:
                raise KeyError(f"the sweep has no cell batch {b} / lr {lr:g}")
        saved = [per_example(folder, f"sweep-{model}-b{b}-lr{lr:g}") for b, lr in cells]
        auc = I.MacroAUC(saved[0]["label"], np.stack([s["scores"] for s in saved]))
        lrs = {lr: [i for i, c in enumerate(cells) if c[1] == lr] for lr in bold}
        marks = {lr: cells.index((b, lr)) for lr, b in bold.items()}

        pairs = [(marks[lr], i) for lr in bold for i in lrs[lr] if i != marks[lr]]

        def margins(a):  # a: (..., cells) -> (pairs, ...)
            return np.stack([a[..., m] - a[..., i] for m, i in pairs])

        parts = I.bootstrap((np.arange(auc.n),), lambda idx, axis: margins(
            auc(I.resampled_weights(idx, auc.n))))
        best = {lr: max(lrs[lr], key=lambda i: df["test AUC"].iloc[i]) for lr in bold}
        return Margin(parts, "AUC", "test-set sampling only: the test images resampled, the same "
                      "for every cell; one training run per cell; one part per other batch size: "
                      "the bold cell's AUC minus that batch size's at the same learning rate",
                      "; ".join(f"lr {lr:g}: batch {b} {df['test AUC'].iloc[marks[lr]]:.4f}, "
                                f"best batch {cells[best[lr]][0]} "
                                f"{df['test AUC'].iloc[best[lr]]:.4f}"
                                for lr, b in bold.items()), fmt=".4f")

    def cam_on_object():
        s = per_example(folder, "cam_focus")
        pred, wrong = s["predicted"], s["random_wrong"]
        iv = I.paired_difference(pred, wrong).scaled(100)
        return Margin(iv, "pp", "the CAM images resampled (one model)",
                      f"central-box share of the CAM: predicted class {100 * pred.mean():.2f}% "
                      f"vs a random wrong class {100 * wrong.mean():.2f}% (uniform 25%, "
                      f"{len(pred):,} test images)")

    order = [m for m in RESNET_DEPTH if m in PRESENTED["accuracy"]]
    cat = PRESENTED["class_report"]["cat"][1]
    others = [v[1] for c, v in PRESENTED["class_report"].items() if c != "cat"]
    bold = ", ".join(f"batch {b} at lr {lr:g}" for lr, b in PRESENTED["batch_lr_bold"].items())
    return [
        _finding(ch, "1.4", "The ResNets beat the DRNs and EfficientNet-B0", "accuracy.csv, "
                 "per_example/", resnets_beat_others),
        _finding(ch, "1.4", f"Deeper ResNets are more accurate (presented "
                 f"{_presented_order(order)})", "accuracy.csv, per_example/", deeper_is_better),
        _finding(ch, "1.10", f"Cat has the lowest recall of the ten classes (presented cat "
                 f"{cat:g}, the others {min(others):g}-{max(others):g})",
                 "accuracy.csv, per_example/", cat_has_lowest_recall),
        _finding(ch, "1.7", f"The slide's bold cells are the best of their learning rate: {bold}",
                 "batch_lr_auc.csv, per_example/", bold_cells),
        _finding(ch, "1.3", "The CAM of the predicted class lies on the object more than a wrong "
                 "class's (measured: share of the map in the image's central quarter; wrong class "
                 "drawn at random, seeded)", "per_example/cam_focus.npz", cam_on_object),
    ]


# ---------------------------------------------------------------------------------- chapter 2
def generative_findings(folder: Path) -> list[Finding]:
    ch = "02_generative"
    folder = Path(folder)

    def ddpm_beats_dcgan():
        fid = _need(_read(folder, "fid"), "fid").set_index("model")
        reps = per_example(folder, "fid_replicates")
        labels = list(reps["labels"])
        compared = list(reps["compared"])
        ddpm = next(lb for lb in compared if lb.startswith("DDPM"))
        if "DCGAN" not in labels:
            raise KeyError("no DCGAN FID")
        r = reps["replicates"]
        diff = r[labels.index("DCGAN")] - r[labels.index(ddpm)]
        est = float(fid.loc["DCGAN", "FID"] - fid.loc[ddpm, "FID"])
        iv = I.replicate_interval(est, diff)
        return Margin(iv, "FID", f"the generated images resampled ({r.shape[1]:,} resamples, "
                      "each model's independently); the reference statistics held fixed",
                      f"DDPM ({ddpm}) {fid.loc[ddpm, 'FID']:.2f}, DCGAN "
                      f"{fid.loc['DCGAN', 'FID']:.2f} ({int(fid['images scored'].max()):,} "
                      "images scored)")

    def dcgan_faster():
        s = per_example(folder, "sampling_repeats")
        dcgan, ddpm = s["DCGAN"], s["DDPM"]
        # the ratio in decades; the interval is the range over the timed repeats (worst pairing)
        est = math.log10(ddpm.mean() / dcgan.mean())
        iv = I.Interval(est, math.log10(ddpm.min() / dcgan.max()),
                        math.log10(ddpm.max() / dcgan.min()))
        return Margin(iv, "decades (log10 of DDPM's time / DCGAN's)",
                      f"the spread of {len(ddpm)} timed repeats of each sampler (worst pairing), "
                      f"{int(s['images'])} images a repeat",
                      f"DCGAN {dcgan.mean():.3g} s/image vs DDPM {ddpm.mean():.3g} s/image "
                      f"({ddpm.mean() / dcgan.mean():,.0f}x)")

    def reconstructions_worse():
        df = _need(_read(folder, "vae_augmentation"), "vae_augmentation")
        p = _params(folder)
        names = [f"{p['classifier_model']}-" + t.replace(" + ", "-and-").replace(" ", "-").lower()
                 for t in df["training images"]]
        by = dict(zip(df["training images"], names))
        real, rec, both = _correct(folder, [by["real images"], by["VAE reconstructions"],
                                            by["real + VAE reconstructions"]])
        iv = I.paired_difference(real, rec).scaled(100)
        gain = I.paired_difference(both, real).scaled(100)
        return Margin(iv, "pp", TEST_SAMPLING,
                      f"real {100 * real.mean():.2f}%, reconstructions only "
                      f"{100 * rec.mean():.2f}%; real + reconstructions {100 * both.mean():.2f}% "
                      f"(gain over real {gain.text()} pp, not part of the verdict)")

    lo, hi = PRESENTED["vae_augmentation_accuracy"]
    return [
        _finding(ch, "2.4", f"DDPM scores a lower (better) FID than DCGAN (presented "
                 f"{PRESENTED['fid']['ddpm']:g} vs {PRESENTED['fid']['dcgan']:g})",
                 "fid.csv, per_example/fid_replicates.npz", ddpm_beats_dcgan),
        _finding(ch, "2.4", "DCGAN generates faster than DDPM",
                 "per_example/sampling_repeats.npz", dcgan_faster),
        _finding(ch, "2.2", f"VAE reconstructions are worth less than real images as training "
                 f"data (presented {lo:g}-{hi:g}% with reconstructions): a classifier trained on "
                 "them scores below one trained on real images",
                 "vae_augmentation.csv, per_example/", reconstructions_worse),
    ]


# ---------------------------------------------------------------------------------- chapter 3
SSL_RUNS = {"MPL": "mpl", "UDA only": "uda", "supervised only": "supervised",
            "MPL + finetune": "finetune"}


def _first_number(text: str) -> float:
    return float(str(text).split()[0])


def semi_supervised_findings(folder: Path) -> list[Finding]:
    ch = "03_semi_supervised"
    folder = Path(folder)
    seeds = _seeds(folder)

    def accuracies(mean: bool = False) -> dict[str, float]:
        """Top-1 (%) of each method; ``mean``: over the seeds where the run trained several."""
        df = _need(_read(folder, "results"), "results")
        rows = df[df["result"].str.startswith("this run: ")]
        if mean and seeds:
            from .semi_supervised import seed_columns

            rows = rows.assign(**{"top-1 test acc (%)": rows[seed_columns(len(seeds))[0]]})
        return {r.split(": ", 1)[1].split(" (")[0]: v
                for r, v in zip(rows["result"], rows["top-1 test acc (%)"])}

    def mpl_beats_uda():
        a = accuracies(mean=True)
        if not seeds:
            mpl, uda = _correct(folder, [f"ssl-{SSL_RUNS['MPL']}", f"ssl-{SSL_RUNS['UDA only']}"])
            return Margin(I.paired_difference(mpl, uda).scaled(100), "pp", TEST_SAMPLING,
                          f"MPL {a['MPL']:.2f}%, UDA only {a['UDA only']:.2f}%")
        methods = [SSL_RUNS["MPL"], SSL_RUNS["UDA only"]]
        c, resample, covers = _compared(folder, methods, seeds, prefix="ssl-")
        [part] = resample(*_pairs([(c[methods[0]], c[methods[1]])]))
        return Margin(_pct(part), "pp", covers, f"MPL {a['MPL']:.2f}%, UDA only {a['UDA only']:.2f}% "
                      f"(means over {len(seeds)} seeds)")

    def finetune_adds():
        a = accuracies()
        mpl, ft = _correct(folder, [f"ssl-{SSL_RUNS['MPL']}",
                                    f"ssl-{SSL_RUNS['MPL + finetune']}"])
        return Margin(I.paired_difference(ft, mpl).scaled(100), "pp", TEST_SAMPLING,
                      f"MPL {a['MPL']:.2f}% -> MPL + finetune {a['MPL + finetune']:.2f}%")

    def twomoon():
        s = per_example(folder, "twomoon")
        methods = [str(m) for m in s["methods"]]
        acc = s["accuracy"]                       # (methods, seeds)
        mpl = methods.index("Meta Pseudo Labels (student)")
        parts = I.bootstrap(*_pairs([(acc[mpl], acc[i]) for i in range(len(methods))
                                     if i != mpl]))
        return Margin([p.scaled(100) for p in parts], "pp", f"{acc.shape[1]} seeds, each a new "
                      "two-moons draw, labelled points and initialisation (the seeds resampled); "
                      "one part per other method",
                      ", ".join(f"{m} {100 * acc[i].mean():.1f}%" for i, m in enumerate(methods))
                      + f" (mean over {acc.shape[1]} seeds)")

    paper = REFERENCE["ssl_methods"]
    mpl_paper, uda_paper = (_first_number(paper["Meta Pseudo Labels"][0]),
                            _first_number(paper["UDA*"][0]))
    ft = PRESENTED["mpl_log_top1"]
    return [
        _finding(ch, "3.1", f"MPL beats UDA on CIFAR-10-4K (the MPL paper's table: {mpl_paper:g} "
                 f"vs {uda_paper:g})", "results.csv, per_example/", mpl_beats_uda),
        _finding(ch, "3.7", f"Finetuning on the labelled images adds a little (presented "
                 f"{ft['30k steps']:g} -> {ft['30k steps + finetune']:g})",
                 "results.csv, per_example/", finetune_adds),
        _finding(ch, "3.2", "On two moons, MPL draws a more accurate boundary than the other "
                 "methods", "per_example/twomoon.npz", twomoon),
    ]


# ---------------------------------------------------------------------------------- chapter 4
def extras_findings(folder: Path) -> list[Finding]:
    ch = "04_extras"
    folder = Path(folder)

    def rankings_differ_on_raw():
        s = per_example(folder, "normalised_agreement")
        differ = 1.0 - s["raw_same_order"].astype(float)
        iv = I.mean_interval(differ).scaled(100)
        unit = 1.0 - s["normalised_same_order"].astype(float)
        return Margin(iv, "% of queries", "the queries resampled",
                      f"ordered top-10 differs between cosine and Euclidean for "
                      f"{100 * differ.mean():.2f}% of {len(differ):,} queries on raw features, "
                      f"{100 * unit.mean():.2f}% on L2-normalised ones (equal there by identity)")

    def learned_beat_pixels():
        saved = per_example(folder, "retrieval")
        s = dict(zip((str(n) for n in saved["names"]), saved["scores"]))
        learned = [k for k in s if k.startswith("learned|")]
        if not learned:
            raise KeyError("no learned-feature scores")
        pairs = [(k, k.replace("learned|", "raw pixels|", 1)) for k in learned]
        parts = I.bootstrap(*_pairs([(s[a].astype(float), s[b].astype(float))
                                     for a, b in pairs]))
        worst = min(pairs, key=lambda p: s[p[0]].mean() - s[p[1]].mean())
        return Margin([p.scaled(100) for p in parts], "pp", "the queries resampled, the same for "
                      "both feature spaces; one part per (metric, score) pair",
                      f"learned better on {sum(s[a].mean() > s[b].mean() for a, b in pairs)} of "
                      f"{len(pairs)} (metric, score) pairs over {len(s[learned[0]]):,} queries; "
                      f"closest: {worst[0].split('|', 1)[1]} {100 * s[worst[0]].mean():.2f} vs "
                      f"{100 * s[worst[1]].mean():.2f}")

    return [
        _finding(ch, "4.1", "Cosine and Euclidean distance rank neighbours differently on raw "
                 "feature vectors (the slide's X, Y, Z: cosine and Euclidean disagree)",
                 "per_example/normalised_agreement.npz", rankings_differ_on_raw),
        _finding(ch, "4.1", "Learned features retrieve same-class images better than raw pixels "
                 "(P@k, mAP)", "per_example/retrieval.npz", learned_beat_pixels),
    ]


CHECKS = {"01_supervised": supervised_findings, "02_generative": generative_findings,
          "03_semi_supervised": semi_supervised_findings, "04_extras": extras_findings}
COLUMNS = list(Finding.__dataclass_fields__)


def chapter_findings(folder: str | Path, chapter: str) -> pd.DataFrame:
    """Run ``chapter``'s checks on ``folder`` (that chapter's outputs)."""
    if chapter not in CHECKS:
        raise KeyError(f"unknown chapter {chapter!r}; expected one of {list(CHECKS)}")
    return pd.DataFrame([asdict(f) for f in CHECKS[chapter](Path(folder))], columns=COLUMNS)


def findings(profile_dir: str | Path, chapters=None) -> pd.DataFrame:
    """Every finding of ``chapters`` (default all) for the run in ``profile_dir``: each chapter's
    saved ``findings.csv``, or its checks run now where a chapter folder has none."""
    frames = []
    for ch in chapters or CHECKS:
        if ch not in CHECKS:
            raise KeyError(f"unknown chapter {ch!r}; expected one of {list(CHECKS)}")
        saved = Path(profile_dir) / ch / "findings.csv"
        if saved.is_file():
            # empty text stays "", and an item such as 1.10 stays text
            df = pd.read_csv(saved, keep_default_na=False, dtype={"item": str})
            if list(df.columns) == COLUMNS:
                for col in ("estimate", "low", "high"):
                    df[col] = pd.to_numeric(df[col], errors="coerce")
                frames.append(df)
                continue
        frames.append(chapter_findings(Path(profile_dir) / ch, ch))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def count_line(df: pd.DataFrame) -> str:
    """``holds: 5, does not hold: 2, not decided at this scale: 4, not run: 2``."""
    counts = df["verdict"].value_counts()
    return ", ".join(f"{v}: {int(counts.get(v, 0))}" for v in VERDICTS)
