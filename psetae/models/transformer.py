"""PSE + Transformer: PyTorch's Transformer encoder over the dates (a baseline of the L-TAE paper).

The PSE's (B, T, d) sequence plus the sinusoidal encoding of each date's day (the TAE's, d
wide) goes through ``n_layers`` self-attention layers (``nn.TransformerEncoder``); the mean
over the dates is the parcel's vector (B, d).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from psetae.models.classifier import PseClassifier
from psetae.models.config import ConfigError, ModelConfig
from psetae.models.days import DayEncoding

__all__ = ["PseTransformer", "PseTransformerConfig", "TransformerEncoder"]


@dataclass
class PseTransformerConfig(ModelConfig):
    """PSE + Transformer: 163,604 parameters by default (PSE 19,936; 1 layer 132,480; decoder 11,188).

    Attributes
    ----------
    n_layers
        Self-attention layers.
    n_head
        Heads of each layer (``mlp2[-1]`` must be a multiple).
    dim_feedforward
        Hidden width of each layer's feed-forward block.
    dropout
        Dropout inside the layers (attention weights, feed-forward, residuals).
    T
        Period of the positional encoding.
    """

    n_layers: int = 1
    n_head: int = 4
    dim_feedforward: int = 256
    dropout: float = 0.1
    T: float = 1000.0

    @property
    def temporal_width(self) -> int:
        return int(self.mlp2[-1])


class TransformerEncoder(nn.Module):
    """(B, T, d) sequences -> (B, d): self-attention layers, then the mean over the dates.

    Parameters
    ----------
    d
        Width of the sequence (the PSE's output), also the layers' width.
    n_layers, n_head, dim_feedforward, dropout
        As :class:`torch.nn.TransformerEncoderLayer` (post-norm, ReLU).
    T, positions
        Period of the day encoding and the fixed days (or None).

    Raises
    ------
    ConfigError
        If ``d`` is not a multiple of ``n_head``.
    """

    def __init__(
        self,
        d: int = 128,
        n_layers: int = 1,
        n_head: int = 4,
        dim_feedforward: int = 256,
        dropout: float = 0.1,
        T: float = 1000.0,
        positions: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if d % n_head:
            raise ConfigError(
                f"the PSE's width mlp2[-1] = {d} must be a multiple of n_head = {n_head}"
            )
        self.days = DayEncoding(d, T, positions)
        layer = nn.TransformerEncoderLayer(d, n_head, dim_feedforward, dropout, batch_first=True)
        self.layers = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Encode (B, T, d) with the days ``positions`` (B, T) or None."""
        x = x + self.days(x, positions)  # (B, T, d)
        return self.layers(x).mean(dim=1)  # (B, d)


class PseTransformer(PseClassifier):
    """PSE + Transformer encoder; its attention is not exposed (``return_attention`` raises)."""

    config_class = PseTransformerConfig

    def build_temporal_encoder(self, c: PseTransformerConfig) -> nn.Module:
        return TransformerEncoder(
            c.mlp2[-1], c.n_layers, c.n_head, c.dim_feedforward, c.dropout, c.T, c.positions
        )
