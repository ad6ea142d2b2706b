"""Checks of the built HTML book (`_build/html`): it works offline.

`python3 tasks.py build` runs these right after `jupyter-book build` with PSETAE_BUILT_BOOK=required,
so that a missing build fails; in a plain `pytest tests` run before any build they are skipped.
"""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
PAGES = sorted(HTML.rglob("*.html")) if HTML.is_dir() else []

if not PAGES:
    if os.environ.get("PSETAE_BUILT_BOOK") == "required":
        raise RuntimeError(f"no built book in {HTML}: run `python3 tasks.py build`")
    pytest.skip("the book is not built (python3 tasks.py build)", allow_module_level=True)


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            src = dict(attrs).get("src")
            if src:
                self.sources.append(src)


def script_sources(page: Path) -> list[str]:
    parser = _Scripts()
    parser.feed(page.read_text(errors="replace"))
    return parser.sources


def is_remote(src: str) -> bool:
    return bool(re.match(r"^(https?:)?//", src.strip(), re.I))


def test_no_page_loads_a_script_from_outside():
    remote = {
        page.relative_to(HTML).as_posix(): [s for s in script_sources(page) if is_remote(s)]
        for page in PAGES
    }
    remote = {k: v for k, v in remote.items() if v}
    assert not remote, f"pages load scripts from the network (the book must work offline): {remote}"


def test_chapters_load_the_local_mathjax():
    page = HTML / "book" / "04_focal_loss.html"
    sources = script_sources(page)
    local = [s for s in sources if s.split("?")[0].endswith("mathjax/tex-chtml.js")]
    others = [s for s in sources if "mathjax/" in s and s not in local]
    assert not others, f"{page.name} loads more of MathJax than its entry point: {others[:5]}"
    assert local, f"{page.name} loads no local MathJax: {sources}"
    target = (page.parent / local[0].split("?")[0]).resolve()
    assert target.is_file(), f"{local[0]} is not in the build ({target})"


def test_long_equations_scroll_instead_of_being_cut():
    css = HTML / "_static" / "custom.css"
    assert css.is_file(), "custom.css is not in the build"
    assert re.search(r"div\.math[^{]*\{[^}]*overflow-x:\s*auto", css.read_text(), re.S)
    page = (HTML / "book" / "04_focal_loss.html").read_text()
    assert "custom.css" in page, "the chapters do not load custom.css"
