"""The presented-vs-reproduced logic behind the index page: status from this run's interval, Report.compare,
the comparison and summary frames, on hand-made values including missing ones, values at the edge of the printed
precision and presented ranges."""
import math

import pandas as pd
import pytest

from lib import report as R
from lib import spec
from lib.evaluate import intervals as I


@pytest.mark.parametrize("presented, reproduced, interval, higher, expected", [
    (93.79, None, (93, 94), True, "not run in this profile"),
    (93.79, math.nan, (93, 94), True, "not run in this profile"),
    (93.79, 93.5, None, True, "no interval"),
    (93.79, 93.5, (93.2, 93.8), True, "reproduced"),
    (93.79, 93.2, (92.9, 93.786), True, "reproduced"),   # 93.79 as printed reaches down to 93.785
    (93.79, 93.2, (92.9, 93.78), True, "worse"),         # the interval lies wholly below
    (93.79, 94.4, (93.8, 95.0), True, "better"),
    (94.5, 94.0, (93.6, 94.46), True, "reproduced"),     # 94.5 as printed is 94.45-94.55
    (0.9579, 0.95, (0.94, 0.9578), True, "worse"),
    (35.33, 37.2, (35.9, 38.0), False, "worse"),         # higher FID is worse
    (189.13, 150.0, (140.0, 160.0), False, "better"),
    (189.13, 190.0, (185.0, 195.0), False, "reproduced"),
    ((60.0, 70.0), 65.0, (64.0, 66.0), True, "reproduced"),  # a presented range such as "60-70"
    ((60.0, 70.0), 58.0, (55.0, 60.5), True, "reproduced"),  # overlapping the range
    ((60.0, 70.0), 71.0, (70.1, 72.0), True, "better"),
    ((60.0, 70.0), 27.5, (25.0, 30.0), True, "worse"),
    ((60.0, 70.0), None, None, True, "not run in this profile"),
])
def test_status(presented, reproduced, interval, higher, expected):
    assert spec.status(presented, reproduced, interval=interval, higher_is_better=higher) == expected


def test_printed_range_is_half_a_unit_of_the_last_printed_digit():
    assert spec.printed_range(94.5) == pytest.approx((94.45, 94.55))
    assert spec.printed_range(0.94) == pytest.approx((0.935, 0.945))
    assert spec.printed_range(189.13) == pytest.approx((189.125, 189.135))
    assert spec.printed_range((60.0, 70.0)) == (60.0, 70.0)


def test_every_presented_number_has_a_unique_key_and_a_known_item():
    rows = spec.presented_numbers()
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys))
    assert {r["item"] for r in rows} <= set(R.SPEC_ITEMS)
    assert {r["unit"] for r in rows} <= {"%", "AUC", "", "FID"}


def test_compare_keeps_the_last_value_and_rejects_unknown_keys(tmp_path):
    rep = R.Report("01_supervised", {"profile": "quick"}, out_root=tmp_path, device="cpu")
    with pytest.raises(ValueError, match="unknown presented number '1.4/vgg'"):
        rep.compare("1.4/vgg", 90.0)
    rep.compare("1.4/resnet18", 40.0)
    rep.compare("1.4/resnet18", 93.5, interval=I.Interval(93.5, 93.0, 94.0), note="second run")
    table = rep.comparison_table().set_index("key")
    assert set(table["item"]) == {"1.4"}  # only the items this chapter compared
    row = table.loc["1.4/resnet18"]
    assert (row["reproduced"], row["difference"], row["status"], row["note"]) == (93.5, -0.29, "reproduced",
                                                                                  "second run")
    assert (row["95% low"], row["95% high"]) == (93.0, 94.0)
    assert table.loc["1.4/resnet50", "status"] == "not run in this profile"
    assert pd.isna(table.loc["1.4/resnet50", "difference"])


def test_comparison_frame_formats_ranges_and_leaves_their_difference_empty():
    df = R.comparison_frame([{"key": "2.2/vae_reconstructions", "reproduced": 27.5,
                              "interval": (25.0, 30.0)}], profile="quick",
                            items={"2.2"}).set_index("key")
    row = df.loc["2.2/vae_reconstructions"]
    assert row["presented"] == "60-70" and pd.isna(row["difference"]) and row["status"] == "worse"
    assert (df["profile"] == "quick").all()


def test_summary_frame_reads_every_chapter_and_treats_blank_values_as_not_run(tmp_path):
    prof = tmp_path / "quick"
    (prof / "01_supervised").mkdir(parents=True)
    (prof / "02_generative").mkdir()
    pd.DataFrame({"key": ["1.4/resnet18", "1.4/resnet50"], "reproduced": [95.0, None],
                  "note": ["", "skipped"], "95% low": [94.6, None], "95% high": [95.4, None]}).to_csv(
        prof / "01_supervised" / "comparison.csv", index=False)
    pd.DataFrame({"key": ["2.4/dcgan"], "reproduced": [50.0], "note": [""], "95% low": [45.0],
                  "95% high": [55.0]}).to_csv(prof / "02_generative" / "comparison.csv", index=False)
    df = R.summary_frame(prof).set_index("key")
    assert len(df) == len(spec.presented_numbers())
    assert df.loc["1.4/resnet18", "status"] == "better" and df.loc["1.4/resnet18", "chapter"] == "01_supervised"
    assert df.loc["1.4/resnet50", "status"] == "not run in this profile"
    assert df.loc["1.4/resnet50", "chapter"] == ""
    assert df.loc["2.4/dcgan", "status"] == "better" and df.loc["2.4/dcgan", "chapter"] == "02_generative"
    assert df.loc["3.6/mpl", "status"] == "not run in this profile"
    assert R.summary_frame(tmp_path / "empty")["status"].eq("not run in this profile").all()
