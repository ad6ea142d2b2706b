"""Set up, build and test the PSE-TAE book with nothing but python3 (no make needed).

    python3 tasks.py book    the main job: set up, prepare the data, execute the chapters, build the HTML
    python3 tasks.py test    set up, prepare the data, lint, unit tests, notebook checks, book build

Both are idempotent: a second run reuses the virtual environment (re-installing only when
requirements.txt or pyproject.toml changed), the data and the executed chapters (re-executing only the
chapters whose sources, package code or pins changed), so it finishes fast.
Other steps: setup, data, chapters, mathjax, student, lint, unit, notebooks, build, screenshots.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
SETUP_STAMP = VENV / ".psetae-setup"
MATHJAX_VERSION = "3.2.2"  # served with the book so that formulas render offline
MATHJAX_NPM = ROOT / ".mathjax"  # npm's install folder (git-ignored)
# What the build copies into _build/html/mathjax (html_extra_path; git-ignored). Not in _static/:
# Jupyter Book would load every script found there on every page.
MATHJAX_STATIC = MATHJAX_NPM / "extra" / "mathjax"


def run(*cmd: object) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True)


def setup() -> None:
    """Create .venv if there is none and install the pinned requirements and the package."""
    want = hashlib.sha256(
        (ROOT / "requirements.txt").read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    ).hexdigest()
    if SETUP_STAMP.exists() and SETUP_STAMP.read_text() == want and PY.exists():
        print("environment up to date:", VENV, flush=True)
        return
    if not PY.exists():
        print("creating", VENV, flush=True)
        venv.create(VENV, with_pip=True)
    run(PY, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", "requirements.txt")
    run(
        PY,
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        "--no-deps",
        "--no-build-isolation",
        "-e",
        ".",
    )
    SETUP_STAMP.write_text(want)


def data() -> None:
    """Prepare the data the book runs on out of the box (the simulated S2-Agri; no download)."""
    run(
        PY,
        "-c",
        "from psetae.data.prepare import prepare_dataset; print(prepare_dataset('simulated', 'data'))",
    )


def chapters() -> None:
    """Execute the chapters whose committed outputs are stale (papermill)."""
    run(PY, "tools/chapters.py", "execute")


def mathjax() -> None:
    """Install MathJax (npm package `mathjax`, pinned) into the book's _static folder, once."""
    stamp = MATHJAX_STATIC / ".version"
    if stamp.is_file() and stamp.read_text() == MATHJAX_VERSION:
        print("MathJax up to date:", MATHJAX_STATIC, flush=True)
        return
    npm = shutil.which("npm")
    if npm is None:
        sys.exit(
            "npm not found: the book serves MathJax itself and installs it with npm "
            "(Debian/Ubuntu: apt-get install npm; macOS: brew install node)"
        )
    run(
        npm,
        "install",
        "--no-audit",
        "--no-fund",
        "--prefix",
        MATHJAX_NPM,
        f"mathjax@{MATHJAX_VERSION}",
    )
    es5 = MATHJAX_NPM / "node_modules" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        sys.exit(f"npm installed no MathJax in {es5}")
    shutil.rmtree(MATHJAX_STATIC, ignore_errors=True)
    shutil.copytree(es5, MATHJAX_STATIC)
    stamp.write_text(MATHJAX_VERSION)


def student() -> None:
    """Regenerate the student edition (student/*.ipynb: no solutions, no outputs)."""
    run(PY, "tools/student_edition.py")


def lint() -> None:
    run(BIN / "ruff", "check", ".")
    run(BIN / "ruff", "format", "--check", ".")


def unit() -> None:
    run(PY, "-m", "pytest", "tests", "-p", "no:cacheprovider")


def notebooks() -> None:
    """Re-run every chapter and compare its outputs with the committed ones (nbval)."""
    run(
        PY,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--nbval",
        "--nbval-current-env",
        "--nbval-sanitize-with",
        "book/nbval_sanitize.cfg",
        "--nbval-cell-timeout",
        "900",
        "book",
    )


def build() -> None:
    """Build the HTML book from the committed outputs (any Sphinx warning is an error), then
    check the built pages (tests/test_built_book.py: no script from outside, MathJax local)."""
    mathjax()
    run(BIN / "jupyter-book", "build", ".", "-W", "--keep-going")
    env = {**os.environ, "PSETAE_BUILT_BOOK": "required"}
    print("+ checking the built book", flush=True)
    subprocess.run(
        [str(PY), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_built_book.py"],
        cwd=ROOT,
        check=True,
        env=env,
    )
    print("book:", ROOT / "_build" / "html" / "index.html", flush=True)


def screenshots() -> None:
    """Screenshots of every chapter page with headless Chromium (needs Debian's chromium)."""
    run(PY, "tools/screenshots.py")


def book() -> None:
    setup()
    data()
    chapters()
    student()
    build()


def test() -> None:
    setup()
    data()
    lint()
    unit()
    notebooks()
    build()


STEPS = {
    f.__name__: f
    for f in (
        setup,
        data,
        chapters,
        mathjax,
        student,
        lint,
        unit,
        notebooks,
        build,
        screenshots,
        book,
        test,
    )
}

if __name__ == "__main__":
    names = sys.argv[1:] or ["book"]
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        sys.exit(f"unknown step(s) {', '.join(unknown)}; choose from: {', '.join(STEPS)}")
    try:
        for name in names:
            STEPS[name]()
    except subprocess.CalledProcessError as err:
        sys.exit(f"step failed (exit {err.returncode}): {' '.join(map(str, err.cmd))}")
