"""Chapter 4 retrieval: metrics on hand-made vectors, ranking helpers, the query-image loader and its errors."""
import io
import tarfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from lib import augment
from lib.chapters import extras
from lib.evaluate import retrieval
from lib.models import build_model
from lib.report import figures

# X, Y, Z of SPEC 4.1: Y points almost the same way as X but is long; Z points elsewhere but is near X.
X = torch.tensor([[1.0, 0.0]])
YZ = torch.tensor([[10.0, 1.0], [0.5, 0.5]])


def test_cosine_and_euclidean_disagree_on_hand_made_vectors():
    cos_v, cos_i = retrieval.top_k(X, YZ, metric="cosine", k=2)
    euc_v, euc_i = retrieval.top_k(X, YZ, metric="euclidean", k=2)
    assert cos_i.tolist() == [[0, 1]] and euc_i.tolist() == [[1, 0]]
    assert cos_v[0].tolist() == pytest.approx([10 / np.sqrt(101), 1 / np.sqrt(2)], abs=1e-6)
    assert euc_v[0].tolist() == pytest.approx([np.sqrt(0.5), np.sqrt(82)], abs=1e-5)
    assert torch.allclose(retrieval.similarity(X, YZ, metric="euclidean"), torch.tensor([[82 ** 0.5, 0.5 ** 0.5]]))


def test_xyz_example_finds_the_disagreement_and_the_drawing_keeps_distances():
    assert retrieval.first_disagreement(torch.cat([YZ[:1] * 2, X]), YZ, k=1, block=1) == 1  # query 0: both pick Y
    ex = extras.xyz_example(X, YZ)
    # the slide's roles: Y is the reference; X is closer to Y by cosine, Z by Euclidean distance
    assert (ex.x, ex.y, ex.z) == (0, 0, 1)
    assert torch.equal(ex.vectors[1], X[0]) and torch.equal(ex.vectors[0], YZ[0])
    assert ex.cos_xy > ex.cos_zy and ex.dist_zy < ex.dist_xy
    pts = extras.xyz_plane(ex)
    assert np.linalg.norm(pts[0] - pts[1]) == pytest.approx(ex.dist_xy, rel=1e-5)
    assert np.linalg.norm(pts[2] - pts[1]) == pytest.approx(ex.dist_zy, rel=1e-5)
    table = extras.xyz_table(ex, (0, 0, 1)).set_index("vector")
    assert table.loc["Y", "cosine to Y"] == 1.0 and table.loc["Y", "Euclidean distance to Y"] == 0
    assert table.loc["X", "cosine to Y"] > table.loc["Z", "cosine to Y"]
    assert table.loc["Z", "Euclidean distance to Y"] < table.loc["X", "Euclidean distance to Y"]
    assert table.loc["Y", "image"] == "test #0" and table.loc["Z", "image"] == "gallery #1"
    imgs = tuple(torch.zeros(3, 32, 32, dtype=torch.uint8) for _ in range(3))
    plt.close(extras.xyz_figure(ex, imgs, (0, 0, 1)))


def test_l2_normalised_features_rank_identically_and_raw_ones_do_not():
    g = torch.Generator().manual_seed(0)
    gallery = torch.randn(300, 8, generator=g) * torch.rand(300, 1, generator=g) * 5
    queries = torch.randn(40, 8, generator=g)
    table = retrieval.normalised_agreement(queries, gallery, k=5)
    raw, unit = table.iloc[0], table.iloc[1]
    assert unit["same ordered top-5 (%)"] == 100.0 and unit["max |d^2 - (2 - 2 cos)|"] < 1e-5
    assert raw["same ordered top-5 (%)"] < 100.0 and raw["largest cosine gap where orders differ"] > 1e-3


@pytest.mark.parametrize("metric", retrieval.METRICS)
def test_every_gallery_item_retrieves_itself_first(metric):
    gallery = torch.randn(500, 16, generator=torch.Generator().manual_seed(1)) * 3
    vals, idx = retrieval.top_k(gallery, gallery, metric=metric, k=3, chunk_size=64)  # chunks cross the gallery size
    assert idx[:, 0].tolist() == list(range(500))
    expected = torch.ones(500) if metric == "cosine" else torch.zeros(500)
    assert torch.allclose(vals[:, 0], expected, atol=1e-5)
    labels = torch.arange(500)  # every item its own class: precision@1 and AP are exactly 1
    m = retrieval.rank_metrics(gallery, labels, gallery, labels, metric=metric, ks=(1, 5), chunk_size=64)
    assert m["P@1"] == 1.0 and m["P@5"] == pytest.approx(0.2) and m["mAP"] == pytest.approx(1.0)


def test_precision_and_average_precision_match_hand_computed_examples():
    rel = np.array([[1, 0, 1, 0, 0],    # AP = (1/1 + 2/3) / 2
                    [0, 1, 1, 0, 1],    # AP = (1/2 + 2/3 + 3/5) / 3
                    [0, 0, 0, 0, 0]])   # no relevant item: AP 0 by convention
    assert retrieval.precision_at_k(rel, 1).tolist() == [1.0, 0.0, 0.0]
    assert retrieval.precision_at_k(rel, 3).tolist() == pytest.approx([2 / 3, 2 / 3, 0.0])
    expected = [(1 + 2 / 3) / 2, (1 / 2 + 2 / 3 + 3 / 5) / 3, 0.0]
    assert retrieval.average_precision(rel).tolist() == pytest.approx(expected)
    assert retrieval._average_precision_sparse(rel).tolist() == pytest.approx(expected)


def test_rank_metrics_equal_a_plain_argsort_reference():
    g = torch.Generator().manual_seed(2)
    gallery, gl = torch.randn(400, 6, generator=g), torch.randint(0, 4, (400,), generator=g)
    queries, qlab = torch.randn(50, 6, generator=g), torch.randint(0, 4, (50,), generator=g)
    for metric in retrieval.METRICS:
        sim = retrieval.similarity(queries, gallery, metric=metric)
        order = sim.argsort(1, descending=metric == "cosine")
        rel = (gl[order] == qlab[:, None]).numpy()
        m = retrieval.rank_metrics(queries, qlab, gallery, gl, metric=metric, ks=(1, 5, 10), chunk_size=16)
        assert m["mAP"] == pytest.approx(retrieval.average_precision(rel).mean(), abs=1e-9)
        for k in (1, 5, 10):
            assert m[f"P@{k}"] == pytest.approx(retrieval.precision_at_k(rel, k).mean(), abs=1e-9)
        assert m["queries"] == 50 and m["gallery"] == 400


def test_retrieval_table_has_a_row_per_space_and_metric():
    g = torch.Generator().manual_seed(3)
    gl, ql = torch.arange(200) % 5, torch.arange(30) % 5
    protos = torch.randn(5, 4, generator=g)  # learned: class prototypes plus noise; pixels: pure noise
    spaces = {"learned": (protos[ql] + 0.3 * torch.randn(30, 4, generator=g), ql,
                          protos[gl] + 0.3 * torch.randn(200, 4, generator=g)),
              "pixels": (torch.randn(30, 12, generator=g), ql, torch.randn(200, 12, generator=g))}
    t = extras.retrieval_table(spaces, gl, ks=(1, 5), context={"profile": "test"})
    assert t[["features", "metric"]].values.tolist() == [["learned", "cosine"], ["learned", "euclidean"],
                                                         ["pixels", "cosine"], ["pixels", "euclidean"]]
    assert {"P@1 (%)", "P@5 (%)", "mAP (%)", "top-10 ms/query", "queries", "gallery", "profile"} <= set(t.columns)
    check = extras.baseline_check(t, learned="learned", baseline="pixels")
    assert len(check) == 2 * 3 and check["learned better"].all()


def test_comparison_spaces_score_learned_and_pixels_on_the_same_query_subset():
    g = torch.Generator().manual_seed(5)
    qx = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g)
    gx = torch.randint(0, 256, (60, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(40) % 10
    qf, gf = retrieval.pixel_vectors(qx), retrieval.pixel_vectors(gx)  # "learned" = pixels here, so rows must match exactly
    sp = extras.comparison_spaces("learned", qf, labels, gf, qx, gx, baseline_queries=20, seed=0)
    assert list(sp) == ["learned", "learned (same 20 queries)", "raw pixels"]
    same, pix = sp["learned (same 20 queries)"], sp["raw pixels"]
    assert torch.equal(same[0], pix[0]) and torch.equal(same[1], pix[1]) and len(pix[0]) == 20
    assert torch.bincount(pix[1]).tolist() == [2] * 10
    assert list(extras.comparison_spaces("learned", qf, labels, gf, qx, gx)) == ["learned", "raw pixels"]


# ---------------------------------------------------------------------------------------------- images
def gradient(w, h):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([255 * xx / max(w - 1, 1), 255 * yy / max(h - 1, 1), np.full((h, w), 128)], -1).astype(np.uint8)


@pytest.mark.parametrize("fmt,mode", [("png", m) for m in ("RGB", "RGBA", "L", "LA", "P", "I;16")]
                         + [("jpeg", m) for m in ("RGB", "L", "CMYK")] + [("tiff", "I;16"), ("webp", "RGBA")])
def test_loader_reads_every_mode_and_size(tmp_path, fmt, mode):
    rgb = Image.fromarray(gradient(97, 61))
    if mode == "I;16":
        im = Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257))
        assert im.mode.startswith("I")
    else:
        im = rgb.convert(mode)
    path = tmp_path / f"q.{fmt}"
    im.save(path)
    x = extras.load_query_image(path)
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    assert 20 < float(x.float().mean()) < 235  # neither black nor white: 16-bit values scaled, not clipped


def test_loader_scales_16_bit_and_composites_alpha_on_white(tmp_path):
    Image.fromarray(np.full((40, 40), 65535, dtype=np.uint16)).save(tmp_path / "white16.png")
    assert extras.load_query_image(tmp_path / "white16.png").min() == 255
    Image.fromarray(np.full((40, 40), 32896, dtype=np.uint16)).save(tmp_path / "grey16.png")
    assert extras.load_query_image(tmp_path / "grey16.png").float().mean() == pytest.approx(128, abs=1)
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)  # fully transparent black -> white
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "clear.png")
    assert extras.load_query_image(tmp_path / "clear.png").min() == 255


def test_loader_applies_exif_rotation_and_center_crop(tmp_path):
    img = np.zeros((64, 128, 3), dtype=np.uint8)  # wide: left half red, right half blue
    img[:, :64, 0] = 255
    img[:, 64:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation "rotate 90 CW to display": displayed image is tall, red on top
    Image.fromarray(img).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    x = extras.load_query_image(tmp_path / "rot.jpg", crop="squash").float()
    top, bottom = x[:, :12].mean((1, 2)), x[:, -12:].mean((1, 2))
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60
    Image.fromarray(img).save(tmp_path / "wide.png")
    centre = extras.load_query_image(tmp_path / "wide.png", crop="center").float()
    assert centre[0, :, :12].mean() > 200 and centre[2, :, -12:].mean() > 200  # the middle 64x64: red | blue


def test_shipped_query_image_loads_back_as_the_test_airplane_it_was_made_from(shared_archive):
    """assets/plane.png is the archive's test/airplane/0001.jpg upscaled 4x (assets/README.md): read like any
    user file, it comes back within a few grey levels of that image and far from the others."""
    names = ("test/airplane/0001.jpg", "test/airplane/0002.jpg", "test/cat/0001.jpg", "train/airplane/0001.jpg")
    found = {}
    with tarfile.open(shared_archive) as tar:
        for member in tar:
            if member.name in names:
                found[member.name] = np.asarray(Image.open(tar.extractfile(member)).convert("RGB"), dtype=float)
                if len(found) == len(names):
                    break
    x = extras.load_query_image(extras.SHIPPED_QUERY)
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    error = {name: np.abs(image - x.permute(1, 2, 0).numpy()).mean() for name, image in found.items()}
    assert error.pop("test/airplane/0001.jpg") < 4 and min(error.values()) > 20, error


def test_bad_inputs_give_clear_messages(tmp_path):
    with pytest.raises(extras.QueryImageError, match="does not exist; set query_image"):
        extras.load_query_image(tmp_path / "nope.png")
    with pytest.raises(extras.QueryImageError, match="is a folder"):
        extras.load_query_image(tmp_path)
    (tmp_path / "notes.png").write_text("this is not a picture")
    with pytest.raises(extras.QueryImageError, match="not an image file Pillow can read"):
        extras.load_query_image(tmp_path / "notes.png")
    buf = io.BytesIO()
    Image.fromarray(gradient(200, 200)).save(buf, format="JPEG", quality=90)
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(extras.QueryImageError, match="truncated or corrupt"):
        extras.load_query_image(tmp_path / "cut.jpg")
    tx, ty = torch.zeros(5, 3, 32, 32, dtype=torch.uint8), torch.zeros(5, dtype=torch.int64)
    with pytest.raises(extras.QueryImageError, match="test index 7 is out of range.*5 images"):
        extras.resolve_query(7, test_x=tx, test_y=ty)
    assert extras.resolve_query(3, test_x=tx, test_y=ty)[1:] == (0, "test image #3 (airplane)")
    with pytest.raises(extras.MissingCheckpointError, match=r"run chapter 1 first: ./run_all.sh --profile quick --only 01"):
        extras.load_embedder(tmp_path / "quick", "resnet18")
    err = extras.QueryImageError("short message")
    assert err._render_traceback_() == ["QueryImageError: short message"]  # what Jupyter shows: no deep trace


# ---------------------------------------------------------------------------------------------- embeddings
def test_embedder_features_and_cache(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18", width=0.125).eval()
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"stand-in checkpoint")
    emb = extras.Embedder(model=model, info={"model": "resnet18"}, checkpoint=ckpt, device=torch.device("cpu"))
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    feats, hit = emb.cached(images, name="gallery", source="synthetic", cache_dir=tmp_path / "cache", batch_size=4)
    assert feats.shape == (6, emb.dim) and not hit
    with torch.no_grad():  # penultimate features: the classifier applied to them gives the model's logits
        assert torch.allclose(model.classifier(feats), model(augment.normalize(images)), atol=1e-4)
    again, hit = emb.cached(images, name="gallery", source="synthetic", cache_dir=tmp_path / "cache")
    assert hit and torch.equal(again, feats)
    _, hit = emb.cached(images.flip(0), name="gallery", source="synthetic", cache_dir=tmp_path / "cache")
    assert not hit  # other images, other key
    ckpt.write_bytes(b"a retrained checkpoint")
    _, hit = emb.cached(images, name="gallery", source="synthetic", cache_dir=tmp_path / "cache")
    assert not hit  # a new checkpoint invalidates the cache


def test_show_similar_images_draws_one_row_per_metric():
    gallery = torch.randn(50, 4, generator=torch.Generator().manual_seed(4))
    images = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(50) % 10
    nb = {m: tuple(t[0] for t in retrieval.top_k(gallery[:1], gallery, metric=m, k=5)) for m in retrieval.METRICS}
    fig = figures.show_similar_images(images[0], nb, images, labels, query_label=0)
    assert len(fig.axes) == 2 * 6
    assert fig.axes[1].get_title().startswith("airplane\ncos 1.000")
    plt.close(fig)
