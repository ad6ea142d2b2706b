"""Tests of psetae/data/packed.py: packing a dataset and reading it back."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch

import psetae.data.packed as packed_mod
from psetae.data.dataset import PixelSetDataset
from psetae.data.format import DatasetFormatError, load_parcel
from psetae.data.packed import PackedStore, has_packed, main, pack_dataset


def test_packed_parcels_equal_the_files(tiny_root, tiny):
    folder = pack_dataset(tiny_root)
    assert folder == tiny_root / "PACKED" and has_packed(tiny_root)
    store = PackedStore(folder)
    assert store.ids.tolist() == sorted(tiny.sizes)
    info = json.loads((folder / "pack.json").read_text())
    assert info["n_pixels"] == sum(tiny.sizes.values()) and (info["T"], info["C"]) == (4, 3)
    for pid, arr in tiny.arrays().items():
        got = store.get(pid)
        assert got.dtype == np.int16 and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)
        np.testing.assert_array_equal(got, load_parcel(tiny_root, pid))
    # Stored pixel-major: parcel 12's block is rows offsets[k]:offsets[k+1] of (N, T, C).
    raw = np.load(folder / "pixels.npy")
    k = store.ids.tolist().index(12)
    block = raw[store.offsets[k] : store.offsets[k + 1]]
    np.testing.assert_array_equal(block, tiny.arrays()[12].transpose(2, 0, 1))


@pytest.mark.parametrize("train", [False, True])
def test_dataset_items_are_identical_in_both_forms(tiny_root, train):
    norm = (np.array([3000.0, 4000.0, 5000.0]), np.array([1000.0, 1500.0, 2000.0]))
    kwargs = dict(npixel=16, normalisation=norm, train=train, seed=5)
    folder_ds = PixelSetDataset(tiny_root, **kwargs)
    assert not folder_ds.packed
    pack_dataset(tiny_root)
    packed_ds = PixelSetDataset(tiny_root, **kwargs)
    assert packed_ds.packed
    for _ in range(2):  # in training, the second pass draws new pixels in both forms alike
        for i in range(len(folder_ds)):
            a, b = folder_ds[i], packed_ds[i]
            assert a.keys() == b.keys()
            for key in a:
                assert torch.equal(a[key], b[key]), key
    forced = PixelSetDataset(tiny_root, use_packed=False, **kwargs)
    assert not forced.packed


def test_pack_to_another_folder_is_a_standalone_dataset(tiny_root, tiny, tmp_path):
    out = tmp_path / "packed_copy"
    folder = pack_dataset(tiny_root, out=out)
    assert folder == out / "PACKED"
    assert sorted(os.listdir(out)) == ["META", "PACKED"]
    ds = PixelSetDataset(out, train=False, npixel=64)
    ref = PixelSetDataset(tiny_root, train=False, npixel=64)
    assert ds.packed and not has_packed(tiny_root)
    for i in range(len(ds)):
        for key, value in ds[i].items():
            assert torch.equal(value, ref[i][key])
    np.testing.assert_array_equal(ds.raw_pixels(2), tiny.arrays()[12])


def test_normalisation_files_are_copied(tmp_path, tiny):
    root = tiny.make(tmp_path / "ds", normalisation=(np.ones(3), np.ones(3)))
    out = tmp_path / "out"
    pack_dataset(root, out=out)
    assert (out / "normalisation.json").is_file() and (out / "normalisation.pkl").is_file()


def test_stale_pack_is_refused(tiny_root):
    pack_dataset(tiny_root)
    sizes = json.loads((tiny_root / "META" / "sizes.json").read_text())
    sizes["12"] = 99
    np.save(tiny_root / "DATA" / "12.npy", np.zeros((4, 3, 99), np.int16))
    (tiny_root / "META" / "sizes.json").write_text(json.dumps(sizes))
    with pytest.raises(DatasetFormatError, match="PACKED: packed form is stale"):
        PixelSetDataset(tiny_root)
    PixelSetDataset(tiny_root, use_packed=False)  # the folder form still works
    sizes["30"] = 1
    (tiny_root / "META" / "sizes.json").write_text(json.dumps(sizes))
    with pytest.raises(DatasetFormatError, match="stale"):
        PixelSetDataset(tiny_root, labels_required=False)


def test_use_packed_true_requires_a_pack(tiny_root):
    with pytest.raises(DatasetFormatError, match="no packed form"):
        PixelSetDataset(tiny_root, use_packed=True)


def test_refuses_to_replace_unless_overwrite(tiny_root):
    pack_dataset(tiny_root)
    with pytest.raises(FileExistsError, match="overwrite"):
        pack_dataset(tiny_root)
    pack_dataset(tiny_root, overwrite=True)
    assert sorted(p for p in os.listdir(tiny_root)) == ["DATA", "META", "PACKED"]


def test_interrupted_pack_leaves_nothing(tiny_root, monkeypatch):
    calls = []
    real = packed_mod.load_parcel

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(packed_mod, "load_parcel", failing)
    with pytest.raises(KeyboardInterrupt):
        pack_dataset(tiny_root)
    assert sorted(os.listdir(tiny_root)) == ["DATA", "META"]


def test_inconsistent_parcel_names_the_file(tiny_root):
    np.save(tiny_root / "DATA" / "13.npy", np.zeros((4, 3, 10), np.int16))
    with pytest.raises(DatasetFormatError, match="DATA/13.npy: 10 pixels but sizes.json says 64"):
        pack_dataset(tiny_root)
    np.save(tiny_root / "DATA" / "13.npy", np.zeros((4, 3, 64), np.float32))
    with pytest.raises(DatasetFormatError, match="13.npy: dtype float32"):
        pack_dataset(tiny_root)
    assert not (tiny_root / "PACKED").exists()


def test_pickled_dataset_does_not_carry_the_pixels(tiny_root):
    pack_dataset(tiny_root)
    ds = PixelSetDataset(tiny_root)
    ds[2]  # maps the pixel file
    data = pickle.dumps(ds)
    n_bytes = os.path.getsize(tiny_root / "PACKED" / "pixels.npy")
    assert b"PACKED" in data and len(data) < n_bytes
    again = pickle.loads(data)
    assert again._store.store._pixels is None  # each process maps the file itself
    assert torch.equal(
        again.subset([1], train=False)[0]["mask"], ds.subset([1], train=False)[0]["mask"]
    )


def test_command_line(tiny_root, tmp_path, capsys):
    assert main([str(tiny_root)]) == 0
    assert "packed 6 parcels, 240 pixels" in capsys.readouterr().out
    assert main([str(tiny_root)]) == 1
    assert "overwrite" in capsys.readouterr().out


def test_changed_pixel_content_makes_the_pack_stale(tiny_root, tiny):
    pack_dataset(tiny_root)
    PixelSetDataset(tiny_root)  # fresh: opens
    path = tiny_root / "DATA" / "12.npy"
    before = path.stat()
    np.save(path, tiny.arrays(seed=1)[12])  # same shape, dtype and size; other pixels
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    with pytest.raises(DatasetFormatError, match="packed form is stale: files of .*DATA changed"):
        PixelSetDataset(tiny_root)
    pack_dataset(tiny_root, overwrite=True)
    np.testing.assert_array_equal(
        PixelSetDataset(tiny_root, train=False).raw_pixels(2), tiny.arrays(seed=1)[12]
    )


def test_pack_runs_the_preflight_check_before_writing(tiny_root):
    (tiny_root / "S2-2017-T31TFM-meanstd.pkl").write_bytes(b"cos\nsystem\n(S'echo hi'\ntR.")
    with pytest.raises(DatasetFormatError, match="invalid dataset.*meanstd.pkl: refusing"):
        pack_dataset(tiny_root)
    assert sorted(p.name for p in tiny_root.iterdir()) == [
        "DATA",
        "META",
        "S2-2017-T31TFM-meanstd.pkl",
    ]


def test_pack_out_restores_a_folder_lost_between_two_renames(tiny_root, tmp_path):
    out = tmp_path / "packed"
    pack_dataset(tiny_root, out=out)
    # What a crash between replace_dir's two renames leaves: only the hidden old copy.
    os.rename(out, tmp_path / ".packed.old-0badcafe")
    (tmp_path / ".packed.tmp-12345678").mkdir()
    with pytest.raises(FileExistsError):
        pack_dataset(tiny_root, out=out)  # the old pack is back, so it is not overwritten
    assert (out / "PACKED" / "pack.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["packed", "tiny"]
