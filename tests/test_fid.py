"""FID: known values of the Fréchet distance, and the in-memory path against pytorch-fid's own file path."""
import sys
import time

import numpy as np
import pytest
import torch
from scipy import linalg

from lib.evaluate import fid

pytestmark = pytest.mark.usefixtures("one_thread")


def gaussian_stats(mu, sigma, n=1000):
    return fid.Stats(np.asarray(mu, float), np.asarray(sigma, float), n)


def test_fid_of_identical_statistics_is_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 8))
    s = fid.Stats.of(a)
    assert fid.frechet_distance(s, s) == pytest.approx(0.0, abs=1e-6)


def test_fid_of_two_gaussians_equals_the_closed_form():
    rng = np.random.default_rng(1)
    m1, m2 = rng.normal(size=5), rng.normal(size=5)
    A, B = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    c1, c2 = A @ A.T + np.eye(5), B @ B.T + np.eye(5)
    # closed form for commuting (here: diagonal) covariances: ||m1-m2||^2 + sum (sqrt(s1) - sqrt(s2))^2
    d1, d2 = np.diag([1.0, 4.0, 9.0, 0.25, 2.0]), np.diag([4.0, 1.0, 9.0, 1.0, 0.5])
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(np.diag(d1)) - np.sqrt(np.diag(d2))) ** 2)
    assert fid.frechet_distance(gaussian_stats(m1, d1), gaussian_stats(m2, d2)) == pytest.approx(expected, rel=1e-9)
    # general covariances: the definition with scipy's matrix square root
    general = np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
    assert fid.frechet_distance(gaussian_stats(m1, c1), gaussian_stats(m2, c2)) == pytest.approx(general, rel=1e-7)


@pytest.mark.parametrize("n", [60, 400])  # fewer images than dimensions (singular covariance), and more
def test_distance_equals_pytorch_fid_with_and_without_the_features(n):
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(n)
    d = 128
    gen = np.abs(rng.normal(size=(n, d))) * 0.6 + 0.05 * rng.normal(size=d)  # pool3 features are >= 0
    real = fid.Stats.of(np.abs(rng.normal(size=(300, d))) * 0.5)
    expected = calculate_frechet_distance(gen.mean(0), np.cov(gen, rowvar=False), real.mu, real.sigma)
    with_features = fid.Stats.of(gen)
    stats_only = fid.Stats(with_features.mu, with_features.sigma, n)  # as loaded from a cache file
    assert fid.frechet_distance(with_features, real) == pytest.approx(expected, rel=1e-6)
    assert fid.frechet_distance(stats_only, real) == pytest.approx(expected, rel=1e-6)
    assert real._root is not None  # the reference's square root is kept for the next distance


def test_statistics_of_different_dimensions_are_refused():
    a = gaussian_stats(np.zeros(3), np.eye(3))
    b = gaussian_stats(np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match=r"different dimensions: means \(3,\) vs \(4,\)"):
        fid.frechet_distance(a, b)


def test_cached_statistics_are_keyed_and_reused(tmp_path, monkeypatch):
    calls = []

    def fake_features(images, **_):
        calls.append(len(images))
        return images.flatten(1)[:, :4].double().numpy()

    monkeypatch.setattr(fid, "inception_features", fake_features)
    x = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    a = fid.cached_statistics(x, source="s", split="train", seed=0, cache_dir=tmp_path)
    b = fid.cached_statistics(x, source="other label", split="train", seed=1, cache_dir=tmp_path)
    assert calls == [12] and np.array_equal(a.mu, b.mu) and b.n == 12  # same images: reused
    y = x.clone()
    y[0, 0, 0, 0] ^= 1  # one pixel differs, same label: new statistics
    c = fid.cached_statistics(y, source="s", split="train", seed=0, cache_dir=tmp_path)
    assert calls == [12, 12] and not np.array_equal(a.mu, c.mu)
    assert len(list((tmp_path / "fid-stats").glob("*.npz"))) == 2


def test_an_unreadable_statistics_cache_is_moved_aside_and_recomputed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fid, "inception_features", lambda images, **_: images.flatten(1)[:, :4].double().numpy())
    x = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    a = fid.cached_statistics(x, source="s", split="train", seed=0, cache_dir=tmp_path)
    path = fid.cache_path(x, split="train", cache_dir=tmp_path)
    path.write_bytes(path.read_bytes()[:40])  # truncated, as by a sync that died half-way
    b = fid.cached_statistics(x, source="s", split="train", seed=0, cache_dir=tmp_path)
    assert np.array_equal(a.mu, b.mu) and path.is_file() and path.with_name(path.name + ".corrupt").is_file()
    assert f"[recovered] {path} could not be read" in capsys.readouterr().err


def test_missing_weights_message_names_the_file_and_never_downloads(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(fid.subprocess, "run", lambda *a, **k: pytest.fail("no download with 'never'"))
    ok, msg = fid.inception_status(download="never")
    assert not ok
    assert str(tmp_path / "hub" / "checkpoints" / fid.WEIGHTS_FILE) in msg and "no download was tried" in msg
    with pytest.raises(ValueError, match="download must be one of"):
        fid.inception_status(download="yes")


def test_a_stalled_download_is_tried_once_and_stopped_at_its_time_limit(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(fid, "_TRIED", {})
    monkeypatch.setattr(fid, "_download_command", lambda: [sys.executable, "-c", "import time; time.sleep(30)"])
    t0 = time.perf_counter()
    ok, msg = fid.inception_status(download="try", timeout_s=1)
    assert not ok and "did not finish within 1 s" in msg and time.perf_counter() - t0 < 10
    monkeypatch.setattr(fid.subprocess, "run", lambda *a, **k: pytest.fail("tried a second time"))
    assert fid.inception_status(download="try", timeout_s=1) == (ok, msg)


def test_a_successful_download_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(fid, "_TRIED", {})
    target = tmp_path / "hub" / "checkpoints" / fid.WEIGHTS_FILE
    script = f"import pathlib; p = pathlib.Path({str(target)!r}); p.parent.mkdir(parents=True); p.write_text('w')"
    monkeypatch.setattr(fid, "_download_command", lambda: [sys.executable, "-c", script])
    assert fid.inception_status(download="try") == (True, f"Inception weights downloaded to {target}")


def test_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        fid.inception_features(torch.zeros(2, 3, 32, 32))


def test_in_memory_statistics_equal_pytorch_fid_file_path(shared_weights, tmp_path, monkeypatch):
    from PIL import Image
    from pytorch_fid.fid_score import calculate_activation_statistics

    # pytorch-fid finds its weights under $TORCH_HOME only: point it at the shared file
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / fid.WEIGHTS_FILE).symlink_to(shared_weights)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(fid, "_MODELS", {})
    assert fid.weights_path() == checkpoints / fid.WEIGHTS_FILE
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=g)
    files = []
    for i, img in enumerate(images):
        path = tmp_path / f"{i}.png"
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(path)
        files.append(str(path))
    model = fid.load_inception("cpu")
    mu_files, sigma_files = calculate_activation_statistics(files, model, batch_size=3, dims=2048, device="cpu",
                                                            num_workers=0)
    ours = fid.Stats.of(fid.inception_features(images, batch_size=4))
    np.testing.assert_allclose(ours.mu, mu_files, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.sigma, sigma_files, rtol=1e-3, atol=1e-5)
