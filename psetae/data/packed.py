"""The packed form of a dataset: one memory-mapped pixel array and an offset index.

The folder form stores one small ``.npy`` per parcel, and opening 191,703 files per epoch
is what limits the reference implementation. :func:`pack_dataset` writes::

    <dataset>/PACKED/
      pixels.npy     (N_pixels, T, C), the parcels one after the other, dtype as stored
      index.npz      ids (P,) int64 and offsets (P + 1,) int64: parcel k is
                     pixels[offsets[k]:offsets[k + 1]]
      pack.json      {"T", "C", "dtype", "n_parcels", "n_pixels", "format",
                      "data_fingerprint": {"bytes", "mtime_ns"}}

Pixels are stored pixel-major (N, T, C) rather than (T, C, N) so that a parcel is one
contiguous block of the file: reading it touches a few pages instead of T * C strided
runs. :class:`PackedStore` returns the parcel transposed to (T, C, n), identical to the
array of ``DATA/<id>.npy``.

:class:`~psetae.data.dataset.PixelSetDataset` uses ``PACKED/`` when it exists, after
checking that it is not stale: its ids and pixel counts must match ``META/sizes.json``
and, when ``DATA/`` is there, the total size and the sum of modification times of the
packed ``DATA/<id>.npy`` files must be those recorded at pack time (one ``stat`` per file,
no pixel read). A file rewritten with the same size and its old modification time (e.g.
``cp -p`` of an older copy) is not noticed: re-pack after such a change. Packing into another folder (``out``) also
copies ``META/`` and the normalisation files, so that folder is a dataset on its own.

Command line: ``python -m psetae.data.packed ROOT [--out OUT] [--overwrite]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from psetae.data.format import (
    NORMALISATION_JSON,
    NORMALISATION_PKL,
    DatasetFormatError,
    load_parcel,
    read_json,
    read_sizes,
)
from psetae.errors import OutputExistsError
from psetae.io import cleanup_stale_temporaries, replace_dir

__all__ = ["PACKED_DIR", "pack_dataset", "has_packed", "PackedStore", "main"]

PACKED_DIR = "PACKED"
_FORMAT = "psetae-packed-1"


def has_packed(root: str | os.PathLike) -> bool:
    """Whether ``root`` has a packed form (``root/PACKED/pack.json``)."""
    return (Path(root) / PACKED_DIR / "pack.json").is_file()


def data_fingerprint(root: str | os.PathLike, ids: Iterable[int]) -> dict[str, int]:
    """Total size and sum of modification times (ns) of ``DATA/<id>.npy`` for ``ids``.

    Cheap (a ``stat`` per file, no pixel read); any rewrite of a parcel changes it unless
    the file keeps both its size and its modification time.
    """
    wanted = {f"{int(i)}.npy" for i in ids}
    total = mtimes = 0
    with os.scandir(Path(root) / "DATA") as entries:
        for entry in entries:
            if entry.name in wanted:
                info = entry.stat()
                total += info.st_size
                mtimes += info.st_mtime_ns
    return {"bytes": total, "mtime_ns": mtimes}


def pack_dataset(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the packed form of the dataset folder ``root``, atomically.

    Parameters
    ----------
    root
        A dataset folder (``DATA/`` and ``META/``).
    out
        None to write ``root/PACKED``; otherwise a new dataset folder that receives
        ``PACKED/``, a copy of ``META/`` and the normalisation files (no ``DATA/``).
    overwrite
        Replace an existing packed form (or ``out`` folder).

    Returns
    -------
    Path
        The folder holding ``pixels.npy`` (``root/PACKED`` or ``out/PACKED``).

    Raises
    ------
    FileExistsError
        The destination exists and ``overwrite`` is False.
    DatasetFormatError
        Before anything is written: every problem :func:`psetae.data.validate.check_dataset`
        finds (parcels with NaN pixels are packed as stored: the reader refuses or drops
        them); while packing: a parcel that changed since the check.
    """
    from psetae.data.validate import check_dataset  # validate reads packs: import here

    root = Path(root)
    check_dataset(root, drop_nonfinite=True, packed=False)
    sizes = read_sizes(root)
    ids = np.array(sorted(sizes), dtype=np.int64)
    counts = np.array([sizes[int(i)] for i in ids], dtype=np.int64)
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    if len(ids) == 0:
        raise DatasetFormatError(root / "META" / "sizes.json", "no parcels to pack")

    dest = root if out is None else Path(out)
    final = dest / PACKED_DIR
    target = final if out is None else dest  # the folder renamed into place
    cleanup_stale_temporaries(target.parent, target.name)  # restores a swap cut by a crash
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target}: exists already (pass overwrite=True to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        packed = tmp if out is None else tmp / PACKED_DIR
        packed.mkdir(parents=True)
        t, c, dtype = _probe(root, ids, counts)
        pixels = np.lib.format.open_memmap(
            packed / "pixels.npy", mode="w+", dtype=dtype, shape=(int(offsets[-1]), t, c)
        )
        for k, pid in enumerate(ids.tolist()):
            arr = load_parcel(root, pid)
            path = root / "DATA" / f"{pid}.npy"
            if arr.shape != (t, c, counts[k]):
                raise DatasetFormatError(
                    path, f"shape {arr.shape}, expected ({t}, {c}, {counts[k]}) from sizes.json"
                )
            if arr.dtype != dtype:
                raise DatasetFormatError(path, f"dtype {arr.dtype}, other parcels are {dtype}")
            pixels[offsets[k] : offsets[k + 1]] = arr.transpose(2, 0, 1)  # (n, T, C)
        pixels.flush()
        del pixels
        np.savez(packed / "index.npz", ids=ids, offsets=offsets)
        info = {
            "format": _FORMAT,
            "T": t,
            "C": c,
            "dtype": np.dtype(dtype).str,
            "n_parcels": len(ids),
            "n_pixels": int(offsets[-1]),
            "data_fingerprint": data_fingerprint(root, ids.tolist()),
        }
        with open(packed / "pack.json", "w", encoding="utf-8") as f:
            json.dump(info, f)
        if out is not None:
            shutil.copytree(root / "META", tmp / "META")
            for name in (NORMALISATION_JSON, NORMALISATION_PKL):
                if (root / name).is_file():
                    shutil.copy2(root / name, tmp / name)
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _probe(root: Path, ids: np.ndarray, counts: np.ndarray) -> tuple[int, int, np.dtype]:
    """(T, C, dtype) from the first non-empty parcel (or the first parcel)."""
    nonempty = np.flatnonzero(counts > 0)
    k = int(nonempty[0]) if len(nonempty) else 0
    arr = load_parcel(root, int(ids[k]), mmap=True)
    return int(arr.shape[0]), int(arr.shape[1]), arr.dtype


class PackedStore:
    """Read parcels from a packed form; the pixel file is memory-mapped on first use.

    The memory map is opened lazily in each process and dropped when the store is pickled,
    so DataLoader workers each map the file themselves instead of receiving a copy.

    Parameters
    ----------
    folder
        The ``PACKED`` folder.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        info = read_json(self.folder / "pack.json")
        if not isinstance(info, dict) or info.get("format") != _FORMAT:
            raise DatasetFormatError(self.folder / "pack.json", f"not a {_FORMAT} file")
        self.info = info
        index_path = self.folder / "index.npz"
        try:
            with np.load(index_path, allow_pickle=False) as z:
                self.ids = z["ids"].astype(np.int64)
                self.offsets = z["offsets"].astype(np.int64)
        except (OSError, ValueError, KeyError) as e:
            raise DatasetFormatError(index_path, f"unreadable packed index ({e})") from None
        if len(self.offsets) != len(self.ids) + 1 or self.offsets[-1] != info["n_pixels"]:
            raise DatasetFormatError(index_path, "offsets do not match ids or pack.json")
        self.counts = np.diff(self.offsets)
        self._row = {pid: k for k, pid in enumerate(self.ids.tolist())}
        self._pixels: np.ndarray | None = None

    @property
    def pixels(self) -> np.ndarray:
        """The memory-mapped array (N_pixels, T, C)."""
        if self._pixels is None:
            path = self.folder / "pixels.npy"
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                raise DatasetFormatError(path, f"unreadable packed pixels ({e})") from None
            want = (self.info["n_pixels"], self.info["T"], self.info["C"])
            if arr.shape != tuple(want):
                raise DatasetFormatError(path, f"shape {arr.shape}, pack.json says {want}")
            self._pixels = arr.view(np.ndarray)  # plain view of the map: cheaper slicing
        return self._pixels

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_pixels"] = None  # never pickle the mapped data
        return state

    def check_sizes(self, sizes: dict[int, int], sizes_path: Path) -> None:
        """Raise if the pack is stale: its parcels differ from ``sizes`` (``META/sizes.json``)
        or, when the dataset has ``DATA/``, their files changed since packing.

        Raises
        ------
        DatasetFormatError
            The packed form is stale: ids, pixel counts or the ``DATA/`` files differ.
        """
        ids = np.array(sorted(sizes), dtype=np.int64)
        counts = np.array([sizes[int(i)] for i in ids], dtype=np.int64)
        if not (np.array_equal(ids, self.ids) and np.array_equal(counts, self.counts)):
            self._stale(f"its parcels differ from {sizes_path}")
        root = sizes_path.parent.parent
        recorded = self.info.get("data_fingerprint")  # absent in packs of older versions
        if recorded is not None and (root / "DATA").is_dir():
            if data_fingerprint(root, self.ids.tolist()) != recorded:
                self._stale(f"files of {root / 'DATA'} changed since it was packed")

    def _stale(self, why: str) -> None:
        raise DatasetFormatError(
            self.folder,
            f"packed form is stale: {why}; re-run pack_dataset(root, overwrite=True) "
            "or delete the PACKED folder",
        )

    def count(self, pid: int) -> int:
        """Number of pixels of parcel ``pid``."""
        return int(self.counts[self._row[int(pid)]])

    def block(self, pid: int) -> np.ndarray:
        """Parcel ``pid`` as stored, pixel-major (n, T, C), a view of the memory map."""
        k = self._row[int(pid)]
        return self.pixels[self.offsets[k] : self.offsets[k + 1]]

    def get(self, pid: int) -> np.ndarray:
        """Parcel ``pid`` as (T, C, n), equal to the array of ``DATA/<pid>.npy``."""
        return np.ascontiguousarray(self.block(pid).transpose(1, 2, 0))


def main(argv: list[str] | None = None) -> int:
    """Command line: pack a dataset folder."""
    parser = argparse.ArgumentParser(
        prog="python -m psetae.data.packed", description="Pack a pixel-set dataset folder."
    )
    parser.add_argument("root", help="dataset folder (DATA/ and META/)")
    parser.add_argument("--out", default=None, help="write a standalone packed dataset here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing pack")
    args = parser.parse_args(argv)
    try:
        folder = pack_dataset(args.root, out=args.out, overwrite=args.overwrite)
    except (DatasetFormatError, FileExistsError) as e:
        print(f"error: {e}")
        return 1
    info = read_json(folder / "pack.json")
    print(f"packed {info['n_parcels']} parcels, {info['n_pixels']} pixels into {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
