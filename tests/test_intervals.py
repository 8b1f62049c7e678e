"""The statistics behind every interval: each against a reference (scikit-learn, pytorch-fid, the
binomial closed form) on small hand-made data."""
import numpy as np
import pytest
import torch

from lib.evaluate import intervals as I
from lib.evaluate.fid import Stats, frechet_distance


def test_mean_interval_matches_the_normal_approximation_of_a_proportion():
    correct = np.r_[np.ones(800), np.zeros(200)]
    iv = I.mean_interval(correct, resamples=2000)
    half = 1.96 * np.sqrt(0.8 * 0.2 / 1000)
    assert iv.estimate == 0.8
    assert iv.low == pytest.approx(0.8 - half, abs=0.006)
    assert iv.high == pytest.approx(0.8 + half, abs=0.006)


def test_pairing_narrows_the_interval_of_a_difference():
    rng = np.random.default_rng(0)
    a = rng.random(2000) < 0.7
    b = a.copy()
    b[rng.choice(2000, 40, replace=False)] ^= True   # b differs from a on 2% of the images
    paired = I.paired_difference(a, b)
    unpaired = I.bootstrap((a.astype(float), b.astype(float)),
                           lambda x, y, axis: x.mean(axis) - y.mean(axis), paired=False)[0]
    assert paired.high - paired.low < 0.3 * (unpaired.high - unpaired.low)
    assert paired.low <= paired.estimate <= paired.high


def test_the_same_seed_gives_the_same_interval():
    x = np.random.default_rng(0).random(500)
    assert I.mean_interval(x, seed=3) == I.mean_interval(x, seed=3)
    assert I.mean_interval(x, seed=3) != I.mean_interval(x, seed=4)


def test_report_metrics_equal_scikit_learns_classification_report():
    from sklearn.metrics import classification_report

    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 3000)
    pred = np.where(rng.random(3000) < 0.7, y, rng.integers(0, 10, 3000))
    ours = dict(zip(I.report_metric_names(range(10)), I.report_metrics(y, pred)))
    rep = classification_report(y, pred, output_dict=True, zero_division=0)
    for c in range(10):
        for m, key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert ours[f"{c}/{m}"] == pytest.approx(rep[str(c)][key])
    assert ours["accuracy"] == pytest.approx(rep["accuracy"])
    for avg in ("macro avg", "weighted avg"):
        assert ours[f"{avg}/f1"] == pytest.approx(rep[avg]["f1-score"])
        assert ours[f"{avg}/precision"] == pytest.approx(rep[avg]["precision"])
    recalls = I.class_recalls(y, pred == y)
    assert recalls == pytest.approx([rep[str(c)]["recall"] for c in range(10)])


def test_macro_auc_equals_scikit_learn_with_ties_and_weights():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 600)
    p = rng.dirichlet(np.ones(10), size=(3, 600))
    p = np.round(p, 2)                           # ties, as float16 or rounded scores have
    p = p / p.sum(-1, keepdims=True)
    auc = I.MacroAUC(y, p)
    for k in range(3):
        expected = roc_auc_score(y, p[k], multi_class="ovr", average="macro")
        assert auc()[k] == pytest.approx(expected)
    w = rng.integers(0, 3, 600)
    expected = roc_auc_score(y, p[1], multi_class="ovr", average="macro", sample_weight=w)
    assert auc(w)[1] == pytest.approx(expected)
    # a resample's weights: how often each image was drawn
    idx = np.array([[0, 0, 2], [1, 2, 2]])
    assert I.resampled_weights(idx, 3).tolist() == [[2, 0, 1], [0, 1, 2]]
    ivs = auc.intervals(resamples=200)
    assert [iv.estimate for iv in ivs] == pytest.approx(list(auc()))
    assert all(iv.low < iv.estimate < iv.high for iv in ivs)


@pytest.mark.parametrize("n", [40, 300])   # fewer and more images than feature dimensions
def test_fid_replicates_equal_pytorch_fid_on_the_same_resample(n):
    rng = np.random.default_rng(0)
    d = 64
    reference = Stats.of(rng.normal(size=(500, d)))
    feats = rng.normal(size=(n, d)) * 1.3 + 0.2
    reps = I.fid_replicates(feats, reference, resamples=2, seed=5)
    gen = torch.Generator().manual_seed(5)
    for r in reps:
        idx = torch.randint(n, (n,), generator=gen).numpy()
        assert r == pytest.approx(frechet_distance(Stats.of(feats[idx]), reference), rel=1e-6)


def test_centred_interval_keeps_the_replicates_spread_around_the_estimate():
    reps = 10 + np.random.default_rng(0).normal(0, 1, 4000)   # inflated by 10 over the estimate
    iv = I.replicate_interval(0.0, reps)
    assert iv.low == pytest.approx(-1.96, abs=0.1) and iv.high == pytest.approx(1.96, abs=0.1)
    pct = I.replicate_interval(0.0, reps, method="percentile")
    assert pct.low > 7
    with pytest.raises(ValueError, match="unknown interval method"):
        I.replicate_interval(0.0, reps, method="bca")


def test_verdict_all_reads_every_part():
    up, down, tie = I.Interval(1, 0.5, 1.5), I.Interval(-1, -1.5, -0.5), I.Interval(0, -1, 1)
    assert I.verdict_all([up, up]) == I.HOLDS
    assert I.verdict_all([up, tie]) == I.UNDECIDED
    assert I.verdict_all([up, down]) == I.FAILS
    assert I.verdict_all([]) == I.UNDECIDED


def test_chapter_2_fid_replicates_follow_the_compared_rows():
    import pandas as pd

    from lib.chapters import generative as G

    rng = np.random.default_rng(0)
    reference = Stats.of(rng.normal(size=(200, 16)))
    scored = {lb: Stats.of(rng.normal(size=(50, 16)) + shift)
              for lb, shift in (("VAE", 1.0), ("DCGAN", 0.5), ("DDPM, DDIM 10 steps", 0.1))}
    fid = pd.DataFrame({"model": list(scored), "FID": [round(frechet_distance(s, reference), 2)
                                                       for s in scored.values()]})
    samples = {lb: G.Samples(lb, kind, "sampler", torch.zeros(50, 3, 32, 32, dtype=torch.uint8), 1.0)
               for lb, kind in zip(scored, ("vae", "dcgan", "ddpm"))}
    params = {"fid_bootstrap_resamples": 40, "seed": 0}
    saved = G.fid_replicates(scored, fid, samples, {"reference": reference}, params)
    assert saved["labels"].tolist() == list(scored) and saved["replicates"].shape == (3, 40)
    assert saved["compared"].tolist() == ["DCGAN", "DDPM, DDIM 10 steps"]
    ivs = G.fid_intervals(saved)
    for lb, value in zip(fid["model"], fid["FID"]):
        assert ivs[lb].estimate == value and ivs[lb].low < value < ivs[lb].high
    assert G.compared_fids(fid, samples)["ddpm"][2] == "DDPM, DDIM 10 steps"


def test_an_interval_rounded_to_a_tables_precision_still_holds_the_value_shown():
    iv = I.Interval(0.1111, 0.1111, 0.1111).rounded(3)  # degenerate: every resample gave 1/9
    assert (iv.estimate, iv.low, iv.high) == (0.111, 0.111, 0.112)
    iv = I.Interval(0.5004, 0.4517, 0.5491).rounded(3)
    assert (iv.estimate, iv.low, iv.high) == (0.5, 0.451, 0.55)


# ------------------------------------------------------------------ two levels: seeds and test images
def mean(c, axis):
    return c.mean(axis)


def test_seeds_without_spread_give_the_one_level_bootstrap_exactly():
    rng = np.random.default_rng(1)
    a, b = (rng.random(2000) < 0.8).astype(float), (rng.random(2000) < 0.7).astype(float)
    # three seeds that agree on every image: resampling them changes nothing
    assert I.seeds_bootstrap((np.stack([a, a, a]),), mean) == [I.mean_interval(a)]
    assert I.seeds_bootstrap((np.stack([a, a]), np.stack([b, b, b])),
                             lambda x, y, axis: x.mean(axis) - y.mean(axis)) == \
        [I.paired_difference(a, b)]


def test_rows_constant_over_the_images_give_the_bootstrap_over_seeds():
    # seed 0 gets every image wrong, seed 1 every one right: the mean of two seeds drawn with
    # replacement is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4, so its 95% interval is [0, 1]
    [iv] = I.seeds_bootstrap((np.stack([np.zeros(300), np.ones(300)]),), mean)
    assert (iv.estimate, iv.low, iv.high) == (0.5, 0.0, 1.0)


def test_spread_between_seeds_widens_the_interval():
    rng = np.random.default_rng(2)
    x = (rng.random(1000) < 0.8).astype(float)
    flip = rng.random((4, 1000))
    close = np.stack([np.where(f < 0.01, 1 - x, x) for f in flip])     # seeds differ on 1%
    apart = np.stack([np.where(f < 0.01 + 0.1 * i, 1 - x, x) for i, f in enumerate(flip)])  # up to 31%
    one = I.mean_interval(x)
    [near] = I.seeds_bootstrap((close,), mean)
    [far] = I.seeds_bootstrap((apart,), mean)
    width = one.high - one.low
    assert abs((near.high - near.low) - width) < 0.2 * width
    assert far.high - far.low > 2 * width
    assert far.estimate == pytest.approx(apart.mean()) and far.low <= far.estimate <= far.high
    assert I.seeds_bootstrap((apart,), mean) == [far]  # seeded: the same interval again
    assert I.seeds_bootstrap((apart,), mean, seed=1) != [far]


def test_seeds_bootstrap_rejects_samples_that_are_not_seeds_by_items():
    with pytest.raises(ValueError, match=r"\(seeds, items\)"):
        I.seeds_bootstrap((np.ones(10),), mean)
    with pytest.raises(ValueError, match="same items"):
        I.seeds_bootstrap((np.ones((2, 10)), np.ones((2, 11))), lambda x, y, axis: x.mean(axis))
