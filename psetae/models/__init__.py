"""psetae.models: the Pixel-Set Encoder, PSE-TAE, PSE + L-TAE and the baselines.

Every model is built by name from one config dataclass: ``build_model("psltae", config)``;
the names are ``psetae``, ``psltae``, ``psegru``, ``psetempcnn`` and ``psetransformer``.

Plain PyTorch modules; :mod:`psetae.models.reference` and :mod:`psetae.models.reference_ltae`
load weights saved by the reference implementations, :func:`reference_init_` initialises
as the reference's training script.
"""

from psetae.models.classifier import PseClassifier
from psetae.models.config import ConfigError, ModelConfig, PseTaeConfig
from psetae.models.fast import compile_model, use_fast
from psetae.models.gru import PseGru, PseGruConfig
from psetae.models.init import reference_init_
from psetae.models.ltae import LightweightTemporalAttentionEncoder, PseLTae, PseLTaeConfig
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
from psetae.models.reference_ltae import is_ltae_state_dict, psltae_from_reference
from psetae.models.registry import MODELS, build_model, model_config, model_name
from psetae.models.tae import TemporalAttentionEncoder, positional_encoding
from psetae.models.tempcnn import PseTempCnn, PseTempCnnConfig
from psetae.models.transformer import PseTransformer, PseTransformerConfig

__all__ = [
    "LightweightTemporalAttentionEncoder",
    "PseClassifier",
    "PseGru",
    "PseGruConfig",
    "PseLTae",
    "PseLTaeConfig",
    "PseTempCnn",
    "PseTempCnnConfig",
    "PseTransformer",
    "PseTransformerConfig",
    "is_ltae_state_dict",
    "psltae_from_reference",
    "reference_init_",
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
    "compile_model",
    "convert_reference_state_dict",
    "load_reference_weights",
    "masked_pool",
    "mlp",
    "positional_encoding",
    "psetae_from_reference",
    "reference_config",
    "use_fast",
]
