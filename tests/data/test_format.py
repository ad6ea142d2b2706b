"""Tests of psetae/data/format.py: writing and reading the pixel-set format."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import psetae.data.format as fmt
from psetae.data.format import (
    DatasetFormatError,
    compute_normalisation,
    dates_to_positions,
    load_normalisation,
    load_parcel,
    parse_date,
    read_dates,
    read_geomfeat,
    read_labels,
    read_nomenclatures,
    read_sizes,
    write_dataset,
)

# ----------------------------------------------------------------------------- writer


def test_write_dataset_layout_and_content(tmp_path, tiny):
    arrays = tiny.arrays()
    mean, std = np.arange(1.0, 4.0), np.arange(2.0, 5.0)
    root = tiny.make(tmp_path / "ds", normalisation=(mean, std), extra_meta={"source": {"seed": 3}})
    assert root == tmp_path / "ds"
    for pid, arr in arrays.items():
        saved = np.load(root / "DATA" / f"{pid}.npy")
        assert saved.dtype == np.int16
        np.testing.assert_array_equal(saved, arr)
    labels = json.loads((root / "META" / "labels.json").read_text())
    assert labels["label_44class"] == {"10": 1, "11": 3, "12": 4, "13": 1, "14": 3, "20": 99}
    dates = json.loads((root / "META" / "dates.json").read_text())
    assert dates == {"0": 20170105, "1": 20170115, "2": 20170204, "3": 20170301}
    sizes = json.loads((root / "META" / "sizes.json").read_text())
    assert sizes == {"10": 5, "11": 0, "12": 100, "13": 64, "14": 1, "20": 70}
    geom = json.loads((root / "META" / "geomfeat.json").read_text())
    assert geom["12"] == [40.0, 100.0, 0.4, 0.8]
    assert json.loads((root / "META" / "source.json").read_text()) == {"seed": 3}
    norm = json.loads((root / "normalisation.json").read_text())
    assert norm["mean"] == [1.0, 2.0, 3.0] and norm["std"] == [2.0, 3.0, 4.0]
    assert norm["per"] == "channel"
    # The pickle is what the reference unpickles: a plain (mean, std) tuple of arrays.
    with open(root / "normalisation.pkl", "rb") as f:
        m, s = pickle.load(f)  # we wrote this file ourselves in this test
    np.testing.assert_array_equal(m, mean)
    np.testing.assert_array_equal(s, std)
    # Nothing else is left next to the dataset.
    assert os.listdir(tmp_path) == ["ds"]


def test_write_dataset_without_optional_parts(tmp_path, tiny):
    root = tiny.make(tmp_path / "ds", geomfeat=None)
    assert sorted(os.listdir(root / "META")) == ["dates.json", "labels.json", "sizes.json"]
    assert sorted(os.listdir(root)) == ["DATA", "META"]


def test_write_dataset_refuses_existing_root_unless_overwrite(tmp_path, tiny):
    root = tiny.make(tmp_path / "ds")
    with pytest.raises(FileExistsError, match="overwrite"):
        tiny.make(root)
    small = {1: np.zeros((4, 3, 2), np.int16)}
    tiny.make(root, pixels=small, labels={"label_44class": {1: 1}}, geomfeat=None, overwrite=True)
    assert sorted(os.listdir(root / "DATA")) == ["1.npy"]
    assert sorted(os.listdir(tmp_path)) == ["ds"]


def test_interrupted_write_leaves_nothing(tmp_path, tiny, monkeypatch):
    calls = []
    real_save = np.save

    def failing_save(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_save(*args, **kwargs)

    monkeypatch.setattr(fmt.np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        tiny.make(tmp_path / "ds")
    assert os.listdir(tmp_path) == []


def test_interrupted_overwrite_keeps_the_old_dataset(tmp_path, tiny, monkeypatch):
    root = tiny.make(tmp_path / "ds")

    def failing_dump(path, obj):
        raise OSError("disk full")

    monkeypatch.setattr(fmt, "_dump", failing_dump)
    with pytest.raises(OSError, match="disk full"):
        tiny.make(root, overwrite=True)
    assert os.listdir(tmp_path) == ["ds"]
    assert read_sizes(root) == tiny.sizes


@pytest.mark.parametrize(
    ("pixels", "dates", "match"),
    [
        ({1: np.zeros((4, 3))}, [20170101, 20170102, 20170103, 20170104], "expected \\(T, C, n\\)"),
        ({1: np.zeros((3, 3, 2))}, [20170101, 20170102, 20170103, 20170104], "T=3"),
        (
            {1: np.zeros((4, 3, 2)), 2: np.zeros((4, 2, 2))},
            [20170101, 20170102, 20170103, 20170104],
            "\\(T, C\\)",
        ),
        ({1: np.zeros((4, 3, 2))}, [20170101, 20170102, 20170103, 2017010], "YYYYMMDD"),
    ],
)
def test_write_dataset_rejects_inconsistent_input(tmp_path, pixels, dates, match):
    with pytest.raises(ValueError, match=match):
        write_dataset(tmp_path / "ds", pixels, {}, dates)
    assert not (tmp_path / "ds").exists()


def test_write_dataset_rejects_normalisation_of_the_wrong_shape(tmp_path, tiny):
    with pytest.raises(ValueError, match="normalisation of shape \\(4,\\)"):
        tiny.make(tmp_path / "ds", normalisation=(np.ones(4), np.ones(4)))
    tiny.make(tmp_path / "ok", normalisation=(np.ones((4, 3)), np.ones((4, 3))))


def test_write_dataset_rejects_labels_of_unknown_ids(tmp_path):
    with pytest.raises(ValueError, match="ids without pixels"):
        write_dataset(tmp_path / "ds", {1: np.zeros((1, 1, 1))}, {"a": {2: 0}}, [20170101])


def test_write_dataset_rejects_reserved_extra_meta(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        write_dataset(
            tmp_path / "ds", {1: np.zeros((1, 1, 1))}, {}, [20170101], extra_meta={"labels": 1}
        )


# ----------------------------------------------------------------------------- readers


def test_read_back(tiny_root, tiny):
    assert read_labels(tiny_root, "label_44class") == tiny.labels["label_44class"]
    assert sorted(read_nomenclatures(tiny_root)) == ["label_19class", "label_44class"]
    assert read_sizes(tiny_root) == tiny.sizes
    geom = read_geomfeat(tiny_root)
    np.testing.assert_array_equal(geom[13], [30.0, 64.0, 0.47, 0.7])
    np.testing.assert_array_equal(read_dates(tiny_root), tiny.dates)
    np.testing.assert_array_equal(load_parcel(tiny_root, 12), tiny.arrays()[12])


def test_unknown_nomenclature_names_the_file(tiny_root):
    with pytest.raises(DatasetFormatError, match="labels.json: unknown nomenclature 'nope'"):
        read_labels(tiny_root, "nope")


def test_dates_to_positions_hand_computed(tiny):
    np.testing.assert_array_equal(dates_to_positions(tiny.dates), tiny.positions)
    # 2016 is a leap year: 28 Feb -> 1 Mar is 2 days; 28 Feb (day 59 of 366) -> 1 Jan 2017
    # is 366 - 59 + 1 = 308 days.
    np.testing.assert_array_equal(dates_to_positions([20160228, 20160301, 20170101]), [0, 2, 308])
    assert dates_to_positions([20170101]).dtype == np.float32


@pytest.mark.parametrize("bad", [2017011, 201701011, "2017-01-01", 20171301, 20170230, True])
def test_parse_date_rejects(bad):
    with pytest.raises(DatasetFormatError, match="YYYYMMDD"):
        parse_date(bad, "x/dates.json")


def test_parse_date_accepts_str_and_int():
    assert parse_date("20170301").toordinal() == parse_date(20170301).toordinal()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ({"0": 20170105, "1": 20170105}, "not increasing"),
        ({"0": 20170105, "1": 20170101}, "not increasing"),
        ({"0": 20170105, "2": 20170106}, "0, 1, ..., T-1"),
        ({"0": 20170105, "1": 2017010}, "YYYYMMDD"),
        ({}, "no dates"),
    ],
)
def test_read_dates_rejects(tiny_root, content, match):
    path = tiny_root / "META" / "dates.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DatasetFormatError, match=match) as e:
        read_dates(tiny_root)
    assert e.value.path == path


def test_missing_and_malformed_json_name_the_file(tiny_root):
    (tiny_root / "META" / "sizes.json").unlink()
    with pytest.raises(DatasetFormatError, match="sizes.json: file is missing; make it") as e:
        read_sizes(tiny_root)
    assert f"`psetae sizes {tiny_root}` (psetae.data.format.write_sizes)" in str(e.value)
    (tiny_root / "META" / "labels.json").write_text("{not json")
    with pytest.raises(DatasetFormatError, match="labels.json: not valid JSON"):
        read_labels(tiny_root, "label_44class")


def test_load_parcel_errors_name_the_file(tiny_root):
    with pytest.raises(DatasetFormatError, match="DATA/99.npy: file is missing"):
        load_parcel(tiny_root, 99)
    np.save(tiny_root / "DATA" / "10.npy", np.zeros((4, 3)))
    with pytest.raises(DatasetFormatError, match="10.npy: array has shape \\(4, 3\\)"):
        load_parcel(tiny_root, 10)
    # A pickled object array is never unpickled.
    np.save(tiny_root / "DATA" / "12.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetFormatError, match="12.npy: not a readable .npy"):
        load_parcel(tiny_root, 12)


def test_dataset_format_error_is_picklable():
    e = pickle.loads(pickle.dumps(DatasetFormatError("a/b.json", "broken")))
    assert str(e) == "a/b.json: broken" and e.message == "broken"


# ----------------------------------------------------------------------------- normalisation


def _all_pixels(arrays):
    return np.concatenate([a for a in arrays.values()], axis=2).astype(np.float64)  # (T, C, N)


@pytest.mark.parametrize("per", ["channel", "date_channel", "scalar"])
def test_compute_normalisation_matches_numpy(tiny_root, tiny, per):
    x = _all_pixels(tiny.arrays())  # (T, C, N)
    if per == "channel":
        want = x.mean(axis=(0, 2)), x.std(axis=(0, 2))
    elif per == "date_channel":
        want = x.mean(axis=2), x.std(axis=2)
    else:
        want = x.mean(), x.std()
    for source in (tiny_root, tiny.arrays(), list(tiny.arrays().values())):
        mean, std = compute_normalisation(source, per=per)
        assert mean.shape == np.shape(want[0])
        np.testing.assert_allclose(mean, want[0], rtol=1e-10)
        np.testing.assert_allclose(std, want[1], rtol=1e-8)


def test_compute_normalisation_errors():
    with pytest.raises(ValueError, match="per must be"):
        compute_normalisation([np.ones((1, 1, 2))], per="pixel")
    with pytest.raises(ValueError, match="no pixels"):
        compute_normalisation([np.ones((1, 1, 0))])
    with pytest.raises(ValueError, match="zero standard deviation"):
        compute_normalisation([np.ones((1, 2, 3))])


def test_load_normalisation_every_source(tmp_path):
    mean = np.array([[1.0, 2.0], [3.0, 4.0]])
    std = np.array([[0.5, 1.0], [1.5, 2.0]])
    (tmp_path / "n.json").write_text(json.dumps({"mean": mean.tolist(), "std": std.tolist()}))
    np.savez(tmp_path / "n.npz", mean=mean, std=std)
    (tmp_path / "n.pkl").write_bytes(pickle.dumps((mean, std), protocol=2))
    for source in ((mean, std), tmp_path / "n.json", tmp_path / "n.npz", str(tmp_path / "n.pkl")):
        m, s = load_normalisation(source)
        assert m.dtype == np.float32 and s.dtype == np.float32
        np.testing.assert_array_equal(m, mean)
        np.testing.assert_array_equal(s, std)
    m, s = load_normalisation((1000.0, 500.0))
    assert m.shape == () and float(s) == 500.0


def test_load_normalisation_errors(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"mean": [1, 2], "std": [1]}))
    with pytest.raises(DatasetFormatError, match="a.json: mean \\(2,\\) and std \\(1,\\)"):
        load_normalisation(tmp_path / "a.json")
    (tmp_path / "b.json").write_text(json.dumps({"mean": [1, 2], "std": [1, 0]}))
    with pytest.raises(DatasetFormatError, match="b.json: .*std finite and > 0"):
        load_normalisation(tmp_path / "b.json")
    (tmp_path / "c.json").write_text(json.dumps([1, 2]))
    with pytest.raises(DatasetFormatError, match="c.json: expected"):
        load_normalisation(tmp_path / "c.json")
    np.savez(tmp_path / "d.npz", mu=np.ones(2))
    with pytest.raises(DatasetFormatError, match="d.npz: expected arrays 'mean' and 'std'"):
        load_normalisation(tmp_path / "d.npz")
    with pytest.raises(DatasetFormatError, match="e.txt: normalisation must be"):
        load_normalisation(tmp_path / "e.txt")
    with pytest.raises(DatasetFormatError, match="f.pkl: file is missing"):
        load_normalisation(tmp_path / "f.pkl")
    (tmp_path / "g.pkl").write_bytes(pickle.dumps([1.0, 2.0, 3.0]))
    with pytest.raises(DatasetFormatError, match="g.pkl: expected a \\(mean, std\\) pair"):
        load_normalisation(tmp_path / "g.pkl")


def _imported_modules(module) -> set[str]:
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(module))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_format_and_safe_pickle_do_not_import_each_other():
    import psetae.data.format as fmt
    import psetae.data.safe_pickle as sp

    assert "psetae.data.format" not in _imported_modules(sp)
    assert "psetae.data.safe_pickle" in _imported_modules(fmt)  # one direction only
    assert sp.DatasetFormatError is fmt.DatasetFormatError


def test_write_json_atomic_lives_in_io_and_dead_code_is_gone(tmp_path):
    import psetae.data.format as fmt
    import psetae.data.packed as packed
    from psetae.io import write_json_atomic

    write_json_atomic(tmp_path / "a.json", {"x": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2]}
    assert write_json_atomic.__module__ == "psetae.io"
    assert "write_json_atomic" not in fmt.__all__ and not hasattr(fmt, "read_meta")
    assert not hasattr(packed.PackedStore, "has")
    package = Path(fmt.__file__).parents[1]
    stale = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "from psetae.data.format import write_json_atomic" in path.read_text()
        or (
            "    write_json_atomic,\n)" in path.read_text()
            and "psetae.data.format import (" in path.read_text()
        )
    ]
    assert stale == [], "these modules still import write_json_atomic from data/format.py"


def test_npy_header_gives_shape_and_dtype_without_reading_pixels(tmp_path):
    from psetae.data.format import read_npy_header

    for arr in (np.zeros((24, 10, 7), np.int16), np.ones((2, 3, 0), ">f8"), np.zeros(5, "U3")):
        np.save(tmp_path / "a.npy", arr)
        assert read_npy_header(tmp_path / "a.npy") == (arr.shape, arr.dtype)
    np.save(tmp_path / "b.npy", np.zeros((4, 3, 100), np.int16))
    data = (tmp_path / "b.npy").read_bytes()
    (tmp_path / "b.npy").write_bytes(data[:-10])
    with pytest.raises(DatasetFormatError, match="b.npy: truncated"):
        read_npy_header(tmp_path / "b.npy")
