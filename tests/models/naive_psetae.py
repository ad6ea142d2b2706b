"""Independent, deliberately naive float64 re-computations of PSE-TAE for the tests.

Written from SPEC.md with explicit loops and formulas, reading only the weights of our
modules, so that a test compares two independent computations of the same function.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "psetae_reference.npz"


def load_fixture() -> dict:
    """The reference fixture: arrays as tensors, ``meta`` parsed, ``state_dict`` apart."""
    with np.load(FIXTURE, allow_pickle=False) as z:
        out = {k: torch.from_numpy(z[k]) for k in z.files if k != "meta"}
        meta = json.loads(str(z["meta"]))
    sd = {k[len("state_dict/") :]: v for k, v in out.items() if k.startswith("state_dict/")}
    data = {k: v for k, v in out.items() if not k.startswith("state_dict/")}
    return {"meta": meta, "state_dict": sd, **data}


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial affine weights and running statistics."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)


def _d(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def linear_bn(x: np.ndarray, block, relu: bool, batch_stats: bool = False) -> np.ndarray:
    """Linear then BatchNorm (running or batch statistics over all rows) then ReLU."""
    y = x @ _d(block.linear.weight).T + _d(block.linear.bias)
    bn = block.norm
    rows = y.reshape(-1, y.shape[-1])
    if batch_stats:
        mean, var = rows.mean(0), rows.var(0)
    else:
        mean, var = _d(bn.running_mean), _d(bn.running_var)
    y = (y - mean) / np.sqrt(var + bn.eps) * _d(bn.weight) + _d(bn.bias)
    return np.maximum(y, 0) if relu else y


def naive_pse(pse, pixels, mask, extra=None, batch_stats: bool = False) -> np.ndarray:
    """PSE output (B, T, d), one pixel set at a time."""
    x = _d(pixels).transpose(0, 1, 3, 2)  # (B, T, S, C)
    for block in pse.mlp1:
        x = linear_bn(x, block, relu=True, batch_stats=batch_stats)
    B, T, S, D = x.shape
    m = _d(mask)
    pooled = np.zeros((B, T, len(pse.pooling) * D))
    for b in range(B):
        for t in range(T):
            valid = x[b, t][m[b, t] > 0]  # (n, D)
            n = len(valid)
            parts = []
            for p in pse.pooling:
                if p == "mean":
                    parts.append(valid.mean(0))
                elif p == "std":
                    ss = ((valid - valid.mean(0)) ** 2).sum(0)
                    parts.append(np.sqrt(ss / max(n - 1, 1) + 1e-31))
                elif p == "max":
                    parts.append(valid.max(0))
                else:
                    parts.append(valid.min(0))
            pooled[b, t] = np.concatenate(parts)
    if extra is not None:
        pooled = np.concatenate([pooled, _d(extra)], axis=2)
    blocks = list(pse.mlp2)
    for i, block in enumerate(blocks):
        pooled = linear_bn(pooled, block, relu=i < len(blocks) - 1, batch_stats=batch_stats)
    return pooled


def naive_pe(positions: np.ndarray, d: int, period: float) -> np.ndarray:
    """Sinusoidal table with the textbook formula, with math.sin/math.cos."""
    positions = np.asarray(positions, dtype=np.float64)
    out = np.zeros(positions.shape + (d,))
    for idx in np.ndindex(positions.shape):
        p = positions[idx]
        for j in range(d):
            angle = p / period ** (2 * (j // 2) / d)
            out[idx + (j,)] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return out


def naive_tae(tae, x, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TAE output (B, d') and attention (B, H, T) in eval mode; positions (B, T)."""
    x = _d(x)
    B, T, d = x.shape
    H, dk = tae.n_head, tae.d_k
    ln = tae.in_norm
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    x = (x - mu) / np.sqrt(var + ln.eps) * _d(ln.weight) + _d(ln.bias)
    x = x + naive_pe(positions, d, tae.period)
    out = np.zeros((B, H * d))
    att = np.zeros((B, H, T))
    Wq, bq = _d(tae.query.weight), _d(tae.query.bias)
    Wk, bk = _d(tae.key.weight), _d(tae.key.bias)
    bn, lin = tae.query_head[0], tae.query_head[1]
    for b in range(B):
        q_all = x[b] @ Wq.T + bq  # (T, H*dk): projected first, then averaged (as the paper)
        q = q_all.mean(0)
        q = (q - _d(bn.running_mean)) / np.sqrt(_d(bn.running_var) + bn.eps)
        q = q * _d(bn.weight) + _d(bn.bias)
        q = q @ _d(lin.weight).T + _d(lin.bias)
        k = x[b] @ Wk.T + bk  # (T, H*dk)
        for h in range(H):
            scores = np.array(
                [q[h * dk : (h + 1) * dk] @ k[t, h * dk : (h + 1) * dk] for t in range(T)]
            )
            scores = scores / math.sqrt(dk)
            a = np.exp(scores - scores.max())
            a = a / a.sum()
            att[b, h] = a
            out[b, h * d : (h + 1) * d] = (a[:, None] * x[b]).sum(0)
    for block in tae.mlp3:
        out = linear_bn(out, block, relu=True)
    ln = tae.out_norm
    mu, var = out.mean(-1, keepdims=True), out.var(-1, keepdims=True)
    out = (out - mu) / np.sqrt(var + ln.eps) * _d(ln.weight) + _d(ln.bias)
    return out, att


def random_batch(B=3, T=5, C=10, S=16, E=4, seed=0, min_valid=1):
    """Random pixels, a mask with a varying number of valid pixels (padding by repeating
    the first pixel, as the SPEC's sampling does) and extra features."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(B, T, C, S, generator=g)
    n_valid = torch.randint(min_valid, S + 1, (B, 1), generator=g).expand(B, T)
    mask = (torch.arange(S) < n_valid[..., None]).float()  # (B, T, S)
    pixels = torch.where(mask[:, :, None, :] > 0, pixels, pixels[..., :1])
    extra = torch.randn(B, T, E, generator=g) if E else None
    return pixels, mask, extra
