"""Book chapters: execute them with papermill, stamp what they were executed from, sync Colab cells.

    python tools/chapters.py execute [NOTEBOOK ...] [--force]   run stale chapters (all by default)
    python tools/chapters.py colab                               regenerate the Colab badge + set-up cells
    python tools/chapters.py status                              list chapters and whether they are stale
    python tools/chapters.py timings                             rewrite book/_timings.md

A chapter's committed outputs are *stale* when they were produced from other notebook sources, other
package code or other pinned requirements than those in the repository. `execute` records a hash of
those inputs in the notebook's metadata (``psetae_book.inputs_sha256``); `tests/test_book.py` recomputes
it, so CI fails on stale outputs. The repository URL is read from `_config.yml`, its one home.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAMP_KEY = "psetae_book"
BADGE_TAG = "colab-badge"
SETUP_TAG = "colab-setup"
TIMING_TAG = "chapter-timing"  # generated after execution; not an input, so not hashed


def chapter_notebooks() -> list[Path]:
    """The .ipynb chapters listed in `_toc.yml`, in reading order."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files: list[str] = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            files.append(chapter["file"])
    return [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").exists()]


def repository() -> tuple[str, str]:
    """(url, branch) of the repository, from `_config.yml`."""
    import yaml

    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def inputs_sha256(notebook: dict) -> str:
    """Hash of everything a chapter's outputs depend on: its cell sources, the package, the pins."""
    h = hashlib.sha256()
    for cell in notebook["cells"]:
        if TIMING_TAG in cell["metadata"].get("tags", []):
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        h.update(cell["cell_type"].encode() + b"\0" + source.encode() + b"\0")
    for path in sorted((ROOT / "psetae").rglob("*.py")):
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    h.update((ROOT / "requirements.txt").read_bytes())
    return h.hexdigest()


def badge_source(notebook_path: Path) -> str:
    url, branch = repository()
    github = url.removeprefix("https://github.com/")
    rel = notebook_path.relative_to(ROOT).as_posix()
    link = f"https://colab.research.google.com/github/{github}/blob/{branch}/{rel}"
    return (
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({link})\n"
        f"[View the source on GitHub]({url}/blob/{branch}/{rel})"
    )


def setup_source() -> str:
    url, branch = repository()
    return f"""# On Google Colab only: install the psetae package next to Colab's own CUDA build of PyTorch
# (the package asks for a range of torch versions, so pip keeps the one that is there).
# Anywhere else this cell does nothing: set up with the README's commands instead.
import os
import subprocess
import sys

if "google.colab" in sys.modules:
    repo, branch = "{url}", "{branch}"
    target = "/content/psetae-book"
    if not os.path.isdir(target):
        subprocess.run(["git", "clone", "--depth", "1", "-b", branch, repo, target], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", target], check=True)
    os.chdir(os.path.join(target, "book"))"""


def _cell(cell_type: str, source: str, tags: list[str]) -> dict:
    # A fixed id (the tag) keeps the generated cells stable and nbformat-valid.
    cell = {"cell_type": cell_type, "id": tags[0], "metadata": {"tags": tags}, "source": source}
    if cell_type == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def sync_colab(path: Path) -> bool:
    """Put the generated badge (cell 1) and set-up cell (cell 2) in a chapter. True if changed."""
    nb = json.loads(path.read_text())
    generated = {BADGE_TAG, SETUP_TAG}
    existing = {
        tag: cell
        for cell in nb["cells"]
        for tag in cell["metadata"].get("tags", [])
        if tag in generated
    }
    others = [c for c in nb["cells"] if not generated & set(c["metadata"].get("tags", []))]
    timing = [c for c in others if TIMING_TAG in c["metadata"].get("tags", [])]
    others = [c for c in others if c not in timing]
    badge = _cell("markdown", badge_source(path), [BADGE_TAG])
    setup = _cell("code", setup_source(), [SETUP_TAG, "remove-cell"])
    # Keep an up-to-date cell as it is (with its outputs), so that syncing changes nothing.
    if BADGE_TAG in existing and _src(existing[BADGE_TAG]) == badge["source"]:
        badge = existing[BADGE_TAG]
    if SETUP_TAG in existing and _src(existing[SETUP_TAG]) == setup["source"]:
        setup = existing[SETUP_TAG]
    cells = others[:1] + [badge, *timing, setup] + others[1:]
    meta = nb.setdefault("metadata", {})
    colab_meta = {"accelerator": "GPU", "colab": {"provenance": [], "gpuType": "T4"}}
    changed = cells != nb["cells"] or any(meta.get(k) != v for k, v in colab_meta.items())
    if changed:
        nb["cells"] = cells
        meta.update(colab_meta)
        write_notebook(path, nb)
    return changed


def _src(cell: dict) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def write_notebook(path: Path, nb: dict) -> None:
    """Write a notebook atomically, in the indentation Jupyter uses."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def is_stale(path: Path) -> bool:
    nb = json.loads(path.read_text())
    return nb.get("metadata", {}).get(STAMP_KEY, {}).get("inputs_sha256") != inputs_sha256(nb)


def machine() -> str:
    """A short description of this machine for the timing note: CPU cores, load, accelerator."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - torch is pinned
        gpu = None
    return f"{cores} CPU cores" + (f" and a {gpu}" if gpu else "") + f" (load {load:.1f})"


def timing_source(seconds: float, where: str) -> str:
    """The generated note on a chapter's execution time, from its last `execute`."""
    return (
        "```{admonition} Execution time\n"
        f"The last execution of this page with its default parameters took **{seconds:.0f} s** on "
        f"{where}, measured by `tools/chapters.py execute` (the [syllabus](syllabus.md) lists "
        "every chapter and estimates the time on a Colab GPU).\n```"
    )


def execution_seconds(nb: dict) -> float | None:
    """Execution time of a chapter recorded by `execute` (None if it has none)."""
    return nb.get("metadata", {}).get(STAMP_KEY, {}).get("seconds")


def execute(path: Path) -> None:
    """Run one chapter in place with papermill (cwd = its folder), stamp its inputs and time."""
    import time

    import papermill

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".ipynb")
    os.close(fd)
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(path), tmp, cwd=str(path.parent), kernel_name="python3", progress_bar=False
        )
        nb = json.loads(Path(tmp).read_text())
    finally:
        os.unlink(tmp)
    seconds, where = time.perf_counter() - start, machine()
    nb["metadata"][STAMP_KEY] = {
        "inputs_sha256": inputs_sha256(nb),
        "seconds": round(seconds, 1),
        "machine": where,
    }
    set_timing_cell(nb, timing_source(seconds, where))
    write_notebook(path, nb)


def set_timing_cell(nb: dict, source: str) -> None:
    """Put the timing note right after the Colab badge (replacing an older one)."""
    cells = [c for c in nb["cells"] if TIMING_TAG not in c["metadata"].get("tags", [])]
    at = next((i + 1 for i, c in enumerate(cells) if BADGE_TAG in c["metadata"].get("tags", [])), 1)
    cell = _cell("markdown", source, [TIMING_TAG])
    cells.insert(at, cell)
    nb["cells"] = cells


TIMINGS = ROOT / "book" / "_timings.md"


def chapter_title(nb: dict) -> str:
    first = _src(nb["cells"][0]).splitlines()[0]
    return first.removeprefix("# ").strip()


def timings_table() -> str:
    """The table of measured execution times that the syllabus includes (book/_timings.md)."""
    lines = [
        "| chapter | measured time | measured on |",
        "|---|---|---|",
    ]
    for path in chapter_notebooks():
        nb = json.loads(path.read_text())
        seconds = execution_seconds(nb)
        where = nb.get("metadata", {}).get(STAMP_KEY, {}).get("machine", "")
        shown = "not measured" if seconds is None else f"{seconds:.0f} s"
        lines.append(f"| [{chapter_title(nb)}]({path.name}) | {shown} | {where} |")
    return (
        "<!-- Generated by `python tools/chapters.py timings` (and `execute`) from the chapters'\n"
        "metadata; tests/test_book.py checks it. Do not edit by hand. -->\n\n"
        + "\n".join(lines)
        + "\n"
    )


def write_timings() -> None:
    TIMINGS.write_text(timings_table())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("execute", help="execute stale chapters with papermill")
    ex.add_argument("notebooks", nargs="*", type=Path)
    ex.add_argument("--force", action="store_true", help="execute even if not stale")
    sub.add_parser("colab", help="regenerate the Colab badge and set-up cells")
    sub.add_parser("status", help="list chapters and whether their outputs are stale")
    sub.add_parser("timings", help="rewrite book/_timings.md from the chapters' metadata")
    args = parser.parse_args(argv)

    if args.command == "colab":
        for path in chapter_notebooks():
            print(f"{'updated' if sync_colab(path) else 'ok     '} {path.relative_to(ROOT)}")
        return 0
    if args.command == "timings":
        write_timings()
        print("wrote", TIMINGS.relative_to(ROOT))
        return 0
    if args.command == "status":
        for path in chapter_notebooks():
            print(f"{'stale' if is_stale(path) else 'fresh'} {path.relative_to(ROOT)}")
        return 0
    paths = [p.resolve() for p in args.notebooks] or chapter_notebooks()
    for path in paths:
        if not args.force and not is_stale(path):
            print(f"fresh, skipped: {path.relative_to(ROOT)}", flush=True)
            continue
        print(f"executing: {path.relative_to(ROOT)}", flush=True)
        execute(path)
    write_timings()
    return 0


if __name__ == "__main__":
    sys.exit(main())
