"""Progress bars that work in a terminal and in a notebook, and can be turned off.

A bar is drawn only where a person watches it: in a terminal (stderr is a TTY) or in a
notebook. When stderr goes to a file or a pipe, redrawn bars would fill the log with
carriage returns; they are left out there, and callers print plain lines instead
(:func:`bars_visible` tells them).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["bars_visible", "epoch_lines_wanted", "progress_bar"]


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    ipython = getattr(shell, "get_ipython", lambda: None)() if shell is not None else None
    return ipython is not None and "IPKernelApp" in getattr(ipython, "config", {})


def epoch_lines_wanted(progress: bool) -> bool:
    """Whether training prints one line per epoch: when no bar shows it (bars off, or stderr
    is a file), except in a notebook, where a run with bars off is meant to be quiet."""
    return not bars_visible(progress) and not _in_notebook()


def bars_visible(enabled: bool = True) -> bool:
    """Whether :func:`progress_bar` draws on stderr: enabled, and a terminal or a notebook."""
    if not enabled:
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty is not None and isatty()) or _in_notebook()


def progress_bar(iterable: Iterable | None = None, enabled: bool = True, **kwargs: Any):
    """A tqdm progress bar: a widget in a notebook that has ipywidgets (Colab), text elsewhere.

    ``tqdm.auto`` alone warns ("IProgress not found") in a notebook without ipywidgets; here
    the text bar is used instead, silently. ``enabled=False`` gives a bar that draws nothing,
    and so does a bar on a stderr that is neither a terminal nor a notebook (unless a
    ``file=`` is given: it is then drawn there).
    """
    if "file" not in kwargs:
        enabled = bars_visible(enabled)
    if enabled and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm(iterable, disable=not enabled, **kwargs)
