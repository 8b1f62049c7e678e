"""The exported pages in a real browser: headless Chromium renders index.html and a chapter page, and every
local link and image they reference resolves. Skipped where Chromium is not installed."""
import shutil
import subprocess
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
