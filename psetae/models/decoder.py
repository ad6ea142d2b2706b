"""The decoder shared by every classifier of the package: MLP4, from one vector to K logits."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from psetae.models.mlp import mlp

__all__ = ["decoder_mlp"]


def decoder_mlp(widths: Sequence[int]) -> nn.Sequential:
    """MLP4: Linear -> BatchNorm -> ReLU blocks, then a bare Linear giving the logits.

    Parameters
    ----------
    widths
        ``[in, hidden..., K]``; at least two entries.

    Raises
    ------
    ValueError
        If fewer than two widths are given.
    """
    widths = [int(w) for w in widths]
    if len(widths) < 2:
        raise ValueError(f"mlp4 needs at least two widths, got {widths}")
    hidden = list(mlp(widths[:-1])) if len(widths) > 2 else []
    return nn.Sequential(*hidden, nn.Linear(widths[-2], widths[-1]))
