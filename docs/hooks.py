"""MkDocs hook: the site's home page is the repository's README.md, its links made relative to docs/."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def on_page_read_source(page, config) -> str | None:
    """The README (``docs/x.md`` -> ``x.md``) as the source of ``index.md``; other pages as they are."""
    if page.file.src_uri != "index.md":
        return None
    return re.sub(r"\]\(docs/", "](", README.read_text(encoding="utf-8"))
