"""PSE-TAE: the Pixel-Set Encoder, the Temporal Attention Encoder and a decoder MLP.

pixels (B, T, C, S) --PSE--> (B, T, d) --TAE--> (B, d') --MLP4--> logits (B, K)
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from psetae.models.mlp import mlp
from psetae.models.pse import PixelSetEncoder
from psetae.models.tae import TemporalAttentionEncoder


def decoder_mlp(widths: Sequence[int]) -> nn.Sequential:
    """MLP4: Linear -> BatchNorm -> ReLU blocks, then a bare Linear giving the logits."""
    widths = [int(w) for w in widths]
    if len(widths) < 2:
        raise ValueError(f"mlp4 needs at least two widths, got {widths}")
    hidden = list(mlp(widths[:-1])) if len(widths) > 2 else []
    return nn.Sequential(*hidden, nn.Linear(widths[-2], widths[-1]))


class PseTae(nn.Module):
    """The PSE-TAE classifier of Sainte Fare Garnot et al. (CVPR 2020).

    The defaults are the paper's (164,116 trainable parameters).

    Parameters
    ----------
    input_dim, mlp1, pooling, mlp2, extra_size
        The :class:`~psetae.models.pse.PixelSetEncoder`'s.
    n_head, d_k, mlp3, dropout, T, len_max_seq, positions
        The :class:`~psetae.models.tae.TemporalAttentionEncoder`'s (its ``in_channels``
        is ``mlp2[-1]``).
    mlp4
        Widths of the decoder; ``mlp4[0]`` must be ``mlp3[-1]``, ``mlp4[-1]`` is the
        number of classes K.

    Raises
    ------
    ValueError
        If the widths do not fit together.
    """

    def __init__(
        self,
        input_dim: int = 10,
        mlp1: Sequence[int] = (10, 32, 64),
        pooling: str = "mean_std",
        mlp2: Sequence[int] = (132, 128),
        extra_size: int = 4,
        n_head: int = 4,
        d_k: int = 32,
        mlp3: Sequence[int] = (512, 128, 128),
        dropout: float = 0.2,
        T: float = 1000,
        len_max_seq: int = 24,
        positions: Sequence[float] | None = None,
        mlp4: Sequence[int] = (128, 64, 32, 20),
    ) -> None:
        super().__init__()
        if mlp4[0] != mlp3[-1]:
            raise ValueError(f"mlp4[0] = {mlp4[0]} must equal mlp3[-1] = {mlp3[-1]}")
        if positions is not None:
            positions = [float(p) for p in positions]
        self._config = {
            "input_dim": int(input_dim),
            "mlp1": [int(w) for w in mlp1],
            "pooling": str(pooling),
            "mlp2": [int(w) for w in mlp2],
            "extra_size": int(extra_size),
            "n_head": int(n_head),
            "d_k": int(d_k),
            "mlp3": [int(w) for w in mlp3],
            "dropout": float(dropout),
            "T": float(T),
            "len_max_seq": int(len_max_seq),
            "positions": positions,
            "mlp4": [int(w) for w in mlp4],
        }
        self.spatial_encoder = PixelSetEncoder(input_dim, mlp1, pooling, mlp2, extra_size)
        self.temporal_encoder = TemporalAttentionEncoder(
            mlp2[-1], n_head, d_k, mlp3, dropout, T, len_max_seq, positions
        )
        self.decoder = decoder_mlp(mlp4)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor's arguments, JSON-serialisable: ``PseTae.from_config(m.config)``."""
        return {k: list(v) if isinstance(v, list) else v for k, v in self._config.items()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PseTae:
        """Build a model from :attr:`config` (missing keys take their defaults).

        Raises
        ------
        ValueError
            If ``config`` has a key that is not a constructor argument.
        """
        known = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown PseTae config keys {unknown}; known: {sorted(known)}")
        return cls(**config)

    @property
    def num_classes(self) -> int:
        """Number of classes K (the decoder's output width)."""
        return self._config["mlp4"][-1]

    def forward(
        self,
        pixels: torch.Tensor,
        mask: torch.Tensor,
        extra: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Classify a batch of parcels.

        Parameters
        ----------
        pixels
            (B, T, C, S) pixel sets.
        mask
            (B, T, S), 1 for a valid pixel and 0 for padding.
        extra
            (B, T, E) extra features; required iff ``extra_size > 0``.
        positions
            (B, T) days of each parcel's dates; see
            :meth:`~psetae.models.tae.TemporalAttentionEncoder.forward`.
        return_attention
            Also return the TAE's attention weights (B, n_head, T).

        Returns
        -------
        torch.Tensor or tuple
            Logits (B, K), or ``(logits, attention)``.
        """
        spatial = self.spatial_encoder(pixels, mask, extra)  # (B, T, d)
        temporal = self.temporal_encoder(spatial, positions, return_attention)
        if return_attention:
            temporal, attention = temporal  # (B, d'), (B, n_head, T)
            return self.decoder(temporal), attention  # (B, K)
        return self.decoder(temporal)  # (B, K)
