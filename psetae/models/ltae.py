"""PSE + L-TAE: the Lightweight Temporal Attention Encoder (Sainte Fare Garnot and Landrieu, 2020).

The L-TAE is the TAE of book chapter 3 made smaller (book/contract.md, "The lightweight TAE"),
on the PSE's (B, T, d_in) sequence:

1. LayerNorm, then an optional projection to d_model channels (Linear on every date) and a
   LayerNorm of the projected sequence;
2. add a sinusoidal encoding of each date's day, d_model / n_head wide, repeated per head;
3. one *learned* master query per head (a parameter, not computed from the sequence) attends
   over the dates with keys projected from the sequence; the values are the sequence itself,
   cut along channels into n_head groups: head h only reads its own d_model / n_head channels;
4. the heads, concatenated, are (B, d_model): MLP3, dropout and a LayerNorm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from psetae.models.classifier import PseClassifier
from psetae.models.config import ConfigError, ModelConfig
from psetae.models.days import DayEncoding
from psetae.models.mlp import mlp

__all__ = ["INPUT_NORMS", "LightweightTemporalAttentionEncoder", "PseLTae", "PseLTaeConfig"]

INPUT_NORMS = ("joint", "per_date")


@dataclass
class PseLTaeConfig(ModelConfig):
    """PSE + L-TAE: 143,124 parameters by default (PSE 19,936; L-TAE 112,000; decoder 11,188).

    Attributes
    ----------
    n_head, d_k
        Attention heads and the key/query width of each.
    d_model
        Width of the input projection; None for no projection (d_model = mlp2[-1]).
        Must be a multiple of ``n_head``.
    mlp3
        The MLP after the heads (``mlp3[0] = d_model``).
    dropout
        Dropout before the output LayerNorm.
    T
        Period of the sinusoidal positional encoding.
    input_norm
        The LayerNorm after the projection. ``"joint"`` (the reference's): one LayerNorm over
        each parcel's whole (T, d_model) block, with an affine of shape (T, d_model), so the
        model only takes sequences of ``len_max_seq`` dates (reference weights need it).
        ``"per_date"``: LayerNorm(d_model) on each date, with d_model affine parameters, for
        any number of dates (not the reference's function: its weights do not load).
    """

    n_head: int = 16
    d_k: int = 8
    d_model: int | None = 256
    mlp3: list[int] = field(default_factory=lambda: [256, 128])
    dropout: float = 0.2
    T: float = 1000.0
    input_norm: str = "joint"

    @property
    def temporal_width(self) -> int:
        return int(self.mlp3[-1])

    def fit_widths(self) -> None:
        width = self.mlp2[-1] if self.d_model is None else self.d_model
        self.mlp3 = [int(width), *self.mlp3[1:]]


class LightweightTemporalAttentionEncoder(nn.Module):
    """L-TAE: (B, T, in_channels) sequences -> (B, mlp3[-1]) vectors.

    Parameters
    ----------
    in_channels
        Width d_in of the input sequence (the PSE's output).
    n_head, d_k
        Number of heads and width of each head's key and (learned) query.
    d_model
        Width after the input projection; None for no projection (d_model = in_channels).
    mlp3
        Widths of the MLP after attention; ``mlp3[0]`` must be d_model.
    dropout
        Dropout before the output LayerNorm.
    T
        Period ``T_pe`` of the positional encoding.
    len_max_seq
        Number of dates T; the joint input norm is built for exactly this many.
    positions
        Fixed days of the dates, or None (1..T when the batch gives none).
    input_norm
        ``"joint"`` or ``"per_date"``, see :class:`PseLTaeConfig`.

    Raises
    ------
    ConfigError
        If the widths do not fit together or ``input_norm`` is unknown.

    Notes
    -----
    The input norm is the one choice that ties the reference L-TAE to its number of dates:
    ``"joint"`` normalises each parcel's (T, d_model) block at once and learns 2 T d_model
    affine parameters (12,288 of the default 112,000), so a model trained on 24 dates cannot
    read 23; ``"per_date"`` normalises every date alone with 2 d_model parameters (512) and
    reads sequences of any length. With ``d_model=None`` there is neither projection nor norm.
    The attention weights are returned as (B, n_head, T), the package's layout (the
    reference's are (n_head, B, T)).
    """

    def __init__(
        self,
        in_channels: int = 128,
        n_head: int = 16,
        d_k: int = 8,
        d_model: int | None = 256,
        mlp3: Sequence[int] = (256, 128),
        dropout: float = 0.2,
        T: float = 1000.0,
        len_max_seq: int = 24,
        positions: Sequence[float] | None = None,
        input_norm: str = "joint",
    ) -> None:
        super().__init__()
        d = in_channels if d_model is None else int(d_model)
        if mlp3[0] != d:
            raise ConfigError(f"mlp3[0] = {mlp3[0]} must equal d_model = {d}")
        if d % n_head:
            raise ConfigError(f"d_model = {d} must be a multiple of n_head = {n_head}")
        if input_norm not in INPUT_NORMS:
            raise ConfigError(f"input_norm {input_norm!r} must be one of {INPUT_NORMS}")
        if positions is not None and len(positions) != len_max_seq:
            raise ConfigError(
                f"positions has {len(positions)} entries, len_max_seq = {len_max_seq}"
            )
        self.d_model, self.n_head, self.d_k = d, n_head, d_k
        self.len_max_seq, self.input_norm = len_max_seq, input_norm

        self.in_norm = nn.LayerNorm(in_channels)
        self.in_proj = self.proj_norm = None
        if d_model is not None:
            self.in_proj = nn.Linear(in_channels, d)  # the reference's 1x1 Conv1d
            joint = input_norm == "joint"
            self.proj_norm = nn.LayerNorm([len_max_seq, d] if joint else d)
        self.days = DayEncoding(d // n_head, T, positions, repeat=n_head)
        # One learned master query per head, and wide initial keys (std sqrt(2 / d_k)).
        self.query = nn.Parameter(torch.randn(n_head, d_k) * math.sqrt(2.0 / d_k))  # (H, dk)
        self.key = nn.Linear(d, n_head * d_k)
        nn.init.normal_(self.key.weight, mean=0.0, std=math.sqrt(2.0 / d_k))
        self.attention_dropout = nn.Dropout(0.1)
        self.mlp3 = mlp(mlp3, relu_last=True)
        self.dropout = nn.Dropout(dropout)
        self.out_norm = nn.LayerNorm(mlp3[-1])

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Encode every parcel's sequence.

        Parameters
        ----------
        x
            (B, T, in_channels) sequence of date embeddings.
        positions
            (B, T) days of each parcel's dates; None: the fixed days, else 1..T.
        return_attention
            Also return the attention weights (B, n_head, T) (the reference's are
            (n_head, B, T)).

        Raises
        ------
        ValueError
            If the shapes do not fit, e.g. T differs from len_max_seq with the joint norm.
        """
        B, T, _ = x.shape
        H, dk, d = self.n_head, self.d_k, self.d_model

        x = self.in_norm(x)  # (B, T, d_in)
        if self.in_proj is not None:
            if self.input_norm == "joint" and T != self.len_max_seq:
                raise ValueError(
                    f"the joint input norm is built for {self.len_max_seq} dates, the input has "
                    f"{T}; use input_norm='per_date' for sequences of any length"
                )
            x = self.proj_norm(self.in_proj(x))  # (B, T, d)
        x = x + self.days(x, positions)  # (B, T, d)

        keys = self.key(x).view(B, T, H, dk)  # (B, T, H, dk)
        scores = torch.einsum("bthk,hk->bht", keys, self.query)  # (B, H, T)
        attention = F.softmax(scores / math.sqrt(dk), dim=2)  # (B, H, T)
        # Head h reads its own group of d / H channels of the sequence.
        values = x.view(B, T, H, d // H)  # (B, T, H, d/H)
        heads = torch.einsum("bht,bthc->bhc", self.attention_dropout(attention), values)

        out = self.mlp3(heads.reshape(B, d))  # (B, mlp3[-1]), heads side by side
        out = self.out_norm(self.dropout(out))  # (B, mlp3[-1])
        return (out, attention) if return_attention else out


class PseLTae(PseClassifier):
    """PSE + L-TAE (Sainte Fare Garnot and Landrieu, AALTD 2020): 143,124 parameters by default.

    ``PseLTae(config=None, **changes)``; ``forward(pixels, mask, extra, positions,
    return_attention)`` as every :class:`~psetae.models.classifier.PseClassifier`, the
    attention weights (B, n_head, T).
    """

    config_class = PseLTaeConfig
    has_attention = True

    def build_temporal_encoder(self, c: PseLTaeConfig) -> nn.Module:
        return LightweightTemporalAttentionEncoder(
            c.mlp2[-1], c.n_head, c.d_k, c.d_model, c.mlp3, c.dropout, c.T, c.len_max_seq,
            c.positions, c.input_norm,
        )  # fmt: skip
