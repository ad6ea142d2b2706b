"""A restricted unpickler for the reference implementation's ``(mean, std)`` .pkl files.

``pickle.load`` runs whatever callable a pickle names, so a downloaded pickle can execute
arbitrary code. :func:`safe_load_pickle` resolves only the globals that numpy needs to
rebuild arrays, dtypes and scalars (the names used by numpy 1.x and 2.x and by pickle
protocols 2 to 5), and refuses every other global before anything is called. Plain
numbers, strings, bytes, tuples, lists and dicts need no global and load as usual.
Object arrays are refused too, since their items could be anything.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from pathlib import Path

import numpy as np

from psetae.data.errors import DatasetFormatError

__all__ = ["ALLOWED_GLOBALS", "UnsafePickleError", "safe_load_pickle", "safe_loads"]


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """The only use of ``_codecs.encode`` in a pickle: protocol 2 stores bytes as latin-1 text."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return codecs.encode(text, "latin1", errors)


def _numpy_global(module: str, name: str) -> object:
    import importlib

    return getattr(importlib.import_module(module), name)


# (module, name) -> a callable producing the object; resolved lazily because numpy 2
# renamed numpy.core to numpy._core and the old name warns on import.
_NUMPY_NAMES = {
    "_reconstruct": ("numpy._core.multiarray", "_reconstruct"),
    "scalar": ("numpy._core.multiarray", "scalar"),
    "_frombuffer": ("numpy._core.numeric", "_frombuffer"),
}


def _resolver(key: str):
    def resolve() -> object:
        module, name = _NUMPY_NAMES[key]
        try:
            return _numpy_global(module, name)
        except (ImportError, AttributeError):  # numpy 1.x
            return _numpy_global(module.replace("numpy._core", "numpy.core"), name)

    return resolve


#: The globals a pickle may name, and how each is resolved.
ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _resolver("_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): _resolver("_reconstruct"),
    ("numpy.core.multiarray", "scalar"): _resolver("scalar"),
    ("numpy._core.multiarray", "scalar"): _resolver("scalar"),
    ("numpy.core.numeric", "_frombuffer"): _resolver("_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): _resolver("_frombuffer"),
    ("_codecs", "encode"): lambda: _latin1_encode,
}


class UnsafePickleError(DatasetFormatError):
    """A pickle names a global that is not allowed, or holds something other than data."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, path: Path) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> object:
        resolve = ALLOWED_GLOBALS.get((module, name))
        if resolve is None:
            raise UnsafePickleError(
                self._path,
                f"refusing to unpickle: forbidden global {module}.{name} "
                "(only numbers, strings, tuples, lists, dicts and numpy arrays are allowed)",
            )
        return resolve()

    def persistent_load(self, pid: object) -> object:
        raise UnsafePickleError(self._path, "refusing to unpickle: persistent ids are not allowed")


def _check_content(obj: object, path: Path, depth: int = 0) -> None:
    """Refuse object arrays and anything that is not plain data, recursively."""
    if depth > 20:
        raise UnsafePickleError(path, "refusing to unpickle: nesting deeper than 20 levels")
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        return
    if isinstance(obj, np.ndarray | np.generic):
        if np.asarray(obj).dtype.hasobject:
            raise UnsafePickleError(
                path, "refusing to unpickle: numpy object arrays are not allowed"
            )
        return
    if isinstance(obj, (tuple, list)):
        for item in obj:
            _check_content(item, path, depth + 1)
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_content(k, path, depth + 1)
            _check_content(v, path, depth + 1)
        return
    raise UnsafePickleError(path, f"refusing to unpickle: unexpected {type(obj).__name__} object")


def safe_loads(data: bytes, path: str | os.PathLike = "<bytes>") -> object:
    """Unpickle ``data`` with the restricted unpickler (see :func:`safe_load_pickle`)."""
    path = Path(path)
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), path).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # any malformed pickle: truncated, bad opcode, bad numpy state
        raise DatasetFormatError(path, f"not a readable pickle ({type(e).__name__}: {e})") from None
    _check_content(obj, path)
    return obj


def safe_load_pickle(path: str | os.PathLike) -> object:
    """Load a pickle that may hold only numbers, strings, tuples, lists, dicts and numpy arrays.

    Parameters
    ----------
    path
        The .pkl file.

    Returns
    -------
    object
        The unpickled data.

    Raises
    ------
    UnsafePickleError
        The pickle names a forbidden global (the error names the file and the global);
        nothing is called.
    DatasetFormatError
        The file is missing or is not a valid pickle.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetFormatError(path, "file is missing") from None
    return safe_loads(data, path)
