"""One dataclass per model carries every hyper-parameter, as nanoGPT's ``GPTConfig`` does.

:class:`ModelConfig` holds what every model of the package shares: the widths the data fixes
(bands C, geometric features E, dates T, classes K), the Pixel-Set Encoder and the decoder.
Each model adds the fields of its temporal encoder in a subclass, beside the model:
:class:`PseTaeConfig` here for the paper's model, ``PseLTaeConfig`` (:mod:`psetae.models.ltae`),
``PseGruConfig``, ``PseTempCnnConfig`` and ``PseTransformerConfig`` in their modules. The defaults are the reference's; :meth:`ModelConfig.for_data` sets the widths a
dataset fixes, so that a config written for S2-Agri fits any other pixel-set dataset.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

from psetae.errors import PsetaeError

__all__ = ["ConfigError", "ModelConfig", "PseTaeConfig"]

C = TypeVar("C", bound="ModelConfig")


class ConfigError(PsetaeError, ValueError):
    """A model configuration with an unknown key or widths that do not fit together."""


@dataclass
class ModelConfig:
    """The part of every model's configuration that is not the temporal encoder.

    Attributes
    ----------
    input_dim
        C, spectral bands per pixel (``mlp1[0]``).
    extra_size
        E, extra (geometric) features per parcel, 0 for none.
    len_max_seq
        T, acquisition dates per parcel.
    positions
        Fixed acquisition days (T floats), or None: the batch then gives each parcel's
        days, or the dates are numbered 1..T.
    mlp1, pooling, mlp2
        The Pixel-Set Encoder: the shared pixel MLP, the pooling string (``mean``, ``std``,
        ``max``, ``min`` joined by ``_``) and the MLP after pooling
        (``mlp2[0] = len(pooling) * mlp1[-1] + extra_size``).
    mlp4
        The decoder: ``mlp4[0]`` is the temporal encoder's output width and ``mlp4[-1]`` the
        number of classes K.
    """

    input_dim: int = 10
    extra_size: int = 4
    len_max_seq: int = 24
    positions: list[float] | None = None
    mlp1: list[int] = field(default_factory=lambda: [10, 32, 64])
    pooling: str = "mean_std"
    mlp2: list[int] = field(default_factory=lambda: [132, 128])
    mlp4: list[int] = field(default_factory=lambda: [128, 64, 32, 20])

    def __post_init__(self) -> None:
        # Plain lists and numbers, so that the config is JSON-serialisable and comparable.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                setattr(self, f.name, list(value))
        if self.positions is not None:
            self.positions = [float(p) for p in self.positions]

    @property
    def num_classes(self) -> int:
        """K, the number of classes (the decoder's output width)."""
        return int(self.mlp4[-1])

    @property
    def temporal_width(self) -> int:
        """The temporal encoder's output width (the decoder's input); set by each model."""
        raise NotImplementedError

    def fit_widths(self) -> None:
        """Set the temporal encoder's widths that follow from the others (in place)."""

    def for_data(
        self: C, num_channels: int, extra_size: int, sequence_length: int, num_classes: int
    ) -> C:
        """A copy whose widths fit a dataset: C bands, E extra features, T dates, K classes.

        The choices (hidden widths, pooling, heads, ...) are kept; the widths they imply
        are recomputed, and ``positions`` is cleared (the batches carry each parcel's days).
        """
        cfg = dataclasses.replace(self)
        cfg.__post_init__()
        pooling_parts = len(str(cfg.pooling).split("_"))
        cfg.input_dim = int(num_channels)
        cfg.extra_size = int(extra_size)
        cfg.len_max_seq = int(sequence_length)
        cfg.positions = None
        cfg.mlp1 = [cfg.input_dim, *cfg.mlp1[1:]]
        cfg.mlp2 = [pooling_parts * cfg.mlp1[-1] + cfg.extra_size, *cfg.mlp2[1:]]
        cfg.fit_widths()
        cfg.mlp4 = [cfg.temporal_width, *cfg.mlp4[1:-1], int(num_classes)]
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        """Inverse of :meth:`to_dict`; missing keys take their defaults.

        Raises
        ------
        ConfigError
            If ``d`` has a key that is not a field of this config.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
        return cls(**d)

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (unknown names raise :class:`ConfigError`)."""
        return type(self).from_dict({**self.to_dict(), **changes})


@dataclass
class PseTaeConfig(ModelConfig):
    """PSE-TAE (Sainte Fare Garnot et al., CVPR 2020): 164,116 parameters by default.

    Attributes
    ----------
    n_head, d_k
        Attention heads and the key/query width of each.
    mlp3
        The MLP after the heads (``mlp3[0] = n_head * mlp2[-1]``).
    dropout
        Dropout before the TAE's output LayerNorm.
    T
        Period of the sinusoidal positional encoding.
    """

    n_head: int = 4
    d_k: int = 32
    mlp3: list[int] = field(default_factory=lambda: [512, 128, 128])
    dropout: float = 0.2
    T: float = 1000.0

    @property
    def temporal_width(self) -> int:
        return int(self.mlp3[-1])

    def fit_widths(self) -> None:
        self.mlp3 = [int(self.n_head) * int(self.mlp2[-1]), *self.mlp3[1:]]
