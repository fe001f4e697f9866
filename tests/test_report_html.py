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
  const handlers = [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on')));
  const out = {images: [...document.images].map(i => i.naturalWidth), text: document.body.innerText,
               cells: cells, tables: document.querySelectorAll('table').length,
               scripts: document.scripts.length, handlers: handlers.map(e => e.outerHTML),
               links: document.links.length, alerted: window.alerted};
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});</script>"""
#: before anything else on the page: every alert() the page makes is recorded, none is shown
ALERT_TRAP = "<script>window.alerted = []; window.alert = m => window.alerted.push(String(m));</script>"
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


def browse(page_html: str, tmp_path: Path) -> dict:
    """What headless Chromium made of the page, once loaded (``PROBE``'s findings; the trap and the
    probe are this page's 2 scripts)."""
    page = tmp_path / "probed.html"
    page.write_text(page_html.replace("<head>", "<head>" + ALERT_TRAP, 1).replace("</body>", PROBE + "</body>"))
    dom = subprocess.run([BROWSER, "--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, flags=re.S)
    assert found, dom[-2000:]
    import html as html_lib

    seen = json.loads(html_lib.unescape(found.group(1)))
    seen["shown"] = seen["text"].split('{"images"')[0]
    return seen


@pytest.mark.skipif(not BROWSER, reason="no headless browser")
def test_a_real_report_as_a_browser_shows_it(real_report, tmp_path):
    """Headless Chromium renders the page: every picture has loaded (natural width > 0), no cell of
    dashes and pipes, no literal # or backtick in what a person reads."""
    seen = browse(real_report.read_text(), tmp_path)
    assert seen["tables"] >= 3 and seen["images"] and all(w > 0 for w in seen["images"])
    assert not [c for c in seen["cells"] if re.fullmatch(r"[\s|:\-]+", c or "x")]
    shown = seen["shown"]
    assert "`" not in shown and not [ln for ln in shown.splitlines() if ln.lstrip().startswith("#")]


# --- text from the jobs is text: never markup, never an element ----------------------------------

#: what a failure reason, an override or an image name may hold, each to be shown exactly as written
HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "TypeError: <lambda>() takes 0 arguments",
           "*not emphasis* and **nor this**", "_nor_this_ __init__", "a | b", "`tick` ``two``",
           "[link](javascript:alert(1))", "&amp; &#60; &lt;b&gt;", "C:\\path\\x \\| y", "<http://x.y> <a@b.c>",
           "# not a heading", "> not a quote", "model.exp_weight=null pack_images=[a,b]", "$\\foo{$ costs $5"]


def visible(fragment: str) -> str:
    """The text a reader sees in an HTML fragment (entities decoded), whitespace as in the source."""
    p = Page()
    p.feed(fragment)
    p.close()
    return "".join(p.text).strip()


@pytest.mark.parametrize("text", HOSTILE)
def test_text_from_a_job_renders_as_itself_in_a_line_a_cell_and_code(text):
    from dip_lightning.report.html import to_html
    from dip_lightning.report.tables import md_code, md_text

    assert visible(to_html(md_text(text))) == text
    assert visible(to_html("Reason: " + md_text(text))) == "Reason: " + text
    assert visible(to_html("Fixed: " + md_code(text))) == "Fixed: " + text
    cell = Page()
    cell.feed(to_html(f"| job | reason |\n|---|---|\n| 0 | {md_text(text)} |"))
    assert [c[1] for c in cell.tables[0][1]] == ["0", text]


class Elements(HTMLParser):
    """Every start tag of a page with its attributes."""

    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def injected(page_html: str) -> list[str]:
    """Elements a job's text could have put into the page: a script, an event handler, a link, an
    image that is not one of the page's embedded PNGs, emphasis."""
    p = Elements()
    p.feed(page_html)
    found = [f"<{t}>" for t, _ in p.tags if t in ("script", "a", "em", "iframe", "lambda")]
    found += [f"<{t} {k}=>" for t, a in p.tags for k in a if k.startswith("on")]
    found += [f"<img src={a.get('src')!r}>" for t, a in p.tags if t == "img"
              and not (a.get("src") or "").startswith("data:image/png;base64,")]
    return found


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    """collect.py's report of a sweep whose jobs' reasons, overrides, image names and command hold
    ``HOSTILE``: one failed job per string (its reason and a swept ``tag`` override), one completed
    (its tag, with ``$``s that matplotlib would take as mathtext, in the pictures' titles and labels)."""
    import importlib.util

    sweep = tmp_path_factory.mktemp("hostile")
    for i, text in enumerate(HOSTILE):
        job = sweep / str(i)
        job.mkdir()
        (job / "metrics.json").write_text(json.dumps({
            "status": "failed", "reason": text,
            "overrides": [f"image={HOSTILE[1]}", "seed=0", f"tag={text}"]}))
    ok = sweep / str(len(HOSTILE))
    ok.mkdir()
    (ok / "metrics.json").write_text(json.dumps({
        "status": "completed", "psnr_best": 21.5, "psnr_final": 20.25, "iters_done": 3,
        "overrides": [f"image={HOSTILE[1]}", "seed=0", f"tag={HOSTILE[-1]}"]}))
    (ok / "environment.json").write_text(json.dumps({
        "argv": ["dip-restore", f"tag={HOSTILE[0]}"], "platform": HOSTILE[1], "packages": {"x<b>y": "1|2*3*"}}))
    spec = importlib.util.spec_from_file_location("collect_for_report_tests", ROOT / "scripts" / "collect.py")
    collect = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(collect)
    collect.collect(sweep)
    return sweep


def test_a_report_of_hostile_jobs_shows_their_text_and_injects_nothing(hostile_report):
    page = (hostile_report / "report.html").read_text()
    assert injected(page) == []
    p = Page()
    p.feed(page)
    cells = [text for rows in p.tables for row in rows for _, text, _ in row]
    for text in HOSTILE:  # each reason and each swept value, cell for cell
        assert cells.count(text) >= 2, text
    assert f"image={HOSTILE[1]}" in cells or HOSTILE[1] in cells  # the image name
    assert f"tag={HOSTILE[0]}" in "".join(p.text)  # the command
    assert "package x<b>y" in cells and "1|2*3*" in cells  # the environment
    summary = (hostile_report / "summary.md").read_text()  # still plain markdown to read
    assert "\\<script>alert(1)\\</script>" in summary and "&lt;" not in summary.replace("&amp;lt;", "")
    assert "model.exp_weight=null pack_images=[a,b]" in summary


def test_the_checker_sees_an_injected_element():
    bad = ("<p><script>alert(1)</script><img src=x onerror=alert(1)><em>x</em>"
           "<a href='javascript:alert(1)'>l</a><lambda>()</p>")
    assert injected(bad) == ["<script>", "<em>", "<a>", "<lambda>", "<img onerror=>", "<img src='x'>"]


@pytest.mark.skipif(not BROWSER, reason="no headless browser")
def test_a_hostile_report_as_a_browser_shows_it(hostile_report, tmp_path):
    """Headless Chromium on the report of ``HOSTILE`` jobs: no alert() ran, no element has an event
    handler, no script but the probe's two, no link; every string is there as text, cell for cell."""
    seen = browse((hostile_report / "report.html").read_text(), tmp_path)
    assert seen["alerted"] == [] and seen["handlers"] == [] and seen["scripts"] == 2 and seen["links"] == 0
    assert all(w > 0 for w in seen["images"])
    for text in HOSTILE:
        assert seen["cells"].count(text) >= 2, text
    assert "package x<b>y" in seen["cells"] and f"tag={HOSTILE[0]}" in seen["shown"]
