"""The S2-Agri pixel-set format: reading and writing a dataset folder.

A dataset folder (``root``) looks like this (see book/contract.md, "The pixel-set dataset format")::

    root/
      DATA/<id>.npy          one parcel: array (T, C, n_pixels), n_pixels may be 0
      META/labels.json       {"<nomenclature>": {"<id>": class, ...}, ...}
      META/dates.json        {"0": YYYYMMDD, ..., "T-1": YYYYMMDD}
      META/geomfeat.json     {"<id>": [f1, f2, f3, f4], ...}   (optional)
      META/sizes.json        {"<id>": n_pixels, ...}
      META/<key>.json        any extra metadata (``extra_meta`` of :func:`write_dataset`)
      normalisation.json     {"mean": ..., "std": ..., "per": ...}   (optional)
      normalisation.pkl      the same (mean, std) tuple, pickled like the reference does
      PACKED/                optional packed form (see :mod:`psetae.data.packed`)

``normalisation.pkl`` exists so that the reference implementation can read our datasets;
this package itself reads the JSON (or, for foreign datasets, the pickle through the
restricted loader of :mod:`psetae.data.safe_pickle`).

Every problem with a dataset raises :class:`DatasetFormatError`, which names the file.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import os
import pickle
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from psetae.data.errors import DatasetFormatError
from psetae.data.safe_pickle import safe_load_pickle
from psetae.errors import OutputExistsError
from psetae.io import atomic_write, cleanup_stale_temporaries, replace_dir, write_json_atomic

__all__ = [
    "DatasetFormatError",
    "NORMALISATION_JSON",
    "NORMALISATION_PKL",
    "META_FILES",
    "write_dataset",
    "read_json",
    "read_labels",
    "read_nomenclatures",
    "read_dates",
    "parse_dates_json",
    "parse_date",
    "dates_to_positions",
    "read_sizes",
    "write_sizes",
    "SIZES_COMMAND",
    "count_nonfinite",
    "count_nonfinite_in_file",
    "read_geomfeat",
    "list_data_ids",
    "load_parcel",
    "parcel_path",
    "read_npy_header",
    "compute_normalisation",
    "load_normalisation",
    "write_normalisation",
]

#: File names of the normalisation written by :func:`write_dataset`, at the dataset root.
NORMALISATION_JSON = "normalisation.json"
NORMALISATION_PKL = "normalisation.pkl"
#: META files every dataset has (geomfeat.json is optional).
META_FILES = ("labels.json", "dates.json", "sizes.json")
_RESERVED_META = {"labels", "dates", "geomfeat", "sizes"}

PathLike = str | os.PathLike


# --------------------------------------------------------------------------- writing


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_write(path) as f:
        f.write(data)


def write_normalisation(
    root: PathLike, mean: np.ndarray, std: np.ndarray, *, per: str | None = None
) -> tuple[Path, Path]:
    """Write ``(mean, std)`` as ``normalisation.json`` and ``normalisation.pkl`` under ``root``.

    The pickle holds a plain tuple of two numpy float64 arrays (protocol 4), which is what
    the reference implementation unpickles.

    Returns
    -------
    (json_path, pkl_path)
    """
    root = Path(root)
    mean64 = np.asarray(mean, dtype=np.float64)
    std64 = np.asarray(std, dtype=np.float64)
    if mean64.shape != std64.shape:
        raise ValueError(f"normalisation mean {mean64.shape} and std {std64.shape} differ")
    jpath, ppath = root / NORMALISATION_JSON, root / NORMALISATION_PKL
    write_json_atomic(jpath, {"mean": mean64.tolist(), "std": std64.tolist(), "per": per})
    _write_bytes_atomic(ppath, pickle.dumps((mean64, std64), protocol=4))
    return jpath, ppath


def write_dataset(
    root: PathLike,
    pixels: Mapping[int, np.ndarray],
    labels: Mapping[str, Mapping[int, int]],
    dates: Sequence[int],
    geomfeat: Mapping[int, Sequence[float]] | None = None,
    normalisation: tuple[np.ndarray, np.ndarray] | None = None,
    extra_meta: Mapping[str, object] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a dataset folder in the S2-Agri pixel-set format, atomically.

    Everything is written into a temporary sibling folder, which is renamed to ``root`` at
    the end: an interrupted call leaves at most a hidden ``.<name>.tmp-*`` folder, never
    something that looks like a complete dataset.

    Parameters
    ----------
    root
        The dataset folder to create.
    pixels
        ``{id: array (T, C, n)}``; each array is saved as given (dtype kept, e.g. int16).
    labels
        ``{nomenclature: {id: class}}``; every id must be a key of ``pixels``.
    dates
        The T acquisition dates as YYYYMMDD integers.
    geomfeat
        ``{id: [f1, ..., fE]}`` geometric features (raw; z-scored by the reader), or None
        to write no ``geomfeat.json``.
    normalisation
        ``(mean, std)`` to write as ``normalisation.json`` and ``normalisation.pkl``.
    extra_meta
        ``{key: JSON-serialisable object}`` written as ``META/<key>.json``.
    overwrite
        Replace ``root`` if it exists (otherwise raise ``FileExistsError``).

    Returns
    -------
    Path
        ``root``.

    Raises
    ------
    FileExistsError
        ``root`` exists and ``overwrite`` is False.
    ValueError
        Inconsistent inputs (rank, T, C, unknown ids, bad dates).
    """
    root = Path(root)
    cleanup_stale_temporaries(root.parent, root.name)  # restores a swap cut by a crash
    if root.exists() and not overwrite:
        raise OutputExistsError(f"{root}: exists already (pass overwrite=True to replace it)")
    dates = [int(d) for d in dates]
    for d in dates:
        parse_date(d, root / "META" / "dates.json")
    t_c = _check_pixel_arrays(pixels, len(dates))
    if normalisation is not None and t_c is not None:
        shape = np.shape(normalisation[0])
        if shape not in ((), (1,), (t_c[1],), t_c) or np.shape(normalisation[1]) != shape:
            raise ValueError(f"normalisation of shape {shape} does not fit (T, C)={t_c}")
    ids = {int(i) for i in pixels}
    for nom, mapping in labels.items():
        unknown = sorted({int(i) for i in mapping} - ids)
        if unknown:
            raise ValueError(f"labels[{nom!r}] has ids without pixels: {unknown[:10]}")
    if geomfeat is not None:
        unknown = sorted({int(i) for i in geomfeat} - ids)
        if unknown:
            raise ValueError(f"geomfeat has ids without pixels: {unknown[:10]}")
    for key in extra_meta or {}:
        if key in _RESERVED_META or not key.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"extra_meta key {key!r} is reserved or not a plain file name")

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / "DATA").mkdir(parents=True)
        (tmp / "META").mkdir()
        sizes = {}
        for pid, arr in pixels.items():
            arr = np.asarray(arr)
            np.save(tmp / "DATA" / f"{int(pid)}.npy", arr, allow_pickle=False)
            sizes[str(int(pid))] = int(arr.shape[2])
        meta = tmp / "META"
        _dump(
            meta / "labels.json",
            {n: {str(int(i)): int(c) for i, c in m.items()} for n, m in labels.items()},
        )
        _dump(meta / "dates.json", {str(k): d for k, d in enumerate(dates)})
        _dump(meta / "sizes.json", sizes)
        if geomfeat is not None:
            _dump(
                meta / "geomfeat.json",
                {str(int(i)): [float(v) for v in f] for i, f in geomfeat.items()},
            )
        for key, value in (extra_meta or {}).items():
            _dump(meta / f"{key}.json", value)
        if normalisation is not None:
            mean, std = normalisation
            per = _infer_per(np.asarray(mean))
            write_normalisation(tmp, mean, std, per=per)
        _swap_into_place(tmp, root, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _dump(path: Path, obj: object) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)


def _swap_into_place(tmp: Path, root: Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` folder to ``root`` (replacing it if ``overwrite``)."""
    if root.exists() and not overwrite:
        raise OutputExistsError(f"{root}: exists already (pass overwrite=True to replace it)")
    replace_dir(tmp, root)


def _check_pixel_arrays(pixels: Mapping[int, np.ndarray], n_dates: int) -> tuple[int, int] | None:
    t_c = None
    for pid, arr in pixels.items():
        shape = np.shape(arr)
        if len(shape) != 3:
            raise ValueError(f"pixels[{pid}] has shape {shape}, expected (T, C, n)")
        if shape[0] != n_dates:
            raise ValueError(f"pixels[{pid}] has T={shape[0]} but there are {n_dates} dates")
        if t_c is None:
            t_c = shape[:2]
        elif shape[:2] != t_c:
            raise ValueError(f"pixels[{pid}] has (T, C)={shape[:2]}, others have {t_c}")
    return t_c


def _infer_per(mean: np.ndarray) -> str:
    if mean.ndim == 0 or mean.size == 1:
        return "scalar"
    if mean.ndim == 1:
        return "channel"
    return "date_channel"


# --------------------------------------------------------------------------- reading


def read_json(path: PathLike) -> object:
    """Read a JSON file; a missing or malformed file raises :class:`DatasetFormatError`."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetFormatError(path, "file is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetFormatError(path, f"not valid JSON ({e})") from None


def _read_id_mapping(path: Path, what: str) -> dict:
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise DatasetFormatError(path, f"expected a JSON object of {what}")
    return obj


def _int_id(key: object, path: Path) -> int:
    try:
        return int(key)
    except (TypeError, ValueError):
        raise DatasetFormatError(path, f"id {key!r} is not an integer") from None


def read_nomenclatures(root: PathLike) -> list[str]:
    """Names of the nomenclatures in ``META/labels.json``."""
    path = Path(root) / "META" / "labels.json"
    return list(_read_id_mapping(path, "nomenclatures"))


def read_labels(root: PathLike, nomenclature: str) -> dict[int, int]:
    """``{id: class}`` of one nomenclature of ``META/labels.json``.

    Raises
    ------
    DatasetFormatError
        The file is missing or malformed, or has no such nomenclature.
    """
    path = Path(root) / "META" / "labels.json"
    obj = _read_id_mapping(path, "nomenclatures")
    if nomenclature not in obj:
        raise DatasetFormatError(
            path, f"unknown nomenclature {nomenclature!r}; it has {sorted(obj)}"
        )
    mapping = obj[nomenclature]
    if not isinstance(mapping, dict):
        raise DatasetFormatError(path, f"nomenclature {nomenclature!r} is not an object")
    out = {}
    for k, v in mapping.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
            raise DatasetFormatError(path, f"label of id {k} in {nomenclature!r} is {v!r}")
        out[_int_id(k, path)] = int(v)
    return out


def parse_date(value: object, path: PathLike = "dates.json") -> _dt.date:
    """Parse a YYYYMMDD date (int or str) into a ``datetime.date``.

    Raises
    ------
    DatasetFormatError
        ``value`` is not a valid YYYYMMDD date; the error names ``path``.
    """
    s = str(value)
    if isinstance(value, bool) or len(s) != 8 or not s.isdigit():
        raise DatasetFormatError(path, f"date {value!r} is not YYYYMMDD")
    try:
        return _dt.date(int(s[:4]), int(s[4:6]), int(s[6:]))
    except ValueError:
        raise DatasetFormatError(path, f"date {value!r} is not a valid YYYYMMDD date") from None


def parse_dates_json(obj: object, path: PathLike) -> tuple[np.ndarray | None, list[str]]:
    """Read the content of ``dates.json``: the dates and every problem found.

    Accepted: ``{"0": YYYYMMDD, ..., "T-1": YYYYMMDD}`` or a JSON list of dates. This is the
    one parser of dates; :func:`read_dates` and the validator both call it.

    Returns
    -------
    (dates, problems)
        ``dates`` (T,) int64 YYYYMMDD, or None when there are problems; one message per
        problem (``path`` is not repeated in them).
    """
    if isinstance(obj, list):
        entries = dict(enumerate(obj))
    elif isinstance(obj, dict):
        try:
            entries = {int(k): v for k, v in obj.items()}
        except (TypeError, ValueError):
            return None, ["keys must be 0, 1, ..., T-1"]
    else:
        return None, ["expected a JSON object {index: YYYYMMDD} or a list of dates"]
    if not entries:
        return None, ["no dates"]
    problems = (
        [] if sorted(entries) == list(range(len(entries))) else ["keys must be 0, 1, ..., T-1"]
    )
    parsed = []
    for k in sorted(entries):
        try:
            parsed.append((k, parse_date(entries[k], path)))
        except DatasetFormatError as e:
            problems.append(f"index {k}: {e.message}")
    for (ka, a), (kb, b) in zip(parsed[:-1], parsed[1:], strict=True):
        if b <= a:
            problems.append(f"dates are not increasing: index {ka} is {a}, index {kb} is {b}")
    if problems:
        return None, problems
    return np.array([int(str(entries[k])) for k in sorted(entries)], dtype=np.int64), []


def read_dates(root: PathLike) -> np.ndarray:
    """The acquisition dates of ``META/dates.json`` as YYYYMMDD integers, shape (T,).

    Raises
    ------
    DatasetFormatError
        Missing file, keys that are not 0..T-1, dates that are not YYYYMMDD or not
        strictly increasing (every problem is listed).
    """
    path = Path(root) / "META" / "dates.json"
    dates, problems = parse_dates_json(read_json(path), path)
    if problems:
        raise DatasetFormatError(path, "; ".join(problems))
    return dates


def dates_to_positions(dates: Sequence[int] | np.ndarray) -> np.ndarray:
    """Days since the first date, float32 shape (T,), from YYYYMMDD integers."""
    days = [parse_date(d).toordinal() for d in np.asarray(dates).tolist()]
    return (np.asarray(days, dtype=np.float64) - days[0]).astype(np.float32)


#: The command that writes ``META/sizes.json`` from ``DATA/`` (see :func:`write_sizes`).
SIZES_COMMAND = "psetae sizes"


def read_sizes(root: PathLike) -> dict[int, int]:
    """``{id: n_pixels}`` of ``META/sizes.json``.

    Raises
    ------
    DatasetFormatError
        The file is missing (the message says how to make it) or malformed.
    """
    path = Path(root) / "META" / "sizes.json"
    if not path.is_file() and (Path(root) / "DATA").is_dir():
        raise DatasetFormatError(path, sizes_missing_hint(root))
    out = {}
    for k, v in _read_id_mapping(path, "sizes").items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise DatasetFormatError(path, f"size of id {k} is {v!r}, expected an integer >= 0")
        out[_int_id(k, path)] = v
    return out


def sizes_missing_hint(root: PathLike) -> str:
    """The message for a missing ``META/sizes.json``: what it is and how to make it."""
    return (
        "file is missing; make it from the arrays of DATA/ with "
        f"`{SIZES_COMMAND} {root}` (psetae.data.format.write_sizes)"
    )


def write_sizes(root: PathLike) -> dict[int, int]:
    """Write ``META/sizes.json`` from the headers of ``DATA/<id>.npy`` (no pixel is read).

    Parameters
    ----------
    root
        A dataset folder with ``DATA/``.

    Returns
    -------
    dict
        ``{id: n_pixels}``, as written.

    Raises
    ------
    DatasetFormatError
        ``DATA/`` is missing or empty, or an array is unreadable, not numeric or not (T, C, n).
    """
    root = Path(root)
    ids = list_data_ids(root)
    if not ids:
        raise DatasetFormatError(root / "DATA", "no <id>.npy parcel to size")
    sizes = {}
    for pid in ids:
        shape, dtype = read_npy_header(parcel_path(root, pid))
        if len(shape) != 3 or dtype.kind not in "iufb":
            raise DatasetFormatError(
                parcel_path(root, pid), f"array {dtype} {shape} is not a numeric (T, C, n)"
            )
        sizes[pid] = shape[2]
    (root / "META").mkdir(exist_ok=True)
    write_json_atomic(root / "META" / "sizes.json", {str(k): v for k, v in sizes.items()})
    return sizes


def read_geomfeat(root: PathLike) -> dict[int, np.ndarray]:
    """``{id: features (E,) float64}`` of ``META/geomfeat.json``.

    Raises
    ------
    DatasetFormatError
        Missing file, features of different lengths, or non-finite values.
    """
    path = Path(root) / "META" / "geomfeat.json"
    out: dict[int, np.ndarray] = {}
    length = None
    for k, v in _read_id_mapping(path, "geometric features").items():
        try:
            f = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise DatasetFormatError(path, f"features of id {k} are not numbers") from None
        if f.ndim != 1 or (length is not None and f.shape[0] != length):
            raise DatasetFormatError(path, f"features of id {k} have shape {f.shape}")
        if not np.all(np.isfinite(f)):
            raise DatasetFormatError(path, f"features of id {k} are not finite")
        length = f.shape[0]
        out[_int_id(k, path)] = f
    return out


def list_data_ids(root: PathLike) -> list[int]:
    """Sorted ids of the ``DATA/<id>.npy`` files (other files are ignored)."""
    data = Path(root) / "DATA"
    if not data.is_dir():
        raise DatasetFormatError(data, "folder is missing")
    ids = []
    for name in os.listdir(data):
        stem, ext = os.path.splitext(name)
        if ext == ".npy" and stem.lstrip("-").isdigit():
            ids.append(int(stem))
    return sorted(ids)


# What np.save writes (keys sorted); anything else is left to numpy's own parser.
_NPY_HEADER = re.compile(
    rb"\{'descr':\s*'([^']+)',\s*'fortran_order':\s*(?:True|False),\s*"
    rb"'shape':\s*\(([\d,\s]*)\),?\s*\}"
)


@functools.lru_cache(maxsize=64)
def _dtype(descr: bytes) -> np.dtype:
    return np.dtype(descr.decode("latin1"))


def read_npy_header(path: PathLike) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file from its header alone (no pixel is read).

    About 20x faster than opening a memory map, which matters for 191,703 parcels.

    Raises
    ------
    DatasetFormatError
        Missing file, not a .npy file, or a file shorter than its header says.
    """
    shape, dtype, _ = _npy_header(path)
    return shape, dtype


def count_nonfinite_in_file(path: PathLike, chunk: int = 1 << 22) -> int:
    """Number of NaN or infinite values of a ``.npy`` file; 0 at once for integer arrays.

    The values are streamed from the file ``chunk`` at a time (faster than a memory map
    for the many small files of a dataset, and bounded in memory for large ones).
    """
    shape, dtype, offset = _npy_header(path)
    if dtype.kind not in "fc" or dtype.hasobject:
        return 0
    bad, left = 0, math.prod(shape)
    with open(path, "rb") as f:
        f.seek(offset)
        while left > 0:
            values = np.fromfile(f, dtype=dtype, count=min(chunk, left))
            bad += values.size - int(np.count_nonzero(np.isfinite(values)))
            left -= chunk
    return bad


def _npy_header(path: PathLike) -> tuple[tuple[int, ...], np.dtype, int | None]:
    """(shape, dtype, offset of the data or None when numpy had to parse the header)."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            head, size = os.read(fd, 512), os.fstat(fd).st_size
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise DatasetFormatError(path, "file is missing") from None
    except OSError as e:
        raise DatasetFormatError(path, f"not a readable .npy array ({e})") from None
    start = 10 if head[6:7] == b"\x01" else 12
    length = int.from_bytes(head[8:start], "little")
    match = _NPY_HEADER.match(head[start : start + length]) if head[:6] == b"\x93NUMPY" else None
    if match is None:  # other versions or layouts: numpy's own (slower) reader decides
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise DatasetFormatError(path, f"not a readable .npy array ({e})") from None
        return tuple(arr.shape), arr.dtype, getattr(arr, "offset", None)
    dtype = _dtype(match.group(1))
    shape = tuple(map(int, match.group(2).replace(b",", b" ").split()))
    if not dtype.hasobject and size < start + length + dtype.itemsize * math.prod(shape):
        raise DatasetFormatError(path, f"truncated: {size} bytes for an array of shape {shape}")
    return shape, dtype, start + length


def parcel_path(root: PathLike, pid: int) -> Path:
    """Path of the array of parcel ``pid``."""
    return Path(root) / "DATA" / f"{int(pid)}.npy"


def load_parcel(root: PathLike, pid: int, mmap: bool = False) -> np.ndarray:
    """Load the array (T, C, n) of parcel ``pid`` (no pickle allowed).

    Raises
    ------
    DatasetFormatError
        Missing or unreadable file, or an array that is not of rank 3.
    """
    path = parcel_path(root, pid)
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except FileNotFoundError:
        raise DatasetFormatError(path, "file is missing") from None
    except (ValueError, OSError, EOFError) as e:
        raise DatasetFormatError(path, f"not a readable .npy array ({e})") from None
    if arr.ndim != 3:
        raise DatasetFormatError(path, f"array has shape {arr.shape}, expected (T, C, n)")
    if arr.dtype.kind not in "iufb":  # e.g. strings: astype(float32) would fail unnamed
        raise DatasetFormatError(path, f"dtype {arr.dtype} is not numeric")
    return arr


def count_nonfinite(arr: np.ndarray, chunk: int = 1 << 22) -> int:
    """Number of NaN or infinite values of ``arr``, scanned ``chunk`` values at a time.

    Integer arrays hold none and are not read; a memory-mapped float array is streamed,
    so the scan needs ``chunk`` values of memory whatever its size.
    """
    if arr.dtype.kind not in "fc" or arr.size == 0:
        return 0
    flat = arr.reshape(-1)
    return sum(
        int(flat[i : i + chunk].size - np.count_nonzero(np.isfinite(flat[i : i + chunk])))
        for i in range(0, flat.size, chunk)
    )


# --------------------------------------------------------------------------- normalisation

Per = Literal["channel", "date_channel", "scalar"]


def compute_normalisation(
    source: PathLike | Mapping[int, np.ndarray] | Iterable[np.ndarray],
    per: Per = "channel",
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the pixels, for normalisation.

    Every pixel of every parcel counts once (population std, ddof=0), accumulated in
    float64 one parcel at a time, so no concatenated copy of the set is made.

    Parameters
    ----------
    source
        A dataset folder, a mapping ``{id: array (T, C, n)}`` or an iterable of arrays.
    per
        ``"channel"`` -> shapes (C,); ``"date_channel"`` -> (T, C); ``"scalar"`` -> ().

    Returns
    -------
    (mean, std)
        float64 arrays.

    Raises
    ------
    ValueError
        Unknown ``per``, no pixels at all, or a zero standard deviation.
    """
    if per not in ("channel", "date_channel", "scalar"):
        raise ValueError(f"per must be 'channel', 'date_channel' or 'scalar', not {per!r}")
    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        arrays: Iterable[np.ndarray] = (load_parcel(root, i) for i in list_data_ids(root))
    elif isinstance(source, Mapping):
        arrays = source.values()
    else:
        arrays = source
    s1 = s2 = None
    count = 0
    for arr in arrays:
        a = np.asarray(arr, dtype=np.float64)  # (T, C, n)
        if a.shape[2] == 0:
            continue
        if s1 is None:
            s1, s2 = np.zeros(a.shape[:2]), np.zeros(a.shape[:2])
        elif a.shape[:2] != s1.shape:
            raise ValueError(f"arrays have different (T, C): {a.shape[:2]} vs {s1.shape}")
        s1 += a.sum(axis=2)
        s2 += np.square(a).sum(axis=2)
        count += a.shape[2]
    if s1 is None:
        raise ValueError("no pixels to compute the normalisation from")
    if per == "channel":
        s1, s2, n = s1.sum(0), s2.sum(0), count * s1.shape[0]
    elif per == "scalar":
        s1, s2, n = s1.sum(), s2.sum(), count * s1.size
    else:
        n = count
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - np.square(mean), 0.0))
    if np.any(std <= 0):
        raise ValueError(f"zero standard deviation for {per} normalisation: {std}")
    return np.asarray(mean), np.asarray(std)


def load_normalisation(
    source: PathLike | tuple[object, object],
) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``(mean, std)`` normalisation as two float32 arrays.

    Parameters
    ----------
    source
        A ``(mean, std)`` tuple; a ``.json`` file ``{"mean": ..., "std": ...}``; a ``.npz``
        with arrays ``mean`` and ``std``; or a ``.pkl`` holding a ``(mean, std)`` tuple
        (read with the restricted loader of :mod:`psetae.data.safe_pickle`).

    Returns
    -------
    (mean, std)
        float32 arrays of shape (), (C,) or (T, C).

    Raises
    ------
    DatasetFormatError
        Missing file, unknown extension, wrong content, shapes that differ or a std that is
        not strictly positive and finite.
    """
    if isinstance(source, (tuple, list)):
        if len(source) != 2:
            raise ValueError(f"normalisation must be (mean, std), got {len(source)} items")
        return _check_norm(source[0], source[1], "normalisation tuple")
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix == ".json":
        obj = read_json(path)
        if not isinstance(obj, dict) or "mean" not in obj or "std" not in obj:
            raise DatasetFormatError(path, 'expected {"mean": ..., "std": ...}')
        return _check_norm(obj["mean"], obj["std"], path)
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                if "mean" not in z.files or "std" not in z.files:
                    raise DatasetFormatError(
                        path, f"expected arrays 'mean' and 'std', has {z.files}"
                    )
                return _check_norm(z["mean"], z["std"], path)
        except FileNotFoundError:
            raise DatasetFormatError(path, "file is missing") from None
        except (ValueError, OSError) as e:
            raise DatasetFormatError(path, f"not a readable .npz ({e})") from None
    if suffix in (".pkl", ".pickle"):
        obj = safe_load_pickle(path)
        if not isinstance(obj, (tuple, list)) or len(obj) != 2:
            raise DatasetFormatError(path, f"expected a (mean, std) pair, got {type(obj).__name__}")
        return _check_norm(obj[0], obj[1], path)
    raise DatasetFormatError(path, "normalisation must be a .json, .npz or .pkl file")


def _check_norm(mean: object, std: object, where: PathLike) -> tuple[np.ndarray, np.ndarray]:
    try:
        m = np.asarray(mean, dtype=np.float32)
        s = np.asarray(std, dtype=np.float32)
    except (TypeError, ValueError):
        raise DatasetFormatError(where, "mean and std must be numbers or arrays") from None
    if m.shape != s.shape or m.ndim > 2:
        raise DatasetFormatError(
            where, f"mean {m.shape} and std {s.shape}: expected (), (C,) or (T, C)"
        )
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s)) and np.all(s > 0)):
        raise DatasetFormatError(where, "mean must be finite and std finite and > 0")
    return m, s
