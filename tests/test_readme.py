"""The generated sections of docs/*.md: they match the committed records, and the generator says when one is
missing instead of keeping a stale number; the README stays a landing page that links them."""
import json
import re
import subprocess
import sys

import pandas as pd
import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import readme  # noqa: E402

MACHINE = {"cpu": "x86_64", "cores": 2, "memory_gib": 23.4, "torch_threads": 2}


def test_readme_generated_sections_match_the_records():
    proc = subprocess.run([sys.executable, "scripts/readme.py", "check"], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr


def test_missing_records_are_named_not_kept(tmp_path):
    text = readme.measurements_section(tmp_path)
    assert "test suite | not recorded" in text and "report | not recorded" in text
    assert "no GPU has been measured yet" in text
    assert "not recorded: no" in readme.results_section(tmp_path)


def test_records_become_rows_with_machine_commit_and_command(tmp_path):
    (tmp_path / "tests.json").write_text(json.dumps({
        "command": "./run_tests.sh", "commit": "abcdef1234567", "date": "2026-11-29T10:00:00+00:00",
        "machine": MACHINE, "passed": 170, "failed": 1, "skipped": 2, "seconds": 295.0}))
    run = tmp_path / "reports" / "quick" / "run.json"
    run.parent.mkdir(parents=True)
    run.write_text(json.dumps({"profile": "quick", "seconds": 2108, "chapters": {"01_supervised": 1113,
                               "02_generative": 434}, "status": {"01_supervised": "ok", "02_generative": "failed"},
                               "command": "./run_all.sh --profile quick", "commit": "1234567890abc",
                               "date": "2026-11-29T11:00:00+00:00", "machine": MACHINE}))
    bench = tmp_path / "benches" / "fid_throughput.json"
    bench.parent.mkdir()
    bench.write_text(json.dumps({"bench": "fid_throughput", "summary": "Inception-v3 15.1 images/s",
                                 "command": "python bench/fid_throughput.py", "commit": "fedcba987654",
                                 "date": "2026-11-29T12:00:00+00:00", "machine": {**MACHINE, "gpu": "NVIDIA H200"},
                                 "rows": []}))
    lines = readme.measurements_section(tmp_path).splitlines()
    row = next(line for line in lines if line.startswith("| test suite"))
    assert "170 passed, 1 failed, 2 skipped in 4 min 55 s" in row and "`abcdef123456` 2026-11-29" in row
    assert "CPU only (2 cores, 23.4 GiB)" in row and "`./run_tests.sh`" in row
    row = next(line for line in lines if line.startswith("| quick report"))
    assert "35 min 8 s (chapters 01 1,113 s, 02 434 s); FAILED: 02_generative" in row
    row = next(line for line in lines if "fid_throughput" in line)
    assert "Inception-v3 15.1 images/s" in row and "NVIDIA H200 (2 cores" in row
    assert "no GPU has been measured yet" not in "\n".join(lines)


def test_a_record_made_on_uncommitted_changes_says_so(tmp_path):
    (tmp_path / "benches").mkdir()
    for name, commit in (("clean", "fedcba9876543210"), ("dirty", "0123456789abcdef-dirty")):
        (tmp_path / "benches" / f"{name}.json").write_text(json.dumps({
            "bench": name, "summary": "s", "command": f"python bench/{name}.py", "commit": commit,
            "date": "2026-11-29T12:00:00+00:00", "machine": MACHINE, "rows": []}))
    text = readme.measurements_section(tmp_path)
    rows = {name: next(line for line in text.splitlines() if f"`{name}`" in line) for name in ("clean", "dirty")}
    assert "| `fedcba987654` 2026-11-29 |" in rows["clean"]
    assert "| `0123456789ab` (uncommitted changes) 2026-11-29 |" in rows["dirty"]
    assert "*(uncommitted changes)*" in text  # and what that means, once
    # every committed record made on a dirty tree says so in the README
    readme_text = (ROOT / "docs" / "measurements.md").read_text()
    for path in sorted((ROOT / "bench" / "records" / "benches").glob("*.json")):
        rec = json.loads(path.read_text())
        row = next(line for line in readme_text.splitlines() if line.startswith(f"| `{rec['bench']}` |"))
        assert ("(uncommitted changes)" in row) == str(rec["commit"]).endswith("-dirty"), path.name


def test_results_section_reads_the_recorded_tables(tmp_path):
    folder = tmp_path / "reports" / "quick"
    (folder / "01_supervised").mkdir(parents=True)
    prov = {"device": "cpu (2 cores)", "data_source": "synthetic", "wall_time_s": 12.5,
            "git_commit": "0123456789abcdef"}
    (folder / "manifest.json").write_text(json.dumps({"chapters": {"01_supervised": prov}}))
    pd.DataFrame({"model": ["resnet18", "resnet18-presented-recipe"], "reproduced test acc (%)": [46.35, 24.35],
                  "epochs": [4, 4]}).to_csv(folder / "01_supervised" / "accuracy.csv", index=False)
    pd.DataFrame({"key": ["1.4/resnet18"], "reproduced": [46.35], "note": [""], "95% low": [44.1],
                  "95% high": [48.6]}).to_csv(folder / "01_supervised" / "comparison.csv", index=False)
    text = readme.results_section(tmp_path)
    assert "| 01_supervised | cpu (2 cores) | synthetic | 12.5 | `0123456789ab` |" in text
    assert "strong recipe: 46.35% test accuracy; with the presented recipe, same 4 epochs and data: 24.35%" in text
    assert "worse: 1" in text and "not run in this profile: " in text
    # the findings: a count line, and a row per claim with its margin and what its interval covers
    assert "holds: 0, does not hold: 0, not decided at this scale: 0, not run: 13" in text
    assert "| margin [95% interval] | what the interval covers |" in text


def test_render_replaces_only_between_markers(tmp_path):
    text = "intro\n<!-- measurements:start -->\nold 1\n<!-- measurements:end -->\nmiddle\n" \
           "<!-- results:start -->\nold 2\n<!-- results:end -->\n" \
           "<!-- budget:start -->\nold 3\n<!-- budget:end -->\n" \
           "<!-- devices:start -->\nold 4\n<!-- devices:end -->\n" \
           "<!-- peak_memory:start -->\nold 5\n<!-- peak_memory:end -->\nend\n"
    out = readme.render(text, tmp_path)
    assert out.startswith("intro\n<!-- measurements:start -->\n### Measurements") and out.endswith("end\n")
    assert "old 1" not in out and "old 2" not in out and "old 3" not in out and "\nmiddle\n" in out
    assert "not recorded: no bench/records/benches/budget.json" in out  # no record: said, not kept
    assert "old 4" not in out and "not recorded: no bench/records/benches/budget_devices.json" in out
    assert "old 5" not in out and "not recorded: no bench/records/benches/peak_memory.json" in out
    assert readme.render(out, tmp_path) == out
    with pytest.raises(ValueError, match="lacks the markers"):
        readme.render("no markers", tmp_path)


def test_record_tests_reads_junit_and_context(tmp_path):
    src = tmp_path / "tests"
    src.mkdir()
    (src / "junit.xml").write_text('<testsuites><testsuite name="pytest" errors="1" failures="2" skipped="3" '
                                   'tests="20" time="61.25"/></testsuites>')
    (src / "context.json").write_text(json.dumps({"command": "./run_tests.sh", "commit": "c", "date": "d",
                                                  "machine": MACHINE}))
    out = json.loads(readme.record_any(src, tmp_path / "records").read_text())
    assert (out["passed"], out["failed"], out["skipped"], out["seconds"]) == (14, 3, 3, 61.2)
    with pytest.raises(FileNotFoundError, match="run ./run_tests.sh first"):
        readme.record_tests(tmp_path / "nothing", tmp_path / "records")


def test_the_budget_section_goes_stale_when_params_change(tmp_path, monkeypatch):
    import budget

    (tmp_path / "benches").mkdir()
    src = readme.RECORDS / "benches" / "budget.json"
    (tmp_path / "benches" / "budget.json").write_text(src.read_text())
    assert "| **whole report** |" in readme.budget_section(tmp_path)
    real = budget.profile_work

    def longer(profile="full"):
        work = real(profile)
        work[0].units *= 2  # as if an epoch count had changed
        return work

    monkeypatch.setattr(budget, "profile_work", longer)
    assert readme.budget_section(tmp_path).startswith("stale: params/ changed")


def test_the_layout_names_every_module_under_lib():
    """The "How it is built" page's layout block names each module of lib/: a top-level file by its name, a
    package's module by its name in the package's entry; and names no module that is gone."""
    text = (ROOT / "docs" / "design.md").read_text()
    block = text[text.index("```\nlib/\n") + len("```\nlib/\n"):]
    entries: dict[str, str] = {}  # "train/" or "data.py batches.py" -> what the block says of it
    for line in block[:block.index("```")].splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            names, _, what = line.strip().partition("  ")
            entries[names] = what.strip()
        else:
            entries[names] += " " + line.strip()
    files = {n for names in entries if not names.endswith("/") for n in names.split()}
    lib = ROOT / "lib"
    assert files == {p.name for p in lib.glob("*.py") if p.name != "__init__.py"}
    assert {n for n in entries if n.endswith("/")} == {f"{p.name}/" for p in lib.iterdir()
                                                       if (p / "__init__.py").is_file()}
    for path in sorted(lib.glob("*/**/*.py")):
        if path.name != "__init__.py":
            package = f"{path.relative_to(lib).parts[0]}/"
            assert re.search(rf"\b{path.stem}\b", entries[package]), \
                f"docs/design.md's layout does not name {path.relative_to(ROOT)} under lib/{package}"


def test_the_readme_is_a_landing_page_that_links_every_doc():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) < 14_000
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{page.name}" in text, f"README.md does not link docs/{page.name}"
    assert "./run_all.sh" in text and "./run_tests.sh" in text


def test_the_screenshots_show_the_recorded_run():
    shots = ROOT / "docs" / "img" / "shots.json"
    if not shots.is_file():
        pytest.skip("no screenshots taken yet (python scripts/readme.py shots outputs/quick)")
    meta = json.loads(shots.read_text())
    run = json.loads((ROOT / "bench" / "records" / "reports" / meta["profile"] / "run.json").read_text())
    assert meta["run_date"] == run["date"] and meta["commit"] == run["commit"]
    text = (ROOT / "README.md").read_text()
    for name in meta["pictures"]:
        assert (ROOT / "docs" / "img" / name).stat().st_size < readme.SHOT_LIMIT
        assert f"(docs/img/{name})" in text


def test_shots_refuse_a_run_that_is_not_recorded(tmp_path):
    prof = tmp_path / "quick"
    prof.mkdir()
    (prof / "run.json").write_text(json.dumps({"date": "2026-12-06T00:00:00+00:00", "commit": "c"}))
    with pytest.raises(ValueError, match="record it first"):
        readme.take_shots(prof, tmp_path / "img", tmp_path / "records")


def test_the_peak_memory_section_shows_the_recorded_table(tmp_path):
    rec = {"bench": "peak_memory", "command": "python bench/peak_memory.py --record", "commit": "abc",
           "date": "2026-01-01T00:00:00+00:00", "machine": MACHINE, "limit_gb": 14.0,
           "summary": "profile colab: all under 14 GB: yes",
           "rows": [{"chapter": "02_generative", "workload": "ddpm", "batch": 128, "fp16 step GB": 1.99,
                     "CUDA/CPU forward": 1.67, "T4 estimate GB": 3.31, "under 14 GB": "yes"}]}
    (tmp_path / "benches").mkdir()
    (tmp_path / "benches" / "peak_memory.json").write_text(json.dumps(rec))
    out = readme.peak_memory_section(tmp_path)
    assert "| 02_generative | ddpm" in out and "3.31" in out and "profile colab: all under 14 GB: yes." in out
    assert "`python bench/peak_memory.py --record` at `abc`" in out and out.endswith(readme.PEAK_MEMORY_METHOD)
