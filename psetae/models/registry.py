"""The models of the package by name: ``build_model("psetae")``.

A new model is one module (a ``nn.Module`` whose constructor takes its config dataclass, with a
``config_class`` attribute) and one line in :data:`MODELS`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from psetae.models.config import ConfigError, ModelConfig
from psetae.models.gru import PseGru
from psetae.models.ltae import PseLTae
from psetae.models.psetae import PseTae
from psetae.models.tempcnn import PseTempCnn
from psetae.models.transformer import PseTransformer

__all__ = ["MODELS", "build_model", "model_config", "model_name"]

#: Registered models: name -> class.
MODELS: dict[str, type[nn.Module]] = {
    "psetae": PseTae,
    "psltae": PseLTae,
    "psegru": PseGru,
    "psetempcnn": PseTempCnn,
    "psetransformer": PseTransformer,
}


def _model_class(name: str) -> type[nn.Module]:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose from {sorted(MODELS)}") from None


def model_config(name: str, config: ModelConfig | dict[str, Any] | None = None) -> ModelConfig:
    """The config dataclass of model ``name``: its defaults, updated with ``config``.

    Parameters
    ----------
    name
        A key of :data:`MODELS`.
    config
        None (the defaults), a dict of fields to change, or a config of the model's class.

    Raises
    ------
    ConfigError
        For an unknown model, an unknown key, or a config of another model's class.
    """
    cls = _model_class(name).config_class
    if config is None:
        return cls()
    if isinstance(config, ModelConfig):
        if type(config) is not cls:
            raise ConfigError(
                f"model {name!r} takes a {cls.__name__}, got a {type(config).__name__}"
            )
        return config
    return cls.from_dict(dict(config))


def build_model(
    name: str = "psetae", config: ModelConfig | dict[str, Any] | None = None
) -> nn.Module:
    """A freshly built model ``name`` with ``config`` (see :func:`model_config`)."""
    return _model_class(name)(model_config(name, config))


def model_name(model: nn.Module) -> str:
    """The registry name of a model instance (the inverse of :func:`build_model`)."""
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    raise ConfigError(f"{type(model).__name__} is not a registered model; known: {sorted(MODELS)}")
