"""PSE + GRU: a recurrent temporal encoder after the Pixel-Set Encoder (a baseline of the L-TAE paper).

The PSE's (B, T, d) sequence, plus a sinusoidal encoding of each date's day, goes through one
GRU layer; its last hidden state (B, hidden_size) is the parcel's vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from psetae.models.classifier import PseClassifier
from psetae.models.config import ModelConfig
from psetae.models.days import DayEncoding

__all__ = ["GruEncoder", "PseGru", "PseGruConfig"]


@dataclass
class PseGruConfig(ModelConfig):
    """PSE + GRU: 166,764 parameters by default (PSE 19,936; GRU 133,848; decoder 12,980).

    Attributes
    ----------
    hidden_size
        Width of the GRU's hidden state (156, the L-TAE paper's ~150k-parameter GRU).
    positional
        Add the sinusoidal encoding of each date's day to the GRU's input. Off, the GRU only
        knows the order of the dates, not how far apart they are.
    T
        Period of the positional encoding.
    """

    mlp4: list[int] = field(default_factory=lambda: [156, 64, 32, 20])
    hidden_size: int = 156
    positional: bool = True
    T: float = 1000.0

    @property
    def temporal_width(self) -> int:
        return int(self.hidden_size)


class GruEncoder(nn.Module):
    """(B, T, in_channels) sequences -> (B, hidden_size): the GRU's last hidden state.

    The reference's GRU (lightweight-temporal-attention-pytorch, ``models/competings.py``)
    builds its table from the T given days but reads it at rows 1..T, so each date gets the
    next date's encoding (and the last row is past the table). Here each date is encoded with
    its own day: the batch's positions, else the config's, else 1..T.

    Parameters
    ----------
    in_channels
        Width of the input sequence (the PSE's output).
    hidden_size
        Width of the hidden state.
    positional, T, positions
        Whether to add the day encoding, its period and the fixed days (or None).
    """

    def __init__(
        self,
        in_channels: int = 128,
        hidden_size: int = 156,
        positional: bool = True,
        T: float = 1000.0,
        positions: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.days = DayEncoding(in_channels, T, positions) if positional else None
        self.gru = nn.GRU(in_channels, hidden_size, batch_first=True)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Encode (B, T, in_channels) with the days ``positions`` (B, T) or None."""
        if self.days is not None:
            x = x + self.days(x, positions)  # (B, T, d)
        _, last = self.gru(x)  # (1, B, hidden): the state after the last date
        return last[0]  # (B, hidden)


class PseGru(PseClassifier):
    """PSE + GRU, a baseline of the L-TAE paper; no attention (``return_attention`` raises)."""

    config_class = PseGruConfig

    def build_temporal_encoder(self, c: PseGruConfig) -> nn.Module:
        return GruEncoder(c.mlp2[-1], c.hidden_size, c.positional, c.T, c.positions)
