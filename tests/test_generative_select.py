"""Chapter 2's measured sampling choices: DCGAN snapshots (epochs, atomic saves kept across a resume,
the lowest FID chosen) and DDIM's timestep spacing (it reaches the scheduler; the comparison table)."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from lib import augment, batches
from lib import data as D
from lib import params as P
from lib.chapters import generative
from lib.chapters import generative_select as GS
from lib.chapters.supervised import Splits
from lib.evaluate import fid
from lib.methods import dcgan as dcgan_method
from lib.methods import ddpm as ddpm_method
from lib.models import dcgan as dcgan_nets
from lib.models import unet as unet_nets
from lib.train import fit, make_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")


def make_gan(init_seed=0):
    torch.manual_seed(init_seed)
    g, d = dcgan_nets.DCGANGenerator(nz=8, width=8), dcgan_nets.DCGANDiscriminator(width=8)
    dcgan_nets.dcgan_init(g), dcgan_nets.dcgan_init(d)
    opt = lambda m: make_optimizer(m.parameters(), name="adam", lr=2e-4, betas=(0.5, 0.999))  # noqa: E731
    return dcgan_method.DCGAN(g, d, opt(g), opt(d))


def fake_fid(monkeypatch, values):
    """FID replaced by the given values in call order (statistics: 2-d features, no Inception)."""
    it = iter(values)
    monkeypatch.setattr(fid, "statistics", lambda images, **_: fid.Stats.of(
        images.float().flatten(1)[:, :2].numpy()))
    monkeypatch.setattr(fid, "frechet_distance", lambda a, b: next(it))


REFERENCE = fid.Stats(np.zeros(2), np.eye(2), 30)


@pytest.mark.parametrize("epochs, k, expected", [(200, 5, [40, 80, 120, 160, 200]), (8, 3, [3, 5, 8]),
                                                 (2, 2, [1, 2]), (1, 2, [1]), (7, 1, [7])])
def test_snapshot_epochs_are_evenly_spaced_and_end_with_the_last(epochs, k, expected):
    assert GS.snapshot_epochs(epochs, k) == expected
    with pytest.raises(ValueError, match="dcgan_snapshots"):
        GS.snapshot_epochs(epochs, 0)


def test_snapshots_are_saved_at_their_epochs_and_a_resumed_run_has_the_same_ones(tmp_path):
    ds = D.make_synthetic(64, 4)
    loader = batches.BatchLoader(ds.train_x, ds.train_y, batch_size=16, padding=0,
                                 normalize_fn=augment.to_signed, seed=0)
    kw = dict(total_steps=12, steps_per_epoch=4, eval_every=4, device="cpu", seed=0)
    epochs = GS.snapshot_epochs(3, 2)
    assert epochs == [2, 3]

    def run(folder, gan, **extra):
        hook = GS.snapshot_hook(gan, folder, epochs=epochs, steps_per_epoch=4)
        return fit(gan, loader.forever, ckpt_dir=folder, evaluate=hook, **kw, **extra)

    gan = make_gan(0)
    full = run(tmp_path / "a", gan)
    saved = sorted(p.name for p in (tmp_path / "a" / GS.SNAPSHOT_FOLDER).iterdir())
    assert saved == ["generator-epoch0002.pt", "generator-epoch0003.pt"]
    last = GS.load_snapshot(make_gan(1), GS.snapshot_path(tmp_path / "a", 3))
    assert last["step"] == 12 and all(torch.equal(v, gan.G.state_dict()[k])
                                      for k, v in last["generator"].items())

    assert not run(tmp_path / "b", make_gan(0), stop_after=9).finished  # killed after epoch 2
    resumed = run(tmp_path / "b", make_gan(123))
    assert resumed.finished
    cols = ["step", "train_loss_d", "train_loss_g"]
    assert resumed.history[cols].equals(full.history[cols])
    for epoch in epochs:
        a = GS.load_snapshot(make_gan(1), GS.snapshot_path(tmp_path / "a", epoch))
        b = GS.load_snapshot(make_gan(1), GS.snapshot_path(tmp_path / "b", epoch))
        assert a["step"] == b["step"] == 4 * epoch
        assert all(torch.equal(v, b["generator"][k]) for k, v in a["generator"].items()), epoch


def test_the_lowest_fid_snapshot_is_chosen_and_loaded(tmp_path, monkeypatch):
    gan = make_gan(0)
    for epoch in (1, 2, 3):  # three different generators
        torch.manual_seed(epoch)
        for p in gan.G.parameters():
            p.data.normal_(0, 0.1)
        gan.steps.value = 5 * epoch
        GS.snapshot_hook(gan, tmp_path, epochs=[epoch], steps_per_epoch=5)()
    trained = SimpleNamespace(settings={"epochs": 3, "snapshots": 3}, checkpoint=tmp_path / "last.pt",
                              method=gan, note="",
                              sample=lambda n, *, seed=0: gan.sample(n, batch_size=n, seed=seed))
    fake_fid(monkeypatch, [50.0, 30.0, 40.0])
    params = {"fid_images": 6, "seed": 0, "fid_batch_size": 6}
    df = GS.choose_snapshot(trained, REFERENCE, params)
    assert list(df.columns) == ["epoch", "step", "FID (train stats)", "images scored", "reference images",
                                "chosen"]
    assert df["epoch"].tolist() == [1, 2, 3] and df["step"].tolist() == [5, 10, 15]
    assert df["chosen"].tolist() == ["no", "yes", "no"]
    assert df.loc[df["chosen"] == "yes", "FID (train stats)"].item() == df["FID (train stats)"].min()
    chosen = torch.load(GS.snapshot_path(tmp_path, 2), weights_only=True)["generator"]
    assert all(torch.equal(v, gan.G.state_dict()[k]) for k, v in chosen.items())
    assert trained.note.startswith("epoch 2 of 3")
    assert (df["images scored"] == 6).all() and (df["reference images"] == 30).all()


def tiny_ddpm():
    torch.manual_seed(0)
    unet = unet_nets.build_unet(channels=8, multipliers=(1, 2), layers_per_block=1,
                                attention_resolutions=(16,), dropout=0.0)
    return ddpm_method.DDPM(unet, torch.optim.Adam(unet.parameters()), num_timesteps=20)


def test_ddim_spacing_reaches_the_scheduler_and_changes_the_samples():
    cfg = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02)
    lead = ddpm_method.make_scheduler("ddim", 10, spacing="leading", **cfg).timesteps.tolist()
    trail = ddpm_method.make_scheduler("ddim", 10, spacing="trailing", **cfg).timesteps.tolist()
    assert lead == list(range(900, -1, -100)) and trail == list(range(999, 0, -100))
    with pytest.raises(ValueError, match="spacing"):
        ddpm_method.make_scheduler("ddim", 10, spacing="linspace", **cfg)
    ddpm = tiny_ddpm()
    a, _ = ddpm.sample(2, sampler="ddim", steps=3, spacing="leading", batch_size=2)
    b, _ = ddpm.sample(2, sampler="ddim", steps=3, spacing="trailing", batch_size=2)
    assert not torch.equal(a, b)


def test_ddim_comparison_reuses_the_main_row_and_scores_each_other_pair(monkeypatch):
    ddpm, calls = tiny_ddpm(), []

    def sample(n, **kw):
        calls.append(kw)
        return ddpm.sample(n, batch_size=n, **kw)

    params = {"fid_images": 4, "seed": 0, "fid_batch_size": 4, "ddpm_ddim_steps": 4,
              "ddpm_ddim_spacing": "leading",
              "ddpm_ddim_compare": [["trailing", 4], ["leading", 4], ["trailing", 2], ["trailing", 2]]}
    main = generative.Samples(GS.ddim_label(4, "leading"), "ddpm", "DDIM", torch.zeros(4, 3, 32, 32,
                              dtype=torch.uint8), 2.0)
    table = pd.DataFrame({"model": [main.label], "FID": [12.5]})
    fake_fid(monkeypatch, [20.0, 30.0])
    df = GS.ddim_comparison(SimpleNamespace(method=ddpm, sample=sample), {main.label: main}, table,
                            REFERENCE, params)
    assert list(df.columns) == ["sampler", "spacing", "steps", "timesteps", "FID", "images",
                                "reference images", "s / image", "main FID row"]
    assert list(zip(df["spacing"], df["steps"])) == [("leading", 4), ("trailing", 4), ("trailing", 2)]
    assert df["FID"].tolist() == [12.5, 20.0, 30.0] and df["main FID row"].tolist() == ["yes", "no", "no"]
    assert df["s / image"].iloc[0] == 0.5 and (df["images"] == 4).all()
    assert [(c["spacing"], c["steps"]) for c in calls] == [("trailing", 4), ("trailing", 2)]
    assert df["timesteps"].tolist() == ["15, 10, ..., 0", "19, 14, ..., 4", "19, 9"]


def test_a_sample_smaller_than_fid_images_is_reported_as_a_timing_sample():
    x = torch.zeros(3, 3, 32, 32, dtype=torch.uint8)
    samples = {"a": generative.Samples("a", "ddpm", "ancestral", x, 3.0),
               "b": generative.Samples("b", "ddpm", "DDIM", torch.cat([x] * 2), 3.0)}
    df = generative.sampling_times(samples, fid_images=5).set_index("model / sampler")
    assert df.loc["a", "FID-scored"].startswith("no: timing sample (3 < fid_images 5)")
    assert df.loc["b", "FID-scored"] == "yes" and df.loc["a", "s / image"] == 1.0


@pytest.mark.parametrize("profile, epochs, pairs", [
    ("smoke", [1, 2], [("leading", 10), ("trailing", 10)]),
    ("quick", [4, 8], [("leading", 25), ("trailing", 25)]),
    *[(full, [40, 80, 120, 160, 200], [("leading", 100), ("trailing", 100), ("leading", 20), ("trailing", 20)])
      for full in ("full", "full-long")]])
def test_each_profile_scores_these_dcgan_snapshots_and_ddim_settings(profile, epochs, pairs):
    p = P.load("02_generative", profile)
    assert GS.snapshot_epochs(p["dcgan_epochs"], p["dcgan_snapshots"]) == epochs
    assert GS.ddim_pairs(p) == pairs  # the main pair first and once, though the compare list names it too
    if profile == "full":  # the params' cost: 5,000 images x (100 + 20 + 20) extra U-Net forwards
        assert sum(steps for _, steps in pairs[1:]) * p["fid_images"] == 700_000
        assert p["ddpm_ancestral_images"] < p["fid_images"]  # a timing sample, not FID-scored


class Handed(Exception):
    """What chapter 2 handed the training loop, raised in place of training."""


def test_ddpm_sampling_settings_do_not_key_its_checkpoint_folder(monkeypatch, tmp_path):
    def stop(*_, ckpt_dir, **__):
        raise Handed(ckpt_dir)

    monkeypatch.setattr(generative, "train_and_test", stop)
    ds = D.make_synthetic(80, 10)
    x, y = ds.train_x, ds.train_y
    splits = Splits(x[:60], y[:60], x[60:], y[60:], ds.test_x, ds.test_y, source="synthetic")

    def folder(**changed):
        p = P.load("02_generative", "smoke", {"data": "synthetic", "device": "cpu", **changed})
        with pytest.raises(Handed) as got:
            generative.train_generator("ddpm", splits, p, ckpt_root=tmp_path)
        return got.value.args[0]

    base = folder()
    sampling = {"ddpm_ddim_steps": 7, "ddpm_ddim_spacing": "trailing", "ddpm_ddim_compare": [["trailing", 3]],
                "ddpm_ancestral_images": 3, "ddpm_ancestral_steps": 9, "ddpm_channels_last": True}
    assert set(sampling) == {f"ddpm_{k}" for k in generative.SAMPLING_SETTINGS}
    for key, value in sampling.items():  # a changed sampler reuses the trained DDPM
        assert folder(**{key: value}) == base, key
    for key, value in {"ddpm_lr": 1e-3, "ddpm_epochs": 2.0, "ddpm_dropout": 0.2}.items():  # retrains
        assert folder(**{key: value}) != base, key
