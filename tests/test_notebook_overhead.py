"""bench/notebook_overhead.py: a chapter's re-run seconds, less what bench/budget.py prices as workloads."""
import json
import sys

import pandas as pd
import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import budget  # noqa: E402
import notebook_overhead  # noqa: E402


def test_overheads_take_out_recomputed_sampling_and_frechet_distances(tmp_path):
    run = {"seconds": 400, "chapters": {"01_supervised": 150, "02_generative": 170, "03_semi_supervised": 40,
                                        "04_extras": 30}}
    ch2 = tmp_path / "02_generative"
    ch2.mkdir()
    pd.DataFrame({"model / sampler": ["VAE", "DDPM ancestral"], "seconds": [0.5, 60.0]}).to_csv(
        ch2 / "sampling_times.csv", index=False)
    ddim = {"s / image": [1.0, 0.5, 0.25], "images": [20, 20, 20], "main FID row": ["yes", "no", "no"]}
    pd.DataFrame(ddim).to_csv(ch2 / "ddim_spacing.csv", index=False)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "01_supervised.ipynb").write_text(json.dumps({"metadata": {"papermill": {
        "duration": 120.5}}}))
    rows, overhead = notebook_overhead.overheads(run, tmp_path, distances=8, frechet_s=2.0)
    # 170 s less the samplers (60.5 s), the two other DDIM settings (10 + 5 s) and 8 distances of 2 s
    assert overhead["02_generative"] == pytest.approx(170 - 60.5 - 15 - 16)
    assert overhead["01_supervised"] == 150 and overhead["report"] == 400 - 390
    assert rows[0]["cells s"] == 120.5 and rows[2]["cells s"] is None
    # the record these make is what bench/budget.py prices each chapter's notebook at
    path = tmp_path / "notebook_overhead.json"
    path.write_text(json.dumps({"profile": "smoke", "machine": {"cores": 2}, "overhead_s": overhead}))
    seconds, source = budget.notebook_seconds(path)
    assert seconds == overhead and source == "measured (smoke re-run, CPU, 2 cores)"
