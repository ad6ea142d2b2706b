"""A second model for the registry tests: the PSE, a mean over time, the decoder.

Training and inference must take any registered model; this one is not PSE-TAE (another
config class, no temporal encoder), so a code path that assumes PSE-TAE fails with it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from psetae.models.config import ModelConfig
from psetae.models.pse import PixelSetEncoder
from psetae.models.psetae import decoder_mlp


@dataclass
class PseMeanConfig(ModelConfig):
    """The shared fields only; the temporal 'encoder' is a mean, as wide as the PSE."""

    @property
    def temporal_width(self) -> int:
        return int(self.mlp2[-1])


class PseMean(nn.Module):
    config_class = PseMeanConfig

    def __init__(self, config: PseMeanConfig | None = None) -> None:
        super().__init__()
        self._config = copy.deepcopy(config or PseMeanConfig())
        c = self._config
        self.spatial_encoder = PixelSetEncoder(c.input_dim, c.mlp1, c.pooling, c.mlp2, c.extra_size)
        self.decoder = decoder_mlp(c.mlp4)

    @property
    def config(self) -> PseMeanConfig:
        return copy.deepcopy(self._config)

    @property
    def num_classes(self) -> int:
        return self._config.num_classes

    def forward(self, pixels, mask, extra=None, positions=None, return_attention=False):
        spatial = self.spatial_encoder(pixels, mask, extra)  # (B, T, d)
        logits = self.decoder(spatial.mean(dim=1))  # (B, K)
        if return_attention:
            B, T = pixels.shape[:2]
            return logits, torch.full((B, 1, T), 1.0 / T)
        return logits


#: Small widths: the toy trains in a fraction of a second per epoch.
TOY_OVERRIDES = {"mlp1": [3, 8, 8], "mlp2": [20, 16], "mlp4": [16, 8, 3]}
