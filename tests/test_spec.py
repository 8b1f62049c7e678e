"""The presented-vs-reproduced logic behind the index page: status, Report.compare, the comparison and summary
frames, on hand-made values including missing ones, ties at the tolerance and presented ranges."""
import math

import pandas as pd
import pytest

from lib import report as R
from lib import spec


@pytest.mark.parametrize("presented, reproduced, unit, higher, expected", [
    (93.79, None, "%", True, "not run in this profile"),
    (93.79, math.nan, "%", True, "not run in this profile"),
    (93.79, 93.79, "%", True, "reproduced"),
    (93.79, 93.79 + 0.5, "%", True, "reproduced"),   # a tie at the tolerance counts as reproduced
    (93.79, 93.79 - 0.5, "%", True, "reproduced"),
    (93.79, 94.30, "%", True, "better"),
    (93.79, 93.28, "%", True, "worse"),
    (0.785, 0.790, "AUC", True, "reproduced"),
    (0.785, 0.791, "AUC", True, "better"),
    (35.33, 35.33 * 1.05, "FID", False, "reproduced"),  # FID: 5% relative
    (35.33, 37.2, "FID", False, "worse"),              # higher FID is worse
    (189.13, 150.0, "FID", False, "better"),
    ((60.0, 70.0), 65.0, "%", True, "reproduced"),      # a presented range such as "60-70"
    ((60.0, 70.0), 60.0, "%", True, "reproduced"),
    ((60.0, 70.0), 70.0, "%", True, "reproduced"),
    ((60.0, 70.0), 70.1, "%", True, "better"),
    ((60.0, 70.0), 59.9, "%", True, "worse"),
    ((60.0, 70.0), None, "%", True, "not run in this profile"),
])
def test_status(presented, reproduced, unit, higher, expected):
    assert spec.status(presented, reproduced, unit=unit, higher_is_better=higher) == expected


def test_every_presented_number_has_a_unique_key_and_a_known_item():
    rows = spec.presented_numbers()
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys))
    assert {r["item"] for r in rows} <= set(R.SPEC_ITEMS)
    assert all(r["unit"] in spec.TOLERANCE for r in rows)


def test_compare_keeps_the_last_value_and_rejects_unknown_keys(tmp_path):
    rep = R.Report("01_supervised", {"profile": "quick"}, out_root=tmp_path, device="cpu")
    with pytest.raises(ValueError, match="unknown presented number '1.4/vgg'"):
        rep.compare("1.4/vgg", 90.0)
    rep.compare("1.4/resnet18", 40.0)
    rep.compare("1.4/resnet18", 93.5, note="second run")
    table = rep.comparison_table().set_index("key")
    assert set(table["item"]) == {"1.4"}  # only the items this chapter compared
    row = table.loc["1.4/resnet18"]
    assert (row["reproduced"], row["difference"], row["status"], row["note"]) == (93.5, -0.29, "reproduced",
                                                                                  "second run")
    assert table.loc["1.4/resnet50", "status"] == "not run in this profile"
    assert pd.isna(table.loc["1.4/resnet50", "difference"])


def test_comparison_frame_formats_ranges_and_leaves_their_difference_empty():
    df = R.comparison_frame([{"key": "2.2/vae_reconstructions", "reproduced": 27.5}], profile="quick",
                            items={"2.2"}).set_index("key")
    row = df.loc["2.2/vae_reconstructions"]
    assert row["presented"] == "60-70" and pd.isna(row["difference"]) and row["status"] == "worse"
    assert (df["profile"] == "quick").all()


def test_summary_frame_reads_every_chapter_and_treats_blank_values_as_not_run(tmp_path):
    prof = tmp_path / "quick"
    (prof / "01_supervised").mkdir(parents=True)
    (prof / "02_generative").mkdir()
    pd.DataFrame({"key": ["1.4/resnet18", "1.4/resnet50"], "reproduced": [95.0, None],
                  "note": ["", "skipped"]}).to_csv(prof / "01_supervised" / "comparison.csv", index=False)
    pd.DataFrame({"key": ["2.4/dcgan"], "reproduced": [50.0], "note": [""]}).to_csv(
        prof / "02_generative" / "comparison.csv", index=False)
    df = R.summary_frame(prof).set_index("key")
    assert len(df) == len(spec.presented_numbers())
    assert df.loc["1.4/resnet18", "status"] == "better" and df.loc["1.4/resnet18", "chapter"] == "01_supervised"
    assert df.loc["1.4/resnet50", "status"] == "not run in this profile"
    assert df.loc["1.4/resnet50", "chapter"] == ""
    assert df.loc["2.4/dcgan", "status"] == "better" and df.loc["2.4/dcgan", "chapter"] == "02_generative"
    assert df.loc["3.6/mpl", "status"] == "not run in this profile"
    assert R.summary_frame(tmp_path / "empty")["status"].eq("not run in this profile").all()
