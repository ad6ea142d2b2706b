"""psetae.models: the Pixel-Set Encoder, the Temporal Attention Encoder and PSE-TAE.

Plain PyTorch modules; :mod:`psetae.models.reference` loads weights saved by the
reference implementation.
"""

from psetae.models.fast import compile_model, use_fast
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
from psetae.models.tae import TemporalAttentionEncoder, positional_encoding

__all__ = [
    "LinearBlock",
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
