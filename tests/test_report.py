import json
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from lib import report as R


def make_report(tmp_path, value=1):
    rep = R.Report("01_supervised", {"profile": "smoke", "seed": 0, "lr": 0.1}, out_root=tmp_path,
                   data_source="synthetic", device="cpu")
    rep.table(pd.DataFrame({"model": ["m"], "acc": [value]}), "accuracy", item="1.4", title="Accuracy")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, value])
    rep.figure(fig, "curve", item="1.6", title="Curve")
    plt.close(fig)
    return rep


def test_finish_moves_outputs_and_writes_provenance_and_manifest(tmp_path):
    rep = make_report(tmp_path)
    assert not (tmp_path / "smoke" / "01_supervised").exists()  # staged until finish
    final = rep.finish()
    assert (final / "accuracy.csv").is_file() and (final / "accuracy.md").is_file() and (final / "curve.png").is_file()
    prov = json.loads((final / "accuracy.provenance.json").read_text())
    for key in ("git_commit", "params_hash", "seed", "libraries", "device", "data_source", "wall_time_s"):
        assert key in prov, key
    assert prov["item"] == "1.4" and prov["libraries"]["torch"]
    man = json.loads((tmp_path / "smoke" / "manifest.json").read_text())
    assert man["items"]["1.4"][0]["path"] == "01_supervised/accuracy.csv"
    assert man["chapters"]["01_supervised"]["data_source"] == "synthetic"
    assert json.loads((final / "params.json").read_text())["lr"] == 0.1


def test_unfinished_run_leaves_previous_outputs_untouched(tmp_path):
    make_report(tmp_path, value=1).finish()
    make_report(tmp_path, value=2)  # fails before finish()
    df = pd.read_csv(tmp_path / "smoke" / "01_supervised" / "accuracy.csv")
    assert df["acc"].tolist() == [1]
    make_report(tmp_path, value=3).finish()
    assert pd.read_csv(tmp_path / "smoke" / "01_supervised" / "accuracy.csv")["acc"].tolist() == [3]


def test_rerun_replaces_a_chapter_in_the_manifest_and_records_skips(tmp_path):
    make_report(tmp_path).finish()
    rep = R.Report("01_supervised", {"profile": "smoke"}, out_root=tmp_path)
    rep.skip("1.2", "needs the DRN models")
    rep.finish()
    man = json.loads((tmp_path / "smoke" / "manifest.json").read_text())
    assert "1.4" not in man["items"] and man["skipped"]["1.2"]["reason"] == "needs the DRN models"


def test_unknown_item_and_chapter_are_rejected(tmp_path):
    rep = R.Report("01_supervised", {"profile": "smoke"}, out_root=tmp_path)
    with pytest.raises(ValueError, match="unknown SPEC item '9.9'"):
        rep.table(pd.DataFrame({"a": [1]}), "x", item="9.9", title="x")
    with pytest.raises(ValueError, match="unknown chapter"):
        R.Report("05_bonus", {"profile": "smoke"}, out_root=tmp_path)


def test_index_links_chapters_and_lists_coverage(tmp_path):
    make_report(tmp_path).finish()
    (tmp_path / "smoke" / "html").mkdir()
    (tmp_path / "smoke" / "html" / "01_supervised.html").write_text("<html></html>")
    page = R.build_index(tmp_path / "smoke").read_text()
    assert 'href="01_supervised.html"' in page and 'href="../01_supervised/accuracy.csv"' in page
    assert "not run in this profile" in page and "synthetic" in page


def test_report_names_the_device_its_params_resolve_to(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine, as far as torch says
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")

    def report(**params):
        return R.Report("01_supervised", {"profile": "smoke", **params}, out_root=tmp_path, data_source="synthetic")

    auto = report(device="auto")
    assert auto.device == "cuda (NVIDIA H100 80GB HBM3)" and auto.provenance()["device"] == auto.device
    cpu = report(device="cpu")  # the params choose, not the machine
    assert cpu.device == f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    assert cpu.describe("split sizes {}") == f"**Profile `smoke`** on {cpu.device}; data: synthetic; split sizes {{}}."
    assert R.Report("01_supervised", {"profile": "smoke"}, out_root=tmp_path, device="given").device == "given"


def test_predictions_are_saved_compactly_and_read_back(tmp_path):
    import numpy as np
    import torch

    rep = make_report(tmp_path)
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0], [0.0, 0.0, -1.0]])
    rep.predictions("resnet18", logits, torch.tensor([0, 2, 1]), item="1.4", run="resnet18-abc",
                    scores=True)
    saved = rep.load_per_example("resnet18")
    assert saved["pred"].tolist() == [0, 1, 0] and saved["pred"].dtype == np.uint8
    assert saved["correct"].tolist() == [True, False, False] and str(saved["run"]) == "resnet18-abc"
    np.testing.assert_allclose(saved["scores"], torch.softmax(logits, 1).numpy(), rtol=1e-6)
    final = rep.finish()
    again = R.load_per_example(final, "resnet18")
    assert again["label"].tolist() == [0, 2, 1]
    side = json.loads((final / "per_example" / "resnet18.provenance.json").read_text())
    assert side["run"] == "resnet18-abc" and side["arrays"]["pred"] == [3]
    with pytest.raises(FileNotFoundError, match="per_example/vgg.npz missing"):
        R.load_per_example(final, "vgg")


def test_finish_saves_the_chapters_findings(tmp_path):
    from lib.chapters.findings import COLUMNS, NOT_RUN

    final = make_report(tmp_path).finish()
    found = pd.read_csv(final / "findings.csv")
    assert list(found.columns) == COLUMNS and len(found) == 5
    assert set(found["verdict"]) == {NOT_RUN}  # hand-made outputs hold none of the chapter's data
    assert json.loads((final / "provenance.json").read_text())["findings_s"] >= 0


def test_index_findings_show_three_thumbnails_linking_to_their_figures_in_the_chapter(tmp_path):
    rep = make_report(tmp_path)
    for i in range(4):  # four CAM figures under the finding's SPEC item
        fig, ax = plt.subplots()
        rep.figure(fig, f"cam_{i}", item="1.3", title=f"CAM {i}")
        plt.close(fig)
    rep.finish()
    (tmp_path / "smoke" / "html").mkdir()
    (tmp_path / "smoke" / "html" / "01_supervised.html").write_text("<html></html>")
    page = R.build_index(tmp_path / "smoke").read_text()
    findings = page[page.index('<table id="findings">'):]
    findings = findings[:findings.index("</table>")]
    row = next(r for r in findings.split("<tr") if "(1.3)" in r)
    thumbs = re.findall(r"<div class='minis'>(.*?)</div>", row)
    assert len(thumbs) == 1  # one row of thumbnails
    links = re.findall(r'<a href="([^"]+)"><img class="mini" src="([^"]+)"', thumbs[0])
    assert links == [(f"01_supervised.html#fig-01_supervised-cam_{i}", f"../01_supervised/cam_{i}.png")
                     for i in range(3)]
    assert "NaN" not in page and "None" not in page


def test_index_figures_link_to_the_image_where_the_chapter_has_no_page(tmp_path):
    from lib.report.index import figure_thumbnails

    entry = {"chapter": "01_supervised", "path": "01_supervised/curve.png", "title": "Curve"}
    assert 'href="../01_supervised/curve.png"' in figure_thumbnails([entry], built=[])
    assert figure_thumbnails([], built=[]) == ""


def test_sample_grids_show_the_pixels_as_drawn():
    """32 x 32 samples are drawn pixel for pixel (nearest), not smoothed: each panel holds exactly
    torchvision's grid of the first nrow x nrow images."""
    import torch
    from torchvision.utils import make_grid

    from lib.report import figures

    x = torch.randint(0, 256, (70, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    fig = figures.sample_grid({"a": x, "b": x[:4]}, nrow=8)
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert [im.get_interpolation() for im in images] == ["nearest", "nearest"]
    expected = make_grid(x[:64], nrow=8, padding=1, pad_value=255).permute(1, 2, 0).numpy()
    assert (images[0].get_array() == expected).all()
