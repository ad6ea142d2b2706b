"""Screenshots of every page of the built book with headless Chromium, to look at what readers see.

    python tools/screenshots.py [--out _build/screenshots] [--width 1280] [--height 2400]

Needs the built book (`python3 tasks.py build`) and Chromium (Debian: `apt-get install chromium`).
Not part of CI: it is for a person (or a reviewing session) to look at the PNGs. Chromium runs with
no network access to anything but the local files.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"


def pages() -> list[Path]:
    """The HTML pages of the chapters and reference pages, in the order of _toc.yml."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for p in toc.get("parts", []) for c in p["chapters"]]
    return [HTML / f"{f}.html" for f in files]


def screenshot(chromium: str, page: Path, out: Path, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
                f"--window-size={width},{height}", f"--screenshot={out}", page.as_uri(),
            ],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "screenshots")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2400)
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("Chromium not found: install it (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    missing = [p for p in pages() if not p.exists()]
    if missing:
        print(
            f"build the book first (python3 tasks.py build); missing {missing[0]}", file=sys.stderr
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for page in pages():
        out = args.out / f"{page.stem}.png"
        screenshot(chromium, page, out, args.width, args.height)
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
