"""PSE-TAE: the Pixel-Set Encoder, the Temporal Attention Encoder and a decoder MLP.

pixels (B, T, C, S) --PSE--> (B, T, d) --TAE--> (B, d') --MLP4--> logits (B, K)
"""

from __future__ import annotations

from torch import nn

from psetae.models.classifier import PseClassifier
from psetae.models.config import PseTaeConfig
from psetae.models.decoder import decoder_mlp
from psetae.models.tae import TemporalAttentionEncoder

__all__ = ["PseTae", "decoder_mlp"]


class PseTae(PseClassifier):
    """The PSE-TAE classifier of Sainte Fare Garnot et al. (CVPR 2020).

    The defaults are the paper's (164,116 trainable parameters). The constructor, the
    ``config`` property and ``forward`` are :class:`~psetae.models.classifier.PseClassifier`'s:
    ``PseTae(config=None, **changes)``, ``forward(pixels, mask, extra, positions,
    return_attention)``; the attention weights are (B, n_head, T).
    """

    config_class = PseTaeConfig
    has_attention = True

    def build_temporal_encoder(self, c: PseTaeConfig) -> nn.Module:
        return TemporalAttentionEncoder(
            c.mlp2[-1], c.n_head, c.d_k, c.mlp3, c.dropout, c.T, c.len_max_seq, c.positions
        )
