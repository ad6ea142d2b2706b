"""The building block shared by every MLP of PSE-TAE: Linear -> BatchNorm (-> ReLU).

The paper's MLPs act on the last axis of tensors of any rank: the pixels of MLP1 are
(B, T, S, C), the sets of MLP2 are (B, T, C), the parcels of MLP3 and MLP4 are (B, C).
BatchNorm1d wants (N, C), so the block flattens every leading axis into one: with the
channel axis last and contiguous, the Linear is one large matrix product and BatchNorm
reads memory in order (the reference permutes to (N, C, S) instead, which is slow).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class LinearBlock(nn.Module):
    """Linear -> BatchNorm1d -> optional ReLU, on the last axis of a tensor of any rank.

    Parameters
    ----------
    in_features, out_features
        Widths of the Linear layer.
    relu
        Apply a ReLU after the BatchNorm.

    Notes
    -----
    In eval mode, BatchNorm is a fixed affine map per channel, so it is folded into the
    Linear layer's weight and bias (the same function, computed in one pass instead of
    two). In training mode the layers run one after the other, as written.
    """

    def __init__(self, in_features: int, out_features: int, relu: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.norm = nn.BatchNorm1d(out_features)
        self.relu = relu

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight (out, in) and bias (out,) of Linear followed by eval-mode BatchNorm."""
        bn = self.norm
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (out,)
        weight = self.linear.weight * scale[:, None]  # (out, in)
        bias = (self.linear.bias - bn.running_mean) * scale + bn.bias  # (out,)
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x`` (..., in_features) to (..., out_features)."""
        if self.training or self.norm.running_mean is None:
            y = self.linear(x)  # (..., out)
            z = self.norm(y.reshape(-1, y.shape[-1]))  # (rows, out), statistics over all rows
        else:
            z = F.linear(x, *self.folded())  # (..., out)
        # In place: BatchNorm's backward needs its input, not its output. The ReLU comes
        # before the final view: an in-place op on a view makes autograd copy the whole
        # gradient in the backward pass.
        if self.relu:
            z = torch.relu_(z)
        return z.view(*x.shape[:-1], z.shape[-1])  # (..., out)

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
