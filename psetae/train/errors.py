"""The error training raises for a problem the user can fix (config, split, output folder)."""

from __future__ import annotations

from psetae.errors import PsetaeError

__all__ = ["TrainError"]


class TrainError(PsetaeError, ValueError):
    """A bad training config, a bad split, or an output folder that holds another run."""
