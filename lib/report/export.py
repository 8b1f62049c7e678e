"""HTML export of executed chapter notebooks: a class version (no code) and a full version, plus one
combined file.

Each page stands alone and opens offline: figures are embedded as data URIs, formulas (the
Markdown's ``$...$`` and ``$$...$$``) are written as MathML, which browsers draw themselves, and no
script or stylesheet is fetched from the network. A page opens with a table of contents built from
the notebook's headings, and every saved figure has an anchor, ``#fig-<chapter>-<name>``, that the
start page links to. The class version also drops stream output (progress lines, warnings), so
students see the tables and figures, not the machinery. Called by ``run_all.sh``::

    python -m lib.report.export chapter outputs/<profile>/notebooks/<chapter>.ipynb <html folder>
    python -m lib.report.export finish outputs/<profile>  # index.html and the combined report.html
"""
from __future__ import annotations

import copy
import html
import re
import sys
from pathlib import Path

import jinja2
import nbformat
from latex2mathml.converter import convert as latex_to_mathml
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

from ..storage import write_text_atomic
from . import CHAPTERS, build_index, read_manifest
from .index import figure_id

# the lab template without what it fetches from the network: require.js, MathJax, mermaid and the
# widget manager (no chapter shows widgets or diagrams; formulas are MathML already)
TEMPLATE = """{%- extends 'index.html.j2' -%}
{% block html_head_js %}{% endblock html_head_js %}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block html_head_js_mathjax %}{% endblock html_head_js_mathjax %}
{% block html_head_js_mermaidjs %}{% endblock html_head_js_mermaidjs %}
{% block extra_css %}<style type="text/css">
.jp-RenderedMarkdown table { display: block; overflow-x: auto; max-width: 100%; }
math[display="block"] { margin: 0.6em 0; }
</style>{% endblock extra_css %}
"""
# a command latex2mathml does not know stays in the MathML as <mi>\name</mi>: write the name
UNKNOWN_COMMAND = re.compile(r"<mi>\\([A-Za-z]+)</mi>")


def tex_to_mathml(tex: str, *, display: str = "inline") -> str:
    """One formula as MathML; what the converter cannot read stays visible as its TeX source."""
    try:
        mathml = latex_to_mathml(tex.strip(), display=display)
    except Exception as err:  # the converter raises its own errors for unsupported TeX
        print(f"formula left as TeX ({type(err).__name__}): {tex}", file=sys.stderr)
        return f'<code class="tex">{html.escape(tex)}</code>'
    return UNKNOWN_COMMAND.sub(r"<mi>\1</mi>", mathml)


class MathMLRenderer(IPythonRenderer):
    """nbconvert's Markdown renderer, with TeX written as MathML instead of left for MathJax."""

    def inline_math(self, body: str) -> str:
        return tex_to_mathml(body)

    def block_math(self, body: str) -> str:
        return tex_to_mathml(body, display="block")

    def latex_environment(self, name: str, body: str) -> str:
        return tex_to_mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", display="block")


class HandoutExporter(HTMLExporter):
    """The lab template's HTML exporter, offline: Markdown math as MathML, nothing fetched."""

    @jinja2.pass_context
    def markdown2html(self, context, source):
        cell = context.get("cell", {})
        path = context.get("resources", {}).get("metadata", {}).get("path", "")
        renderer = MathMLRenderer(escape=False, attachments=cell.get("attachments", {}),
                                  embed_images=self.embed_images, path=path,
                                  anchor_link_text=self.anchor_link_text,
                                  exclude_anchor_links=self.exclude_anchor_links,
                                  **self.lexer_options)
        return MarkdownWithMath(renderer=renderer).render(source)


def _anchor(text: str) -> str:
    """The id nbconvert gives a heading: its text with spaces replaced by hyphens."""
    return re.sub(r"\s", "-", text.strip())


def headings(nb) -> list[tuple[int, str]]:
    out = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            m = re.match(r"^(#{1,3})\s+(.*?)\s*$", line)
            if m:
                out.append((len(m.group(1)), m.group(2)))
    return out


def toc_cell(nb, *, title: str = "Contents", levels: tuple[int, int] = (2, 3)):
    lines = [f"**{title}**", ""]
    for level, text in headings(nb):
        if not levels[0] <= level <= levels[1]:
            continue
        plain = re.sub(r"[*_`]", "", text)
        lines.append(f"{'  ' * (level - levels[0])}- [{plain}](#{_anchor(text)})")
    return nbformat.v4.new_markdown_cell("\n".join(lines))


def class_version(nb):
    """Drop stream output (progress lines, warnings) and empty code cells; inputs are hidden by the
    exporter."""
    nb = copy.deepcopy(nb)
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if o.get("output_type") != "stream"]
            if not cell.outputs:
                continue
        cells.append(cell)
    nb.cells = cells
    return nb


def _insert_toc(nb):
    nb = copy.deepcopy(nb)
    first_md = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
    nb.cells.insert(first_md + 1, toc_cell(nb))
    return nb


def findings_cell(profile_dir: Path, chapter: str):
    """A markdown cell with this chapter's findings (claims of the presentation checked on this
    run's saved tables), or None for a chapter without checks."""
    from ..chapters.findings import CHECKS, count_line, findings

    if chapter not in CHECKS:
        return None
    df = findings(profile_dir, [chapter])
    rows = ["| the presentation says | this run | margin [95% interval] | numbers |",
            "| --- | --- | --- | --- |"]
    rows += [f"| {r['claim']} ({r['item']}) | **{r['verdict']}** | {r['margin']}<br>"
             f"*covers: {r['covers']}* | {r['evidence']} |" for r in df.to_dict("records")]
    return nbformat.v4.new_markdown_cell(
        f"**Findings, checked on this run (profile `{profile_dir.name}`)**: each claim is a margin "
        "(positive on the claim's side) with its 95% bootstrap interval; **holds** when the "
        "interval lies above zero, **does not hold** when below, **not decided at this scale** "
        f"when it straddles zero ({count_line(df)}).\n\n" + "\n".join(rows))


def _with_findings(nb, profile_dir: Path, chapter: str):
    cell = findings_cell(profile_dir, chapter)
    if cell is None:
        return nb
    nb = copy.deepcopy(nb)
    first_md = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
    nb.cells.insert(first_md + 1, cell)
    return nb


def _names_in(source: str, names: list[str]) -> list[str]:
    """The figure ``names`` that ``source`` passes as a string: quoted as they are, or made by an
    f-string such as ``f"cam_{name}"`` (at least three characters of it literal)."""
    found = []
    for q in ('"', "'"):
        found += [(source.find(f"{q}{n}{q}"), n) for n in names if f"{q}{n}{q}" in source]
    for m in re.finditer(r"""\bf(["'])(.+?)\1""", source):
        literal = re.sub(r"\{[^}]*\}", "", m.group(2))
        if len(literal) >= 3:
            pattern = re.compile("".join(".+" if part.startswith("{") else re.escape(part)
                                         for part in re.split(r"(\{[^}]*\})", m.group(2))))
            found += [(m.start(), n) for n in names if pattern.fullmatch(n)]
    seen, out = set(), []
    for _, n in sorted(found, key=lambda pn: (pn[0], names.index(pn[1]))):
        if n not in seen:
            seen.add(n)
            out.append(n)
    return out


def with_figure_anchors(nb, profile_dir: Path, chapter: str):
    """Give each figure the chapter saved (per the manifest) an anchor, ``figure_id``, in front of
    its image: in the code cell that calls ``report.figure`` with its name; the k-th name of a cell
    before its k-th image, or all before the first where the counts differ."""
    entries = [e for es in read_manifest(profile_dir)["items"].values() for e in es
               if e.get("kind") == "figure" and e.get("chapter") == chapter and e.get("path")]
    names = [Path(e["path"]).stem for e in entries]
    if not names:
        return nb
    nb = copy.deepcopy(nb)
    left = list(names)
    for cell in nb.cells:
        if cell.cell_type != "code" or "report.figure(" not in cell.source or not left:
            continue
        here = _names_in(cell.source, left)
        if not here:
            continue
        left = [n for n in left if n not in here]
        outputs = cell.get("outputs", [])
        images = [i for i, o in enumerate(outputs) if "image/png" in o.get("data", {})]
        spots = images if len(images) == len(here) else [images[0] if images else 0] * len(here)
        for spot, name in reversed(list(zip(spots, here))):  # the last first: spots stay valid
            outputs.insert(spot, nbformat.v4.new_output(
                "display_data", data={"text/html": f'<a id="{figure_id(chapter, name)}"></a>'}))
    return nb


def _html(nb, *, with_code: bool) -> str:
    exporter = HandoutExporter(template_name="lab", template_file="handout.html.j2",
                               extra_loaders=[jinja2.DictLoader({"handout.html.j2": TEMPLATE})],
                               exclude_input=not with_code, exclude_input_prompt=not with_code,
                               exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb)
    return body


def export_chapter(notebook: str | Path, html_dir: str | Path) -> list[Path]:
    """Write ``<chapter>.html`` (class version) and ``<chapter>-code.html`` next to each other in
    ``html_dir``."""
    notebook, html_dir = Path(notebook), Path(html_dir)
    chapter = notebook.stem
    # outputs/<profile>/notebooks/<chapter>.ipynb: the findings read outputs/<profile>/<chapter>/
    profile_dir = notebook.parent.parent
    nb = _with_findings(nbformat.read(notebook, as_version=4), profile_dir, chapter)
    nb = with_figure_anchors(nb, profile_dir, chapter)
    class_page = html_dir / f"{chapter}.html"
    code_page = html_dir / f"{chapter}-code.html"
    write_text_atomic(class_page, _html(_insert_toc(class_version(nb)), with_code=False))
    write_text_atomic(code_page, _html(_insert_toc(nb), with_code=True))
    return [class_page, code_page]


def export_combined(profile_dir: str | Path) -> Path | None:
    """One ``report.html`` with every executed chapter (class version) and one table of contents."""
    profile_dir = Path(profile_dir)
    parts = [profile_dir / "notebooks" / f"{ch}.ipynb" for ch in CHAPTERS]
    parts = [p for p in parts if p.is_file()]
    if not parts:
        return None
    combined = nbformat.v4.new_notebook()
    combined.metadata = nbformat.read(parts[0], as_version=4).metadata
    combined.cells.append(nbformat.v4.new_markdown_cell(
        f"# CIFAR-10 deep learning report (profile `{profile_dir.name}`)\n\n"
        "All chapters in one file; the start page `index.html` has the presented-vs-reproduced "
        "summary and the provenance of every number."))
    for p in parts:
        nb = _with_findings(nbformat.read(p, as_version=4), profile_dir, p.stem)
        nb = with_figure_anchors(nb, profile_dir, p.stem)
        combined.cells.extend(class_version(nb).cells)
    combined.cells.insert(1, toc_cell(combined, levels=(1, 2)))
    out = profile_dir / "html" / "report.html"
    write_text_atomic(out, _html(combined, with_code=False))
    return out


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "chapter":
        for p in export_chapter(argv[1], argv[2]):
            print(p)
        return 0
    if len(argv) == 2 and argv[0] == "finish":
        print(export_combined(argv[1]))
        print(build_index(argv[1]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
