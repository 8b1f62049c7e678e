"""bench/mpl_precision.py measures MPL's feedback h under autocast against fp32: its fp32 control reproduces
the training step's h exactly, and its rows say what the table prints."""
import math
import sys

from conftest import ROOT

from lib import params as P

sys.path.insert(0, str(ROOT / "bench"))
import mpl_precision as M  # noqa: E402


def tiny(**over):
    return P.load("03_semi_supervised", "smoke", {"data": "synthetic", "batch_size": 2, "mu": 1,
                                                  "labelled_size": 20, "val_size": 20,
                                                  "unlabelled_size": 20, **over})


def test_fp32_control_is_exact_and_rows_have_the_table_fields(one_thread):
    p = tiny()
    assert p["width"] == 0.125
    method, twins, stream, source = M.setup(p, ("fp32", "bf16", "fp16"))
    assert source.startswith("synthetic")
    rows = M.measure(method, twins, stream, steps=3, step_every={"fp16": 2})
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(math.isfinite(r["h_fp32"]) and r["h_fp32"] != 0 for r in rows)
    table = {(r["precision"], r["way"]): r for r in M.summarize(rows, ("fp32", "bf16", "fp16"))}
    assert set(table) == {(n, w) for n in ("fp32", "bf16", "fp16") for w in M.WAYS}
    fields = {"precision", "way", "steps", "sign_agreement", "mae_h", "mean_abs_h", "error_reaches_h",
              "steps_student_learning", "sign_agreement_student_learning"}
    assert all(set(r) == fields for r in table.values())
    for way in M.WAYS:  # the replayed forwards and the bench's student step are the training step's
        assert table["fp32", way]["sign_agreement"] == 1.0 and table["fp32", way]["mae_h"] == 0.0
        assert table["fp32", way]["error_reaches_h"] == 0.0
        assert [r[f"h_fp32_{way}"] for r in rows] == [r["h_fp32"] for r in rows]
    assert table["bf16", "logits only"]["mae_h"] > 0  # bf16 rounding shows
    assert table["fp16", "logits only"]["steps"] == 3 and table["fp16", "student step"]["steps"] == 2
    mean_abs = sum(abs(r["h_fp32"]) for r in rows) / 3
    assert table["bf16", "student step"]["mean_abs_h"] == mean_abs


def test_summary_counts_sign_flips_and_errors():
    rows = [{"h_fp32": 0.01, "h_bf16_logits only": 0.02, "lr_student": 0.0},
            {"h_fp32": -0.01, "h_bf16_logits only": 0.01, "lr_student": 0.1},
            {"h_fp32": 0.03, "h_bf16_logits only": 0.03, "lr_student": 0.1}]
    (row,) = M.summarize(rows, ("bf16",))
    assert row["way"] == "logits only" and row["steps"] == 3
    assert row["sign_agreement"] == 2 / 3 and row["sign_agreement_student_learning"] == 1 / 2
    assert math.isclose(row["mae_h"], 0.01) and math.isclose(row["mean_abs_h"], 0.05 / 3)
    assert row["error_reaches_h"] == 2 / 3  # 0.01 off an h of 0.01, 0.02 off -0.01; not 0 off 0.03
    line = M.headline([{"precision": "fp32", "way": "student step"}, row])
    assert line == "bf16 66.7% (MAE 1.0e-02, error >= abs(h) in 66.7% of 3 steps, logits only)"


def test_a_student_step_leaves_the_state_it_starts_from_as_it_was(one_thread):
    """Each precision starts from the same state: a step on one copy must not move another's momentum."""
    import copy

    import torch

    method, twins, stream, _ = M.setup(tiny(), ("fp32",))
    method.train_step(next(stream))  # momentum buffers exist from here on
    batch = next(stream)
    state = copy.deepcopy(method.state_dict())
    with M.Tap(method) as tap:
        method.train_step(batch)
    before, after = tap.calls
    pseudo = method.uda_loss(tap.teacher_out, batch.y_l)["pseudo"]
    first = M.student_step(twins["fp32"], state, before, after, pseudo, batch.y_l)
    second = M.student_step(twins["fp32"], state, before, after, pseudo, batch.y_l)
    assert first[:2] == second[:2] and first[3] == second[3] == 0
    assert all(torch.equal(first[2][k], second[2][k]) for k in first[2])
    params = [k for k, _ in method.student.named_parameters()]  # buffers: BN statistics of later forwards
    assert all(torch.equal(first[2][k], after.weights[k]) for k in params)  # the training step's weights


def test_the_reference_recipe_table_gives_the_precision_and_its_evidence(tmp_path):
    import json

    from lib.chapters import mpl_reference

    full = mpl_reference.reference_recipe_table(P.load("03_semi_supervised", "full")).set_index("param")
    assert full.loc["amp", "this run"] == "fp16" and full.loc["amp", "same"]  # the reference's --amp
    assert full.loc["amp", "notes"] == mpl_reference.feedback_precision_note()
    assert (full.drop(index="amp")["notes"] == "").all()
    smoke = mpl_reference.reference_recipe_table(P.load("03_semi_supervised", "smoke")).set_index("param")
    assert smoke.loc["amp", "this run"] == "auto" and "smoke profile" in smoke.loc["amp", "why different"]

    missing = mpl_reference.feedback_precision_note(tmp_path / "none.json")
    assert missing.startswith("not measured: python bench/mpl_precision.py")
    rows = [{"precision": n, "way": w, "steps": s, "sign_agreement": a, "mae_h": e, "mean_abs_h": 0.05,
             "error_reaches_h": r}
            for n, w, s, a, e, r in (("bf16", "logits only", 200, 1.0, 6e-4, 0.01),
                                     ("bf16", "student step", 200, 0.99, 7e-4, 0.015),
                                     ("fp16", "logits only", 200, 1.0, 7e-5, 0.0))]
    path = tmp_path / "mpl_precision.json"
    path.write_text(json.dumps({"rows": rows, "steps": 200, "profile": "quick", "batch": "16 labelled",
                                "command": "python bench/mpl_precision.py --data A"}))
    note = mpl_reference.feedback_precision_note(path)
    assert "bf16 99.0% of 200 steps, mean absolute error 7.0e-04, error >= abs(h) on 1.5%" in note
    assert "fp16 100.0% of 200 steps, mean absolute error 7.0e-05, error >= abs(h) on 0.0%" in note
    assert "mean abs(h) 5.0e-02" in note and "|" not in note and "`python bench/mpl_precision.py --data A`" in note
