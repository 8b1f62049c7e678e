"""The exported pages in a real browser: headless Chromium renders index.html and a chapter page, and every
local link and image they reference resolves. Skipped where Chromium is not installed."""
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.refs.append(a["href"])
        if tag == "img" and a.get("src"):
            self.refs.append(a["src"])


def chromium(tmp_path, *args):
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


def local_targets(page: Path, dom: str) -> list[Path]:
    parser = Links()
    parser.feed(dom)
    out = []
    for ref in parser.refs:
        url = urlparse(ref)
        if url.scheme in ("http", "https", "data", "mailto") or ref.startswith("#"):
            continue
        out.append((page.parent / unquote(url.path)).resolve())
    return out


@pytest.mark.parametrize("page_name", ["index.html", "01_supervised.html", "report.html"])
def test_page_renders_and_every_local_link_resolves(smoke_report, tmp_path, page_name):
    prof, _ = smoke_report
    page = prof / "html" / page_name
    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0 and "</html>" in dom.stdout, dom.stderr[-2000:]
    targets = local_targets(page, dom.stdout)
    if page_name == "index.html":
        assert len(targets) >= 5  # chapters, tables, figures
        assert 'id="findings"' in dom.stdout and "Findings of the presentation" in dom.stdout
        charts = [t for t in targets if t.parent.name == "charts"]
        assert charts, "presented-vs-reproduced charts"
        assert '<details>' in dom.stdout  # smoke numbers are folded under the findings
    if page_name in ("01_supervised.html", "report.html"):
        assert "Findings, checked on this run (profile" in dom.stdout
    missing = [str(t) for t in targets if not t.exists()]
    assert not missing, f"{page_name} links to missing files: {missing}"
    shot = tmp_path / "shot.png"
    chromium(tmp_path, "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri())
    assert shot.is_file() and shot.stat().st_size > 20_000  # a rendered page, not a blank one


# no request leaves the machine: every host name fails to resolve, every proxied connection is refused
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]


def offline_dom(tmp_path, page: Path) -> str:
    dom = chromium(tmp_path, *OFFLINE, "--virtual-time-budget=5000", "--dump-dom", page.as_uri())
    assert dom.returncode == 0 and "</html>" in dom.stdout, dom.stderr[-2000:]
    return dom.stdout


def assert_reads_offline(page: Path, dom: str) -> None:
    """The page's formulas are MathML in the browser's DOM, with no raw $...$ left for a script, and
    neither the file nor the DOM names a script or stylesheet to fetch."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from handout_counts import html_counts

    for text in (page.read_text(), dom):
        counts = html_counts(text)
        assert counts["raw $ math"] == 0, page.name
        assert counts["external scripts"] == 0 and counts["external styles"] == 0, page.name
    assert "<math" in dom


def test_a_formula_renders_offline_as_mathml(tmp_path):
    import nbformat

    from lib.report import export

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "## FID\n$d^2 = \\|m - m_w\\|^2 + \\mathrm{Tr}(C + C_w - 2 (C C_w)^{1/2})$, with $\\lambda_u$ and\n\n"
        "$$\\hat y_u = \\arg\\max T(x_u^{weak})$$\n\nA price of \\$5, and `echo $HOME`.")])
    path = tmp_path / "outputs" / "notebooks" / "formula.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    page = export.export_chapter(path, tmp_path / "outputs" / "html")[0]
    dom = offline_dom(tmp_path, page)
    assert_reads_offline(page, dom)
    assert dom.count("<math") == 3 and "$5" in dom and "echo $HOME" in dom


@pytest.mark.parametrize("page_name", ["03_semi_supervised.html", "04_extras.html", "report.html"])
def test_chapter_formulas_render_offline(smoke_report, tmp_path, page_name):
    prof, _ = smoke_report
    page = prof / "html" / page_name
    assert_reads_offline(page, offline_dom(tmp_path, page))


def test_a_wide_table_scrolls_inside_the_page(tmp_path):
    import nbformat
    import pandas as pd

    from lib.report import export
    from lib.report.tables import render

    wide = pd.DataFrame({f"a rather long column name {i}": [1234.5 * i, None] for i in range(25)})
    wide.insert(0, "note", ["a long note that wraps inside its cell rather than widening the page " * 3, "x"])
    cell = nbformat.v4.new_code_cell("table")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": render(wide), "text/plain": ""})]
    path = tmp_path / "outputs" / "notebooks" / "wide.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Wide"), cell]), path)
    page = export.export_chapter(path, tmp_path / "outputs" / "html")[0]
    # a copy that writes the table wrapper's and the page's widths into the DOM once laid out
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", (
        "<script>addEventListener('load', () => { const d = document.querySelector('div.report-table');"
        "d.dataset.widths = [d.scrollWidth, d.clientWidth, document.documentElement.scrollWidth,"
        "window.innerWidth].join(' '); });</script></body>")))
    dom = chromium(tmp_path, "--window-size=1200,900", "--dump-dom", probe.as_uri())
    table, shown, page_width, window = map(int, re.search(r'data-widths="([\d ]+)"', dom.stdout).group(1).split())
    assert table > shown  # the table is wider than its wrapper, which scrolls
    assert page_width <= window  # and the page itself does not grow past the window


def test_handout_shots_draws_each_section_of_the_exported_report(smoke_report, tmp_path):
    """bench/handout_shots.py's sections exist in the pages the export writes (their anchors), and it
    draws each, offline, as one picture per report."""
    prof, _ = smoke_report
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, str(root / "bench" / "handout_shots.py"), str(prof), str(prof),
                          "--out", str(tmp_path / "shots")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    sys.path.insert(0, str(root / "bench"))
    from handout_shots import SECTIONS

    for name, *_ in SECTIONS:
        for when in ("before", "after"):
            assert (tmp_path / "shots" / f"{name}-{when}.png").stat().st_size > 10_000
