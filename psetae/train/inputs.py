"""The check of a command's input, done before anything is written.

A command that writes (training, evaluation with outputs, prediction) calls
:func:`check_input` first: a dataset it would refuse half-way (an unreadable or non-numeric
array, non-finite pixels, labels missing) is refused before any output folder exists.
"""

from __future__ import annotations

import os
from pathlib import Path

from psetae.errors import PsetaeError

__all__ = ["InvalidInputError", "check_input"]


class InvalidInputError(PsetaeError, ValueError):
    """A dataset folder that a command would refuse; the message names the first bad file."""


def check_input(
    root: str | os.PathLike,
    nomenclature: str | None = None,
    labels_required: bool = True,
    drop_nonfinite: bool = False,
) -> None:
    """Refuse a dataset folder that the command would fail on, before it writes anything.

    Parameters
    ----------
    root
        The dataset folder.
    nomenclature
        The labels the command learns or tests on (checked when ``labels_required``).
    labels_required
        False for prediction: problems of ``labels.json`` are then not errors.
    drop_nonfinite
        Parcels with NaN or infinite pixels will be dropped: they are then no error.

    Raises
    ------
    InvalidInputError
        Naming the first problem's file, and how many other problems there are.
    """
    from psetae.data.validate import validate_dataset

    root = Path(root)
    report = validate_dataset(
        root,
        nomenclature=nomenclature if labels_required else None,
        drop_nonfinite=drop_nonfinite,
    )
    errors = report.errors
    if not labels_required:
        labels = str(root / "META" / "labels.json")
        errors = [e for e in errors if not e.startswith(labels)]
    if errors:
        more = len(errors) - 1
        tail = f" (and {more} more problem(s): 'psetae validate {root}' lists them)" if more else ""
        raise InvalidInputError(errors[0].splitlines()[0] + tail)
