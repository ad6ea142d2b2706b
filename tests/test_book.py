"""The book's chapters: committed outputs are fresh, complete, and carry the generated Colab cells.

nbval (run by `python3 tasks.py notebooks`) re-executes the chapters and compares outputs; these
tests check what nbval cannot see: that the committed outputs were produced from the committed
sources, package code and pins, and that every chapter has the parts the book promises.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import struct
import sys
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
    # nbval reads the `nbval-ignore-output` tag; the reason lives in the cell's metadata, so that
    # readers see no test markers in the code.
    for cell in _load(path)["cells"]:
        assert "NBVAL_" not in _source(cell), (
            f"{path.name}: an nbval marker comment in a cell; use the `nbval-ignore-output` tag:\n"
            + _source(cell)[:300]
        )
        if "nbval-ignore-output" in cell["metadata"].get("tags", []):
            reason = cell["metadata"].get("nbval_reason", "")
            assert isinstance(reason, str) and len(reason.strip()) > 10, (
                f"{path.name}: a cell tagged nbval-ignore-output without an `nbval_reason` in its "
                "metadata:\n" + _source(cell)[:300]
            )


def _png_size(data: str) -> tuple[int, int]:
    raw = base64.b64decode(data)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", raw[16:24])
    return width, height


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_figures_are_sharp(path):
    # At the book's ~700 px column a figure needs twice that many pixels to stay legible when
    # zoomed or printed: retina output (twice the pixels, displayed at half size) or >= 1200 px.
    blurry = []
    for i, cell in enumerate(_load(path)["cells"]):
        for out in cell.get("outputs", []):
            png = out.get("data", {}).get("image/png")
            if png is None:
                continue
            width, _ = _png_size(png)
            shown = out.get("metadata", {}).get("image/png", {}).get("width")
            retina = shown is not None and width >= 2 * shown - 2
            if not (retina or width >= 1200):
                blurry.append(f"cell {i}: {width} px wide, shown at {shown or width}")
    assert not blurry, f"{path.name}: low-resolution figures: {blurry}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_chapter_states_its_execution_time(path):
    nb = _load(path)
    seconds = chapters.execution_seconds(nb)
    assert isinstance(seconds, (int, float)) and seconds > 0, (
        f"{path.name}: no execution time recorded; run `python tools/chapters.py execute`"
    )
    notes = [c for c in nb["cells"] if chapters.TIMING_TAG in c["metadata"].get("tags", [])]
    assert len(notes) == 1, f"{path.name}: one generated execution-time note"
    where = nb["metadata"][chapters.STAMP_KEY]["machine"]
    assert _source(notes[0]) == chapters.timing_source(seconds, where), (
        f"{path.name}: the execution-time note disagrees with the recorded time"
    )


def test_syllabus_timings_are_those_recorded_in_the_chapters():
    assert chapters.TIMINGS.read_text() == chapters.timings_table(), (
        "book/_timings.md is out of date; run `python tools/chapters.py timings`"
    )
    syllabus = (ROOT / "book" / "syllabus.md").read_text()
    assert "_timings.md" in syllabus, "the syllabus includes the measured times"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_exercises_have_a_difficulty_level(path):
    nb = _load(path)
    markdown = "\n".join(_source(c) for c in nb["cells"] if c["cell_type"] == "markdown")
    exercises = markdown[markdown.index("## Exercises") :]
    numbered = re.findall(r"^\d+\. (.*)$", exercises, re.M)
    assert numbered, f"{path.name}: no numbered exercises"
    unlevelled = [e for e in numbered if not re.match(r"\((basic|intermediate|advanced)\)", e)]
    assert not unlevelled, f"{path.name}: exercises without a level: {unlevelled}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_chapter_states_learning_objectives(path):
    first = _source(_load(path)["cells"][0])
    assert "**Learning objectives.**" in first, f"{path.name}: no learning objectives up front"


DURATION = re.compile(
    r"\b(?:\d[\d,.]*\s*(?:-\s*\d+\s*)?(?:s|sec|seconds?|min|minutes?|h|hours?)"
    r"|(?:a few|several|one|two|three|ten)\s+(?:seconds|minutes?|hours?)"
    r"|an? (?:minute|hour)|days on a CPU)\b",
    re.I,
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_prose_types_no_run_times(path):
    # Run times depend on the machine: they come from the outputs (printed sentences) or from the
    # generated execution-time note, never typed into the prose from an earlier run.
    nb = _load(path)
    typed = [
        m.group(0)
        for c in nb["cells"]
        if c["cell_type"] == "markdown" and chapters.TIMING_TAG not in c["metadata"].get("tags", [])
        for m in DURATION.finditer(_source(c))
    ]
    assert not typed, f"{path.name}: run times typed into the prose: {typed}"


def test_every_module_the_chapters_import_is_required():
    import ast
    import importlib.metadata as md

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pinned = {
        norm(re.split(r"[=<>!~ \[;]", line, maxsplit=1)[0])
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    dists = md.packages_distributions()
    missing = {}
    for path in NOTEBOOKS:
        for cell in _load(path)["cells"]:
            if cell["cell_type"] != "code":
                continue
            code = "\n".join(
                line for line in _source(cell).splitlines() if line.lstrip()[:1] not in "%!"
            )
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top == "psetae" or top == "google":
                        continue  # the standard library, the package itself, Colab's module
                    owners = {norm(d) for d in dists.get(top, [])}
                    if not owners & pinned:
                        missing.setdefault(path.name, set()).add(top)
    assert not missing, f"chapters import modules that requirements.txt does not pin: {missing}"


def test_student_edition_is_up_to_date_and_has_no_solutions():
    student = _tool("student_edition")
    assert student.main(["--check"]) == 0, "run `python tools/student_edition.py` and commit"
    for path in NOTEBOOKS:
        nb = _load(student.student_path(path))
        text = "\n".join(_source(c) for c in nb["cells"])
        assert "{admonition} Solution" not in text, f"student/{path.name} still has a solution"
        assert not any(c.get("outputs") for c in nb["cells"]), f"student/{path.name} has outputs"
        exercises = [c for c in nb["cells"] if "## Exercises" in _source(c)]
        assert exercises, f"student/{path.name} lost its exercises"
        assert chapters.badge_source(student.student_path(path)) in text, "its own Colab link"


def test_student_edition_strips_every_kind_of_solution_toggle():
    student = _tool("student_edition")
    text = (
        "1. Question.\n\n````{admonition} Solution\n:class: dropdown\n\n```python\nx = 1\n```\n"
        "The answer.\n````\n\n2. Next.\n\n```{admonition} Solution\n:class: dropdown\nShort.\n```\n"
    )
    out = student.strip_solutions(text)
    assert "The answer" not in out and "Short." not in out and "x = 1" not in out
    assert "1. Question." in out and "2. Next." in out


def test_student_edition_executes(tmp_path):
    # The lightest chapter, from the student edition, runs top to bottom (papermill).
    import papermill

    student = _tool("student_edition")
    source = student.student_path(ROOT / "book" / "02_pse.ipynb")
    papermill.execute_notebook(
        str(source), str(tmp_path / "out.ipynb"), cwd=str(source.parent), progress_bar=False
    )


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_workflow_runs_the_readme_test_command_and_publishes_the_book():
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    readme = (ROOT / "README.md").read_text()
    test_command = "python3 tasks.py test"
    assert test_command in readme, "the README gives the test command"
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert test_command in runs, "the workflow runs the README's test command"
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("actions/upload-pages-artifact") for u in uses)
    assert any(u.startswith("actions/deploy-pages") for u in uses)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html", "it publishes the built book"
    assert "npm" not in runs.replace("setup-node", ""), "MathJax comes from tasks.py, not the CI"


def test_bibliography_labels_read_like_the_citations():
    # book/_ext/bibstyle.py labels the bibliography "[Author et al., 2020]", as the text cites.
    from pybtex.database import parse_file

    spec = importlib.util.spec_from_file_location(
        "bibstyle", ROOT / "book" / "_ext" / "bibstyle.py"
    )
    bibstyle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bibstyle)
    entries = parse_file(str(ROOT / "references.bib")).entries
    labels = {key: bibstyle.author_year(e) for key, e in entries.items()}
    assert labels["garnot2020psetae"] == "Sainte Fare Garnot et al., 2020"
    assert labels["russwurm2020selfattention"] == "Rußwurm and Körner, 2020"
    assert labels["rouse1974ndvi"].endswith(", 1974")
    raw = {k: v for k, v in labels.items() if re.search(r"[\\{}]", v)}
    assert not raw, f"labels with LaTeX left in them: {raw}"
    style = bibstyle.AuthorYearLabels()
    twins = [entries["garnot2020ltae"], entries["garnot2020ltae"]]
    assert list(style.format_labels(twins))[0].endswith("2020a"), "same authors and year: a, b"
