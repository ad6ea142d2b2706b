"""Tests of psetae/models/tempcnn.py: PSE + TempCNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from psetae.models import ConfigError, PseTempCnn, PseTempCnnConfig

from .naive_psetae import _d, linear_bn, naive_pe, random_batch, randomise_batchnorm

PSE = (10 * 32 + 32 + 2 * 32) + (32 * 64 + 64 + 2 * 64) + (132 * 128 + 128 + 2 * 128)
DECODER = (128 * 64 + 64 + 2 * 64) + (64 * 32 + 32 + 2 * 32) + (32 * 20 + 20)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_default_parameter_count_by_hand():
    k, T = 3, 24
    convs = sum(c_in * c_out * k + c_out + 2 * c_out for c_in, c_out in
                [(128, 64), (64, 64)])  # fmt: skip
    dense = 64 * T * 64 + 64 + 2 * 64  # flattened (64, T)
    decoder = (64 * 32 + 32 + 2 * 32) + (32 * 20 + 20)  # 2,804
    model = PseTempCnn()
    assert n_params(model.temporal_encoder) == convs + dense == 135744
    assert n_params(model) == PSE + convs + dense + decoder == 158484


def test_the_script_defaults_of_the_reference_repository_by_hand():
    from psetae.models.tempcnn import PseTempCnnConfig

    cfg = PseTempCnnConfig(kernels=[32, 32, 128], mlp3=[3072, 128, 128], mlp4=[128, 64, 32, 20])
    assert n_params(PseTempCnn(cfg)) == 469716


def naive_tempcnn(enc, x):
    """Convolutions over time with zero padding, eval-mode BatchNorm, ReLU; flatten; MLP."""
    h = x.transpose(0, 2, 1)  # (B, C, T), float64
    for conv, bn in zip(enc.convs[0::3], enc.convs[1::3], strict=True):
        W, b = _d(conv.weight), _d(conv.bias)  # (out, in, k)
        k = W.shape[2]
        padded = np.pad(h, ((0, 0), (0, 0), (k // 2, k // 2)))
        T = h.shape[2]
        y = np.stack([np.einsum("oik,bik->bo", W, padded[:, :, t : t + k]) for t in range(T)], 2)
        y = y + b[None, :, None]
        y = (y - _d(bn.running_mean)[:, None]) / np.sqrt(_d(bn.running_var)[:, None] + bn.eps)
        h = np.maximum(y * _d(bn.weight)[:, None] + _d(bn.bias)[:, None], 0)
    out = h.reshape(h.shape[0], -1)  # channel after channel
    for block in enc.mlp3:
        out = linear_bn(out, block, relu=True)
    return out


def test_encoder_matches_a_naive_computation_with_each_dates_own_day():
    model = PseTempCnn(kernels=[6, 5], kernel_size=5, mlp3=[5 * 9, 7], mlp4=[7, 3], len_max_seq=9)
    randomise_batchnorm(model)
    enc = model.temporal_encoder.eval()
    x = torch.randn(2, 9, 128)
    days = torch.tensor([[0, 3, 8, 10, 30, 31, 40, 70, 90], [0, 1, 2, 3, 4, 5, 6, 7, 8]]).float()
    with torch.no_grad():
        out = enc(x, days)
    expected = naive_tempcnn(enc, _d(x) + naive_pe(days.numpy(), 128, 1000.0))
    np.testing.assert_allclose(out.double().numpy(), expected, atol=1e-4)


def test_tied_to_its_number_of_dates():
    pixels, mask, extra = random_batch(B=2, T=10, S=4)
    with pytest.raises(ValueError, match="built for 24 dates, the input has 10"):
        PseTempCnn()(pixels, mask, extra)
    cfg = PseTempCnnConfig().for_data(10, 4, 10, 20)
    assert cfg.mlp3 == [64 * 10, 64]
    assert PseTempCnn(cfg)(pixels, mask, extra).shape == (2, 20)


def test_bad_kernels_are_refused_and_days_can_be_left_out():
    with pytest.raises(ConfigError, match="odd"):
        PseTempCnn(kernel_size=4)
    with pytest.raises(ConfigError, match="mlp3\\[0\\] = 1536 must be kernels"):
        PseTempCnn(kernels=[32, 128])
    model = PseTempCnn(positional=False).eval()
    pixels, mask, extra = random_batch(B=2, T=24, S=4)
    days = torch.cumsum(torch.randint(1, 9, (2, 24)), 1).float()
    with torch.no_grad():
        torch.testing.assert_close(model(pixels, mask, extra, days), model(pixels, mask, extra))
