"""PixelSetDataset: the S2-Agri pixel-set format as a torch ``Dataset``, and its collate.

One item is a dict of tensors (the batch contract of ``CONTRIBUTING.md``)::

    pixels     float32 (T, C, S)   normalised reflectance of S sampled pixels
    mask       float32 (T, S)      1 real pixel, 0 padding
    extra      float32 (T, E)      z-scored geometric features, repeated on every date
    positions  float32 (T,)        days since the first date (or 1..T)
    label      int64   ()          remapped class (only if every parcel has a label)
    id         int64   ()          the parcel id

Sampling. In training (``train=True``) each access draws S pixels at random and adds
jitter. The random stream is a numpy ``Generator`` seeded from ``seed`` and, inside a
DataLoader worker, from the worker's torch seed: workers never share a stream, a new
epoch of non-persistent workers gets new draws, and a run is reproducible when ``seed``
and torch's seed (``torch.manual_seed`` or the DataLoader's ``generator``) are fixed.

Evaluation (``train=False``) is deterministic: no jitter, and parcel ``id`` is always
sampled with the generator seeded by ``(seed, id)``. We keep S pixels rather than all of
them because the model was trained on S-pixel sets (the pooled statistics and the
BatchNorm statistics see the same kind of input), batches keep a fixed shape and memory,
and the result of a parcel does not depend on the batch it is in, on the order of the
parcels or on the number of workers. Above S pixels the choice is one fixed random
subset; ``npixel`` can be raised at evaluation to use more pixels.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from psetae.data.format import (
    DatasetFormatError,
    count_nonfinite,
    count_nonfinite_in_file,
    dates_to_positions,
    load_normalisation,
    load_parcel,
    parcel_path,
    read_dates,
    read_geomfeat,
    read_labels,
    read_sizes,
)
from psetae.data.packed import PACKED_DIR, PackedStore, has_packed
from psetae.data.sampling import jitter as add_jitter
from psetae.data.sampling import sample_indices

__all__ = ["PixelSetDataset", "collate_pixel_sets"]

Normalisation = tuple[np.ndarray, np.ndarray]


class _FolderStore:
    """Parcels read from ``DATA/<id>.npy``, one file per access (the reference's way)."""

    def __init__(self, root: Path, sizes: dict[int, int], t: int, c: int) -> None:
        self.root = root
        self.sizes = sizes
        self.t, self.c = t, c

    def count(self, pid: int) -> int:
        return self.sizes[pid]

    def take(self, pid: int, index: np.ndarray) -> np.ndarray:
        """Pixels ``index`` of parcel ``pid``, (T, C, len(index))."""
        x = load_parcel(self.root, pid)  # (T, C, n)
        if x.shape != (self.t, self.c, self.sizes[pid]):
            raise DatasetFormatError(
                self.root / "DATA" / f"{pid}.npy",
                f"shape {x.shape}, expected ({self.t}, {self.c}, {self.sizes[pid]}) "
                "from dates.json, the other parcels and sizes.json",
            )
        return x[:, :, index]

    def has_nonfinite(self, pid: int) -> bool:
        return count_nonfinite_in_file(parcel_path(self.root, pid)) > 0


class _PackedReader:
    """Parcels read from the memory-mapped packed form."""

    def __init__(self, store: PackedStore) -> None:
        self.store = store

    def count(self, pid: int) -> int:
        return self.store.count(pid)

    def take(self, pid: int, index: np.ndarray) -> np.ndarray:
        return self.store.block(pid)[index].transpose(1, 2, 0)  # (S, T, C) -> (T, C, S)

    def has_nonfinite(self, pid: int) -> bool:
        return count_nonfinite(self.store.block(pid)) > 0


class PixelSetDataset(Dataset):
    """A dataset folder in the S2-Agri pixel-set format (folder or packed form).

    Parameters
    ----------
    root
        The dataset folder. If ``root/PACKED`` exists it is used (see ``use_packed``).
    nomenclature
        Which labels of ``META/labels.json`` to use.
    classes
        None to keep every parcel with its label as stored (``num_classes`` is then the
        largest label + 1); or a list of class ids: parcels of other classes are dropped
        and class ``classes[k]`` becomes label k.
    npixel
        S, the number of pixels sampled per parcel.
    normalisation
        None (no normalisation), a ``(mean, std)`` tuple or a .json / .npz / .pkl file;
        mean and std are scalars, (C,) or (T, C).
    extra_features
        Return the geometric features of ``META/geomfeat.json`` as ``extra``.
    extra_stats
        ``(mean, std)`` (E,) for z-scoring the geometric features; by default computed over
        this dataset's parcels, with the sample standard deviation (ddof=1) as the
        reference implementation does (``np.std(..., ddof=1)``). Pass the training set's
        ``extra_stats`` when evaluating on another folder.
    jitter
        ``(sigma, clip)`` of the Gaussian noise added to normalised pixels in training, or
        None.
    train
        Random sampling and jitter (True) or deterministic evaluation (False).
    seed
        Seed of the sampling (see the module docstring).
    ids
        Only these parcel ids, in this order (default: all, sorted).
    positions
        ``"days"``: days since the first date; ``"order"``: 1, 2, ..., T.
    labels_required
        Raise if a parcel has no label; if False, unlabeled parcels are kept with label -1
        and items carry a ``label`` only when every parcel has one.
    use_packed
        None: the packed form if present; True: require it; False: read ``DATA/``.
    drop_nonfinite
        Scan the chosen parcels once and drop those holding NaN or infinite pixel values,
        with a warning naming them. By default such a parcel raises when it is read.

    Raises
    ------
    DatasetFormatError
        A file is missing or malformed, a label is missing, the packed form is stale, or
        the normalisation does not fit (T, C).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        nomenclature: str = "label_44class",
        classes: Sequence[int] | None = None,
        npixel: int = 64,
        normalisation: str | os.PathLike | Normalisation | None = None,
        extra_features: bool = True,
        extra_stats: Normalisation | None = None,
        jitter: tuple[float, float] | None = (0.01, 0.05),
        train: bool = True,
        seed: int = 0,
        ids: Sequence[int] | None = None,
        positions: Literal["days", "order"] = "days",
        labels_required: bool = True,
        use_packed: bool | None = None,
        drop_nonfinite: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetFormatError(self.root, "dataset folder does not exist")
        if npixel < 1:
            raise ValueError(f"npixel must be >= 1, not {npixel}")
        if positions not in ("days", "order"):
            raise ValueError(f"positions must be 'days' or 'order', not {positions!r}")
        self.nomenclature = nomenclature
        self.npixel = int(npixel)
        self.jitter = None if jitter is None else (float(jitter[0]), float(jitter[1]))
        self.train = bool(train)
        self.seed = int(seed)

        # Dates and positions.
        self.dates = read_dates(self.root)  # (T,) YYYYMMDD
        self.sequence_length = len(self.dates)
        if positions == "days":
            self.positions = dates_to_positions(self.dates)
        else:
            self.positions = np.arange(1, self.sequence_length + 1, dtype=np.float32)
        self._positions_t = torch.from_numpy(self.positions)

        # Parcels, their store and their labels.
        sizes_path = self.root / "META" / "sizes.json"
        sizes = read_sizes(self.root)
        self._store = self._open_store(sizes, sizes_path, use_packed)
        if ids is None:
            chosen = np.array(sorted(sizes), dtype=np.int64)
        else:
            chosen = np.array([int(i) for i in ids], dtype=np.int64)
            unknown = [int(i) for i in chosen if int(i) not in sizes]
            if unknown:
                raise DatasetFormatError(sizes_path, f"unknown parcel ids {unknown[:10]}")
        if drop_nonfinite:
            chosen = self._drop_nonfinite(chosen)
        raw = self._read_raw_labels(chosen, labels_required)  # (P,) -1 if unknown
        self.ids, self.labels = self._select_classes(chosen, raw, classes)
        self.has_labels = bool(len(self.labels)) and bool(np.all(self.labels >= 0))

        # Normalisation of the pixels.
        self.normalisation: Normalisation | None = None
        if normalisation is not None:
            mean, std = load_normalisation(normalisation)
            where = (
                normalisation if isinstance(normalisation, (str, os.PathLike)) else "normalisation"
            )
            self.normalisation = (mean, std)
            self._norm = self._broadcastable(mean, std, where)

        # Geometric features, z-scored.
        self.extra_features = bool(extra_features)
        self.extra_size = 0
        self.extra_stats: Normalisation | None = None
        self._extra: np.ndarray | None = None  # (P, E) float32
        if self.extra_features:
            self._load_extra(extra_stats)

        self._rng: tuple[np.random.Generator, torch.Generator] | None = None
        self._rng_key: tuple | None = None

    # ------------------------------------------------------------------ construction helpers

    def _open_store(
        self, sizes: dict[int, int], sizes_path: Path, use_packed: bool | None
    ) -> _FolderStore | _PackedReader:
        """The packed form if present (and wanted) and up to date, else the DATA folder."""
        packed_ok = has_packed(self.root)
        if use_packed and not packed_ok:
            raise DatasetFormatError(self.root / PACKED_DIR, "no packed form (run pack_dataset)")
        self.packed = packed_ok and use_packed is not False
        if not self.packed:
            self.num_channels = self._probe_channels(sizes)
            return _FolderStore(self.root, sizes, self.sequence_length, self.num_channels)
        store = PackedStore(self.root / PACKED_DIR)
        store.check_sizes(sizes, sizes_path)
        if int(store.info["T"]) != self.sequence_length:
            raise DatasetFormatError(
                store.folder / "pack.json",
                f"T={store.info['T']} but dates.json has {self.sequence_length} dates",
            )
        self.num_channels = int(store.info["C"])
        return _PackedReader(store)

    def _drop_nonfinite(self, chosen: np.ndarray) -> np.ndarray:
        """``chosen`` without the parcels holding NaN or infinite pixels (with a warning)."""
        bad = [pid for pid in chosen.tolist() if self._store.has_nonfinite(pid)]
        if bad:
            warnings.warn(
                f"{self.root}: dropped {len(bad)} parcel(s) with NaN or infinite pixel values: "
                f"ids {bad[:10]}{' ...' if len(bad) > 10 else ''}",
                stacklevel=3,
            )
        return chosen[~np.isin(chosen, bad)]

    def _select_classes(
        self, chosen: np.ndarray, raw: np.ndarray, classes: Sequence[int] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Set ``num_classes`` and ``class_ids``; return the kept ids and their labels."""
        if classes is None:
            known = raw[raw >= 0]
            self.num_classes = int(known.max()) + 1 if len(known) else 0
            self.class_ids = np.arange(self.num_classes, dtype=np.int64)
            return chosen, raw
        self.class_ids = np.array([int(c) for c in classes], dtype=np.int64)
        if len(set(self.class_ids.tolist())) != len(self.class_ids):
            raise ValueError(f"classes has duplicates: {list(classes)}")
        self.num_classes = len(self.class_ids)
        lut = {int(c): k for k, c in enumerate(self.class_ids)}
        labels = np.array([lut.get(int(v), -2) if v >= 0 else -1 for v in raw], np.int64)
        keep = labels != -2  # drop parcels of other classes, keep unlabeled ones
        return chosen[keep], labels[keep]

    def _load_extra(self, extra_stats: Normalisation | None) -> None:
        """Read the geometric features of the kept parcels and z-score them."""
        path = self.root / "META" / "geomfeat.json"
        feats = read_geomfeat(self.root)
        missing = [int(i) for i in self.ids if int(i) not in feats]
        if missing:
            raise DatasetFormatError(path, f"no features for ids {missing[:10]}")
        if not len(self.ids):
            raise DatasetFormatError(self.root, "no parcels left to read features for")
        table = np.stack([feats[int(i)] for i in self.ids])  # (P, E)
        self.extra_size = int(table.shape[1])
        if extra_stats is None:
            # Sample std (ddof=1), as the reference; one parcel has none: z-score to 0.
            mean = table.mean(axis=0)
            std = table.std(axis=0, ddof=1) if len(table) > 1 else np.zeros_like(mean)
            std = np.where(std > 0, std, 1.0)  # a constant feature z-scores to 0
        else:
            mean = np.asarray(extra_stats[0], dtype=np.float64)
            std = np.asarray(extra_stats[1], dtype=np.float64)
            want = (self.extra_size,)
            if mean.shape != want or std.shape != want or not np.all(std > 0):
                raise ValueError(
                    f"extra_stats must be two arrays of shape {want} with std > 0; "
                    f"got shapes {mean.shape} and {std.shape}"
                )
        self.extra_stats = (mean.astype(np.float32), std.astype(np.float32))
        self._extra = ((table - mean) / std).astype(np.float32)

    def _probe_channels(self, sizes: dict[int, int]) -> int:
        """C from the header of one parcel (memory-mapped, so nothing is read)."""
        if not sizes:
            raise DatasetFormatError(self.root / "META" / "sizes.json", "no parcels")
        pid = next((i for i in sorted(sizes) if sizes[i] > 0), min(sizes))
        arr = load_parcel(self.root, pid, mmap=True)
        if arr.shape[0] != self.sequence_length:
            raise DatasetFormatError(
                self.root / "DATA" / f"{pid}.npy",
                f"T={arr.shape[0]} but dates.json has {self.sequence_length} dates",
            )
        return int(arr.shape[1])

    def _read_raw_labels(self, chosen: np.ndarray, required: bool) -> np.ndarray:
        path = self.root / "META" / "labels.json"
        try:
            mapping = read_labels(self.root, self.nomenclature)
        except DatasetFormatError:
            if required:
                raise
            mapping = {}
        negative = [int(i) for i in chosen if mapping.get(int(i), 0) < 0]
        if negative:
            raise DatasetFormatError(
                path,
                f"{self.nomenclature!r}: the label of ids {negative[:10]} is negative "
                f"({mapping[negative[0]]}); labels are class ids >= 0",
            )
        raw = np.array([mapping.get(int(i), -1) for i in chosen], dtype=np.int64)
        if required and np.any(raw < 0):
            missing = chosen[raw < 0][:10].tolist()
            raise DatasetFormatError(
                path,
                f"no {self.nomenclature!r} label for ids {missing}: training and evaluation "
                "need a label for every parcel (prediction does not)",
            )
        return raw

    def _broadcastable(self, mean: np.ndarray, std: np.ndarray, where: object) -> Normalisation:
        """Reshape (mean, std) to broadcast against a (T, C, S) item."""
        t, c = self.sequence_length, self.num_channels
        if mean.ndim == 0 or mean.shape == (1,):
            return mean.reshape(()), std.reshape(())
        if mean.shape == (c,):
            return mean[:, None], std[:, None]  # (C, 1)
        if mean.shape == (t, c):
            return mean[:, :, None], std[:, :, None]  # (T, C, 1)
        raise DatasetFormatError(
            Path(str(where)),
            f"normalisation of shape {mean.shape} does not fit T={t}, C={c}: "
            "expected (), (C,) or (T, C)",
        )

    # ------------------------------------------------------------------ access

    def __len__(self) -> int:
        return len(self.ids)

    def _train_rng(self) -> tuple[np.random.Generator, torch.Generator]:
        """This process's generators for sampling and jitter (one pair per DataLoader worker)."""
        info = torch.utils.data.get_worker_info()
        key = (os.getpid(), None if info is None else info.seed)
        if self._rng is None or self._rng_key != key:
            entropy = [self.seed] if info is None else [self.seed, info.seed % 2**63]
            rng = np.random.default_rng(entropy)
            seed = int(rng.integers(2**63))  # the jitter stream derives from the same seed
            self._rng = (rng, torch.Generator().manual_seed(seed))
            self._rng_key = key
        return self._rng

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        pid = int(self.ids[i])
        if self.train:
            rng, gen = self._train_rng()
        else:
            rng, gen = np.random.default_rng([self.seed, pid % 2**63]), None  # fixed per parcel
        n = self._store.count(pid)
        index, mask = sample_indices(n, self.npixel, rng)
        if n == 0:
            x = np.zeros((self.sequence_length, self.num_channels, self.npixel), np.float32)
        else:
            raw = self._store.take(pid, index)  # (T, C, S) as stored
            if count_nonfinite(raw):  # integer pixels are not scanned
                raise DatasetFormatError(
                    self.root / "DATA" / f"{pid}.npy",
                    "NaN or infinite pixel values; drop such parcels with drop_nonfinite=True "
                    "(or fix the file)",
                )
            x = raw.astype(np.float32, order="C")
        if self.normalisation is not None:
            mean, std = self._norm
            x -= mean
            x /= std
        pixels = torch.from_numpy(x)
        if self.train and self.jitter is not None:
            add_jitter(pixels, self.jitter[0], self.jitter[1], gen)
        item = {
            "pixels": pixels,
            "mask": torch.from_numpy(
                np.broadcast_to(mask, (self.sequence_length, self.npixel)).copy()
            ),
            "positions": self._positions_t.clone(),  # items never share storage
            "id": torch.tensor(pid, dtype=torch.int64),
        }
        if self._extra is not None:
            e = self._extra[i]  # (E,)
            item["extra"] = torch.from_numpy(
                np.broadcast_to(e, (self.sequence_length, len(e))).copy()
            )
        if self.has_labels:
            item["label"] = torch.tensor(int(self.labels[i]), dtype=torch.int64)
        return item

    def extra_table(self) -> np.ndarray | None:
        """(N, E) the geometric features of every parcel as served (z-scored), or None."""
        return None if self._extra is None else self._extra.copy()

    def raw_pixels(self, i: int) -> np.ndarray:
        """All pixels of parcel ``i`` as stored, (T, C, n), without sampling or normalisation."""
        pid = int(self.ids[i])
        return self._store.take(pid, np.arange(self._store.count(pid)))

    # ------------------------------------------------------------------ splits

    def subset(
        self, indices: Sequence[int] | np.ndarray, train: bool | None = None
    ) -> PixelSetDataset:
        """A dataset of the parcels ``indices`` (positions in this dataset), sharing its files,
        normalisation, ``extra_stats`` and classes.

        Parameters
        ----------
        indices
            Positions in ``range(len(self))``.
        train
            Training (random) or evaluation (deterministic) mode of the subset; default:
            this dataset's.
        """
        idx = np.asarray(indices, dtype=np.int64)
        if idx.ndim != 1 or (len(idx) and (idx.min() < -len(self) or idx.max() >= len(self))):
            raise IndexError(f"subset indices out of range for {len(self)} parcels")
        sub = copy.copy(self)
        sub.ids = self.ids[idx]
        sub.labels = self.labels[idx]
        sub.has_labels = bool(len(idx)) and bool(np.all(sub.labels >= 0))
        sub._extra = None if self._extra is None else self._extra[idx]
        sub._rng, sub._rng_key = None, None
        if train is not None:
            sub.train = bool(train)
        return sub

    def class_counts(self) -> np.ndarray:
        """Number of parcels of each class, (num_classes,)."""
        known = self.labels[self.labels >= 0]
        return np.bincount(known, minlength=self.num_classes)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_rng"], state["_rng_key"] = None, None
        return state

    def __repr__(self) -> str:
        form = "packed" if self.packed else "folder"
        return (
            f"PixelSetDataset({str(self.root)!r}, {len(self)} parcels, T={self.sequence_length}, "
            f"C={self.num_channels}, E={self.extra_size}, K={self.num_classes}, S={self.npixel}, "
            f"{form}, train={self.train})"
        )


def collate_pixel_sets(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack the items of :class:`PixelSetDataset` into a batch (see the batch contract).

    Raises
    ------
    ValueError
        No items, or items with different keys.
    """
    if not items:
        raise ValueError("cannot collate an empty list of items")
    keys = set(items[0])
    for it in items[1:]:
        if set(it) != keys:
            raise ValueError(f"items have different keys: {sorted(keys)} vs {sorted(it)}")
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}
