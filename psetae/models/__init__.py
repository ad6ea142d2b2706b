"""psetae.models: the Pixel-Set Encoder, the Temporal Attention Encoder and PSE-TAE.

Every model is built by name from one config dataclass: ``build_model("psetae", config)``.

Plain PyTorch modules; :mod:`psetae.models.reference` loads weights saved by the
reference implementation.
"""

from psetae.models.config import ConfigError, ModelConfig, PseTaeConfig
from psetae.models.mlp import LinearBlock, mlp
from psetae.models.pse import PixelSetEncoder, masked_pool
from psetae.models.psetae import PseTae
from psetae.models.reference import (
    ReferenceWeightsError,
    convert_reference_state_dict,
    load_reference_weights,
    psetae_from_reference,
    reference_config,
)
from psetae.models.registry import MODELS, build_model, model_config, model_name
from psetae.models.tae import TemporalAttentionEncoder, positional_encoding

__all__ = [
    "MODELS",
    "ConfigError",
    "LinearBlock",
    "ModelConfig",
    "PseTaeConfig",
    "build_model",
    "model_config",
    "model_name",
    "PixelSetEncoder",
    "PseTae",
    "ReferenceWeightsError",
    "TemporalAttentionEncoder",
    "convert_reference_state_dict",
    "load_reference_weights",
    "masked_pool",
    "mlp",
    "positional_encoding",
    "psetae_from_reference",
    "reference_config",
]
