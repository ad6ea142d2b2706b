"""Tests of psetae/models/gru.py: PSE + GRU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from psetae.models import PseGru, PseGruConfig

from .naive_psetae import _d, naive_pe, random_batch, randomise_batchnorm

PSE = (10 * 32 + 32 + 2 * 32) + (32 * 64 + 64 + 2 * 64) + (132 * 128 + 128 + 2 * 128)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_default_parameter_count_by_hand():
    d_in, h = 128, 156
    gru = 3 * (h * d_in + h * h + 2 * h)  # reset, update and candidate gates, two biases each
    decoder = (h * 64 + 64 + 2 * 64) + (64 * 32 + 32 + 2 * 32) + (32 * 20 + 20)
    model = PseGru()
    assert n_params(model.temporal_encoder) == gru == 133848
    assert n_params(model) == PSE + gru + decoder == 166764


def naive_gru(gru, x):
    """The GRU's equations (PyTorch's gate order r, z, n), one date at a time."""
    Wi, Wh = _d(gru.weight_ih_l0), _d(gru.weight_hh_l0)
    bi, bh = _d(gru.bias_ih_l0), _d(gru.bias_hh_l0)
    H = Wh.shape[1]
    h = np.zeros((x.shape[0], H))
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for t in range(x.shape[1]):
        gi, gh = x[:, t] @ Wi.T + bi, h @ Wh.T + bh  # (B, 3H)
        r = sigmoid(gi[:, :H] + gh[:, :H])
        z = sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
        n = np.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
        h = (1 - z) * n + z * h
    return h


def test_encoder_adds_the_encoding_of_each_dates_own_day_then_keeps_the_last_state():
    enc = PseGru(hidden_size=12, mlp4=[12, 5]).temporal_encoder
    x = torch.randn(3, 7, 128)
    days = torch.tensor([[0, 4, 9, 20, 21, 50, 80]] * 2 + [[0, 1, 2, 3, 4, 5, 6]]).float()
    with torch.no_grad():
        out = enc(x, days)
    expected = naive_gru(enc.gru, _d(x) + naive_pe(days.numpy(), 128, 1000.0))
    np.testing.assert_allclose(out.double().numpy(), expected, atol=1e-5)


def test_without_positional_encoding_the_days_are_ignored():
    model = PseGru(positional=False).eval()
    randomise_batchnorm(model)
    pixels, mask, extra = random_batch(B=2, T=24, S=4)
    days = torch.cumsum(torch.randint(1, 9, (2, 24)), 1).float()
    with torch.no_grad():
        torch.testing.assert_close(model(pixels, mask, extra, days), model(pixels, mask, extra))
    assert n_params(model) == n_params(PseGru())  # the encoding has no parameters


def test_for_data_sets_the_decoder_input_to_the_hidden_size():
    cfg = PseGruConfig(hidden_size=40).for_data(4, 0, 5, 3)
    assert cfg.mlp4 == [40, 64, 32, 3]
    with pytest.raises(ValueError, match="mlp4\\[0\\] = 156 must equal .* 40"):
        PseGru(hidden_size=40)
