"""lib/spec.py is the one source of presented values: what the chapters display as presented comes
from it, and the start page lists the numbers it does not compare."""
import ast
import re
from pathlib import Path

from lib import spec

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ("supervised", "generative", "semi_supervised", "extras")
NOTEBOOKS = ("01_supervised", "02_generative", "03_semi_supervised", "04_extras")


def _spec_numbers() -> set[float]:
    """Every number in PRESENTED and REFERENCE, including those inside strings and keys."""
    text = repr(spec.PRESENTED) + repr(spec.REFERENCE) + repr(spec.TOLERANCE)
    return {float(x) for x in re.findall(r"\d+(?:\.\d+)?(?:e-?\d+)?", text.replace(",", ""))}


def test_presented_columns_in_chapter_code_hold_no_literals():
    for name in CHAPTERS:
        tree = ast.parse((ROOT / "lib" / "chapters" / f"{name}.py").read_text())
        digits = {id(n.args[1]) for n in ast.walk(tree) if isinstance(n, ast.Call)
                  and getattr(n.func, "id", "") == "round" and len(n.args) == 2}
        digits |= {id(n.slice) for n in ast.walk(tree) if isinstance(n, ast.Subscript)}  # pres[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values):
                    if isinstance(key, ast.Constant) and "presented" in str(key.value):
                        numbers = [n for n in ast.walk(value) if isinstance(n, ast.Constant)
                                   and isinstance(n.value, (int, float))
                                   and not isinstance(n.value, bool) and id(n) not in digits]
                        assert not numbers, f"{name}.py:{key.lineno}: a literal in {key.value!r}"
            if isinstance(node, (ast.FunctionDef,)):
                args = node.args.args + node.args.kwonlyargs
                defaults = node.args.defaults + [d for d in node.args.kw_defaults if d is not None]
                for arg, default in zip(args[len(args) - len(defaults):], defaults):
                    if "presented" in arg.arg:
                        literal = isinstance(default, ast.Tuple) or (
                            isinstance(default, ast.Constant) and default.value is not None)
                        assert not literal, \
                            f"{name}.py: {node.name}({arg.arg}=...) must default to lib.spec"


def test_every_number_the_notebooks_call_presented_is_in_spec():
    from lib.report import SPEC_ITEMS

    known, checked = _spec_numbers(), 0
    for name in NOTEBOOKS:
        for line in (ROOT / "notebooks" / f"{name}.py").read_text().splitlines():
            if (not line.startswith("# ") or line.startswith("# #")
                    or not re.search(r"[Pp]resented|slide", line)):
                continue
            for x in re.findall(r"(?<![\w.])\d+\.\d+(?:e-?\d+)?|\d+e-\d+", line):
                if x in SPEC_ITEMS:  # a reference to a section, not a value
                    continue
                checked += 1
                assert float(x) in known, f"{name}.py: {x} in {line.strip()!r} is not in spec"
    assert checked >= 15  # the presented accuracies, AUCs, FIDs and settings of the markdown


def test_tables_take_their_presented_values_from_spec():
    import torch

    from lib.chapters import generative, supervised

    logits = torch.nn.functional.one_hot(torch.arange(10), 10).float()
    report = supervised.classification_report_table(logits, torch.arange(10), spec.PRESENTED[
        "class_report"].keys()).set_index("class")
    for cls, values in spec.PRESENTED["class_report"].items():
        assert tuple(report.loc[cls, ["presented precision", "presented recall",
                                      "presented f1"]]) == values
    assert report.loc["accuracy", "presented f1"] == spec.PRESENTED["class_report_accuracy"]
    for avg, values in spec.PRESENTED["class_report_summary"].items():
        assert tuple(report.loc[avg, ["presented precision", "presented recall",
                                      "presented f1"]]) == values
    table = generative.comparison_table().set_index("")
    for row, values in spec.PRESENTED["generative_comparison"].items():
        assert tuple(table.loc[row]) == values
    from lib import params as P
    from lib.chapters import semi_supervised

    p = P.load("03_semi_supervised", "smoke", {"data": "synthetic"})
    hyper = semi_supervised.hyperparameter_table(p, semi_supervised.load_ssl_splits(p),
                                                 spec.PRESENTED["mpl_hyperparameters"])
    assert dict(zip(zip(hyper.group, hyper.hyperparameter), hyper.presented)) == \
        spec.PRESENTED["mpl_hyperparameters"]
    logs = semi_supervised.presented_logs(spec.PRESENTED).set_index("log line")
    assert logs["top-5 (%)"].to_dict() == spec.PRESENTED["mpl_log_top5"]


def test_the_start_page_lists_the_numbers_it_does_not_compare(tmp_path):
    from lib.report.index import build_index

    rows = spec.presented_elsewhere()
    items = {r["item"] for r in rows}
    assert {"1.5", "1.7", "1.8", "2.3", "2.4", "3.7"} <= items
    dcgan = next(r for r in rows if r["what"].startswith("DCGAN setting"))
    s = spec.PRESENTED["fid_setting"]["dcgan"]
    assert dcgan["presented"] == f"{s['lr']:g}, {s['batch_size']}, {s['epochs']}"
    top5 = next(r for r in rows if "top-5" in r["what"])
    assert all(f"{v:g}" in top5["presented"] for v in spec.PRESENTED["mpl_log_top5"].values())
    page = build_index(tmp_path / "quick").read_text()
    assert 'id="elsewhere"' in page and "99.96" in page and "0.0002, 128, 50" in page
