"""Tests of psetae/data/safe_pickle.py: the restricted unpickler."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess

import numpy as np
import pytest

from psetae.data.format import DatasetFormatError
from psetae.data.safe_pickle import UnsafePickleError, safe_load_pickle, safe_loads


class _Evil:
    """Unpickling this calls ``func(*args)``: what a malicious pickle does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize(
    "obj",
    [
        (np.array([1.5, 2.5, 3.5]), np.array([0.5, 1.0, 2.0])),
        (np.arange(20, dtype=np.float32).reshape(4, 5), np.ones((4, 5), np.float32)),
        (np.arange(6, dtype=np.int16), np.arange(6, dtype=np.int64)),
        (np.float64(1200.0), np.float32(350.0)),
        (1200.0, 350),
        [[1.0, 2.0], [3.0, 4.0]],
        {"mean": np.zeros(3), "std": np.ones(3), "name": "s2", "raw": b"\x00\xff"},
    ],
)
def test_numpy_pickles_load(tmp_path, protocol, obj):
    path = tmp_path / "norm.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    got = safe_load_pickle(path)
    assert type(got) is type(obj)
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for k, v in items:
        assert type(got[k]) is type(v)
        np.testing.assert_array_equal(got[k], v)
        if isinstance(v, np.ndarray | np.generic):
            assert got[k].dtype == v.dtype


def test_fortran_and_non_contiguous_arrays_load():
    a = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    for protocol in (2, 5):
        got = safe_loads(pickle.dumps((a, a[:, ::2]), protocol=protocol))
        np.testing.assert_array_equal(got[0], a)
        np.testing.assert_array_equal(got[1], a[:, ::2])


def test_numpy1_pickle_names_load():
    """Pickles written with numpy 1.x (like the reference's) name numpy.core, not numpy._core."""
    data = pickle.dumps((np.array([1.0, 2.0]), np.float64(3.0)), protocol=2)
    assert b"numpy._core" in data  # written by numpy 2 here
    old = data.replace(b"numpy._core", b"numpy.core")
    got = safe_loads(old)
    np.testing.assert_array_equal(got[0], [1.0, 2.0])
    assert got[1] == 3.0


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda m: _Evil(os.system, f"touch {m}"), "system"),
        (lambda m: _Evil(builtins.eval, f"open({str(m)!r}, 'w').close()"), "eval"),
        (lambda m: _Evil(builtins.exec, f"open({str(m)!r}, 'w').close()"), "exec"),
        (lambda m: _Evil(subprocess.call, ["touch", str(m)]), "call"),
        (lambda m: _Evil(open, str(m), "w"), "open"),
        (lambda m: _Evil(np.load, str(m)), "load"),
    ],
)
def test_malicious_pickle_is_refused_without_running(tmp_path, protocol, make, name):
    marker = tmp_path / "pwned"
    path = tmp_path / "norm.pkl"
    path.write_bytes(pickle.dumps((np.zeros(2), make(marker)), protocol=protocol))
    with pytest.raises(UnsafePickleError, match="forbidden global") as e:
        safe_load_pickle(path)
    assert str(path) in str(e.value)
    # Protocol 2 writes Python 2 module names (__builtin__, commands): check the function name.
    assert f".{name} " in str(e.value)
    assert not marker.exists()


def test_dotted_names_are_refused():
    """Protocol 4 lets a pickle name attributes of attributes; only exact names are allowed."""
    evil = b"\x80\x04\x8c\x05numpy\x8c\x11ndarray.__class__\x93."
    with pytest.raises(UnsafePickleError, match="numpy.ndarray.__class__"):
        safe_loads(evil)


def test_codecs_encode_only_latin1():
    evil = pickle.dumps(_Evil(__import__("codecs").encode, "abc", "rot13"), protocol=2)
    with pytest.raises(DatasetFormatError, match="not allowed"):
        safe_loads(evil)


def test_object_arrays_are_refused():
    data = pickle.dumps(np.array([1, "a", None], dtype=object), protocol=4)
    with pytest.raises(UnsafePickleError):
        safe_loads(data)


class Plain:
    """An ordinary class: its instances need a global to be rebuilt."""


def test_objects_of_other_classes_are_refused():
    with pytest.raises(UnsafePickleError, match="forbidden global"):
        safe_loads(pickle.dumps(Plain(), protocol=4))
    with pytest.raises(UnsafePickleError, match="forbidden global .*builtin.*set"):
        safe_loads(pickle.dumps({1, 2}, protocol=2))


def test_broken_pickles(tmp_path):
    with pytest.raises(DatasetFormatError, match="missing.pkl: file is missing"):
        safe_load_pickle(tmp_path / "missing.pkl")
    data = pickle.dumps((np.zeros(3), np.ones(3)), protocol=4)
    (tmp_path / "cut.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetFormatError, match="cut.pkl: not a readable pickle"):
        safe_load_pickle(tmp_path / "cut.pkl")
    (tmp_path / "text.pkl").write_text("hello")
    with pytest.raises(DatasetFormatError, match="text.pkl: not a readable pickle"):
        safe_load_pickle(tmp_path / "text.pkl")
