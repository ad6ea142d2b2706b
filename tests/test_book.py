"""The book's chapters: committed outputs are fresh, complete, and carry the generated Colab cells.

nbval (run by `python3 tasks.py notebooks`) re-executes the chapters and compares outputs; these
tests check what nbval cannot see: that the committed outputs were produced from the committed
sources, package code and pins, and that every chapter has the parts the book promises.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("chapters", ROOT / "tools" / "chapters.py")
chapters = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chapters)

NOTEBOOKS = chapters.chapter_notebooks()
IDS = [p.stem for p in NOTEBOOKS]


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _source(cell: dict) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def test_every_toc_entry_exists():
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    entries = [toc["root"]] + [c["file"] for p in toc["parts"] for c in p["chapters"]]
    missing = [
        e for e in entries if not any((ROOT / f"{e}{ext}").exists() for ext in (".md", ".ipynb"))
    ]
    assert not missing, f"_toc.yml names files that do not exist: {missing}"
    assert len(NOTEBOOKS) >= 5, "the book has five executed chapters"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_outputs_are_not_stale(path):
    nb = _load(path)
    stamp = nb["metadata"].get(chapters.STAMP_KEY, {}).get("inputs_sha256")
    assert stamp == chapters.inputs_sha256(nb), (
        f"{path.name}: committed outputs were produced from other notebook sources, package code or "
        "pins than those committed; run `python3 tasks.py chapters` and commit the result"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_code_cell_ran_in_order_without_error(path):
    nb = _load(path)
    counts = [c["execution_count"] for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(isinstance(n, int) for n in counts), f"{path.name}: a code cell was not executed"
    assert counts == sorted(counts), f"{path.name}: cells were not executed top to bottom"
    errors = [
        o
        for c in nb["cells"]
        if c["cell_type"] == "code"
        for o in c["outputs"]
        if o["output_type"] == "error"
    ]
    assert not errors, f"{path.name}: committed outputs contain an error"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_colab_cells_are_generated_from_config(path):
    nb = _load(path)
    by_tag = {t: c for c in nb["cells"] for t in c["metadata"].get("tags", [])}
    assert _source(by_tag[chapters.BADGE_TAG]) == chapters.badge_source(path), (
        f"{path.name}: Colab badge out of date; run `python tools/chapters.py colab`"
    )
    assert _source(by_tag[chapters.SETUP_TAG]) == chapters.setup_source(), (
        f"{path.name}: Colab set-up cell out of date; run `python tools/chapters.py colab`"
    )
    assert nb["metadata"].get("accelerator") == "GPU", f"{path.name}: Colab should ask for a GPU"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_chapter_structure(path):
    nb = _load(path)
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown" and _source(cells[0]).startswith("# "), (
        f"{path.name}: the first cell is the chapter's title and introduction"
    )
    params = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1, f"{path.name}: exactly one papermill `parameters` cell"
    markdown = "\n".join(_source(c) for c in cells if c["cell_type"] == "markdown")
    assert re.search(r"^## Summary", markdown, re.M), f"{path.name}: no '## Summary' section"
    assert re.search(r"^## Exercises", markdown, re.M), f"{path.name}: no '## Exercises' section"
    assert ":class: dropdown" in markdown, f"{path.name}: exercises need solutions in toggles"
    assert "{cite" in markdown, f"{path.name}: cites no source from references.bib"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_ignored_outputs_say_why(path):
    for cell in _load(path)["cells"]:
        lines = [line.strip() for line in _source(cell).splitlines()]
        for i, line in enumerate(lines):
            if line == "# NBVAL_IGNORE_OUTPUT":
                assert i + 1 < len(lines) and lines[i + 1].startswith("# reason:"), (
                    f"{path.name}: an NBVAL_IGNORE_OUTPUT marker without a '# reason:' line:\n"
                    + _source(cell)[:300]
                )
