"""Defaults that fit the data: the few settings a dataset decides better than a default.

The paper's defaults were chosen for S2-Agri. On another dataset some of them are wrong in a
way that the data shows at once; :func:`adapt_to_data` changes those, and only those, and says
so in one line each:

- the nomenclature: ``"auto"`` takes the only one a dataset has, or S2-Agri's
  ``label_44class`` when it is one of several;
- S, the pixels sampled per parcel, is capped at the largest parcel: padding every parcel to
  64 pixels when none has more than 4 only makes training slower;
- geometric features that are the same for every parcel carry no information (z-scoring
  turns them into zeros): they are turned off;
- a dataset read from ``DATA/`` is said to be slower than its packed form.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from psetae.data.classes import S2AGRI_NOMENCLATURE
from psetae.data.format import (
    DatasetFormatError,
    read_geomfeat,
    read_nomenclatures,
    read_sizes,
)
from psetae.data.packed import has_packed

__all__ = ["adapt_to_data", "resolve_nomenclature"]


def resolve_nomenclature(root: str | os.PathLike, requested: str) -> str:
    """The nomenclature to learn: ``requested``, or for ``"auto"`` the dataset's only one
    (or ``label_44class`` among several).

    Raises
    ------
    DatasetFormatError
        If ``requested`` is not in ``META/labels.json``, or ``"auto"`` cannot choose.
    """
    names = read_nomenclatures(root)
    labels = Path(root) / "META" / "labels.json"
    if requested != "auto":
        if requested not in names:
            raise DatasetFormatError(
                labels, f"has no nomenclature {requested!r}; it has {names} (or use 'auto')"
            )
        return requested
    if len(names) == 1:
        return names[0]
    if S2AGRI_NOMENCLATURE in names:
        return S2AGRI_NOMENCLATURE
    raise DatasetFormatError(
        labels, f"has several nomenclatures {names}: choose one with --nomenclature"
    )


def adapt_to_data(
    root: str | os.PathLike, config: Any, ids: list[int] | None = None
) -> tuple[Any, list[str]]:
    """``config`` with the settings the data decides, and one notice per change.

    Parameters
    ----------
    root
        The dataset folder.
    config
        A :class:`~psetae.train.fit.TrainConfig` (or any dataclass with ``nomenclature``,
        ``npixel`` and ``extra_features``).
    ids
        The parcels that will be used (default: all of them).

    Returns
    -------
    (config, notices)
        A new config (the argument is not changed) and the lines to show the user.
    """
    root = Path(root)
    notices: list[str] = []
    changes: dict[str, Any] = {}

    nomenclature = resolve_nomenclature(root, config.nomenclature)
    if nomenclature != config.nomenclature:
        changes["nomenclature"] = nomenclature
        notices.append(f"nomenclature: using {nomenclature!r}, the dataset's labels")

    sizes = read_sizes(root)
    chosen = [int(i) for i in (ids if ids is not None else sizes)]
    largest = max((sizes.get(i, 0) for i in chosen), default=0)
    if 0 < largest < config.npixel:
        changes["npixel"] = int(largest)
        notices.append(
            f"npixel: {config.npixel} -> {largest}, the largest parcel's pixel count "
            "(more would only be padding)"
        )

    if config.extra_features and (root / "META" / "geomfeat.json").is_file():
        feats = read_geomfeat(root)
        table = np.stack([feats[i] for i in chosen if i in feats]) if chosen else None
        if table is not None and len(table) and np.all(table == table[0]):
            changes["extra_features"] = False
            notices.append(
                "extra features: off, they are the same for every parcel (no information)"
            )

    if not has_packed(root):
        notices.append(
            f"data: reading {root / 'DATA'} parcel by parcel; `psetae pack {root}` writes a "
            "packed form that loads several times faster"
        )
    return (dataclasses.replace(config, **changes) if changes else config), notices
