"""progress_bar: a widget only where ipywidgets exists, text elsewhere, nothing when disabled."""

from __future__ import annotations

import importlib.util
import io
import warnings

import tqdm.std

from psetae.progress import bars_visible, progress_bar


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


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_no_bar_on_a_stderr_that_is_a_file_and_a_bar_in_a_terminal(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # no ipywidgets
    for tty in (False, True):
        stream = _Stream(tty)
        monkeypatch.setattr("sys.stderr", stream)
        assert bars_visible(True) is tty
        assert list(progress_bar(range(3), enabled=True, desc="epochs")) == [0, 1, 2]
        assert ("3/3" in stream.getvalue()) is tty
    assert bars_visible(False) is False  # turned off, even in a terminal


def test_epoch_lines_in_a_terminal_or_file_but_not_in_a_notebook(monkeypatch):
    import psetae.progress as progress

    monkeypatch.setattr(progress, "_in_notebook", lambda: False)
    assert progress.epoch_lines_wanted(False)  # --no-progress in a terminal: one line an epoch
    monkeypatch.setattr(progress, "_in_notebook", lambda: True)
    assert not progress.epoch_lines_wanted(False)  # a quiet notebook run stays quiet
    assert not progress.epoch_lines_wanted(True)  # the notebook shows a bar instead
