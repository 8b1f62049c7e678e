"""lib/spec.py is the one source of presented values: the chapters, the report code and the notebooks'
code read them from it instead of typing them, the notebooks' markdown quotes each one beside its own
name, and the start page lists the numbers it does not compare."""
import ast
import re
from pathlib import Path

import pytest

from lib import spec
from lib.report import SPEC_ITEMS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("01_supervised", "02_generative", "03_semi_supervised", "04_extras")
SOURCES = sorted(str(p.relative_to(ROOT)) for p in [*(ROOT / "lib" / "chapters").rglob("*.py"),
                                                    *(ROOT / "lib" / "report").rglob("*.py"),
                                                    *(ROOT / "notebooks").glob("*.py")])


def numbers(value):
    """The numbers of a PRESENTED entry. Its words are not values (the citation mark in "mode collapse
    [8]" is not a number the slide reports); its keys are coordinates, not values."""
    if isinstance(value, dict):
        for v in value.values():
            yield from numbers(v)
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from numbers(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield float(value)


# Zero and a hundred are arithmetic before they are values: percent = 100 x a fraction, counts start at
# 0. (On the slide, 0.0 is a learning rate at the end of its schedule and 100 the top of "98%+".)
PRESENTED_VALUES = set(numbers(spec.PRESENTED)) - {0.0, 100.0}

# A number inside a string: "94.49", "1e-3", "5,000"; not the digits of a name ("ResNet-50", "top-5",
# "resnet50") nor of a longer number
IN_TEXT = re.compile(r"(?<![\w.,])(?<![A-Za-z]-)(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?(?:e-?\d+)?)"
                     r"(?![\d,]\d)")

# Numbers that equal a presented value without being one: (file, where, values, why). ``where`` names
# the definition they sit in (a function, a class, or a module-level assignment), so an entry covers only
# that place, and every value of every entry must still occur there.
ALLOWED = [
    ("lib/chapters/mpl_reference.py", "REFERENCE_RECIPE",
     (1000, 128, 0.05, 0.9, 0.0005, 5000, 0.15, 0.7, 0.2, 0.001, 32, 625, 512, 3e-5),
     "kekmodel/MPL-pytorch's own settings, each beside the line of that code that sets it; the presented "
     "run used that code, so most equal the slide's hyperparameters"),
    ("lib/chapters/extras.py", "load_query_image", (32,), "CIFAR-10's image side"),
    ("lib/chapters/extras.py", "EMBED_BATCH", (1000,), "images per forward pass"),
    ("lib/chapters/extras.py", "retrieval_table", (1000,), "milliseconds per second; the timing chunk"),
    ("lib/chapters/supervised.py", "TRANSFORMS_AS_RUN", (32,), "CIFAR-10's image side"),
    ("lib/chapters/twomoon.py", "boundaries_figure", (200,), "grid points per axis of the figure"),
    ("lib/chapters/findings.py", "RESNET_DEPTH", (50,), "ResNet-50's depth"),
    ("lib/report/targets.py", "TARGETS", (200, 96.01),
     "DeVries & Taylor's Cutout README: ResNet-18 at 200 epochs, 96.01% with Cutout-16 (equal to the MPL "
     "reference code's 96.01 by chance)"),
    ("lib/report/targets.py", "TARGETS", (60,), "the full profile's DCGAN FID target"),
    ("lib/report/targets.py", "_ddpm_evidence", (1000,), "Ho et al.'s 1,000 ancestral steps"),
    ("lib/report/tables.py", "_general", (0.001,), "the smallest number a table writes without an exponent"),
    ("notebooks/02_generative.py", "shown_x", (32,), "training images shown beside their reconstructions"),
]


def code_only(path: Path) -> str:
    """The source, with a notebook's markdown cells blanked (line numbers kept)."""
    lines, code = path.read_text().splitlines(), True
    if path.parent.name != "notebooks":
        return "\n".join(lines)
    out = []
    for line in lines:
        if line.startswith("# %%"):
            code = "[markdown]" not in line
            out.append("")
        else:
            out.append(line if code else "")
    return "\n".join(out)


def scopes(tree: ast.Module) -> dict[int, set[str]]:
    """Node id -> names of the definitions it sits in: functions, classes, module-level assignments."""
    names: dict[int, set[str]] = {}

    def visit(node, inside):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inside = inside | {node.name}
        names[id(node)] = inside
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else (
            [stmt.target] if isinstance(stmt, ast.AnnAssign) else [])
        assigned = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        visit(stmt, set(assigned))
    return names


def typed_numbers(path: Path):
    """Every number typed into the code of ``path``: ``(value, line, text, where)`` for numeric
    literals and numbers inside string literals, docstrings and format specifications left out."""
    tree = ast.parse(code_only(path))
    where = scopes(tree)
    skip, negative = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FormattedValue) and node.format_spec:
            skip |= {id(n) for n in ast.walk(node.format_spec)}
        defines = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        if isinstance(node, defines) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            negative.add(id(node.operand))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or id(node) in skip or isinstance(node.value, bool):
            continue
        if isinstance(node.value, (int, float)):
            value = -node.value if id(node) in negative else node.value
            yield float(value), node.lineno, repr(value), where[id(node)]
        elif isinstance(node.value, str):
            for text in IN_TEXT.findall(node.value):
                yield float(text.replace(",", "")), node.lineno, text, where[id(node)]


@pytest.mark.parametrize("rel", SOURCES)
def test_no_presented_value_is_typed_into_the_code(rel):
    allowed = [(where, {float(v) for v in values}) for f, where, values, _ in ALLOWED if f == rel]
    typed = [t for t in typed_numbers(ROOT / rel) if t[0] in PRESENTED_VALUES]
    found = [f"{rel}:{line}: {text}" for value, line, text, inside in typed
             if not any(w in inside and value in values for w, values in allowed)]
    assert not found, "presented values typed in (read them from lib.spec): " + ", ".join(found)
    for where, values in allowed:  # an entry that no longer matches goes
        used = {value for value, _, _, inside in typed if where in inside}
        assert values <= used, f"{rel}: ALLOWED lists {sorted(values - used)} in {where}, which has none"


def test_the_allowed_list_names_sources_the_scan_covers():
    assert {f for f, *_ in ALLOWED} <= set(SOURCES)
    assert {f"lib/chapters/{m}.py" for m in ("findings", "mpl_reference", "sweep", "twomoon")} <= set(SOURCES)
    assert {f"notebooks/{n}.py" for n in NOTEBOOKS} <= set(SOURCES)


def test_a_typed_presented_value_is_caught_where_it_sits(tmp_path):
    source = tmp_path / "typed.py"
    source.write_text('"""93.79 in a docstring describes, and ResNet-50 is a name."""\n'
                      'def table(x):\n'
                      '    return {"presented": 93.79, "text": f"{x:.2f} vs 94.39% of 5,000", "axis": -0.2}\n')
    got = [(value, text, line, where) for value, line, text, where in typed_numbers(source)
           if value in PRESENTED_VALUES]
    assert got == [(93.79, "93.79", 3, {"table"}), (94.39, "94.39", 3, {"table"}),
                   (5000, "5,000", 3, {"table"})]


# ---------------------------------------------------------------------------------------------------------
# The notebooks' markdown: each presented value it quotes is the value lib.spec keeps under that name.
P = spec.PRESENTED
ACCURACY = ("resnet18", "resnet50", "resnet101", "drn_c_26", "drn_d_22", "efficientnet_b0")
LRS, BATCHES = sorted(P["batch_lr_bold"]), sorted({b for b, _ in P["batch_lr_auc"]})
MPL_TABLE = [("common", "weight decay"), ("common", "label smoothing"), ("common", "training steps"),
             ("common", "evaluation every (steps)"), ("student", "learning rate"),
             ("student", "batch size (labelled)"), ("student", "dropout"), ("teacher", "UDA steps"),
             ("finetune", "epochs"), ("finetune", "batch size"), ("finetune", "learning rate"),
             ("finetune", "momentum")]


def auc_cell(b, lr):
    return "**{}**" if P["batch_lr_bold"][lr] == b else "{}"


# (notebook, the quoted text with {} for each number, the value lib.spec has for each); a quote names
# what each number is, so two values swapped between names fail
QUOTES = [
    ("01_supervised", "ResNet18 {}%, ResNet50 {}%, ResNet101 {}%, DRN-C-26 {}%, DRN-D-22 {}%, "
     "EfficientNet-B0 {}%", [P["accuracy"][m] for m in ACCURACY]),
    ("01_supervised", "reaches {}%+ on CIFAR-10 at {}x",
     [P["efficientnet_pretrained_accuracy"][0], P["efficientnet_pretrained_resolution"]]),
    ("01_supervised", 'The slide remarks "+{}%"', [P["resnet_margin_over_pytorch_cifar"]]),
    ("01_supervised", "by about {} percentage points", [P["resnet_margin_over_pytorch_cifar"]]),
    ("01_supervised", "learning rate {}, batch size {}, StepLR",
     [P["hyperparameters"]["learning rate"], P["hyperparameters"]["batch size"]]),
    ("01_supervised", "Presented test AUC with SGD (lr {} / {}): batch "
     + "; ".join(f"{{}}: {auc_cell(b, LRS[0])} / {auc_cell(b, LRS[1])}" for b in BATCHES) + ".",
     [*LRS, *[v for b in BATCHES for v in (b, P["batch_lr_auc"][b, LRS[0]], P["batch_lr_auc"][b, LRS[1]])]]),
    ("01_supervised", "(batch {} at lr {}, batch {} at lr {})",
     [v for lr in LRS for v in (P["batch_lr_bold"][lr], lr)]),
    ("01_supervised", "accuracy {} on {} test images, macro and weighted averages {} (precision, recall, f1)",
     [P["class_report_accuracy"], P["class_report_total_support"], *sorted({
         v for avg in P["class_report_summary"].values() for v in avg})]),
    ("01_supervised", "per-class f1 from {} (cat) to {} (car, ship)",
     [P["class_report"]["cat"][2], P["class_report"]["automobile"][2]]),
    ("01_supervised", "the other 9 classes average {}% ACC", [100 * P["all_but_cat_average"]]),
    ("02_generative", "reaches only **{}–{}%**", list(P["vae_augmentation_accuracy"])),
    ("02_generative", "**DCGAN FID {}** (lr {}, batch {}, {} epochs); **DDPM FID {}** (lr {}, batch {}, "
     "{} epochs), on {} generated images",
     [v for m in ("dcgan", "ddpm") for v in (P["fid"][m], *P["fid_setting"][m].values())] + [P["fid_images"]]),
    ("02_generative", "not the presented {}, aiming", [P["fid_setting"]["ddpm"]["epochs"]]),
    ("03_semi_supervised", "Meta Pseudo Labels at {} ± {}%",
     [P["mpl"]["paper (with finetune)"], P["mpl_std"]["paper (with finetune)"]]),
    ("03_semi_supervised", "{} validation + {} labelled + {} unlabelled", list(P["ssl_split"].values())),
    ("03_semi_supervised", "weight decay {}, label smoothing {}, {} steps, evaluation every {}; student and "
     "teacher lr {}, batch {}, dropout {}; UDA steps {}; finetune {} epochs, batch {}, lr {}, momentum {}.",
     [P["mpl_hyperparameters"][k] for k in MPL_TABLE]),
    ("03_semi_supervised", "paper {} ± {} (with finetune); reference code {} without / {} with finetune",
     [P["mpl"]["paper (with finetune)"], P["mpl_std"]["paper (with finetune)"],
      P["mpl"]["reference code, no finetune"], P["mpl"]["reference code, with finetune"]]),
    ("03_semi_supervised", "the presentation's {}-step run {}, {} after finetune, best {}.",
     [P["mpl_hyperparameters"]["common", "training steps"], P["mpl"]["presented 30k steps"],
      P["mpl"]["presented 30k steps + finetune"], P["mpl"]["presented best"]]),
]
NUMBER = r"(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?(?:e-?\d+)?)"
DECIMAL = re.compile(r"(?<![\w.])(?<![A-Za-z]-)\d+\.\d+(?:e-?\d+)?|(?<![\w.])\d+e-\d+")


def markdown(name: str) -> list[str]:
    """The text of each markdown cell of notebook ``name``, its lines joined by single spaces (a
    heading ends with a full stop)."""
    cells, cell = [], None
    for line in (ROOT / "notebooks" / f"{name}.py").read_text().splitlines():
        if line.startswith("# %%"):
            cell = [] if "[markdown]" in line else None
            if cell is not None:
                cells.append(cell)
        elif cell is not None and line.startswith("#"):
            heading = line.startswith("# #")  # a sentence of its own
            cell.append(line.lstrip("#").strip() + ("." if heading else ""))
    return [" ".join(c) for c in cells]


def quoted(text: str, template: str) -> list[tuple[float, tuple[int, int]]] | None:
    """The numbers where ``text`` quotes ``template`` and their spans; None where it does not."""
    pattern = NUMBER.join(re.escape(part) for part in template.split("{}"))
    m = re.search(pattern, text)
    if m is None:
        return None
    return [(float(g.replace(",", "")), m.span(i + 1)) for i, g in enumerate(m.groups())]


def test_every_value_the_notebooks_quote_is_the_one_spec_keeps_under_its_name():
    for name, template, expected in QUOTES:
        found = [q for text in markdown(name) if (q := quoted(text, template)) is not None]
        assert len(found) == 1, f"{name}: the markdown quotes {template!r} {len(found)} times, not once"
        got = [value for value, _ in found[0]]
        assert got == pytest.approx([float(v) for v in expected]), (name, template, got, expected)


def test_every_decimal_the_notebooks_present_is_quoted_beside_its_name():
    """A new quote cannot go unchecked: each decimal number in a markdown sentence that speaks of the
    presentation or the slide lies inside one of the quotes above (SPEC item numbers aside)."""
    checked = 0
    for name in NOTEBOOKS:
        templates = [t for n, t, _ in QUOTES if n == name]
        for text in markdown(name):
            covered = [span for t in templates if (q := quoted(text, t)) for _, span in q]
            for m in DECIMAL.finditer(text):
                begin, end = text.rfind(". ", 0, m.start()), text.find(". ", m.end())
                sentence = text[max(begin, 0):end if end >= 0 else len(text)]
                if m.group() in SPEC_ITEMS or not re.search(r"[Pp]resent|slide", sentence):
                    continue
                checked += 1
                assert any(a <= m.start() and m.end() <= b for a, b in covered), \
                    f"{name}: {m.group()} in {sentence!r} is quoted beside no name (QUOTES)"
    assert checked >= 40  # the accuracies, AUCs, FIDs, class report, MPL results and settings


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
