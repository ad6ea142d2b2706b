"""prepare_dataset: the one call that gives the book its data folder."""

from __future__ import annotations

import dataclasses
import json

import pytest

import psetae.data.download as download
import psetae.data.simulate as simulate
from psetae.data.prepare import prepare_dataset


@pytest.fixture
def tiny_book_preset(monkeypatch):
    """Make the book preset tiny so that the test runs in a second."""
    tiny = dataclasses.replace(simulate.PRESETS["test"], n_parcels=60)
    monkeypatch.setitem(simulate.PRESETS, "book", tiny)
    return tiny


def test_simulated_is_written_once_then_reused(tmp_path, tiny_book_preset):
    root = prepare_dataset("simulated", tmp_path, progress=False)
    assert root == tmp_path / "s2agri-sim"
    assert len(list((root / "DATA").glob("*.npy"))) == tiny_book_preset.n_parcels
    stamp = (root / "META" / "labels.json").stat().st_mtime_ns
    assert prepare_dataset("simulated", tmp_path, progress=False) == root
    assert (root / "META" / "labels.json").stat().st_mtime_ns == stamp, (
        "second call rewrote the data"
    )


def test_simulation_with_other_settings_is_simulated_again(tmp_path, tiny_book_preset, monkeypatch):
    root = prepare_dataset("simulated", tmp_path, progress=False)
    bigger = dataclasses.replace(tiny_book_preset, n_parcels=tiny_book_preset.n_parcels + 10)
    monkeypatch.setitem(simulate.PRESETS, "book", bigger)
    assert prepare_dataset("simulated", tmp_path, progress=False) == root
    sizes = json.loads((root / "META" / "sizes.json").read_text())
    assert len(sizes) == bigger.n_parcels


def test_a_folder_that_is_not_a_simulation_is_never_replaced(tmp_path, tiny_book_preset):
    mine = tmp_path / "s2agri-sim"
    (mine / "DATA").mkdir(parents=True)
    (mine / "DATA" / "precious.npy").write_bytes(b"user data")
    with pytest.raises(FileExistsError):
        prepare_dataset("simulated", tmp_path, progress=False)
    assert (mine / "DATA" / "precious.npy").read_bytes() == b"user data"


def test_s2agri_goes_through_the_downloader(tmp_path, monkeypatch):
    calls = []

    def fake_download(dest, progress=True, **kwargs):
        calls.append((dest, progress))
        return dest / "S2-Agri"

    monkeypatch.setattr(download, "download_s2agri", fake_download)
    assert prepare_dataset("s2agri", tmp_path, progress=False) == tmp_path / "s2agri" / "S2-Agri"
    assert calls == [(tmp_path / "s2agri", False)]


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'sentinel'"):
        prepare_dataset("sentinel", tmp_path)


def test_a_dataset_lost_between_two_renames_is_restored_not_simulated_again(
    tmp_path, tiny_book_preset
):
    import os

    root = prepare_dataset("simulated", tmp_path, progress=False)
    stamp = (root / "META" / "labels.json").stat().st_mtime_ns
    os.rename(root, tmp_path / ".s2agri-sim.old-1a2b3c4d")  # what the crash leaves
    (tmp_path / ".s2agri-sim.tmp-99999999").mkdir()  # and the new half-written copy
    assert prepare_dataset("simulated", tmp_path, progress=False) == root
    assert (root / "META" / "labels.json").stat().st_mtime_ns == stamp, "re-simulated"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s2agri-sim"]
