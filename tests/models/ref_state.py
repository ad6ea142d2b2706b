"""Reference-named state dicts built from our models, for the converter's tests.

Written by hand from SPEC.md (sections PSE, TAE, Decoder and the reference's key names),
independently of the key map in psetae/models/reference.py: a test builds one of our models
with some configuration, renames its tensors here to what the reference would have saved,
converts them back with the converter and compares the two models' outputs.

The reference's modules, as its state dict names them:

- PSE MLP1: one ``linlayer`` per layer, ``spatial_encoder.mlp1.<i>.lin`` (Linear) and
  ``.bn`` (BatchNorm);
- PSE MLP2, TAE MLP3 and the decoder: plain ``nn.Sequential`` of Linear, BatchNorm, ReLU per
  layer, so layer i is at index 3i (Linear) and 3i + 1 (BatchNorm); the decoder's last layer
  is a bare Linear at 3 (n - 1); MLP3 is ``temporal_encoder.mlp``;
- TAE: ``inlayernorm``, ``outlayernorm``, ``attention_heads.fc1_q`` / ``fc1_k`` (Linear),
  ``attention_heads.fc2.0`` (BatchNorm) and ``fc2.1`` (Linear), and the fixed positional
  table ``position_enc.weight``: one row per date (days since the first) with dates, rows
  for positions 0, 1, ..., len_max_seq without.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from psetae.models import PseTae

from .naive_psetae import randomise_batchnorm


def reference_table(positions: Sequence[float], d: int, period: float) -> torch.Tensor:
    """The reference's positional table, from the SPEC's formula, in float64 then float32."""
    p = np.asarray(positions, dtype=np.float64)[:, None]  # (n, 1)
    j = np.arange(d)[None, :]  # (1, d)
    angle = p / np.power(float(period), 2 * (j // 2) / d)  # (n, d)
    return torch.from_numpy(np.where(j % 2 == 0, np.sin(angle), np.cos(angle))).float()


def _put(out: dict[str, torch.Tensor], prefix: str, module: nn.Module) -> None:
    for name, tensor in module.state_dict().items():
        out[f"{prefix}.{name}"] = tensor.detach().clone()


def reference_state_dict(model: PseTae) -> dict[str, torch.Tensor]:
    """``model``'s tensors under the reference's key names, with its positional table."""
    out: dict[str, torch.Tensor] = {}
    pse, tae = model.spatial_encoder, model.temporal_encoder
    for i, block in enumerate(pse.mlp1):
        _put(out, f"spatial_encoder.mlp1.{i}.lin", block.linear)
        _put(out, f"spatial_encoder.mlp1.{i}.bn", block.norm)
    for i, block in enumerate(pse.mlp2):
        _put(out, f"spatial_encoder.mlp2.{3 * i}", block.linear)
        _put(out, f"spatial_encoder.mlp2.{3 * i + 1}", block.norm)

    config = model.config.to_dict()
    rows = config["positions"]
    if rows is None:
        rows = list(range(config["len_max_seq"] + 1))
    out["temporal_encoder.position_enc.weight"] = reference_table(rows, tae.d, config["T"])
    _put(out, "temporal_encoder.inlayernorm", tae.in_norm)
    _put(out, "temporal_encoder.outlayernorm", tae.out_norm)
    _put(out, "temporal_encoder.attention_heads.fc1_q", tae.query)
    _put(out, "temporal_encoder.attention_heads.fc1_k", tae.key)
    _put(out, "temporal_encoder.attention_heads.fc2.0", tae.query_head[0])
    _put(out, "temporal_encoder.attention_heads.fc2.1", tae.query_head[1])
    for i, block in enumerate(tae.mlp3):
        _put(out, f"temporal_encoder.mlp.{3 * i}", block.linear)
        _put(out, f"temporal_encoder.mlp.{3 * i + 1}", block.norm)

    for i, layer in enumerate(model.decoder):
        if isinstance(layer, nn.Linear):  # the last, bare Linear
            _put(out, f"decoder.{3 * i}", layer)
        else:
            _put(out, f"decoder.{3 * i}", layer.linear)
            _put(out, f"decoder.{3 * i + 1}", layer.norm)
    return out


def randomised_model(seed: int = 0, **config: Any) -> PseTae:
    """An eval-mode :class:`PseTae` with random weights, BatchNorm statistics and LayerNorms."""
    torch.manual_seed(seed)
    model = PseTae(**config)
    randomise_batchnorm(model, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)
    return model.eval()


def batch(model: PseTae, B: int = 5, T: int | None = None, S: int = 7, seed: int = 0) -> dict:
    """Random inputs for ``model``: pixels, mask (some padding), extra features."""
    config = model.config.to_dict()
    T = T or config["len_max_seq"]
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(B, T, S, generator=g) > 0.3).float()
    mask[..., 0] = 1.0
    out = {
        "pixels": torch.randn(B, T, config["input_dim"], S, generator=g),
        "mask": mask,
        "extra": None,
    }
    if config["extra_size"]:
        out["extra"] = torch.randn(B, T, config["extra_size"], generator=g)
    return out
