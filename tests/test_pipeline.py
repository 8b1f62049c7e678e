"""End to end: ./run_all.sh --profile smoke builds the report; a failing chapter keeps earlier good outputs."""
import json
import re

from conftest import ROOT, run_all


def test_smoke_report_builds_index_manifest_and_html(smoke_report):
    prof, proc = smoke_report
    assert "[run_all] profile smoke" in proc.stdout
    index = (prof / "html" / "index.html").read_text()
    man = json.loads((prof / "manifest.json").read_text())
    chapters = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for ch in chapters:
        assert (prof / "html" / f"{ch}.html").is_file() and (prof / "html" / f"{ch}-code.html").is_file()
        assert (prof / "notebooks" / f"{ch}.ipynb").is_file()
        assert f'href="{ch}.html"' in index
        assert man["chapters"][ch]["profile"] == "smoke"
    assert {"1.4", "1.6", "1.8"} <= set(man["items"])
    assert 'id="findings"' in index and "Presented vs reproduced, as pictures" in index
    assert (prof / "run.json").is_file() and not (prof / ".lock").exists()
    run = json.loads((prof / "run.json").read_text())
    assert set(run["chapters"]) == set(chapters) and set(run["status"].values()) == {"ok"}
    for entries in man["items"].values():
        for e in entries:
            assert e["path"] is None or (prof / e["path"]).is_file(), e


def test_smoke_report_saves_per_example_results_findings_and_intervals(smoke_report):
    import numpy as np
    import pandas as pd

    from lib.chapters.findings import COLUMNS, VERDICTS
    from lib.report import load_per_example

    prof, _ = smoke_report
    ch1 = prof / "01_supervised"
    params = json.loads((ch1 / "params.json").read_text())
    for model in params["models"]:
        saved = load_per_example(ch1, model)
        assert saved["pred"].dtype == np.uint8 and saved["label"].dtype == np.uint8
        assert (saved["correct"] == (saved["pred"] == saved["label"])).all()
        assert str(saved["run"]).startswith(model + "-")  # run name and settings hash
    names = {p.stem for ch in prof.glob("0[1-4]_*") for p in (ch / "per_example").glob("*.npz")}
    assert {"cam_focus", "sampling_repeats", "twomoon", "ssl-mpl", "ssl-finetune",
            "normalised_agreement", "retrieval"} <= names
    # FID replicates wherever the FID table was computed (not without the Inception weights: no ../shared
    # and no network)
    assert ("fid_replicates" in names) == (prof / "02_generative" / "fid.csv").is_file()
    for ch in ("01_supervised", "02_generative", "03_semi_supervised", "04_extras"):
        found = pd.read_csv(prof / ch / "findings.csv")
        assert list(found.columns) == COLUMNS and set(found["verdict"]) <= set(VERDICTS)
        assert json.loads((prof / ch / "provenance.json").read_text())["findings_s"] >= 0
    for ch in ("01_supervised", "02_generative", "03_semi_supervised"):
        cmp = pd.read_csv(prof / ch / "comparison.csv")
        run = cmp[cmp["reproduced"].notna()]
        assert len(run) and run["95% low"].notna().all()  # every reproduced number has an interval
        assert (run["95% low"] <= run["reproduced"] + 1e-9).all()
        assert (run["reproduced"] <= run["95% high"] + 1e-9).all()
        assert "no interval" not in set(cmp["status"])


def test_class_html_has_no_code_and_no_progress_frames(smoke_report):
    prof, _ = smoke_report
    page = (prof / "html" / "01_supervised.html").read_text()
    code_cells = re.findall(r'class="jp-Cell jp-CodeCell[^"]*"', page)
    assert code_cells and all("jp-mod-noInput" in c for c in code_cells) and "\r" not in page
    full = (prof / "html" / "01_supervised-code.html").read_text()
    assert not any("jp-mod-noInput" in c for c in re.findall(r'class="jp-Cell jp-CodeCell[^"]*"', full))


def test_failing_chapter_keeps_good_outputs_and_exits_nonzero(smoke_report, tmp_path):
    prof, _ = smoke_report
    good = (prof / "01_supervised" / "accuracy.csv").read_text()
    proc = run_all(prof.parent, "--profile", "smoke", "--only", "01", "--data", str(tmp_path / "missing"))
    assert proc.returncode == 1
    assert "FAILED  01_supervised: notebook failed" in proc.stdout and "01_supervised.log" in proc.stdout
    assert "does not exist" in proc.stdout  # the tail of the log shows the actionable data error
    assert (prof / "01_supervised" / "accuracy.csv").read_text() == good
    assert (prof / "html" / "01_supervised.html").is_file()


def test_notebooks_are_paired_and_output_free():
    import jupytext
    import nbformat

    for py in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        ipynb = py.with_suffix(".ipynb")
        assert ipynb.is_file(), f"{py.name} has no paired .ipynb"
        nb = nbformat.read(ipynb, as_version=4)
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{ipynb.name} has outputs"
        from_py = jupytext.read(py)
        src = lambda n: [(c.cell_type, c.source.strip()) for c in n.cells]  # noqa: E731
        assert src(from_py) == src(nb), f"{py.name} and {ipynb.name} have drifted: run jupytext --sync {py}"
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, f"{ipynb.name} needs exactly one cell tagged 'parameters'"
