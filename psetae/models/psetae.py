"""PSE-TAE: the Pixel-Set Encoder, the Temporal Attention Encoder and a decoder MLP.

pixels (B, T, C, S) --PSE--> (B, T, d) --TAE--> (B, d') --MLP4--> logits (B, K)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from psetae.models.config import ConfigError, PseTaeConfig
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
    config
        Every hyper-parameter (:class:`~psetae.models.config.PseTaeConfig`); None for the
        defaults.
    **changes
        Fields of the config to change, e.g. ``PseTae(mlp4=[128, 64, 32, 5])``.

    Raises
    ------
    ConfigError
        If a key is unknown or the widths do not fit together.
    """

    config_class = PseTaeConfig

    def __init__(self, config: PseTaeConfig | None = None, **changes: Any) -> None:
        super().__init__()
        config = config or PseTaeConfig()
        c = self._config = config.replace(**changes)  # a private copy
        if c.mlp4[0] != c.mlp3[-1]:
            raise ConfigError(f"mlp4[0] = {c.mlp4[0]} must equal mlp3[-1] = {c.mlp3[-1]}")
        self.spatial_encoder = PixelSetEncoder(c.input_dim, c.mlp1, c.pooling, c.mlp2, c.extra_size)
        self.temporal_encoder = TemporalAttentionEncoder(
            c.mlp2[-1], c.n_head, c.d_k, c.mlp3, c.dropout, c.T, c.len_max_seq, c.positions
        )
        self.decoder = decoder_mlp(c.mlp4)

    @property
    def config(self) -> PseTaeConfig:
        """A copy of the model's configuration: ``PseTae(model.config)`` builds a twin."""
        return copy.deepcopy(self._config)

    @classmethod
    def from_config(cls, config: PseTaeConfig | dict[str, Any]) -> PseTae:
        """Build a model from a config or its dict (missing keys take their defaults).

        Raises
        ------
        ConfigError
            If ``config`` has a key that is not a config field.
        """
        if isinstance(config, dict):
            config = PseTaeConfig.from_dict(config)
        return cls(config)

    @property
    def num_classes(self) -> int:
        """Number of classes K (the decoder's output width)."""
        return self.config.num_classes

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
