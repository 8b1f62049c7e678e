import io
import tarfile
import zipfile

import pytest
import torch
from PIL import Image

from lib import augment
from lib import data as D
from lib.batches import BatchLoader


def png_bytes(color, size=(32, 32), mode="RGB"):
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def make_tree(root, per_class=2, skip_class=None):
    for split in ("train", "test"):
        for i, cls in enumerate(D.CLASSES):
            if cls == skip_class:
                continue
            d = root / "cifar" / split / cls
            d.mkdir(parents=True)
            for j in range(per_class):
                (d / f"{j:04d}.png").write_bytes(png_bytes((i * 20, j * 50, 7)))
    return root / "cifar"


def test_synthetic_shapes_and_balance():
    ds = D.make_synthetic(200, 50)
    assert ds.train_x.shape == (200, 3, 32, 32) and ds.train_x.dtype == torch.uint8
    assert ds.test_y.shape == (50,) and ds.train_y.bincount().tolist() == [20] * 10


def test_folder_loader_decodes_pixels_and_labels(tmp_path):
    root = make_tree(tmp_path)
    ds = D.load_cifar10(root, cache_dir=tmp_path / "cache")
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.test_x.shape == (20, 3, 32, 32)
    assert ds.train_y.tolist() == [i for i in range(10) for _ in range(2)]
    # class 3, second image: colour (60, 50, 7)
    assert ds.train_x[7, :, 0, 0].tolist() == [60, 50, 7]
    assert list((tmp_path / "cache").glob("cifar10-*.pt")), "decoded tensors were not cached"
    again = D.load_cifar10(root, cache_dir=tmp_path / "cache")
    assert torch.equal(again.train_x, ds.train_x)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_archive_loaders_match_folder(tmp_path, kind):
    root = make_tree(tmp_path / "src")
    archive = tmp_path / f"c.{kind}"
    files = sorted(p for p in root.rglob("*.png"))
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for p in files:
                zf.write(p, p.relative_to(root.parent))
    else:
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(root, arcname="cifar")
    a = D.load_cifar10(archive, cache_dir=tmp_path / "cache")
    b = D.load_cifar10(root, cache_dir=tmp_path / "cache2")
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)


def test_missing_path_names_path_and_layout(tmp_path):
    with pytest.raises(D.DataError, match=r"nowhere does not exist; expected a folder or archive containing train/<class>"):
        D.load_cifar10(tmp_path / "nowhere", cache_dir=tmp_path)


def test_missing_class_folder_is_named(tmp_path):
    root = make_tree(tmp_path, skip_class="frog")
    with pytest.raises(D.DataError, match=r"no images for train/frog"):
        D.load_cifar10(root, cache_dir=tmp_path / "cache")


def test_corrupt_image_is_named(tmp_path):
    root = make_tree(tmp_path)
    (root / "test" / "ship" / "0001.png").write_bytes(b"not an image")
    with pytest.raises(D.DataError, match=r"cannot decode image .*test/ship/0001.png"):
        D.load_cifar10(root, cache_dir=tmp_path / "cache")


def test_wrong_file_type_and_corrupt_archive(tmp_path):
    f = tmp_path / "data.txt"
    f.write_text("hello")
    with pytest.raises(D.DataError, match=r"neither a folder nor a .tar.gz"):
        D.load_cifar10(f, cache_dir=tmp_path)
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(D.DataError, match=r"bad.tar.gz is not a readable tar archive"):
        D.load_cifar10(bad, cache_dir=tmp_path)


def test_shared_archive_is_real_cifar10(shared_archive):
    ds = D.load_cifar10(shared_archive)
    assert ds.train_x.shape == (50000, 3, 32, 32) and ds.test_x.shape == (10000, 3, 32, 32)
    assert ds.train_y.bincount().tolist() == [5000] * 10
    assert "JPEG" in ds.source
    mean = (ds.train_x[::10].float() / 255).mean(dim=(0, 2, 3))  # every 10th image covers all classes
    assert torch.allclose(mean, torch.tensor(augment.MEAN), atol=0.02)


def test_stratified_split_is_disjoint_balanced_and_seeded():
    y = torch.arange(1000) % 10
    parts = D.stratified_split(y, {"val": 100, "lab": 40, "rest": -1}, seed=3)
    assert [len(parts[k]) for k in ("val", "lab", "rest")] == [100, 40, 860]
    assert len(torch.cat(list(parts.values())).unique()) == 1000
    assert y[parts["val"]].bincount().tolist() == [10] * 10 and y[parts["lab"]].bincount().tolist() == [4] * 10
    assert torch.equal(parts["val"], D.stratified_split(y, {"val": 100, "rest": -1}, seed=3)["val"])
    assert not torch.equal(parts["val"], D.stratified_split(y, {"val": 100, "rest": -1}, seed=4)["val"])
    with pytest.raises(ValueError, match="not a multiple of 10"):
        D.stratified_split(y, {"val": 15}, seed=0)


def test_crop_flip_known_values():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    same = augment.random_crop_flip(x, torch.full((2, 2), 2), torch.zeros(2, dtype=torch.bool), padding=2)
    assert torch.equal(same, x)  # an offset equal to the padding is the identity
    flipped = augment.random_crop_flip(x, torch.full((2, 2), 2), torch.tensor([True, False]), padding=2)
    assert torch.equal(flipped[0], x[0].flip(2)) and torch.equal(flipped[1], x[1])
    shifted = augment.random_crop_flip(x, torch.tensor([[0, 0], [4, 4]]), torch.zeros(2, dtype=torch.bool), padding=2)
    assert shifted[0, :, :2, :].eq(0).all() and torch.equal(shifted[0, :, 2:, 2:], x[0, :, :2, :2])
    assert torch.equal(shifted[1, :, :2, :2], x[1, :, 2:, 2:]) and shifted[1, :, 2:, :].eq(0).all()


def test_batch_loader_shapes_ranges_and_determinism():
    ds = D.make_synthetic(100, 20)
    loader = BatchLoader(ds.train_x, ds.train_y, batch_size=32, seed=1)
    batches = list(loader.epoch(0))
    assert len(batches) == len(loader) == 3
    x, y = batches[0]
    assert x.shape == (32, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    lo = (0 - max(augment.MEAN)) / min(augment.STD)
    hi = (1 - min(augment.MEAN)) / min(augment.STD)
    assert x.min() >= lo - 1e-5 and x.max() <= hi + 1e-5
    again = list(loader.epoch(0))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    assert not torch.equal(list(loader.epoch(1))[0][0], x)
    resumed = next(loader.epoch(0, start=2))
    assert torch.equal(resumed[0], batches[2][0])
    stream = loader.forever(start_step=4)
    assert torch.equal(next(stream)[0], list(loader.epoch(1))[1][0])


def test_eval_loader_is_in_order_and_complete():
    ds = D.make_synthetic(100, 25)
    loader = BatchLoader(ds.test_x, ds.test_y, batch_size=10, train=False)
    ys = torch.cat([y for _, y in loader.epoch()])
    assert torch.equal(ys, ds.test_y) and len(loader) == 3


def test_normalize_uses_the_presented_constants():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    mean = torch.tensor(augment.MEAN).view(1, 3, 1, 1)
    std = torch.tensor(augment.STD).view(1, 3, 1, 1)
    assert augment.MEAN == (0.4914, 0.4822, 0.4465) and augment.STD == (0.2023, 0.1994, 0.2010)
    torch.testing.assert_close(augment.normalize(x), (x.float() / 255 - mean) / std)


def test_an_offline_torchvision_download_stops_in_time_and_says_how_to_pass_data(tmp_path, monkeypatch):
    import sys
    import time

    monkeypatch.setattr(D, "_download_command", lambda root: [sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setenv("CIFAR10_DOWNLOAD_TIMEOUT_S", "1")
    t0 = time.perf_counter()
    with pytest.raises(D.DataError, match=r"no answer within 1 s \(CIFAR10_DOWNLOAD_TIMEOUT_S\)\. Offline\? "
                                          r"Pass a local copy: --data PATH"):
        D.load_cifar10("torchvision", cache_dir=tmp_path)
    assert time.perf_counter() - t0 < 20  # not the 60 s the stalled download would take


def test_a_failed_torchvision_download_names_its_error_and_the_remedy(tmp_path, monkeypatch):
    import sys

    code = "import sys; sys.exit('urllib.error.URLError: <urlopen error [Errno -3] Temporary failure>')"
    monkeypatch.setattr(D, "_download_command", lambda root: [sys.executable, "-c", code])
    with pytest.raises(D.DataError, match=r"into .*torchvision \(urllib.error.URLError: <urlopen error "
                                          r"\[Errno -3\] Temporary failure>\)\. Offline\? Pass a local copy"):
        D.load_cifar10("torchvision", cache_dir=tmp_path)
