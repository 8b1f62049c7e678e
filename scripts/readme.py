"""The generated sections of docs/*.md: every measured number in them comes from a record under bench/records/.

    python scripts/readme.py record outputs/quick            # a finished report: manifest, run.json, tables
    python scripts/readme.py record outputs/tests            # the last ./run_tests.sh: junit.xml, context.json
    python scripts/readme.py record outputs/bench/NAME.json  # one bench run (bench/*.py write these)
    python scripts/readme.py write                           # regenerate the generated sections of docs/*.md
    python scripts/readme.py check                           # exit 1 when a page differs from `write`
    python scripts/readme.py context [COMMAND ...]           # JSON: command, commit, date, machine
    python scripts/readme.py shots outputs/quick             # the README's screenshots of a recorded run

Records are small (JSON, the CSV tables and per-example results of a report) and committed, so the pages can be
checked against them on any clone; a record that is missing is said to be missing instead of leaving a stale
number.
"""
from __future__ import annotations

import difflib
import json
import shutil
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import record  # noqa: E402

from lib.chapters.findings import count_line, findings  # noqa: E402
from lib.profiles import scale_note  # noqa: E402
from lib.report import CHAPTERS, summary_frame  # noqa: E402
from lib.report.tables import markdown  # noqa: E402

README = ROOT / "README.md"
DOCS = ROOT / "docs"
RECORDS = ROOT / "bench" / "records"
HEADLINE_TABLES = {"01_supervised": ["accuracy"], "02_generative": ["fid"], "03_semi_supervised": ["results"],
                   "04_extras": ["retrieval_quality"]}
SHOWN_COLUMNS = 9


# ---------------------------------------------------------------------------------------------- recording
def context(command: str) -> dict:
    return {"command": command, "commit": record.git_commit(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": record.machine()}


def record_tests(folder: Path, records: Path) -> Path:
    """``outputs/tests`` (junit.xml + context.json of ``./run_tests.sh``) -> ``records/tests.json``."""
    junit, ctx = folder / "junit.xml", folder / "context.json"
    for path in (junit, ctx):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run ./run_tests.sh first")
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    out = {**json.loads(ctx.read_text()), "passed": n["tests"] - n["failures"] - n["errors"] - n["skipped"],
           "failed": n["failures"] + n["errors"], "skipped": n["skipped"],
           "seconds": round(float(suite.get("time", 0)), 1)}
    path = records / "tests.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    return path


def record_report(profile_dir: Path, records: Path) -> Path:
    """``outputs/<profile>`` -> ``records/reports/<profile>/``: manifest, run.json and every chapter's
    CSV tables (the headline tables, comparison.csv, findings.csv), params, provenance and
    per-example results (so the findings and their intervals can be recomputed from the record)."""
    for name in ("manifest.json", "run.json"):
        if not (profile_dir / name).is_file():
            raise FileNotFoundError(f"{profile_dir / name} not found: run ./run_all.sh --profile "
                                    f"{profile_dir.name} first")
    dest = records / "reports" / profile_dir.name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("manifest.json", "run.json"):
        shutil.copy(profile_dir / name, dest / name)
    for ch in CHAPTERS:
        for src in sorted([*(profile_dir / ch).glob("*.csv"), *(profile_dir / ch).glob("p*.json"),
                           *(profile_dir / ch).glob("per_example/*.npz")]):
            target = dest / src.relative_to(profile_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, target)
    return dest


def record_bench(path: Path, records: Path) -> Path:
    data = json.loads(path.read_text())
    if "summary" not in data or "command" not in data:
        raise ValueError(f"{path} is not a bench record (no summary/command); bench/*.py write those")
    dest = records / "benches" / path.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, dest)
    return dest


def record_any(path: Path, records: Path = RECORDS) -> Path:
    path = path.resolve()
    records.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        return record_bench(path, records)
    if (path / "junit.xml").exists() or path.name == "tests":
        return record_tests(path, records)
    return record_report(path, records)


# ---------------------------------------------------------------------------------------------- sections
def _duration(seconds: float) -> str:
    minutes, sec = divmod(round(seconds), 60)
    return f"{minutes} min {sec} s" if minutes else f"{sec} s"


DIRTY = "-dirty"  # what lib.report.git_commit appends when tracked files had uncommitted changes


def commit_text(commit) -> str:
    """A record's commit, shortened, marked when the record was made on a tree with uncommitted
    changes to tracked files."""
    commit = str(commit)
    sha = commit.removesuffix(DIRTY)
    return f"`{sha[:12]}`" + (" (uncommitted changes)" if sha != commit else "")


def _where(rec: dict) -> tuple[str, str]:
    when = f"{commit_text(rec.get('commit'))} {rec.get('date', '')[:10]}"
    return record.describe_machine(rec.get("machine", {})), when


def measurements_section(records: Path = RECORDS) -> str:
    rows = []
    tests = records / "tests.json"
    if tests.is_file():
        t = json.loads(tests.read_text())
        rows.append(("test suite", f"{t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped in "
                                   f"{_duration(t['seconds'])}", *_where(t), t["command"]))
    else:
        shown = tests.relative_to(ROOT) if tests.is_relative_to(ROOT) else tests
        rows.append(("test suite", f"not recorded: no {shown} (./run_tests.sh, then python scripts/readme.py "
                                   "record outputs/tests)", "", "", ""))
    reports = sorted((records / "reports").glob("*/run.json"))
    for path in reports:
        run = json.loads(path.read_text())
        chapters = ", ".join(f"{ch[:2]} {sec:,} s" for ch, sec in run["chapters"].items())
        failed = [ch for ch, status in run.get("status", {}).items() if status != "ok"]
        note = f"; {run['note']}" if run.get("note") else ""
        rows.append((f"{run['profile']} report, whole pipeline", f"{_duration(run['seconds'])} (chapters {chapters})"
                     + (f"; FAILED: {', '.join(failed)}" if failed else "") + note, *_where(run),
                     run["command"]))
    if not reports:
        rows.append(("report", "not recorded: no report under bench/records/reports", "", "", ""))
    benches = [json.loads(p.read_text()) for p in sorted((records / "benches").glob("*.json"))]
    for b in benches:
        rows.append((f"`{b['bench']}`", b["summary"], *_where(b), b["command"]))
    gpu = any(r.get("machine", {}).get("gpu") for r in benches)
    dirty = any("(uncommitted changes)" in when for _, _, _, when, _ in rows)
    lines = ["### Measurements", "",
             "Generated by `python scripts/readme.py write` from the records in `bench/records/`, each made by "
             "the command shown on the machine shown" + ("." if gpu else "; no GPU has been measured yet.")
             + (" A commit marked *(uncommitted changes)* is the one the tree was at, with changes to tracked "
                "files not yet committed: the code measured is not exactly that commit's." if dirty else ""), "",
             "| what | measured | machine | commit, date | command |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {w} | {m} | {mach} | {when} | {f'`{cmd}`' if cmd else ''} |" for w, m, mach, when, cmd in rows]
    return "\n".join(lines)


def recipe_line(accuracy: pd.DataFrame) -> str:
    """Strong vs presented recipe for ResNet-18, when both rows were trained."""
    acc = dict(zip(accuracy["model"], accuracy["reproduced test acc (%)"]))
    if "resnet18" not in acc or "resnet18-presented-recipe" not in acc:
        return ""
    epochs = accuracy.loc[accuracy["model"] == "resnet18", "epochs"].item()
    return (f"ResNet-18 with the strong recipe: {acc['resnet18']}% test accuracy; with the presented recipe, same "
            f"{epochs} epochs and data: {acc['resnet18-presented-recipe']}%.")


def results_section(records: Path = RECORDS, profile: str = "quick") -> str:
    folder = records / "reports" / profile
    if not (folder / "manifest.json").is_file():
        shown = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
        return f"### Results of the `{profile}` profile\n\nnot recorded: no {shown}/manifest.json"
    man = json.loads((folder / "manifest.json").read_text())
    found = findings(folder)
    lines = [f"### Results of the `{profile}` profile", "",
             "The presentation's findings, checked on this run's saved results. Each claim is a margin "
             "(positive on the claim's side) with its 95% bootstrap interval: **holds** when the interval "
             "lies above zero, **does not hold** when below, **not decided at this scale** when it "
             f"straddles zero ({count_line(found)}):", "",
             "| chapter | the presentation says | this run | margin [95% interval] | what the interval covers "
             "| numbers |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {CHAPTERS[r['chapter']]} ({r['item']}) | {r['claim']} | **{r['verdict']}** | "
              f"{r['margin']} | {r['covers']} | {r['evidence']} |" for r in found.to_dict("records")]
    caveat = f" (profile `{profile}` {scale_note(profile)})" if scale_note(profile) else ""
    lines += ["", f"Where the numbers come from{caveat}:", "",
              "| chapter | device | data | wall time (s) | commit |", "| --- | --- | --- | --- | --- |"]
    for ch, prov in man["chapters"].items():
        lines.append(f"| {ch} | {prov.get('device')} | {prov.get('data_source')} | "
                     f"{prov.get('wall_time_s')} | {commit_text(prov.get('git_commit'))} |")
    for ch, names in HEADLINE_TABLES.items():
        for name in names:
            path = folder / ch / f"{name}.csv"
            if path.is_file():
                df = pd.read_csv(path)
                lines += ["", f"**{CHAPTERS[ch]}: `{ch}/{name}.csv`**", "",
                          markdown(df.iloc[:, :SHOWN_COLUMNS])]
                if name == "accuracy" and recipe_line(df):
                    lines += ["", recipe_line(df)]
    counts = summary_frame(folder)["status"].value_counts().to_dict()
    lines += ["", "Presented numbers, by status (reproduced: the presented value, as printed, meets this "
              "run's 95% interval; better / worse: it lies wholly outside): "
              + ", ".join(f"{k}: {v}" for k, v in counts.items()) + "."]
    return "\n".join(lines)


def budget_section(records: Path = RECORDS) -> str:
    """The full profile's FLOP-based cost per chapter at 100 and 60 TFLOP/s (the budget record), then
    every target with its setting, evidence, expected and measured value (a recorded full run)."""
    import budget

    from lib.report.targets import targets_frame

    path = records / "benches" / "budget.json"
    if not path.is_file():
        return ("not recorded: no bench/records/benches/budget.json (python bench/budget.py --record, then "
                "python scripts/readme.py record outputs/bench/budget.json)")
    rec = json.loads(path.read_text())
    if budget.chapter_units(budget.profile_work("full")) != rec["full"]["units"]:
        return ("stale: params/ changed since bench/records/benches/budget.json was recorded (python "
                "bench/budget.py --record, then python scripts/readme.py record outputs/bench/budget.json)")
    hours = rec["full"]["hours"]
    machine, when = _where(rec)
    heads = " | ".join(f"{h['tflops']:g} TFLOP/s" for h in hours)
    lines = [f"| chapter | the full profile trains | PFLOP | {heads} |",
             "| --- | --- | --- |" + " --- |" * len(hours)]
    for row in rec["rows"]:
        ch = row["chapter"]
        lines.append(f"| {ch} | {row['trains']} | {row['PFLOP']:.1f} | "
                     + " | ".join(f"{h[ch]:.2f} h" for h in hours) + " |")
    lines.append(f"| **whole report** | | **{sum(rec['full']['pflop'].values()):.0f}** | "
                 + " | ".join(f"**{h['total']:.2f} h**" for h in hours) + " |")
    verdicts = "; ".join(f"at {h['tflops']:g} TFLOP/s sustained {h['total']:.2f} h, "
                         f"{'within' if h['total'] <= budget.BUDGET_HOURS else 'OVER'} the {budget.BUDGET_HOURS:g} h budget"
                         for h in hours)
    lines += ["", f"Whole report: {verdicts}."]
    lines += ["", f"Projected by `{rec['command']}` at {commit_text(rec['commit'])} ({rec['date'][:10]}, "
              f"{machine}): FLOPs counted on the real networks, at the columns' throughputs ({budget.ASSUMED_TFLOPS:g} "
              f"TFLOP/s = {budget.SUSTAINED_FRACTION:.0%} of an H100's {budget.PEAK_TFLOPS:g} TFLOP/s dense BF16 "
              f"peak), each optimiser step at least "
              f"{budget.ASSUMED_STEP_MS:g} ms, compilation {budget.ASSUMED_COMPILE_S:g} s per graph, checkpoints "
              f"written at {budget.ASSUMED_DISK_GB_S:g} GB/s, each Fréchet distance {budget.ASSUMED_FRECHET_S:g} s "
              f"on the CPU: assumptions, not measurements; each chapter's notebook run and HTML export beyond its "
              f"workloads: {rec['full'].get('notebooks', 'not recorded')}.", ""]
    df = targets_frame(records / "reports", path)
    lines += ["| target | setting (full profile) | evidence | expected from evidence | measured (full profile) |",
              "| --- | --- | --- | --- | --- |"]
    for r in df.to_dict("records"):
        measured = f"{r['measured (full profile)']} (met: {r['met']})" if r["met"] else "not yet run"
        lines.append(f"| {r['target']} | {r['setting (full profile)']} | {r['evidence']} | "
                     f"{r['expected from evidence']} | {measured} |")
    return "\n".join(lines)


def devices_section(records: Path = RECORDS) -> str:
    """Every profile's projected hours on every device (the budget_devices record), with the datasheet figures
    and assumptions it rests on; stale when params/ changed since."""
    import budget

    path = records / "benches" / "budget_devices.json"
    how = ("python bench/budget.py --devices --record, then python scripts/readme.py record "
           "outputs/bench/budget_devices.json")
    if not path.is_file():
        return f"not recorded: no bench/records/benches/budget_devices.json ({how})"
    rec = json.loads(path.read_text())
    if any(budget.chapter_units(budget.profile_work(p)) != u for p, u in rec["units"].items()):
        return f"stale: params/ changed since bench/records/benches/budget_devices.json was recorded ({how})"
    devices = rec["devices"]
    per_chapter = [k for k in rec["rows"][0] if k.startswith("t4 ")]  # each chapter on a T4, in minutes
    lines = ["| profile | " + " | ".join(d["name"] for d in devices.values())
             + "".join(f" | T4: chapter {k[3:5]}" for k in per_chapter) + " |",
             "| --- |" + " --- |" * (len(devices) + len(per_chapter))]
    lines += [f"| `{row['profile']}` | " + " | ".join(f"{row[k]:.2f} h" for k in devices)
              + "".join(f" | {60 * row[k]:.0f} min" for k in per_chapter) + " |" for row in rec["rows"]]
    machine, _ = _where(rec)
    lines += ["", f"Projected by `{rec['command']}` at {commit_text(rec['commit'])} ({rec['date'][:10]}, {machine}): "
              f"FLOPs counted on the real networks, at {rec['sustained_fraction']:.0%} of each device's dense "
              f"half-precision peak, each optimiser step at least {rec['step_ms']:g} ms, with the overheads of the "
              "budget above: assumptions, not measurements (`bench/gpu_check.sh` measures a GPU). `--profile auto` "
              f"on a GPU runs the largest profile projected within `--hours` (default {budget.AUTO_HOURS:g}); a "
              "profile projected over it runs only with `--yes`. The devices, from their datasheets:", ""]
    lines += [f"- {d['name']}: {d['peak_tflops']:g} TFLOP/s dense, {d['bandwidth_gb_s']:,.0f} GB/s, "
              f"{d['memory_gb']:g} GB ({d['source']})" for d in devices.values()]
    return "\n".join(lines)


# how bench/peak_memory.py measures (its module docstring says more)
PEAK_MEMORY_METHOD = ("Each workload is built as its chapter builds it and takes two training steps at its "
                      "batch under fake tensors (no FLOP computed, no byte allocated), every tensor followed"
                      " by torch's MemTracker (a module called twice in a step included): *fp16 step* under "
                      "the CPU's fp16 autocast, with a gradient scaler and fused optimisers as on the T4, by"
                      " kind; *CUDA/CPU forward* the first forward pass under CUDA's own autocast rules on a"
                      " fake CUDA device, over the same on the CPU (CUDA keeps group norm, softmax and "
                      "upsampling in float32, the CPU's rules run them in fp16; the backward cannot run on a"
                      " fake CUDA device); *float32 step* the two steps without autocast, for scale; *T4 "
                      "estimate* the fp16 step times the forward ratio, at least 1: the step's peak holds "
                      "all its forward's saved tensors, and CUDA's rules change only those. Not counted: the"
                      " CUDA context, cuDNN/cuBLAS workspaces and allocator fragmentation (the 2 GB left "
                      "below the T4's 16 GB), and the uint8 dataset (0.15 GB).")


def peak_memory_section(records: Path = RECORDS) -> str:
    """Peak memory of every training step of the colab profile at its batch size (bench/peak_memory.py's
    record), measured on the CPU under fake tensors."""
    path = records / "benches" / "peak_memory.json"
    if not path.is_file():
        return ("not recorded: no bench/records/benches/peak_memory.json (python bench/peak_memory.py "
                "--record, then python scripts/readme.py record outputs/bench/peak_memory.json)")
    rec = json.loads(path.read_text())
    df = pd.DataFrame(rec["rows"])
    machine, _ = _where(rec)
    return (df.to_markdown(index=False, floatfmt=".2f") + f"\n\n{rec['summary']}.\n\nMeasured by "
            f"`{rec['command']}` at {commit_text(rec['commit'])} ({rec['date'][:10]}, {machine}). "
            + PEAK_MEMORY_METHOD)


# each generated section and the page that holds it
SECTIONS = {"measurements": ("measurements.md", measurements_section),
            "results": ("results.md", results_section), "budget": ("gpu.md", budget_section),
            "devices": ("gpu.md", devices_section), "peak_memory": ("gpu.md", peak_memory_section)}


def render(text: str, records: Path = RECORDS, *, page: str | None = None) -> str:
    """``text`` with every ``<!-- NAME:start -->`` ... ``<!-- NAME:end -->`` section of ``page`` (default: all
    sections) regenerated."""
    for name, (where, make) in SECTIONS.items():
        if page is not None and where != page:
            continue
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        if start not in text or end not in text:
            raise ValueError(f"docs/{where} lacks the markers {start} ... {end}")
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{make(records)}\n{end}{tail}"
    return text


def pages(docs: Path = DOCS) -> list[Path]:
    return [docs / name for name in dict.fromkeys(where for where, _ in SECTIONS.values())]


SHOTS = DOCS / "img"
# what the README shows of a run: (file, page, fragment to scroll to, window height)
SHOT_PAGES = (("start-page.png", "index.html", "", 1100),
              ("chapter-2-fid.png", "02_generative.html", "2.4-Samples,-FID-and-diversity", 1100))
SHOT_LIMIT = 300_000  # bytes per picture


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if path is None:
        raise FileNotFoundError("no Chromium on this machine (apt-get install chromium)")
    return path


def section_page(page: str, anchor: str) -> str:
    """``page`` (an exported chapter) cut to the cells from the heading ``anchor`` to the next section
    heading, with the page's own head and styles: headless Chromium draws a page from its top."""
    at = page.index(f'id="{anchor}"')
    start = page.rfind('<div class="jp-Cell', 0, at)
    following = page.find("<h2", at + 1)
    end = page.rfind('<div class="jp-Cell', 0, following) if following != -1 else page.rindex("</main>")
    return page[:page.index("<main")] + "<main>" + page[start:end] + "</main></body></html>"


def take_shots(profile_dir: Path, out: Path = SHOTS, records: Path = RECORDS) -> list[Path]:
    """Screenshots (1200 px wide) of ``profile_dir``'s start page and a chapter section, as palette PNGs under
    ``out``, with ``shots.json`` naming the run they show; the run must be the recorded one (``record`` it
    first), so the README never shows a page its numbers do not come from."""
    import subprocess
    import tempfile

    from PIL import Image

    run = json.loads((profile_dir / "run.json").read_text())
    recorded = records / "reports" / profile_dir.name / "run.json"
    if not recorded.is_file() or json.loads(recorded.read_text()).get("date") != run.get("date"):
        raise ValueError(f"{profile_dir} is not the recorded {profile_dir.name} run: record it first "
                         f"(python scripts/readme.py record {profile_dir})")
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, page, fragment, height in SHOT_PAGES:
            source = profile_dir / "html" / page
            if fragment:  # the section alone, beside the page (its figures are embedded)
                source = Path(tmp) / f"section-{page}"
                source.write_text(section_page((profile_dir / "html" / page).read_text(), fragment))
            url = source.resolve().as_uri()
            raw = Path(tmp) / name
            subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            f"--user-data-dir={tmp}/profile", f"--window-size=1200,{height}",
                            f"--screenshot={raw}", url], capture_output=True, timeout=120, check=True)
            img = Image.open(raw).convert("RGB").quantize(colors=128)
            img.save(out / name, optimize=True)
            if (out / name).stat().st_size > SHOT_LIMIT:
                raise ValueError(f"{out / name} is {(out / name).stat().st_size:,} bytes, over {SHOT_LIMIT:,}")
            saved.append(out / name)
    (out / "shots.json").write_text(json.dumps({"profile": profile_dir.name, "run_date": run.get("date"),
                                                "commit": run.get("commit"),
                                                "pictures": [p.name for p in saved]}, indent=1) + "\n")
    return saved


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("record", "write", "check", "context", "shots"):
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "context":
        print(json.dumps(context(" ".join(args))))
        return 0
    if cmd == "shots":
        try:
            for path in take_shots(Path(args[0]) if args else ROOT / "outputs" / "quick"):
                print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size:,} bytes)")
        except (FileNotFoundError, ValueError) as err:
            print(f"shots: {err}", file=sys.stderr)
            return 2
        return 0
    if cmd == "record":
        for arg in args:
            try:
                print(f"recorded {record_any(Path(arg)).relative_to(ROOT)}")
            except (FileNotFoundError, ValueError) as err:
                print(f"record {arg}: {err}", file=sys.stderr)
                return 2
        return 0
    stale = []
    for path in pages():
        text = path.read_text()
        new = render(text, page=path.name)
        if cmd == "write":
            path.write_text(new)
        elif new != text:
            shown = path.relative_to(ROOT)
            sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True), str(shown),
                                                       f"{shown} as generated"))
            stale.append(str(shown))
    if cmd == "write":
        print("docs/: generated sections rewritten from bench/records/")
        return 0
    if stale:
        print(f"{', '.join(stale)}: generated sections differ from bench/records/: run python scripts/readme.py "
              "write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
