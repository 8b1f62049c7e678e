"""The HTML export on hand-made notebooks (no kernel, no browser): every saved figure gets the anchor
the start page links to."""
import json
import re

import nbformat
import pytest

from lib.report import export

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


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
