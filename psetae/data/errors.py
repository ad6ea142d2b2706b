"""The error of a dataset file that is missing or malformed (the lowest module of psetae.data)."""

from __future__ import annotations

import os
from pathlib import Path

from psetae.errors import PsetaeError

__all__ = ["DatasetFormatError"]


class DatasetFormatError(PsetaeError, ValueError):
    """A dataset file is missing or malformed.

    Parameters
    ----------
    path
        The file (or folder) at fault.
    message
        What is wrong with it.
    """

    def __init__(self, path: str | os.PathLike, message: str) -> None:
        self.path = Path(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")

    def __reduce__(self):  # keep the two-argument constructor picklable (DataLoader workers)
        return (type(self), (self.path, self.message))
