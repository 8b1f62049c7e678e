"""The HTML export on hand-made notebooks (no kernel, no browser): formulas become MathML while dollar
signs elsewhere stay as written, nothing is fetched from the network, and every saved figure gets the
anchor the start page links to."""
import json
import re

import nbformat
import pytest

from lib.report import export

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")
MARKDOWN = r"""## Formulas
The teacher gives $\hat y_u = \arg\max T(x_u^{weak})$, weighted by $\lambda_u$.

$$d^2 = \|m - m_w\|^2 + \mathrm{Tr}(C + C_w - 2 (C C_w)^{1/2})$$

A price of \$5 stays as written, and so does `echo $HOME` in code."""


def image(name="x"):
    return nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": f"<Figure {name}>"})


def write_notebook(folder, cells, *, figures=()):
    """``folder/notebooks/<chapter>.ipynb`` beside a manifest naming ``figures`` of the chapter."""
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["language_info"] = {"name": "python"}
    path = folder / "notebooks" / "chapter.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    items = {"1.3": [{"kind": "figure", "path": f"chapter/{n}.png", "title": n, "chapter": "chapter"}
                     for n in figures]}
    (folder / "manifest.json").write_text(json.dumps({"profile": "x", "chapters": {}, "items": items}))
    return path


def external_urls(page: str) -> list[str]:
    """Script and stylesheet URLs a page would fetch from the network."""
    scripts = re.findall(r"""<script[^>]*\ssrc=["']((?:https?:)?//[^"']+)""", page)
    styles = [h for tag in re.findall(r"<link[^>]*>", page) if "stylesheet" in tag
              for h in re.findall(r"""href=["']((?:https?:)?//[^"']+)""", tag)]
    modules = re.findall(r"""import\(\s*["'](https?://[^"']+)""", page)
    return scripts + styles + modules


def test_formulas_become_mathml_and_other_dollars_stay(tmp_path):
    code = nbformat.v4.new_code_cell('print("$HOME costs $5")\n"$x$ in an output"')
    code.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "'$x$ in an output'"},
                                           execution_count=1)]
    nb = write_notebook(tmp_path, [nbformat.v4.new_markdown_cell(MARKDOWN), code])
    class_page, code_page = export.export_chapter(nb, tmp_path / "html")
    for page in (class_page.read_text(), code_page.read_text()):
        assert page.count("<math ") == 3 and 'display="block"' in page
        assert "\\hat" not in page and "\\arg" not in page and "\\lambda" not in page  # no TeX left
        assert "<mi>arg</mi>" in page  # a command the converter lacks is written by its name
        assert "$5 stays" in page and "<code>echo $HOME</code>" in page
        assert "$x$ in an output" in page
        assert not external_urls(page), external_urls(page)
        assert "MathJax" not in page and "require.js" not in page
    assert "$HOME costs $5" in code_page.read_text()


def test_unreadable_tex_stays_visible_as_its_source():
    html = export.tex_to_mathml(r"x^")
    assert html.startswith('<code class="tex">') and "x^" in html


@pytest.mark.parametrize("images", [2, 1])
def test_each_saved_figure_gets_an_anchor_before_its_image(tmp_path, images):
    single = nbformat.v4.new_code_cell('report.figure(fig, "training_curves", item="1.6", title="Curves");')
    single.outputs = [image()]
    loop = nbformat.v4.new_code_cell('for name in models:\n'
                                     '    fig.suptitle(f"{name}: CAM")\n'
                                     '    report.figure(fig, f"cam_{name}", item="1.3", title=f"CAM, {name}")')
    loop.outputs = [image(n) for n in range(images)]
    nb = write_notebook(tmp_path, [nbformat.v4.new_markdown_cell("# A chapter"), single, loop],
                        figures=["training_curves", "cam_resnet18", "cam_drn_c_26"])
    page = export.export_chapter(nb, tmp_path / "html")[0].read_text()
    events = sorted([(m.start(), m.group(1)) for m in re.finditer(r'id="(fig-[^"]+)"', page)]
                    + [(m.start(), "img") for m in re.finditer(r"<img ", page)])
    order = [e for _, e in events]
    if images == 2:  # one anchor in front of each of the loop's images
        assert order == ["fig-chapter-training_curves", "img", "fig-chapter-cam_resnet18", "img",
                         "fig-chapter-cam_drn_c_26", "img"]
    else:  # counts differ: both in front of the cell's first image
        assert order == ["fig-chapter-training_curves", "img", "fig-chapter-cam_resnet18",
                         "fig-chapter-cam_drn_c_26", "img"]
