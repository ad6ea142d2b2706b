"""Progress bars that work in a terminal and in a notebook, and can be turned off."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from typing import Any


def progress_bar(iterable: Iterable | None = None, enabled: bool = True, **kwargs: Any):
    """A tqdm progress bar: a widget in a notebook that has ipywidgets (Colab), text elsewhere.

    ``tqdm.auto`` alone warns ("IProgress not found") in a notebook without ipywidgets; here
    the text bar is used instead, silently. ``enabled=False`` gives a bar that draws nothing.
    """
    if enabled and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm(iterable, disable=not enabled, **kwargs)
