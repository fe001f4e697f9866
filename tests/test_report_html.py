"""report.html renders as a person expects: real tables with a header row, numbers right-aligned,
no markdown left in the text, every picture loaded (a headless browser when one is installed)."""
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dip_lightning.report.html import align_numbers, write_html
from conftest import QUIET, TINY_NET

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"[-+]?\d+(\.\d+)?( ± \d+(\.\d+)?)?"


class Page(HTMLParser):
    """The page's tables (rows of (tag, text, style) cells), its visible text and its images."""

    def __init__(self):
        super().__init__()
        self.tables, self.text, self.images, self._cell, self._skip = [], [], [], None, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("style", "script", "title"):
            self._skip += 1
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = [tag, "", a.get("style") or ""]
        elif tag == "img":
            self.images.append(a.get("src", ""))

    def handle_endtag(self, tag):
        if tag in ("style", "script", "title"):
            self._skip -= 1
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(tuple(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._skip:
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell[1] += data


def problems(page_html: str) -> list[str]:
    """What a reader would see wrong in the page: markdown left over, tables without a header row,
    separator rows as cells, numbers not right-aligned, pictures that are not embedded PNGs."""
    p = Page()
    p.feed(page_html)
    found = []
    for t, rows in enumerate(p.tables):
        if not rows or not rows[0] or any(tag != "th" for tag, _, _ in rows[0]):
            found.append(f"table {t} has no header row")
        for row in rows[1:]:
            found += [f"table {t}: a cell of dashes and pipes {text!r}" for _, text, _ in row
                      if re.fullmatch(r"[\s|:\-]+", text or "x")]
        for c in range(max(len(r) for r in rows)):  # a column of numbers is right-aligned
            column = [r[c] for r in rows[1:] if c < len(r) and r[c][1].strip() not in ("", "—")]
            if column and all(re.fullmatch(NUMBER, text.strip()) for _, text, _ in column) and \
                    any("right" not in style for _, _, style in column):
                found.append(f"table {t}: column {c} of numbers is not right-aligned")
    for line in "".join(p.text).splitlines():
        if line.lstrip().startswith("#") or "`" in line or "**" in line:
            found.append(f"markdown in the text: {line.strip()!r}")
    found += [f"picture {s[:40]!r} is not an embedded PNG" for s in p.images if not s.startswith("data:image/png;base64,")]
    if not p.tables:
        found.append("no table")
    return found


def tiny_png(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (7, 5), "red").save(path)
    return path


SECTIONS = [("Summary", "# Sweep /x/y\n\n3 jobs; metric `psnr_eval`.\n\n"
                        "**sr-set5-x4, --quick: shrunk images and iterations — NOT comparable to the paper.**\n\n"
                        "Fixed: `task=sr` `iters=6`"),
            ("Per image", "| image | paper | ours | Δ |\n|---|---:|---|---|\n| baby | 31.49 | 29.10 ± 0.20 | -2.39 |\n"
                          "| **average** | 31.49 | 29.10 | -2.39 |")]


def test_markdown_becomes_real_html_tables_and_text(tmp_path):
    page = tmp_path / "report.html"
    write_html(page, "Sweep y", SECTIONS, [("grid", tiny_png(tmp_path / "g.png"))], "dip-restore -m seed=0,1",
               {"git": "{'commit': 'abc', 'dirty': True}", "a|b": "c"})
    text = page.read_text()
    assert problems(text) == []
    assert "class='banner'" in text and "NOT comparable" in text and "<pre><code>dip-restore -m seed=0,1" in text
    assert "<code>psnr_eval</code>" in text and "<th>image</th>" in text


def test_the_checker_sees_what_the_hand_made_page_got_wrong():
    """The old hand conversion's faults, as the issue saw them in a browser, are all caught."""
    bad = ("<table><tr><th>a</th><th>b</th></tr>\n<tr><td>---|---</td><td>12.5</td></tr></table>\n"
           "<p># Sweep x</p>\n<p>task `sr`</p>\n<img src='curves.png'>")
    found = " ".join(problems(bad))
    for what in ("dashes and pipes", "not right-aligned", "'# Sweep x'", "'task `sr`'", "not an embedded PNG"):
        assert what in found, what


def test_separators_with_and_without_spaces_align_numeric_columns():
    for sep in ("|---|---|", "| --- | --- |", "|:---|---|"):
        out = align_numbers(f"| name | value |\n{sep}\n| a | 1.5 |\n| b | 2 ± 0.1 |")
        assert out.splitlines()[1].endswith("---:|") and not out.splitlines()[1].startswith("|---:")


@pytest.fixture(scope="module")
def real_report(tmp_path_factory):
    """collect.py's report of a real 2-job multirun."""
    sweep = tmp_path_factory.mktemp("sweep")
    subprocess.run([sys.executable, "-m", "dip_lightning", "-m", "seed=0,1", "image=camera", "resize=24", "iters=3",
                    *QUIET, *TINY_NET, f"hydra.sweep.dir={sweep}"], check=True, capture_output=True)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "collect.py"), str(sweep)], check=True, capture_output=True)
    return sweep / "report.html"


def test_a_real_report_parses_into_clean_tables(real_report):
    assert problems(real_report.read_text()) == []


PROBE = """<script>window.addEventListener('load', () => {
  const cells = [...document.querySelectorAll('td, th')].map(c => c.innerText);
  const out = {images: [...document.images].map(i => i.naturalWidth), text: document.body.innerText,
               cells: cells, tables: document.querySelectorAll('table').length};
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});</script>"""


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="no headless browser")
def test_a_real_report_as_a_browser_shows_it(real_report, tmp_path):
    """Headless Chromium renders the page: every picture has loaded (natural width > 0), no cell of
    dashes and pipes, no literal # or backtick in what a person reads."""
    page = tmp_path / "probed.html"
    page.write_text(real_report.read_text().replace("</body>", PROBE + "</body>"))
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    dom = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, flags=re.S)
    assert found, dom[-2000:]
    import html as html_lib

    seen = json.loads(html_lib.unescape(found.group(1)))
    assert seen["tables"] >= 3 and seen["images"] and all(w > 0 for w in seen["images"])
    assert not [c for c in seen["cells"] if re.fullmatch(r"[\s|:\-]+", c or "x")]
    shown = seen["text"].split('{"images"')[0]
    assert "`" not in shown and not [ln for ln in shown.splitlines() if ln.lstrip().startswith("#")]
