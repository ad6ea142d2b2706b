"""The one base class of the errors that mean "the input is wrong", not "psetae is broken".

Every module raises a subclass of :class:`PsetaeError` for a problem a user can fix (a bad
file, a bad option, a refused archive); it names the file and what is wrong. The command line
prints such an error as one line and exits with status 2. Any other exception is a bug: it
keeps its traceback.
"""

from __future__ import annotations

__all__ = ["OutputExistsError", "PsetaeError"]


class PsetaeError(Exception):
    """A problem with the user's input or environment, told in one clear message."""


class OutputExistsError(PsetaeError, FileExistsError):
    """An output path that exists already (the message says how to replace it)."""
