"""The Temporal Attention Encoder (TAE): one vector per parcel from its sequence of dates.

Input: the PSE's (B, T, d) sequence. Following the paper (book/contract.md, "The Temporal Attention
Encoder"):

1. LayerNorm, then add a sinusoidal encoding of each date's position (days);
2. a *master query* per head, computed from the whole sequence (mean over time of a
   projection, then BatchNorm and Linear), attends over the dates with keys projected
   from the sequence; the values are the sequence itself, shared by all heads;
3. the heads' outputs, concatenated, go through MLP3, dropout and a LayerNorm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from psetae.models.mlp import mlp


def positional_encoding(
    positions: torch.Tensor | Sequence[float], d: int, period: float = 1000.0
) -> torch.Tensor:
    """Sinusoidal encoding of positions (days), as in the paper.

    ``PE[p, 2i] = sin(p / period^(2i/d))`` and ``PE[p, 2i+1] = cos(p / period^(2i/d))``.

    Parameters
    ----------
    positions
        (T,) or (B, T) positions, e.g. days since the first acquisition.
    d
        Size of the encoding (the model's width).
    period
        ``T_pe`` in the formula: the longest wavelength is ``2 pi period``.

    Returns
    -------
    torch.Tensor
        (..., T, d) float32 on the positions' device.
    """
    positions = torch.as_tensor(positions)
    # float64 angles: in float32, p ~ 300 days would already lose 1e-5 (MPS has no float64).
    dtype = torch.float32 if positions.device.type == "mps" else torch.float64
    two_i = torch.arange(0, d, 2, device=positions.device, dtype=dtype)  # (ceil(d/2),) 0, 2, 4..
    angles = positions.to(dtype).unsqueeze(-1) / float(period) ** (two_i / d)  # (..., T, d/2)
    # Interleave: sin for the even columns, cos for the odd ones.
    pe = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(-2)  # (..., T, d+)
    return pe[..., :d].to(torch.float32)


class TemporalAttentionEncoder(nn.Module):
    """Temporal Attention Encoder: (B, T, d) sequences -> (B, mlp3[-1]) vectors.

    Parameters
    ----------
    in_channels
        Width d of the input sequence (the PSE's output).
    n_head, d_k
        Number of attention heads and size of each head's keys and query.
    mlp3
        Widths of the MLP after attention; ``mlp3[0]`` must be ``n_head * in_channels``.
        One width means no layer (the reference allows it).
    dropout
        Dropout before the output LayerNorm.
    T
        Period ``T_pe`` of the positional encoding.
    len_max_seq
        Number of dates when ``positions`` is given (the reference's argument).
    positions
        Fixed positions (len_max_seq,) of the dates, e.g. days since the first one (an
        input of fewer dates takes the first ones, as in the reference); ``None`` means
        1, 2, ..., T for any input length T.

    Raises
    ------
    ValueError
        If the widths do not fit together or ``positions`` has the wrong length.
    """

    def __init__(
        self,
        in_channels: int = 128,
        n_head: int = 4,
        d_k: int = 32,
        mlp3: Sequence[int] = (512, 128, 128),
        dropout: float = 0.2,
        T: float = 1000,
        len_max_seq: int = 24,
        positions: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if mlp3[0] != n_head * in_channels:
            raise ValueError(
                f"mlp3[0] = {mlp3[0]} must be n_head * in_channels = {n_head} * {in_channels}"
            )
        if positions is not None and len(positions) != len_max_seq:
            raise ValueError(
                f"positions has {len(positions)} entries but len_max_seq = {len_max_seq}"
            )
        self.d, self.n_head, self.d_k, self.period = in_channels, n_head, d_k, T
        self.len_max_seq = len_max_seq

        self.in_norm = nn.LayerNorm(in_channels)
        self.query = nn.Linear(in_channels, n_head * d_k)  # FC1 of the queries
        self.key = nn.Linear(in_channels, n_head * d_k)  # FC1 of the keys
        self.query_head = nn.Sequential(  # FC2: master query, one per head
            nn.BatchNorm1d(n_head * d_k), nn.Linear(n_head * d_k, n_head * d_k)
        )
        self.attention_dropout = nn.Dropout(0.1)
        self.mlp3 = mlp(mlp3, relu_last=True) if len(mlp3) > 1 else nn.Sequential()
        self.dropout = nn.Dropout(dropout)
        self.out_norm = nn.LayerNorm(mlp3[-1])
        self.out_dim = int(mlp3[-1])
        # Wide initial keys and queries (std sqrt(2 / d_k)), as the reference initialises them.
        for layer in (self.query, self.key):
            nn.init.normal_(layer.weight, mean=0.0, std=math.sqrt(2.0 / d_k))

        # Derived from the configuration, so not saved in the state dict.
        fixed = None if positions is None else torch.as_tensor(positions, dtype=torch.float32)
        self.register_buffer("positions", fixed, persistent=False)  # (len_max_seq,) or None
        table = positional_encoding(
            fixed if fixed is not None else torch.arange(1, len_max_seq + 1), in_channels, T
        )
        self.register_buffer("pe_table", table, persistent=False)  # (len_max_seq, d)

    def encoding(self, B: int, T: int, positions: torch.Tensor | None) -> torch.Tensor:
        """Positional encoding for a batch: (B, T, d) or (T, d), broadcastable to (B, T, d).

        Priority: ``positions`` (B, T) given here > positions fixed at construction > 1..T.
        """
        if positions is not None:
            if tuple(positions.shape) != (B, T):
                raise ValueError(
                    f"positions must be (B, T) = {(B, T)}, got {tuple(positions.shape)}"
                )
            # Parcels of one satellite tile share their dates: encode each calendar once.
            calendars, which = torch.unique(positions, dim=0, return_inverse=True)  # (U, T), (B,)
            return positional_encoding(calendars, self.d, self.period)[which]  # (B, T, d)
        if self.positions is not None and T > self.len_max_seq:
            raise ValueError(
                f"the model's fixed positions are for {self.len_max_seq} dates, the input has "
                f"{T}; pass positions (B, T) to forward"
            )
        if T <= self.pe_table.shape[0]:
            return self.pe_table[:T]  # (T, d)
        return positional_encoding(torch.arange(1, T + 1), self.d, self.period).to(
            self.pe_table.device
        )

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
            (B, T, d) sequence of date embeddings.
        positions
            (B, T) position of each date of each parcel (days since its first date); when
            ``None``, the positions fixed at construction, else 1, 2, ..., T.
        return_attention
            Also return the attention weights.

        Returns
        -------
        torch.Tensor or tuple
            (B, mlp3[-1]); with ``return_attention``, also the weights (B, n_head, T),
            each row summing to 1 (before attention dropout).
        """
        if x.dim() != 3 or x.shape[2] != self.d:
            raise ValueError(f"x must be (B, T, d={self.d}), got shape {tuple(x.shape)}")
        B, T, _ = x.shape
        H, dk = self.n_head, self.d_k

        x = self.in_norm(x) + self.encoding(B, T, positions).to(x.dtype)  # (B, T, d)

        keys = self.key(x).view(B, T, H, dk)  # (B, T, H, dk)
        # Master query: the mean over time of FC1(x_t) equals FC1 of the mean of x_t.
        query = self.query_head(self.query(x.mean(dim=1)))  # (B, H*dk)
        query = query.view(B, H, dk, 1)  # (B, H, dk, 1)

        scores = torch.matmul(keys.transpose(1, 2), query).squeeze(3)  # (B, H, T)
        attention = F.softmax(scores / math.sqrt(dk), dim=2)  # (B, H, T)
        # Values are the sequence itself, shared by the heads: (B, H, T) x (B, T, d).
        heads = torch.bmm(self.attention_dropout(attention), x)  # (B, H, d)

        out = self.mlp3(heads.reshape(B, H * self.d))  # (B, mlp3[-1])
        out = self.out_norm(self.dropout(out))  # (B, mlp3[-1])
        return (out, attention) if return_attention else out
