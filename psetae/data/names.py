"""The names of a dataset's classes, for checkpoints, reports and figures.

Where they come from, first found first:

1. ``META/<nomenclature>_names.json`` (written by the raster importer) or
   ``META/classes.json`` (by hand), ``{"<code>": "name"}``;
2. the S2-Agri table (:mod:`psetae.data.classes`) for S2-Agri's ``label_44class``;
3. the class codes themselves, as strings.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from psetae.data.classes import S2AGRI_CLASS_NAMES, S2AGRI_CLASSES, S2AGRI_NOMENCLATURE
from psetae.data.format import DatasetFormatError, read_json

__all__ = ["CLASSES_JSON", "class_names", "default_classes"]

#: The optional file of class names, relative to the dataset folder.
CLASSES_JSON = Path("META") / "classes.json"


def _read_names(path: Path) -> dict[int, str]:
    obj = read_json(path)
    if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
        raise DatasetFormatError(path, 'expected a JSON object {"<class code>": "name"}')
    names = {}
    for key, name in obj.items():
        try:
            names[int(key)] = name
        except ValueError:
            raise DatasetFormatError(path, f"key {key!r} is not an integer class code") from None
    return names


def class_names(root: str | os.PathLike, nomenclature: str, class_ids: Sequence[int]) -> list[str]:
    """A name for each of ``class_ids`` (same order).

    Parameters
    ----------
    root
        The dataset folder.
    nomenclature
        The nomenclature of ``labels.json`` the codes belong to.
    class_ids
        The class codes, in logit order.

    Returns
    -------
    list of str

    Raises
    ------
    psetae.data.format.DatasetFormatError
        The names file is malformed or has no name for one of ``class_ids``.
    """
    own = Path(root) / "META" / f"{nomenclature}_names.json"
    path = own if own.is_file() else Path(root) / CLASSES_JSON
    if path.is_file():
        names = _read_names(path)
        missing = [int(c) for c in class_ids if int(c) not in names]
        if missing:
            raise DatasetFormatError(path, f"no name for class codes {missing}")
        return [names[int(c)] for c in class_ids]
    table = (
        dict(zip(S2AGRI_CLASSES, S2AGRI_CLASS_NAMES, strict=True))
        if nomenclature == S2AGRI_NOMENCLATURE
        else {}
    )
    return [table.get(int(c), str(int(c))) for c in class_ids]


def default_classes(nomenclature: str) -> list[int] | None:
    """The classes to learn when none are chosen: the paper's 20 for S2-Agri's
    ``label_44class``, None (every stored label) for any other nomenclature."""
    return list(S2AGRI_CLASSES) if nomenclature == S2AGRI_NOMENCLATURE else None
