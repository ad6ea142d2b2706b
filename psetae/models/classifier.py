"""What every classifier of the package shares: PSE -> temporal encoder -> decoder.

pixels (B, T, C, S) --PSE--> (B, T, d) --temporal encoder--> (B, d') --MLP4--> logits (B, K)

A model is a subclass of :class:`PseClassifier` that names its config dataclass and builds
its temporal encoder from it; the Pixel-Set Encoder and the decoder are the same for all.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from torch import nn

from psetae.models.config import ConfigError, ModelConfig
from psetae.models.decoder import decoder_mlp
from psetae.models.pse import PixelSetEncoder

__all__ = ["PseClassifier"]


class PseClassifier(nn.Module):
    """Base class: a Pixel-Set Encoder, a temporal encoder and a decoder MLP.

    Parameters
    ----------
    config
        Every hyper-parameter, an instance of the subclass's ``config_class``; None for the
        defaults.
    **changes
        Fields of the config to change, e.g. ``PseLTae(mlp4=[128, 64, 32, 5])``.

    Raises
    ------
    ConfigError
        If a key is unknown, the config is of another model, or the widths do not fit.
    """

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    #: Whether ``forward(..., return_attention=True)`` can return attention weights.
    has_attention: ClassVar[bool] = False

    def __init__(self, config: ModelConfig | None = None, **changes: Any) -> None:
        super().__init__()
        config = self.config_class() if config is None else config
        if type(config) is not self.config_class:
            raise ConfigError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, "
                f"got a {type(config).__name__}"
            )
        c = self._config = config.replace(**changes)  # a private copy
        if c.mlp4[0] != c.temporal_width:
            raise ConfigError(
                f"mlp4[0] = {c.mlp4[0]} must equal the temporal encoder's output width "
                f"{c.temporal_width}"
            )
        self.spatial_encoder = PixelSetEncoder(c.input_dim, c.mlp1, c.pooling, c.mlp2, c.extra_size)
        self.temporal_encoder = self.build_temporal_encoder(c)
        self.decoder = decoder_mlp(c.mlp4)

    def build_temporal_encoder(self, config: Any) -> nn.Module:
        """The temporal encoder: (B, T, mlp2[-1]) and positions -> (B, temporal_width)."""
        raise NotImplementedError

    @property
    def config(self) -> Any:
        """A copy of the model's configuration: ``type(model)(model.config)`` builds a twin."""
        return copy.deepcopy(self._config)

    @classmethod
    def from_config(cls, config: ModelConfig | dict[str, Any]) -> PseClassifier:
        """Build a model from a config or its dict (missing keys take their defaults).

        Raises
        ------
        ConfigError
            If ``config`` has a key that is not a config field.
        """
        if isinstance(config, dict):
            config = cls.config_class.from_dict(config)
        return cls(config)

    @property
    def num_classes(self) -> int:
        """Number of classes K (the decoder's output width)."""
        return self._config.num_classes

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
            (B, T) days of each parcel's dates (days since its first date); None: the days
            fixed in the config, else 1, 2, ..., T.
        return_attention
            Also return the attention weights (B, n_head, T); only for models with
            ``has_attention`` (PSE-TAE, PSE-L-TAE).

        Returns
        -------
        torch.Tensor or tuple
            Logits (B, K), or ``(logits, attention)``.

        Raises
        ------
        ConfigError
            If ``return_attention`` is asked of a model without attention.
        """
        if return_attention and not self.has_attention:
            raise ConfigError(
                f"{type(self).__name__} has no attention weights to return "
                "(return_attention=True is for the attention models psetae and psltae)"
            )
        spatial = self.spatial_encoder(pixels, mask, extra)  # (B, T, d)
        if return_attention:
            temporal, attention = self.temporal_encoder(spatial, positions, True)
            return self.decoder(temporal), attention  # (B, K), (B, n_head, T)
        return self.decoder(self.temporal_encoder(spatial, positions))  # (B, K)
