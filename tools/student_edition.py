"""The student edition: the chapters with the exercises' solutions removed and no outputs.

    python tools/student_edition.py [--out student] [--check]

Writes one notebook per chapter into `student/` (committed, so that each has its own Colab link),
with every solution toggle (an admonition titled "Solution") removed, the outputs cleared and the
Colab badge pointing at the student copy. `--check` writes nothing and fails if the committed
student edition differs from what this script generates (tests/test_book.py runs the same check).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chapters  # noqa: E402

ROOT = chapters.ROOT
OUT = ROOT / "student"
REMOVED = "*(The solution is in the teacher's edition: the book's chapter of the same name.)*"
# A solution toggle: an opening fence of 3+ backticks, `{admonition} Solution`, up to the same fence.
SOLUTION = re.compile(
    r"^(?P<fence>`{3,})\{admonition\}\s*Solution\b.*?^(?P=fence)[ \t]*$\n?", re.M | re.S
)


def strip_solutions(markdown: str) -> str:
    """Replace every solution toggle of a markdown text by a short note."""
    return SOLUTION.sub(REMOVED + "\n", markdown)


def student_notebook(path: Path) -> dict:
    """The student version of one chapter (a new notebook dict; the chapter is not changed)."""
    nb = copy.deepcopy(json.loads(path.read_text()))
    cells = []
    for cell in nb["cells"]:
        tags = cell["metadata"].get("tags", [])
        if chapters.TIMING_TAG in tags or "solution" in tags:
            continue
        if cell["cell_type"] == "markdown":
            source = strip_solutions(chapters._src(cell))
            if source.strip() == REMOVED:
                source = REMOVED  # a cell that held only a solution keeps just the note
            cell["source"] = source
        else:
            cell["outputs"], cell["execution_count"] = [], None
            cell["metadata"].pop("papermill", None)
            cell["metadata"].pop("execution", None)
        cell["metadata"].pop("papermill", None)
        cells.append(cell)
    for cell in cells:
        if chapters.BADGE_TAG in cell["metadata"].get("tags", []):
            cell["source"] = chapters.badge_source(student_path(path))
    nb["cells"] = cells
    meta = nb["metadata"]
    meta.pop("papermill", None)
    meta.pop(chapters.STAMP_KEY, None)
    meta["psetae_book_edition"] = "student"
    return nb


def student_path(path: Path, out: Path = OUT) -> Path:
    return out / path.name


def render(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="fail if the committed copy is stale")
    args = parser.parse_args(argv)
    stale = []
    for path in chapters.chapter_notebooks():
        target = student_path(path, args.out)
        text = render(student_notebook(path))
        if args.check:
            if not target.is_file() or target.read_text() != text:
                stale.append(target)
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print("wrote", target)
    if stale:
        print("student edition out of date (run python tools/student_edition.py):", file=sys.stderr)
        for p in stale:
            print("  ", p, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
