"""The reference's initialisation (``model.apply(weight_init)`` in its train.py, book/contract.md, "The training protocol").

Before training, the reference redraws the parameters of every layer:

=====================================  ===========================================
layer                                  weights / biases
=====================================  ===========================================
Linear                                 xavier-normal / normal(0, 1)
BatchNorm1d                            normal(0, 1) / 0
Conv1d, ConvTranspose1d                normal(0, 1) / normal(0, 1)
GRU, LSTM                              orthogonal matrices, other tensors normal(0, 1)
=====================================  ===========================================

Everything else keeps its construction values: LayerNorm (ones and zeros), the L-TAE's master
query (normal(0, sqrt(2 / d_k))), and the input projection of ``nn.MultiheadAttention`` in the
Transformer baseline (a bare parameter, not a Linear; its output projection is a Linear).
"""

from __future__ import annotations

from torch import nn

__all__ = ["reference_init_"]


def _init_layer(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_normal_(m.weight)
        if m.bias is not None:
            nn.init.normal_(m.bias, 0.0, 1.0)
    elif isinstance(m, nn.BatchNorm1d):
        if m.affine:
            nn.init.normal_(m.weight, 0.0, 1.0)
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
        nn.init.normal_(m.weight, 0.0, 1.0)
        if m.bias is not None:
            nn.init.normal_(m.bias, 0.0, 1.0)
    elif isinstance(m, (nn.GRU, nn.LSTM)):
        for p in m.parameters():
            if p.dim() >= 2:
                nn.init.orthogonal_(p)  # each (gates * hidden, in) matrix as a whole
            else:
                nn.init.normal_(p, 0.0, 1.0)


def reference_init_(model: nn.Module) -> nn.Module:
    """Re-initialise ``model`` in place as the reference's training script does.

    Draws from torch's global generator: seed it (``torch.manual_seed``) for repeatable
    weights.

    Parameters
    ----------
    model
        Any module; its submodules are visited as by ``model.apply``.

    Returns
    -------
    nn.Module
        ``model`` itself.
    """
    return model.apply(_init_layer)
