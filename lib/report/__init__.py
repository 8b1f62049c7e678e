"""Saving tables and figures with provenance, the per-profile manifest, and the HTML index page.

A chapter notebook opens a :class:`Report`, saves every table (CSV + Markdown) and figure (PNG)
through it under the SPEC item it regenerates, and calls :meth:`Report.finish` as its last cell.
Until then everything is written to a staging folder; ``finish`` moves it into
``outputs/<profile>/<chapter>/`` in one rename and records it in
``outputs/<profile>/manifest.json``. A chapter that fails half-way therefore never clobbers the
previous good outputs. Every saved file gets a provenance sidecar: git commit, parameters hash,
seed, library versions, device, data source, wall time and, per run trained, what compiling did
(``compile``: graphs, eager fallbacks, any compile error).

Checkpoints and TensorBoard logs live outside the chapter folder (``outputs/<profile>/checkpoints``
and ``.../tensorboard``), so re-running a chapter resumes or reuses training instead of repeating
it.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .. import storage
from ..evaluate import intervals
from ..params import params_hash
from ..spec import presented_numbers, status
from ..storage import ROOT, default_out_root, write_text_atomic
from ..train.device import COMPILE_RECORDS
from .tables import markdown, shown

PER_EXAMPLE = "per_example"   # a chapter's subfolder of per-image / per-query results


def load_per_example(folder: str | Path, name: str) -> dict[str, np.ndarray]:
    """The arrays saved by :meth:`Report.per_example` as ``name`` in a chapter ``folder``."""
    path = Path(folder) / PER_EXAMPLE / f"{name}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{PER_EXAMPLE}/{name}.npz missing")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


CHAPTERS = {
    "01_supervised": "1. Supervised learning",
    "02_generative": "2. Generative models",
    "03_semi_supervised": "3. Semi-supervised learning",
    "04_extras": "4. Extras: similarity search",
}
SPEC_ITEMS = {
    "1.1": "Model descriptions (ResNet, DRN, EfficientNet)",
    "1.2": "DRN activation maps",
    "1.3": "Class activation maps (CAM)",
    "1.4": "Accuracy table (presented vs reproduced)",
    "1.5": "Reference table (kuangliu/pytorch-cifar)",
    "1.6": "Training and validation accuracy per epoch",
    "1.7": "Batch size x learning rate AUC table",
    "1.8": "Hyperparameter table",
    "1.9": "Confusion matrix",
    "1.10": "Classification report",
    "2.1": "Generative model descriptions and comparison",
    "2.2": "VAE as augmentation",
    "2.3": "FID definition",
    "2.4": "FID results and sample grids",
    "3.1": "SSL methods table (MPL paper)",
    "3.2": "TwoMoon decision boundaries",
    "3.3": "MPL algorithm",
    "3.4": "Data split",
    "3.5": "Hyperparameter table",
    "3.6": "Results table",
    "3.7": "Attempts and training logs",
    "3.8": "TensorBoard curves",
    "4.1": "Cosine vs Euclidean",
    "4.2": "Query by image",
}


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "timm", "numpy", "pandas", "scikit-learn", "pytorch-fid",
                "grad-cam", "diffusers", "papermill"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"


class Report:
    """Collects one chapter's outputs for one profile; see the module docstring."""

    def __init__(self, chapter: str, params: dict, *, out_root: str | Path | None = None,
                 data_source: str | None = None, device: str | None = None):
        if chapter not in CHAPTERS:
            raise ValueError(f"unknown chapter {chapter!r}; expected one of {list(CHAPTERS)}")
        self.chapter, self.params = chapter, dict(params)
        self.profile = params.get("profile", "custom")
        self.profile_dir = Path(out_root or default_out_root()) / self.profile
        self.final_dir = self.profile_dir / chapter
        # one writer per profile: a second run (another notebook, run_all.sh) stops here, saying who
        self.lock = storage.lock_profile(self.profile_dir, command=f"notebook {chapter}")
        self.recoveries_from = len(storage.RECOVERIES)
        self.compiles_from = len(COMPILE_RECORDS)
        self.spent_from = dict(intervals.SPENT)
        # compiled kernels persist with the profile's outputs (run_all.sh sets the same folder)
        inductor = self.profile_dir / "cache" / "inductor"
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(inductor))
        self.staging = self.profile_dir / ".staging" / chapter
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)
        # what the chapter trains on: params' device as resolved
        if device is None and "device" in params:
            from ..train import device_description, pick_device

            device = device_description(pick_device(params["device"]))
        self.data_source, self.device = data_source, device
        self.items: dict[str, list[dict]] = {}
        self.skipped: dict[str, str] = {}
        self.comparisons: list[dict] = []
        self.t0 = time.perf_counter()
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def describe(self, detail: str = "") -> str:
        """The chapter's opening line (Markdown): profile, device, data source and ``detail``."""
        return (f"**Profile `{self.profile}`** on {self.device}; data: {self.data_source}"
                + (f"; {detail}." if detail else "."))

    # -- places for work that outlives one run
    def work_dir(self, kind: str, *names: str) -> Path:
        """``outputs/<profile>/<kind>/<chapter>/<names...>``, e.g. checkpoints or tensorboard
        runs."""
        return storage.work_dir(self.profile_dir, kind, self.chapter, *names)

    def provenance(self) -> dict:
        return {
            "chapter": self.chapter, "profile": self.profile, "git_commit": git_commit(),
            "params_hash": params_hash(self.params), "seed": self.params.get("seed"),
            "device": self.device, "data_source": self.data_source, "libraries": library_versions(),
            "started_utc": self.started, "wall_time_s": round(time.perf_counter() - self.t0, 1),
            "host": platform.node(),
            # unreadable checkpoints or caches this chapter moved aside and rebuilt or resumed past
            "recovered": storage.RECOVERIES[self.recoveries_from:],
            # per run this chapter trained: {module: {compiled, graphs, eager_calls, error}}
            "compile": {r["run"]: r["modules"] for r in COMPILE_RECORDS[self.compiles_from:]},
            # seconds this chapter spent on intervals (bootstrap, the FID replicates, the timing
            # repeats and two-moons seeds behind findings) and on its findings at finish
            "intervals_s": {k: round(v - self.spent_from.get(k, 0.0), 2)
                            for k, v in intervals.SPENT.items()
                            if v - self.spent_from.get(k, 0.0) > 0},
            "findings_s": getattr(self, "findings_s", None),
        }

    def _record(self, item: str, entry: dict) -> None:
        if item not in SPEC_ITEMS:
            raise ValueError(f"unknown SPEC item {item!r}; known: {', '.join(SPEC_ITEMS)}")
        self.items.setdefault(item, []).append(entry)

    def _sidecar(self, name: str, extra: dict) -> None:
        side = {**self.provenance(), **extra}
        write_text_atomic(self.staging / f"{name}.provenance.json",
                          json.dumps(side, indent=2, default=str))

    def table(self, df: pd.DataFrame, name: str, *, item: str, title: str,
              notes: str = "") -> pd.DataFrame:
        """Save ``df`` as ``<name>.csv`` and ``<name>.md`` for SPEC ``item``; returns ``df`` as a
        :class:`~lib.report.tables.ReportFrame`, which a notebook shows whole and formatted."""
        df.to_csv(self.staging / f"{name}.csv", index=False)
        md = f"**{title}**\n\n{markdown(df)}\n"
        if notes:
            md += f"\n{notes}\n"
        write_text_atomic(self.staging / f"{name}.md", md)
        self._sidecar(name, {"item": item, "title": title, "rows": len(df), "notes": notes})
        self._record(item, {"kind": "table", "path": f"{self.chapter}/{name}.csv", "title": title})
        return shown(df)

    def figure(self, fig, name: str, *, item: str, title: str, dpi: int = 120):
        """Save a matplotlib figure as ``<name>.png`` for SPEC ``item``; returns the figure for
        display."""
        fig.savefig(self.staging / f"{name}.png", dpi=dpi, bbox_inches="tight")
        self._sidecar(name, {"item": item, "title": title})
        self._record(item, {"kind": "figure", "path": f"{self.chapter}/{name}.png", "title": title})
        return fig

    def per_example(self, name: str, *, item: str, run: str = "", **arrays) -> None:
        """Save per-example results as ``per_example/<name>.npz`` (compressed) for SPEC ``item``:
        arrays with one entry per test image, query or seed, so an interval or a new comparison
        can be computed later without rerunning anything. ``run`` names what produced them (a
        checkpoint folder: run name and settings hash)."""
        folder = self.staging / PER_EXAMPLE
        folder.mkdir(exist_ok=True)
        storage.save_npz_atomic(folder / f"{name}.npz", run=np.array(run), **arrays)
        self._sidecar(f"{PER_EXAMPLE}/{name}", {"item": item, "run": run,
                                                "arrays": {k: list(np.shape(v))
                                                           for k, v in arrays.items()}})

    def load_per_example(self, name: str) -> dict[str, np.ndarray]:
        """What this chapter saved with :meth:`per_example` as ``name`` so far."""
        return load_per_example(self.staging, name)

    def predictions(self, name: str, logits, labels, *, item: str, run: str = "",
                    scores: bool = False) -> None:
        """Save a classifier's per-image test results as ``per_example/<name>.npz``: predicted class
        and label (uint8) and correctness; with ``scores`` also the softmax probabilities
        (float32, for AUC)."""
        import torch

        logits = torch.as_tensor(logits).float()
        pred = logits.argmax(1).numpy()
        label = torch.as_tensor(labels).numpy()
        extra = {"scores": torch.softmax(logits, 1).numpy()} if scores else {}
        self.per_example(name, item=item, run=run, pred=pred.astype(np.uint8),
                         label=label.astype(np.uint8), correct=pred == label, **extra)

    def text(self, item: str, title: str) -> None:
        """Record that ``item`` is regenerated as explanatory text in the notebook itself."""
        self._record(item, {"kind": "text", "path": None, "title": title})

    def skip(self, item: str, reason: str) -> None:
        """Record that ``item`` was not regenerated in this run, and why (shown on the index
        page)."""
        if item not in SPEC_ITEMS:
            raise ValueError(f"unknown SPEC item {item!r}")
        self.skipped[item] = reason

    def compare(self, key: str, reproduced: float | None, *, interval=None,
                note: str = "") -> None:
        """Record this run's value for one presented number (a ``key`` of
        :func:`lib.spec.presented_numbers`) with its 95% ``interval`` (an
        :class:`lib.evaluate.intervals.Interval` or ``(low, high)``, in the presented number's
        unit), which decides reproduced / better / worse.

        The rows are saved as ``comparison.csv`` on :meth:`finish`; the index page's summary table
        reads them.
        """
        known = {r["key"] for r in presented_numbers()}
        if key not in known:
            raise ValueError(f"unknown presented number {key!r}; see lib.spec.presented_numbers() "
                             "for the keys")
        self.comparisons = [c for c in self.comparisons if c["key"] != key]
        if interval is not None and hasattr(interval, "low"):
            interval = (interval.low, interval.high)
        self.comparisons.append({"key": key,
                                 "reproduced": None if reproduced is None else float(reproduced),
                                 "interval": None if interval is None else
                                 tuple(float(v) for v in interval), "note": note})

    def comparison_table(self) -> pd.DataFrame:
        """This chapter's presented-vs-reproduced rows so far (what ``comparison.csv`` will
        hold), shown like a saved table."""
        return shown(comparison_frame(self.comparisons, profile=self.profile,
                                items={k.split("/")[0]
                                       for k in (c["key"] for c in self.comparisons)}))

    def finish(self) -> Path:
        """Save this chapter's comparisons and findings, move the staged outputs into place in one
        step and record them in the manifest."""
        from ..chapters.findings import chapter_findings

        if self.comparisons:
            self.comparison_table().to_csv(self.staging / "comparison.csv", index=False)
        write_text_atomic(self.staging / "params.json",
                          json.dumps(self.params, indent=2, default=str))
        t0 = time.perf_counter()
        chapter_findings(self.staging, self.chapter).to_csv(self.staging / "findings.csv",
                                                            index=False)
        self.findings_s = round(time.perf_counter() - t0, 2)
        prov = self.provenance()
        write_text_atomic(self.staging / "provenance.json", json.dumps(prov, indent=2, default=str))
        old = self.profile_dir / ".staging" / f"{self.chapter}.old"
        if old.exists():
            shutil.rmtree(old)
        if self.final_dir.exists():
            os.replace(self.final_dir, old)
        os.replace(self.staging, self.final_dir)
        if old.exists():
            shutil.rmtree(old)
        update_manifest(self.profile_dir, self.chapter, prov, self.items, self.skipped)
        storage.unlock_profile(self.lock)
        return self.final_dir


def comparison_frame(comparisons: list[dict], *, profile: str,
                     items: set | None = None) -> pd.DataFrame:
    """Presented numbers (all, or those of ``items``) joined with reproduced values, with difference
    and status."""
    got = {c["key"]: c for c in comparisons}
    rows = []
    for spec_row in presented_numbers():
        if items is not None and spec_row["item"] not in items:
            continue
        c = got.get(spec_row["key"], {})
        value = c.get("reproduced")
        pres = spec_row["presented"]
        diff = None
        if value is not None and not isinstance(pres, (tuple, list)):
            diff = round(value - pres, 4)
        iv = c.get("interval")
        rows.append({"item": spec_row["item"], "quantity": spec_row["quantity"],
                     "presented": (f"{pres[0]:g}-{pres[1]:g}" if isinstance(pres, (tuple, list))
                                   else pres),
                     "reproduced": None if value is None else round(value, 4), "difference": diff,
                     "unit": spec_row["unit"],
                     "status": status(pres, value, interval=iv,
                                      higher_is_better=spec_row["higher_is_better"]),
                     "profile": profile, "note": c.get("note", ""), "key": spec_row["key"],
                     "95% low": None if iv is None else round(iv[0], 4),
                     "95% high": None if iv is None else round(iv[1], 4)})
    return pd.DataFrame(rows)


def read_manifest(profile_dir: Path) -> dict:
    path = Path(profile_dir) / "manifest.json"
    if not path.is_file():
        return {"profile": Path(profile_dir).name, "chapters": {}, "items": {}, "skipped": {}}
    return json.loads(path.read_text())


def update_manifest(profile_dir: Path, chapter: str, prov: dict, items: dict,
                    skipped: dict) -> None:
    man = read_manifest(profile_dir)
    man["chapters"][chapter] = prov
    man["items"] = {k: [e for e in v if not (e.get("path") or "").startswith(f"{chapter}/")
                        and e.get("chapter") != chapter] for k, v in man["items"].items()}
    man["skipped"] = {k: v for k, v in man.get("skipped", {}).items()
                      if v.get("chapter") != chapter}
    for item, entries in items.items():
        man["items"].setdefault(item, []).extend({**e, "chapter": chapter} for e in entries)
    for item, reason in skipped.items():
        man["skipped"][item] = {"chapter": chapter, "reason": reason}
    man["items"] = {k: v for k, v in man["items"].items() if v}
    man["updated_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_text_atomic(Path(profile_dir) / "manifest.json", json.dumps(man, indent=2, default=str))


# the start page reads the manifest and frames defined above
from .index import build_index as build_index  # noqa: E402
from .index import summary_frame as summary_frame
