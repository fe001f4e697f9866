"""README.md (the site's home page) and docs/*.md render as their authors meant under Python-Markdown,
which MkDocs uses: a list starts a block of its own. A list item line directly under a paragraph
line (no blank line between) is not a list there but more of the paragraph: "…linked: - **Faithful
numbers:** … - **Search that prunes:** …" as one run-on paragraph (GitHub's renderer shows a list,
so the fault is invisible on the repository page)."""
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: a list item line: "- x", "* x", "+ x", "1. x" (any indentation)
ITEM = re.compile(r"\s*([-*+]|\d+\.)\s+\S")
FENCE = re.compile(r"\s*(`{3,}|~{3,})")
#: a line that is a block of its own (a heading, an admonition): what follows it starts a new block
OWN_BLOCK = re.compile(r"\s*(#{1,6}\s|!!!|\?\?\?)")


def lists_in_paragraphs(text: str) -> list[tuple[int, str]]:
    """(line number, line) of each list item line inside a block (lines between blank lines, code
    fences skipped) that does not itself start with a list item: Python-Markdown reads such a line as
    paragraph text. A block that starts with a list item may hold more items, continuation lines and
    nested lists."""
    found, fence, first = [], None, None
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                    and not line.strip()[len(m.group(1)):]:
                fence = None
            continue
        if m:
            fence, first = m.group(1), first or line
        elif not line.strip() or OWN_BLOCK.match(line):
            first = None
        elif first is None:
            first = line
        elif ITEM.match(line) and not ITEM.match(first):
            found.append((n, line.strip()))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_list_runs_into_the_paragraph_above_it(page):
    """Add a blank line between the paragraph and the list."""
    assert lists_in_paragraphs(page.read_text(encoding="utf-8")) == []


GLUED = "What it adds, each measured on the page linked:\n- **Faithful numbers:** a\n- **Search:** b\n"


@pytest.mark.parametrize("text, lines", [
    (GLUED, [2, 3]),  # the README's fault
    (GLUED.replace(":\n-", ":\n\n-", 1), []),
    ("- a\n  more of a\n- b\n  - b1\n    - b2\n1. c\n", []),  # items, continuations, nested items
    ("- a\n\n    a's second paragraph\n- b\n", [4]),  # an item under a paragraph of the item above
    ("# Heading\n- a\n\n!!! note\n    - b\n", []),  # a heading or an admonition is a block of its own
    ("Text:\n```\n- not an item\n```\n\n    ```\n    - nor this\n    ```\n", []),  # code
    ("Text:\n```\ncode\n```\n- glued to the fence's block\n", [5]),
    ("A line that ends with a dash -\nnext line\n", []),
])
def test_the_check_sees_a_list_glued_to_a_paragraph(text, lines):
    assert [n for n, _ in lists_in_paragraphs(text)] == lines


class Paragraphs(HTMLParser):
    """The text of every <p> (code left out)."""

    def __init__(self):
        super().__init__()
        self.paragraphs, self._p, self._code = [], None, 0

    def handle_starttag(self, tag, attrs):
        if tag == "p":
            self._p = []
        elif tag in ("code", "pre"):
            self._code += 1

    def handle_endtag(self, tag):
        if tag == "p" and self._p is not None:
            self.paragraphs.append("".join(self._p))
            self._p = None
        elif tag in ("code", "pre"):
            self._code -= 1

    def handle_data(self, data):
        if self._p is not None and not self._code:
            self._p.append(data)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_paragraph_of_the_rendered_page_holds_a_list_item(page):
    """Rendered as MkDocs renders it (mkdocs.yml's extensions): no paragraph has a line that reads
    as a list item ("- x", "1. x") — the run-on list, as a reader of the site would see it."""
    markdown = pytest.importorskip("markdown")
    pytest.importorskip("pymdownx")
    html = markdown.markdown(page.read_text(encoding="utf-8"),
                             extensions=["tables", "admonition", "toc", "pymdownx.superfences"])
    p = Paragraphs()
    p.feed(html)
    run_on = [line.strip() for text in p.paragraphs for line in text.splitlines()[1:] if ITEM.match(line)]
    assert run_on == []
