"""Train / validation / test splits of parcel ids: the paper's k-fold protocol or a fixed split.

The paper shuffles the parcels, cuts them into k = 5 folds, and for fold i tests on fold i,
validates on the next fold (i + 1 mod k) and trains on the three others: 60 / 20 / 20 %.
A fixed split is a JSON file ``{"train": [ids], "val": [ids], "test": [ids]}`` (``test``
may be empty or missing).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from psetae.io import write_json_atomic
from psetae.train.errors import TrainError

__all__ = ["Split", "fraction_split", "kfold_splits", "load_split", "save_split", "save_splits"]


@dataclass(frozen=True)
class Split:
    """Parcel ids of one train / validation / test split (sorted lists of ints)."""

    train: list[int]
    val: list[int]
    test: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            object.__setattr__(self, name, sorted(int(i) for i in getattr(self, name)))
        self.check()

    def check(self, source: str = "split") -> None:
        """Raise :class:`TrainError` if a part is empty (train, val), holds duplicates or overlaps."""
        if not self.train:
            raise TrainError(f"{source}: the training set is empty")
        if not self.val:
            raise TrainError(f"{source}: the validation set is empty")
        for name in ("train", "val", "test"):
            ids = getattr(self, name)
            if len(set(ids)) != len(ids):
                raise TrainError(f"{source}: '{name}' lists some ids more than once")
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            common = set(getattr(self, a)) & set(getattr(self, b))
            if common:
                example = sorted(common)[:3]
                raise TrainError(
                    f"{source}: {len(common)} ids are in both '{a}' and '{b}' (e.g. {example})"
                )

    def to_dict(self) -> dict[str, list[int]]:
        """``{"train": [...], "val": [...], "test": [...]}``."""
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test)}

    def restricted_to(self, known: Iterable[int], source: str = "split") -> None:
        """Raise :class:`TrainError` naming ids of the split that are not in ``known``."""
        known = set(int(i) for i in known)
        for name in ("train", "val", "test"):
            missing = [i for i in getattr(self, name) if i not in known]
            if missing:
                raise TrainError(
                    f"{source}: {len(missing)} '{name}' ids are not parcels of the dataset "
                    f"(e.g. {missing[:3]})"
                )


def kfold_splits(ids: Sequence[int], folds: int = 5, seed: int = 0) -> list[Split]:
    """Shuffled k-fold splits: test = fold i, validation = fold i+1 (mod k), train = the rest.

    Parameters
    ----------
    ids
        The parcel ids to split (N,).
    folds
        k >= 3 (one fold each for test and validation, at least one to train on).
    seed
        Seed of the shuffle; the same (ids, folds, seed) always gives the same splits.

    Returns
    -------
    list of Split
        ``folds`` splits; every id is in exactly one test set and one validation set.

    Raises
    ------
    TrainError
        If ``folds < 3``, ids repeat, or there are fewer ids than folds.
    """
    if folds < 3:
        raise TrainError(f"k-fold needs at least 3 folds (test, validation, train), got {folds}")
    arr = np.array(sorted(int(i) for i in ids), dtype=np.int64)
    if len(np.unique(arr)) != len(arr):
        raise TrainError("the ids to split contain duplicates")
    if len(arr) < folds:
        raise TrainError(f"cannot cut {len(arr)} parcels into {folds} folds")
    # Sorting first makes the result independent of the order the ids were listed in.
    order = np.random.default_rng(seed).permutation(len(arr))
    parts = np.array_split(arr[order], folds)
    splits = []
    for i in range(folds):
        v = (i + 1) % folds
        train = np.concatenate([parts[j] for j in range(folds) if j not in (i, v)])
        splits.append(Split(train=train.tolist(), val=parts[v].tolist(), test=parts[i].tolist()))
    return splits


def load_split(path: str | os.PathLike) -> Split:
    """Read a fixed split from JSON ``{"train": [...], "val": [...], "test": [...]}``.

    Raises
    ------
    TrainError
        Naming the file, if it is not such a JSON object of integer lists.
    OSError
        If the file cannot be read.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise TrainError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise TrainError(f"{path}: expected a JSON object with keys 'train', 'val', 'test'")
    unknown = set(data) - {"train", "val", "test"}
    if unknown:
        raise TrainError(f"{path}: unknown keys {sorted(unknown)} (allowed: train, val, test)")
    parts: dict[str, list[int]] = {}
    for name in ("train", "val", "test"):
        values = data.get(name, [])
        if not isinstance(values, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ):
            raise TrainError(f"{path}: '{name}' must be a list of integer parcel ids")
        parts[name] = values
    for name in ("train", "val"):
        if name not in data:
            raise TrainError(f"{path}: missing key '{name}'")
    try:
        return Split(**parts)
    except ValueError as e:
        raise TrainError(f"{path}: {str(e).removeprefix('split: ')}") from None


def save_split(split: Split, path: str | os.PathLike) -> None:
    """Write one split as JSON (atomically), readable by :func:`load_split`."""
    write_json_atomic(path, split.to_dict())


def save_splits(splits: Sequence[Split], path: str | os.PathLike) -> None:
    """Write a list of splits as a JSON list of ``{"train", "val", "test"}`` objects."""
    write_json_atomic(path, [s.to_dict() for s in splits])


def fraction_split(
    ids: Sequence[int], val_fraction: float, test_fraction: float = 0.0, seed: int = 0
) -> Split:
    """One shuffled split by fractions: ``val_fraction`` and ``test_fraction`` of the parcels
    for validation and test, the rest for training.

    Raises
    ------
    ValueError
        If a fraction is outside [0, 1), they leave no training parcel, or a part is empty
        (validation must not be).
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise TrainError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1:
        raise TrainError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction} leaves no parcel to "
            "train on"
        )
    arr = np.array(sorted(int(i) for i in ids), dtype=np.int64)
    if len(np.unique(arr)) != len(arr):
        raise TrainError("the ids to split contain duplicates")
    arr = arr[np.random.default_rng(seed).permutation(len(arr))]
    n_val = int(round(val_fraction * len(arr)))
    n_test = int(round(test_fraction * len(arr)))
    if n_val < 1 or len(arr) - n_val - n_test < 1 or (test_fraction > 0 and n_test < 1):
        raise TrainError(
            f"cannot cut {len(arr)} parcels into train / val / test with fractions "
            f"{1 - val_fraction - test_fraction:.2f} / {val_fraction} / {test_fraction}"
        )
    return Split(
        train=arr[n_val + n_test :].tolist(),
        val=arr[:n_val].tolist(),
        test=arr[n_val : n_val + n_test].tolist(),
    )
