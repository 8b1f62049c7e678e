"""Chapter 1's Cutout (DeVries & Taylor): one square per image at a drawn centre, clipped at the border, set to
the data mean; drawn per epoch by the BatchLoader, so batches stay a function of (seed, step)."""
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


def test_cutout_is_a_recipe_key_on_in_the_full_profile_only():
    p = P.load("01_supervised", "full")
    assert supervised.recipe(p, "strong")["cutout"] == 16 and supervised.recipe(p, "presented")["cutout"] == 0
    assert supervised.model_epochs(p, "resnet18") == 60 and supervised.model_epochs(p, "resnet50") == 40
    assert supervised.recipe(P.load("01_supervised", "quick"), "strong")["cutout"] == 0
    assert "resnet18 60" in supervised.recipe_runs(p)["strong"]
