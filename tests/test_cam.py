"""CAM library: CAM is the class-weighted sum of the last feature map; it agrees with Grad-CAM; overlays and figure."""
import matplotlib
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lib.evaluate import cam
from lib.models import build_model

matplotlib.use("Agg")
NAMES = ("resnet18", "drn_c_26", "drn_d_22", "efficientnet_b0")


def _model(name):
    torch.manual_seed(0)
    return build_model(name, width=0.125).eval()


def test_head_weights_handles_linear_and_pointwise_conv():
    class M(nn.Module):
        def __init__(self, head):
            super().__init__()
            self.classifier = head

    lin, conv = nn.Linear(6, 3), nn.Conv2d(6, 3, 1)
    assert torch.equal(cam.head_weights(M(lin)), lin.weight)
    assert torch.equal(cam.head_weights(M(conv)), conv.weight[:, :, 0, 0])
    with pytest.raises(TypeError, match="nn.Linear or a 1x1 nn.Conv2d"):
        cam.head_weights(M(nn.Conv2d(6, 3, 3)))


@pytest.mark.parametrize("name", NAMES)
def test_cam_is_the_class_weighted_sum_of_the_last_feature_map(name):
    model = _model(name)
    x = torch.randn(3, 32, 32)
    c = 4
    raw = cam.class_activation_map(model, x, c, upsample=False, normalize=False)
    with torch.no_grad():
        f = model.features(x[None])[0]
        logits = model(x[None])[0]
    w = cam.head_weights(model)
    hand = torch.zeros(f.shape[1:])
    for k in range(f.shape[0]):
        hand += w[c, k] * f[k]
    assert raw.shape == f.shape[1:] and torch.allclose(raw, hand, atol=1e-5)
    # Zhou et al.: the class score is the spatial mean of its CAM plus the bias
    assert torch.allclose(raw.mean() + model.classifier.bias[c], logits[c], atol=1e-4)
    full = cam.class_activation_map(model, x, c)
    assert full.shape == (32, 32) and full.min() == 0 and full.max() == 1
    up = F.interpolate(hand[None, None], size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
    assert torch.allclose(full, (up - up.min()) / (up.max() - up.min()), atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_cam_agrees_with_grad_cam_for_a_gap_linear_head(name):
    model = _model(name)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        pred = model(x).argmax(1)
    raw = cam.class_activation_map(model, x, pred, upsample=False, normalize=False)
    assert (raw.amax(dim=(1, 2)) > 0).all()  # Grad-CAM keeps only the positive part: make sure there is one
    up = F.interpolate(raw.clamp_min(0)[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    mine = (up - up.amin((1, 2), keepdim=True)) / (up.amax((1, 2), keepdim=True) - up.amin((1, 2), keepdim=True))
    theirs = cam.grad_cam(model, x, pred)
    assert theirs.shape == (2, 32, 32)
    for a, b in zip(mine, theirs):
        assert np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1] > 0.999
    assert torch.allclose(mine, theirs, atol=1e-3)
    assert all(p.grad is None for p in model.parameters())


def test_activation_map_is_the_channel_mean_at_the_networks_resolution():
    model = _model("drn_d_22")
    x = torch.randn(2, 3, 32, 32)
    raw = cam.activation_map(model, x, upsample=False, normalize=False)
    with torch.no_grad():
        assert torch.allclose(raw, model.features(x).mean(1), atol=1e-6)
    assert raw.shape == (2, 8, 8)
    full = cam.activation_map(model, x[0])
    assert full.shape == (32, 32) and full.min() == 0 and full.max() == 1


def test_maps_restore_training_mode_and_check_inputs():
    model = _model("resnet18").train()
    x = torch.randn(2, 3, 32, 32)
    assert cam.class_activation_map(model, x, [1, 2]).shape == (2, 32, 32)
    assert cam.grad_cam(model, x[0], 1).shape == (32, 32)
    assert model.training
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        cam.class_activation_map(model, torch.randn(32, 32), 0)
    with pytest.raises(ValueError, match="one per image"):
        cam.class_activation_map(model, x, [0, 1, 2])
    with pytest.raises(ValueError, match="out of range"):
        cam.class_activation_map(model, x, 10)


def test_overlay_is_an_rgb_float_image():
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    m = torch.zeros(32, 32)
    m[8:16, 8:16] = 1
    out = cam.overlay(img, m)
    assert out.shape == (32, 32, 3) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    hot, cold = out[12, 12], out[0, 0]
    base = img.permute(1, 2, 0).numpy() / 255
    assert np.allclose(hot, 0.5 * base[12, 12] + 0.5 * np.array([0.5, 0, 0]), atol=0.01)  # jet(1) = dark red
    assert np.allclose(cold, 0.5 * base[0, 0] + 0.5 * np.array([0, 0, 0.5]), atol=0.01)   # jet(0) = dark blue
    with pytest.raises(ValueError, match="does not match"):
        cam.overlay(img, torch.zeros(8, 8))
    with pytest.raises(ValueError, match="uint8"):
        cam.overlay(img.float(), m)


def test_cam_rows_and_figure():
    import matplotlib.pyplot as plt

    model = _model("drn_c_26")
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    from lib.augment import normalize

    rows, titles = cam.cam_rows(model, normalize(images), labels=torch.tensor([5, 0, 1]), wrong_class=0)
    assert list(rows) == ["CAM (predicted class)", "CAM (wrong class)", "Grad-CAM (predicted class)"]
    assert all(r.shape == (3, 32, 32) for r in rows.values())
    assert titles[0].startswith("true: dog\npred: ") and titles[0].endswith("wrong: airplane")
    fig = cam.cam_figure(images, rows, titles)
    assert len(fig.axes) == 4 * 3 and fig.axes[0].get_ylabel() == "Input image"
    plt.close(fig)
    with pytest.raises(ValueError, match="2 maps for 3 images"):
        cam.cam_figure(images, {"CAM": rows["CAM (wrong class)"][:2]})


def test_central_share_of_known_maps():
    centre = torch.zeros(1, 8, 8)
    centre[0, 2:6, 2:6] = 1.0
    corner = torch.zeros(1, 8, 8)
    corner[0, 0, 0] = 1.0
    uniform = torch.ones(1, 8, 8)
    shares = cam.central_share(torch.cat([centre, corner, uniform]))
    torch.testing.assert_close(shares, torch.tensor([1.0, 0.0, 0.25]))


def test_focus_shares_per_image_and_their_table():
    torch.manual_seed(0)
    model = build_model("resnet18", width=0.125).eval()
    x = torch.randn(6, 3, 32, 32)
    shares = cam.focus_shares(model, x, batch_size=4, seed=3)
    logits = model(x)
    expected = cam.central_share(cam.class_activation_map(model, x, logits.argmax(1)))
    torch.testing.assert_close(shares["predicted"], expected, atol=1e-5, rtol=1e-5)
    least = cam.central_share(cam.class_activation_map(model, x, logits.argmin(1)))
    torch.testing.assert_close(shares["least_likely"], least, atol=1e-5, rtol=1e-5)
    # the random wrong class is never the predicted one, and is the same for the same seed
    again = cam.focus_shares(model, x, batch_size=4, seed=3)
    torch.testing.assert_close(again["random_wrong"], shares["random_wrong"])
    assert not torch.allclose(shares["random_wrong"], shares["predicted"])
    df = cam.focus_table(shares).set_index("CAM of")
    assert list(df.index) == ["predicted class", "least likely class",
                              "a random wrong class (seeded)"]
    assert df["images"].tolist() == [6, 6, 6] and (df["uniform map (%)"] == 25.0).all()
    col = df["mean share of the map in the central box (%)"]
    assert col["predicted class"] == pytest.approx(100 * expected.mean().item(), abs=0.01)


def test_random_wrong_class_is_uniform_over_the_other_classes(monkeypatch):
    seen = []
    real = cam.class_activation_map

    def spy(model, x, idx):
        seen.append(idx.clone())
        return real(model, x, idx)

    monkeypatch.setattr(cam, "class_activation_map", spy)
    model = build_model("resnet18", width=0.125).eval()
    x = torch.randn(400, 3, 32, 32) * 0.01
    cam.focus_shares(model, x, batch_size=400, seed=0)
    pred, wrong = seen[0], seen[2]
    assert (wrong != pred).all()
    counts = torch.bincount(wrong, minlength=10)
    assert counts.sum() == 400 and (counts > 0).sum() >= 9  # spread over the other classes
