"""Chapter 1's Cutout (DeVries & Taylor): one square per image at a drawn centre, clipped at the border, set to
the data mean; drawn per epoch by the BatchLoader, so batches stay a function of (seed, step)."""
import pytest
import torch

from lib.augment import MEAN, Cutout
from lib.batches import BatchLoader
from lib.chapters import supervised
from lib import params as P


def test_a_square_of_the_given_side_at_the_centre_clipped_at_the_border():
    x = torch.zeros(3, 3, 32, 32, dtype=torch.uint8)
    out = Cutout(16)(x, torch.tensor([[16, 16], [0, 0], [31, 5]]))
    fill = torch.tensor([round(255 * m) for m in MEAN], dtype=torch.uint8)
    cut = (out != 0).all(dim=1)  # (B, H, W): pixels set to the (non-zero) mean
    assert cut[0].sum() == 256 and cut[0, 8:24, 8:24].all()       # [c - 8, c + 8) in both directions
    assert cut[1].sum() == 64 and cut[1, :8, :8].all()            # clipped at the top-left corner
    assert cut[2].sum() == 9 * 13 and cut[2, :13, 23:].all()      # x 23..31, y 0..12
    assert (out[0, :, 16, 16] == fill).all()
    assert (out[~cut[:, None].expand_as(out)] == 0).all()         # every other pixel untouched


def test_the_loader_draws_cutout_per_epoch_deterministically():
    x = torch.full((64, 3, 32, 32), 255, dtype=torch.uint8)
    y = torch.zeros(64, dtype=torch.long)

    def first(seed):
        loader = BatchLoader(x, y, batch_size=16, seed=seed, padding=0, strong=Cutout(16),
                             normalize_fn=lambda b: b)
        return next(loader.forever())[0]

    a, b, c = first(0), first(0), first(1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    cut = (a != 255).all(dim=1).flatten(1).sum(1)
    assert ((cut >= 64) & (cut <= 256)).all()  # every image has its square (clipped or not)


class Handed(Exception):
    """What chapter 1 handed the training loop, raised in place of training."""


def first_batch_and_steps(monkeypatch, tmp_path, profile, recipe_name, model="resnet18"):
    """The first training batch chapter 1 feeds ``model`` under ``recipe_name`` of ``profile``, on 600
    white images (so the mean-filled square shows as ~0 after normalisation), and its total steps."""
    def stop(method, batches, *, total_steps, **_):
        raise Handed(next(batches(0))[0], total_steps)

    monkeypatch.setattr(supervised, "train_and_test", stop)
    p = P.load("01_supervised", profile, {"data": "synthetic", "device": "cpu", "width": 0.125})
    white, y = torch.full((600, 3, 32, 32), 255, dtype=torch.uint8), torch.arange(600) % 10
    splits = supervised.Splits(white, y, white[:10], y[:10], white[:10], y[:10], source="white")
    with pytest.raises(Handed) as got:
        supervised.train_classifier(model, splits, p, ckpt_root=tmp_path, recipe_name=recipe_name)
    return got.value.args


def cut_pixels(batch):
    """Pixels per image at the normalised mean in all three channels: those Cutout covered."""
    return (batch.abs() < 0.02).all(dim=1).flatten(1).sum(1)


def test_the_full_strong_recipe_trains_on_cut_out_images_and_the_others_do_not(monkeypatch, tmp_path):
    full = P.load("01_supervised", "full")
    side = supervised.recipe(full, "strong")["cutout"]
    assert side == 16
    batch, steps = first_batch_and_steps(monkeypatch, tmp_path, "full", "strong")
    cut = cut_pixels(batch)
    # one square per image, clipped at the border or whole (16 x 16)
    assert ((cut >= side * side // 4) & (cut <= side * side)).all() and cut.max() == side * side
    assert steps == 60 * (600 // 512)  # resnet18's own 60 epochs (model_epochs) of full batches
    assert first_batch_and_steps(monkeypatch, tmp_path, "full", "strong", "resnet50")[1] == 40
    for profile, recipe_name in (("full", "presented"), ("quick", "strong")):
        batch, _ = first_batch_and_steps(monkeypatch, tmp_path, profile, recipe_name)
        assert (cut_pixels(batch) == 0).all(), (profile, recipe_name)
