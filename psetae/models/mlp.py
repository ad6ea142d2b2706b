"""The building block shared by every MLP of PSE-TAE: Linear -> BatchNorm (-> ReLU).

The paper's MLPs act on the last axis of tensors of any rank: the pixels of MLP1 are
(B, T, S, C), the sets of MLP2 are (B, T, C), the parcels of MLP3 and MLP4 are (B, C).
BatchNorm1d wants (N, C), so the block flattens every leading axis into one row axis: its
statistics then run over all rows, as the reference's do (book/contract.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class LinearBlock(nn.Module):
    """Linear -> BatchNorm1d -> optional ReLU, on the last axis of a tensor of any rank.

    Parameters
    ----------
    in_features, out_features
        Widths of the Linear layer.
    relu
        Apply a ReLU after the BatchNorm.
    """

    def __init__(self, in_features: int, out_features: int, relu: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.norm = nn.BatchNorm1d(out_features)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` (..., in_features) to (..., out_features)."""
        z = self.linear(x)  # (..., out): W x + b
        z = self.norm(z.reshape(-1, z.shape[-1])).reshape(z.shape)  # statistics over all rows
        return torch.relu(z) if self.relu else z

    def extra_repr(self) -> str:
        return f"relu={self.relu}"


def mlp(widths: Sequence[int], relu_last: bool = True) -> nn.Sequential:
    """A stack of :class:`LinearBlock` with the given widths.

    Parameters
    ----------
    widths
        ``[in, hidden..., out]``; at least two entries.
    relu_last
        Whether the last block ends with a ReLU (MLP1 and MLP3 do, MLP2 does not).

    Raises
    ------
    ValueError
        If fewer than two widths are given or one is not positive.
    """
    widths = [int(w) for w in widths]
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"an MLP needs at least two positive widths, got {widths}")
    n = len(widths) - 1
    return nn.Sequential(
        *(LinearBlock(widths[i], widths[i + 1], relu=relu_last or i < n - 1) for i in range(n))
    )
