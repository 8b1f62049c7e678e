"""Chapter-1 model registry: DRN-A-18 / B-26 / C-26 / D-22 structure and sizes, EfficientNet-B0
adaptations, feature maps."""
import pytest
import torch
import torch.nn as nn

from lib import augment
from lib import data as D
from lib.models import MODELS, EfficientNetB0, build_model, count_parameters, drn

# full-width parameter counts, 10 classes: the ResNets are kuangliu/pytorch-cifar's (the reference table's
# code); DRN-D-22 is the paper's ImageNet model (16,393,752) with a 10-way classifier; the other DRNs and
# EfficientNet-B0 are derived in the tests below. DRN-B-26 and C-26 differ in skips only, not in weights.
CHAPTER1 = {"resnet18": 11_173_962, "resnet34": 21_282_122, "resnet50": 23_520_842, "resnet101": 42_512_970,
            "drn_a_18": 11_181_642, "drn_b_26": 20_618_714, "drn_c_26": 20_618_714,
            "drn_d_22": 16_393_752 - 1000 * 513 + 10 * 513, "efficientnet_b0": 4_020_358}


@pytest.mark.parametrize("name", CHAPTER1)
def test_each_chapter1_name_builds_the_network_of_its_known_size(name):
    assert count_parameters(build_model(name)) == CHAPTER1[name]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_trains_and_exposes_its_features(name):
    torch.manual_seed(0)
    model = build_model(name, width=0.125)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10)
    out.sum().backward()
    unused = {n for n, p in model.named_parameters() if p.grad is None}
    # the reference WRN's (MPL-pytorch) shape-changing blocks of groups 2 and 3 leave their first BN unused
    assert unused == ({f"block{g}.0.bn1.{w}" for g in (2, 3) for w in ("weight", "bias")} if name == "wrn28_2"
                      else set())
    # cam_layer is the module whose output is features(x): Grad-CAM hooks it
    seen = []
    handle = model.cam_layer.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    model.eval()
    with torch.no_grad():
        feats = model.features(x)
    handle.remove()
    assert torch.equal(seen[-1], feats)
    assert feats.shape[1] == model.classifier.in_features and model.classifier.out_features == 10


@pytest.mark.parametrize("name,size", [("resnet18", 4), ("resnet34", 4), ("resnet50", 4), ("resnet101", 4),
                                       ("drn_a_18", 8), ("drn_b_26", 8), ("drn_c_26", 8),
                                       ("drn_d_22", 8), ("efficientnet_b0", 2)])
def test_last_feature_map_size_for_32x32_inputs(name, size):
    model = build_model(name, width=0.125).eval()
    with torch.no_grad():
        feats = model.features(torch.randn(1, 3, 32, 32))
    assert feats.shape[-2:] == (size, size)


def test_drn_imagenet_configurations_have_the_papers_parameter_counts():
    c26 = count_parameters(drn.drn_c_26(num_classes=1000, imagenet=True))
    d22 = count_parameters(drn.drn_d_22(num_classes=1000, imagenet=True))
    assert c26 == pytest.approx(21.1e6, rel=0.01) and d22 == pytest.approx(16.4e6, rel=0.01)
    assert (c26, d22) == (21_126_584, 16_393_752)
    # the CIFAR adaptation changes strides only: same weights apart from the 10-way classifier
    assert count_parameters(build_model("drn_c_26")) == c26 - 1000 * 513 + 10 * 513


def _conv(cin, cout, k):
    return cin * cout * k * k


def _block(cin, cout):
    """Weights of a BasicBlock: two 3x3 convs + BNs, and a 1x1 conv + BN on the skip when the
    channels change (every such block here also changes channels)."""
    projection = _conv(cin, cout, 1) + 2 * cout if cin != cout else 0
    return _conv(cin, cout, 3) + _conv(cout, cout, 3) + 4 * cout + projection


def _levels(stem, channels, blocks, classes):
    total = _conv(3, stem, 7) + 2 * stem
    cin = stem
    for c, n in zip(channels, blocks):
        total += _block(cin, c) + (n - 1) * _block(c, c)
        cin = c
    return total + cin * classes + classes  # the classifier (1x1 conv with bias)


def test_drn_a_18_and_drn_b_26_parameter_counts():
    # counted from the architecture (paper Fig. 4, reference drn.py): DRN-A-18 is ResNet-18's
    # 7x7 stem and 4 groups of 2 BasicBlocks (64-512 channels); DRN-B-26 is DRN-C-26's 16-channel
    # stem and 8 levels (16, 32, ..., 512) of (1, 1, 2, 2, 2, 2, 1, 1) BasicBlocks
    a18 = _levels(64, (64, 128, 256, 512), (2, 2, 2, 2), 10)
    b26 = _levels(16, drn.CHANNELS, drn.LAYERS, 10)
    assert (a18, b26) == (11_181_642, 20_618_714)
    assert count_parameters(build_model("drn_a_18")) == a18
    assert count_parameters(build_model("drn_b_26")) == b26
    # dilation adds no weights: ImageNet DRN-A-18 has torchvision ResNet-18's 11,689,512
    from torchvision.models import resnet18

    a18_imagenet = count_parameters(drn.drn_a_18(num_classes=1000, imagenet=True))
    assert a18_imagenet == count_parameters(resnet18()) == 11_689_512
    # the skips of levels 7-8 add no weights either: DRN-B-26 has DRN-C-26's 21,126,584
    b26_imagenet = count_parameters(drn.drn_b_26(num_classes=1000, imagenet=True))
    assert b26_imagenet == count_parameters(drn.drn_c_26(num_classes=1000, imagenet=True))


def test_drn_a_dilates_groups_3_and_4_instead_of_striding():
    model = build_model("drn_a_18")
    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert convs["layer0.0"].kernel_size == (7, 7) and convs["layer0.0"].stride == (2, 2)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())  # the CIFAR adaptation
    assert convs["layer2.0.conv1"].stride == (2, 2)
    dilations = [(convs[f"layer{g}.{b}.conv{c}"].dilation[0], convs[f"layer{g}.{b}.conv{c}"].stride)
                 for g in (3, 4) for b in (0, 1) for c in (1, 2)]
    assert dilations == [(1, (1, 1)), (2, (1, 1)), (2, (1, 1)), (2, (1, 1)),
                         (2, (1, 1)), (4, (1, 1)), (4, (1, 1)), (4, (1, 1))]
    imagenet = drn.drn_a_18(num_classes=1000, width=0.125, imagenet=True).eval()
    assert any(isinstance(m, nn.MaxPool2d) for m in imagenet.modules())


def test_drn_b_keeps_the_skips_that_drn_c_removes_in_levels_7_and_8():
    b, c = build_model("drn_b_26"), build_model("drn_c_26")
    for level in ("layer7", "layer8"):
        assert all(block.residual for block in getattr(b, level))
        assert not any(block.residual for block in getattr(c, level))
    assert [type(m) for m in b.modules()] == [type(m) for m in c.modules()]


@pytest.mark.parametrize("name", ("drn_a_18", "drn_b_26", "drn_c_26"))
def test_drn_imagenet_strides_give_output_stride_8(name):
    model = getattr(drn, name)(num_classes=1000, width=0.125, imagenet=True).eval()
    with torch.no_grad():
        assert model.features(torch.randn(1, 3, 224, 224)).shape[-2:] == (28, 28)


def _convs(module):
    return [m for m in module.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]


def test_drn_structure_follows_the_paper():
    c, d = build_model("drn_c_26"), build_model("drn_d_22")
    for model in (c, d):
        assert model.layer0[0].kernel_size == (7, 7) and model.layer0[0].out_channels == 16
        outs = [_convs(getattr(model, f"layer{i}"))[-1].out_channels for i in range(1, 9)]
        assert outs == list(drn.CHANNELS)
        assert {m.dilation for m in _convs(model.layer5)} == {(2, 2)}
        assert {m.dilation for m in _convs(model.layer6)} == {(4, 4)}
        assert {m.dilation for m in _convs(model.layer7)} == {(2, 2)}
        assert {m.dilation for m in _convs(model.layer8)} == {(1, 1)}
        for i in (3, 4, 5, 6):
            blocks = getattr(model, f"layer{i}")
            assert len(blocks) == 2 and all(isinstance(b, drn.BasicBlock) and b.residual for b in blocks)
    # DRN-C: residual BasicBlocks in levels 1-2, non-residual blocks in levels 7-8 (degridding)
    for level in (c.layer1, c.layer2):
        assert len(level) == 1 and isinstance(level[0], drn.BasicBlock) and level[0].residual
    assert not c.layer7[0].residual and not c.layer8[0].residual
    # DRN-D: plain conv-BN-ReLU layers (no blocks) in levels 1-2 and 7-8
    for i in (1, 2, 7, 8):
        level = getattr(d, f"layer{i}")
        assert [type(m) for m in level] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert isinstance(c.classifier, nn.Conv2d) and c.classifier.kernel_size == (1, 1)


def test_drn_non_residual_block_really_has_no_skip():
    torch.manual_seed(0)
    block = drn.BasicBlock(8, 8, residual=False).eval()
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        expected = torch.relu(block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x))))))
        assert torch.equal(block(x), expected)


def test_drn_width_scales_channels_and_bad_arch_fails():
    assert build_model("drn_d_22", width=0.25).classifier.in_features == 128
    with pytest.raises(ValueError, match="expected 'B', 'C' or 'D'"):
        drn.DRN(arch="E")


def test_efficientnet_b0_is_timms_with_a_stride_1_stem():
    model = build_model("efficientnet_b0")
    assert count_parameters(model) == 4_020_358
    assert model.net.conv_stem.stride == (1, 1) and model.input_size is None
    assert isinstance(model.classifier, nn.Linear) and model.classifier.in_features == 1280


def test_efficientnet_pretrained_route_resizes_and_renormalises():
    model = build_model("efficientnet_b0", resize_to=224).eval()  # the fine-tuning architecture, random weights
    assert isinstance(model, EfficientNetB0) and model.net.conv_stem.stride == (2, 2)
    raw = torch.rand(2, 3, 32, 32)
    x = augment.normalize((raw * 255).round().to(torch.uint8))
    prepared = model._prepare(x)
    imnet = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = (nn.functional.interpolate((raw * 255).round() / 255, size=224, mode="bilinear") - imnet[0]) / imnet[1]
    assert prepared.shape == (2, 3, 224, 224)
    assert torch.allclose(prepared, expected, atol=1e-4)
    with torch.no_grad():
        assert model.features(x).shape[-2:] == (7, 7) and model(x).shape == (2, 10)


def test_efficientnet_pretrained_without_hub_access_fails_clearly(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # read at import time; patch the live value too
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache: nothing to find offline
    with pytest.raises(RuntimeError, match=r"(?s)timm/efficientnet_b0\.ra_in1k.*huggingface\.co.*pretrained: false"):
        build_model("efficientnet_b0", pretrained=True)
    with pytest.raises(ValueError, match="only at width 1.0"):
        build_model("efficientnet_b0", width=0.5, pretrained=True)


@pytest.mark.parametrize("name", ("drn_a_18", "drn_b_26", "drn_c_26", "drn_d_22"))
def test_drns_fit_a_tiny_batch(name):
    from lib.methods.classifier import Classifier
    from lib.train import make_optimizer

    torch.manual_seed(0)
    ds = D.make_synthetic(16, 10)
    model = build_model(name, width=0.125)
    method = Classifier(model, make_optimizer(model.parameters(), name="adam", lr=3e-3))
    batch = (augment.normalize(ds.train_x[:16]), ds.train_y[:16])
    losses = [method.train_step(batch)["loss"].item() for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0]
