"""Sinusoidal encoding of acquisition days for a batch, shared by the temporal encoders.

Every temporal encoder of the package takes the batch's ``positions`` (B, T), days since each
parcel's first acquisition. Without them it uses the days fixed in its config, else 1, 2, ..., T
(the TAE's rule, book/contract.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from psetae.models.tae import positional_encoding

__all__ = ["DayEncoding"]


class DayEncoding(nn.Module):
    """The encoding of each date's day: (B, T) days -> (B, T, d * repeat).

    Parameters
    ----------
    d
        Width of one encoding.
    period
        ``T_pe``, the period of the sinusoids.
    positions
        Fixed days of the dates (used when the batch gives none), or None for 1..T.
    repeat
        Copies of the encoding side by side (the L-TAE encodes with d_model / n_head
        dimensions and repeats the table once per head).
    """

    def __init__(
        self,
        d: int,
        period: float = 1000.0,
        positions: Sequence[float] | None = None,
        repeat: int = 1,
    ) -> None:
        super().__init__()
        self.d, self.period, self.repeat = int(d), float(period), int(repeat)
        fixed = None if positions is None else torch.as_tensor(positions, dtype=torch.float32)
        self.register_buffer("fixed", fixed, persistent=False)  # (T,) or None; from the config

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """The encoding for the dates of ``x`` (B, T, ...), broadcastable to (B, T, d * repeat).

        Raises
        ------
        ValueError
            If ``positions`` is not (B, T), or the fixed days do not match T.
        """
        B, T = x.shape[:2]
        if positions is not None:
            if tuple(positions.shape) != (B, T):
                raise ValueError(
                    f"positions must be (B, T) = {(B, T)}, got {tuple(positions.shape)}"
                )
            days = positions.to(x.device)  # (B, T)
        elif self.fixed is not None:
            if T != self.fixed.shape[0]:
                raise ValueError(
                    f"the model's fixed positions are for {self.fixed.shape[0]} dates, the input "
                    f"has {T}; pass positions (B, T) to forward"
                )
            days = self.fixed[None]  # (1, T)
        else:
            days = torch.arange(1, T + 1, device=x.device)[None]  # (1, T)
        # Parcels of one tile share their calendar: encode each distinct one once.
        calendars, which = torch.unique(days, dim=0, return_inverse=True)  # (U, T), (B,) or (1,)
        pe = positional_encoding(calendars, self.d, self.period)[which]  # (B or 1, T, d)
        return pe.repeat(1, 1, self.repeat).to(x.dtype)  # (B or 1, T, d * repeat)

    def extra_repr(self) -> str:
        return f"d={self.d}, period={self.period}, repeat={self.repeat}"
