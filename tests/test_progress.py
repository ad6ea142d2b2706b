"""progress_bar: a widget only where ipywidgets exists, text elsewhere, nothing when disabled."""

from __future__ import annotations

import importlib.util
import io
import warnings

import tqdm.std

from psetae.progress import progress_bar


def test_disabled_bar_draws_nothing_and_passes_items_through():
    out = io.StringIO()
    assert list(progress_bar(range(5), enabled=False, file=out)) == [0, 1, 2, 3, 4]
    assert out.getvalue() == ""


def test_enabled_bar_draws_without_warnings(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # no ipywidgets
    out = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bar = progress_bar(range(3), enabled=True, file=out, desc="epochs")
        assert type(bar) is tqdm.std.tqdm
        assert list(bar) == [0, 1, 2]
    assert "epochs" in out.getvalue() and "3/3" in out.getvalue()
