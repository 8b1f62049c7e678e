"""The report's start page, ``outputs/<profile>/html/index.html``: the presentation's findings and
whether this run reproduces them, charts of presented vs reproduced numbers, the numbers themselves,
SPEC coverage, key figures and provenance -- all read from the manifest and the chapters' saved
tables."""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from ..profiles import scale_note
from ..storage import write_text_atomic
from . import CHAPTERS, SPEC_ITEMS, comparison_frame, read_manifest
from .tables import HTML, STYLE, render


# -------------------------------------------------------------------------------- index page
def summary_frame(profile_dir: str | Path) -> pd.DataFrame:
    """Every presented number beside this profile's value, read from the chapters' saved
    ``comparison.csv``."""
    profile_dir = Path(profile_dir)
    rows = []
    for ch in CHAPTERS:
        path = profile_dir / ch / "comparison.csv"
        if path.is_file():
            df = pd.read_csv(path, keep_default_na=False, na_values=[""])
            rows += [{"key": r["key"],
                      "reproduced": None if pd.isna(r["reproduced"]) else float(r["reproduced"]),
                      "interval": (None if pd.isna(r.get("95% low", float("nan")))
                                   else (float(r["95% low"]), float(r["95% high"]))),
                      "note": r.get("note") or "", "chapter": ch} for r in df.to_dict("records")]
    found = {r["key"]: r for r in rows if r["reproduced"] is not None}
    out = comparison_frame(list(found.values()), profile=profile_dir.name)
    out["chapter"] = [found.get(k, {}).get("chapter", "") for k in out["key"]]
    return out


_STYLE = ("tr.holds{background:#e3f6e3}tr.fails{background:#fbe9e7}img.chart{max-width:100%}"
          "body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;"
          "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:14px}"
          "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}"
          "th{background:#f3f3f3}.better{background:#e3f6e3}.worse{background:#fbe9e7}"
          ".reproduced{background:#e8f0fe}.thumbs img{width:260px;margin:4px}"
          ".minis{display:flex;flex-wrap:nowrap;gap:4px}"
          "img.mini{width:96px;height:72px;object-fit:contain;background:#fff;display:block}"
          ".thumbs img,img.mini{border:1px solid #ddd}.note{color:#555}")


def build_index(profile_dir: str | Path) -> Path:
    """Write ``<profile_dir>/html/index.html``: the presented-vs-reproduced summary, SPEC coverage,
    provenance and thumbnails of the key figures, all read from the manifest and the chapters' saved
    tables."""
    profile_dir = Path(profile_dir)
    man = read_manifest(profile_dir)
    esc = html.escape
    profile = man["profile"]
    html_dir = profile_dir / "html"
    built = [ch for ch in CHAPTERS if (html_dir / f"{ch}.html").is_file()]
    parts = [f"<h1>CIFAR-10 deep learning report &mdash; profile <code>{esc(profile)}</code></h1>"]
    if scale_note(profile):
        parts.append(f"<p class='note'>Profile <b>{esc(profile)}</b> {esc(scale_note(profile))}. Run the "
                     "<code>full</code> profile on a GPU for the presentation's experiments.</p>")
    links = [f'<a href="{ch}.html">{esc(CHAPTERS[ch])}</a> (<a href="{ch}-code.html">with code</a>)'
             for ch in built]
    if (html_dir / "report.html").is_file():
        links.insert(0, '<a href="report.html"><b>All chapters in one file (report.html)</b></a>')
    parts.append("<h2>Chapters</h2><ul>" + "".join(f"<li>{x}</li>" for x in links) +
                 "".join(f"<li>{esc(CHAPTERS[ch])}: not built in this profile</li>"
                         for ch in CHAPTERS if ch not in built)
                 + "</ul>")

    figures = {item: [e for e in entries if e.get("kind") == "figure"]
               for item, entries in man["items"].items()}
    parts += findings_html(profile_dir, profile, built, figures)
    parts += targets_html(profile_dir.parent, profile)
    summary = summary_frame(profile_dir)
    parts += charts_html(summary, html_dir)
    full = profile in ("full", "full-long")
    parts.append("<h2>Presented vs reproduced</h2>")
    if not full:
        parts.append(f"<details><summary>All {len(summary)} presented numbers beside this run's "
                     f"(folded: profile <b>{esc(profile)}</b> {esc(scale_note(profile))})</summary>")
    parts.append("<p class='note'>Every result the presentation gives (its other numbers, "
                 "settings, references and log values, are listed under the next heading with the "
                 "table that shows them). <i>reproduced</i>: the presented value, as printed (to within "
                 "half a unit of its last digit), meets this run's 95% interval; <i>better</i> or "
                 "<i>worse</i> only when it lies wholly outside. The intervals are bootstrap "
                 "intervals over the test images (FID: over the generated images) and cover "
                 "test-set sampling only, not run-to-run variation. Values come from each "
                 "chapter's <code>comparison.csv</code>.</p>")
    numbers = pd.DataFrame({
        "item": [HTML(f'<a href="{ch}.html">{esc(item)}</a>') if ch in built else item
                 for ch, item in zip(summary["chapter"], summary["item"])],
        "quantity": summary["quantity"], "presented": summary["presented"],
        "this run": summary["reproduced"],
        "95% interval": [interval_text(r) for r in summary.to_dict("records")],
        "difference": summary["difference"], "status": summary["status"]})
    parts.append(render(numbers, table_id="numbers", style=False,
                        row_classes=[s if s in ("better", "worse", "reproduced") else ""
                                     for s in summary["status"]]))
    parts.append("" if full else "</details>")
    parts += elsewhere_html()

    parts.append("<h2>Coverage of the presentation (SPEC items)</h2>")
    coverage = []
    for item, what in SPEC_ITEMS.items():
        entries = man["items"].get(item, [])
        if entries:
            cells = "<br>".join(
                f'<a href="../{esc(e["path"])}">{esc(e["title"])}</a> '
                f'(<a href="{esc(e["chapter"])}.html">chapter</a>)'
                if e.get("path") else f'<a href="{esc(e["chapter"])}.html">{esc(e["title"])}</a>'
                for e in entries)
        elif item in man.get("skipped", {}):
            cells = f"not regenerated: {esc(man['skipped'][item]['reason'])}"
        else:
            cells = "not run in this profile"
        if entries and item in man.get("skipped", {}):
            cells += ("<br><span class='note'>partly skipped: "
                      f"{esc(man['skipped'][item]['reason'])}</span>")
        coverage.append({"item": item, "what": what, "regenerated as": HTML(cells)})
    parts.append(render(pd.DataFrame(coverage), table_id="coverage", style=False))

    thumbs = [e for entries in man["items"].values() for e in entries if e.get("kind") == "figure"]
    if thumbs:
        parts.append("<h2>Key figures</h2><div class='thumbs'>")
        for e in thumbs:
            parts.append(f'<a href="{esc(figure_link(e, built))}" title="{esc(e["title"])}">'
                         f'<img src="../{esc(e["path"])}" alt="{esc(e["title"])}"></a>')
        parts.append("</div>")

    parts.append("<h2>Provenance</h2>")
    provenance = pd.DataFrame(
        [{"chapter": ch, "commit": prov.get("git_commit"), "device": prov.get("device"),
          "data": prov.get("data_source"), "params hash": prov.get("params_hash"),
          # a seed is a name, not a count: no thousands separator
          "seed": None if prov.get("seed") is None else str(prov["seed"]),
          "wall time (s)": prov.get("wall_time_s"), "started (UTC)": prov.get("started_utc")}
         for ch, prov in man["chapters"].items()],
        columns=["chapter", "commit", "device", "data", "params hash", "seed", "wall time (s)",
                 "started (UTC)"])
    parts.append(render(provenance, table_id="provenance", style=False))
    if man["chapters"]:
        libs = next(iter(man["chapters"].values())).get("libraries", {})
        parts.append("<p>Libraries: " + ", ".join(f"{esc(k)} {esc(v)}" for k, v in libs.items())
                     + "</p>")
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>CIFAR-10 report ({esc(profile)})</title><style>{_STYLE}</style>{STYLE}</head>"
            f"<body>{''.join(parts)}</body></html>")
    out = html_dir / "index.html"
    write_text_atomic(out, page)
    return out



def elsewhere_html() -> list[str]:
    """The presentation's numbers that are not results (settings, references, log values), each
    with the chapter table that shows it."""
    from ..spec import presented_elsewhere

    rows = pd.DataFrame(presented_elsewhere(), columns=["item", "what", "presented", "shown"])
    return ["<h2>The presentation's other numbers, and where they are shown</h2>",
            render(rows.rename(columns={"shown": "shown in"}), table_id="elsewhere", style=False)]


VERDICT_CLASS = {"holds": "holds", "does not hold": "fails"}


def interval_text(row: dict) -> str:
    """``low-high`` of a comparison row's 95% interval, or nothing."""
    lo, hi = row.get("95% low"), row.get("95% high")
    if lo is None or hi is None or lo != lo or hi != hi:
        return ""
    return f"{lo:g} to {hi:g}"


THUMBNAILS = 3  # figures shown per finding, in one row


def figure_id(chapter: str, name: str) -> str:
    """The anchor of a saved figure in the exported chapter pages (see :mod:`lib.report.export`)."""
    return f"fig-{chapter}-{name}"


def figure_link(entry: dict, built: list[str]) -> str:
    """Where a manifest's figure ``entry`` is shown: at its anchor in its chapter's page, or the
    image itself where the chapter has no page."""
    if entry.get("chapter") not in built:
        return f'../{entry["path"]}'
    return f'{entry["chapter"]}.html#{figure_id(entry["chapter"], Path(entry["path"]).stem)}'


def figure_thumbnails(entries: list[dict], built: list[str]) -> HTML:
    """Up to :data:`THUMBNAILS` figures as one row of thumbnails, each linking to the figure in its
    chapter's page."""
    esc = html.escape
    links = []
    for e in entries[:THUMBNAILS]:
        target = figure_link(e, built)
        links.append(f'<a href="{esc(target)}"><img class="mini" src="../{esc(e["path"])}" '
                     f'alt="{esc(e["title"])}" title="{esc(e["title"])}"></a>')
    return HTML(f"<div class='minis'>{''.join(links)}</div>" if links else "")


def findings_html(profile_dir: Path, profile: str, built: list[str], figures: dict) -> list[str]:
    """The findings table: each claim of the presentation, this run's verdict, its numbers, and the
    figures saved under the same SPEC item."""
    from ..chapters.findings import count_line, findings

    esc = html.escape
    df = findings(profile_dir)
    parts = [f"<h2>Findings of the presentation, checked on this run (profile <code>{esc(profile)}"
             "</code>)</h2>",
             "<p class='note'>Each claim is a margin (positive on the claim's side) with its 95% "
             "bootstrap interval, from this run's saved per-image results: <b>holds</b> when the "
             "interval lies above zero, <b>does not hold</b> when below, <b>not decided at this "
             "scale</b> when it straddles zero. Each row says what its interval covers. "
             f"{esc(count_line(df))}.</p>"]
    rows = []
    for r in df.to_dict("records"):
        chapter = (f'<a href="{r["chapter"]}.html">{esc(CHAPTERS[r["chapter"]])}</a>'
                   if r["chapter"] in built else esc(CHAPTERS[r["chapter"]]))
        rows.append({
            "chapter": HTML(f"{chapter} ({esc(str(r['item']))})"),
            "the presentation says": r["claim"], "this run": HTML(f"<b>{esc(r['verdict'])}</b>"),
            "margin [95% interval]": HTML(f"{esc(r['margin'])}<br>"
                                          f"<span class='note'>{esc(r['covers'])}</span>"),
            "numbers": HTML(f"{esc(r['evidence'])} <span class='note'>({esc(r['source'])})</span>"),
            "figures": figure_thumbnails(figures.get(r["item"], []), built)})
    columns = ["chapter", "the presentation says", "this run", "margin [95% interval]", "numbers",
               "figures"]
    parts.append(render(pd.DataFrame(rows, columns=columns), table_id="findings", style=False,
                        row_classes=[VERDICT_CLASS.get(v, "") for v in df["verdict"]]))
    return parts


UNIT_NAMES = {"%": "accuracy (%)", "AUC": "AUC", "": "precision / recall / f1", "FID": "FID"}


def targets_html(outputs: Path, profile: str) -> list[str]:
    """The full profile's targets: setting, evidence, expected value and what a full-profile run
    under ``outputs`` measured (empty until one exists)."""
    from .targets import targets_frame

    df = targets_frame(outputs)
    esc = html.escape
    ran = (df["met"] != "").any()
    parts = ["<h2>Full-profile targets: expected from evidence vs measured</h2>",
             "<p class='note'>What the <code>full</code> profile is set up to reach on one GPU, the "
             "public numbers each setting rests on, and what "
             + ("the full-profile run in this outputs folder measured."
                if ran else "a full-profile run will measure: none has run in this outputs folder "
                "yet, so every target below rests on projection.")
             + (f" This page is profile <b>{esc(profile)}</b>; the measured column is always the "
                "full profile's." if profile != "full" else "") + "</p>"]
    return parts + [render(df, table_id="targets", style=False,
                           row_classes=[{"yes": "holds", "no": "fails"}.get(m, "")
                                        for m in df["met"]])]


def charts_html(summary: pd.DataFrame, html_dir: Path) -> list[str]:
    """One chart per chapter and unit: the presented value as a marker, this run's as a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = summary[summary["reproduced"].notna()].copy()
    df = df[df["presented"].map(lambda v: isinstance(v, (int, float)))]
    if df.empty:
        return []
    out = html_dir / "charts"
    out.mkdir(parents=True, exist_ok=True)
    parts = ["<h2>Presented vs reproduced, as pictures</h2>",
             "<p class='note'>Bars: this run; black diamonds: the presentation.</p>"]
    for (chapter, unit), g in df.groupby(["chapter", "unit"], sort=True):
        fig, ax = plt.subplots(figsize=(7, 0.6 + 0.28 * len(g)), layout="constrained")
        y = range(len(g))
        ax.barh(list(y), g["reproduced"].astype(float), color="#7aa6d6", label="this run")
        ax.scatter(g["presented"].astype(float), list(y), marker="D", color="k", zorder=3,
                   label="presented")
        ax.set_yticks(list(y), g["quantity"], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(UNIT_NAMES.get(unit, unit))
        ax.set_title(f"{CHAPTERS.get(chapter, chapter)}: {UNIT_NAMES.get(unit, unit)}", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        name = f"{chapter}_{UNIT_NAMES.get(unit, unit).split()[0].strip('/')}.png"
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        parts.append(f'<p><img class="chart" src="charts/{html.escape(name)}" '
                     f'alt="presented vs reproduced, {html.escape(chapter)} '
                     f'{html.escape(unit)}"></p>')
    return parts
