"""Tests of psetae/models/init.py: the reference's initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from psetae.models import MODELS, PseGru, PseLTae, PseTransformer, build_model, reference_init_


def close(value, target, tol):
    return abs(float(value.detach()) - target) < tol


def test_linear_weights_are_xavier_normal_and_biases_standard_normal():
    layer = nn.Linear(1000, 500)
    reference_init_(layer)
    w, b = layer.weight, layer.bias
    std = math.sqrt(2 / 1500)
    assert close(w.mean(), 0.0, 1e-3) and close(w.std(), std, 1e-3)
    # Normal, not uniform of the same std: 4.55% of the draws lie beyond two std.
    assert close((w.abs() > 2 * std).float().mean(), 0.0455, 0.003)
    assert close(b.mean(), 0.0, 0.15) and close(b.std(), 1.0, 0.1)


def test_batchnorm_weights_standard_normal_and_biases_zero():
    bn = nn.BatchNorm1d(4000)
    reference_init_(bn)
    assert close(bn.weight.mean(), 0.0, 0.05) and close(bn.weight.std(), 1.0, 0.05)
    assert torch.equal(bn.bias, torch.zeros(4000))
    assert torch.equal(bn.running_var, torch.ones(4000))  # statistics are not parameters


@pytest.mark.parametrize("cls", [nn.Conv1d, nn.ConvTranspose1d])
def test_convolution_weights_and_biases_standard_normal(cls):
    conv = cls(64, 1000, 3)
    reference_init_(conv)
    for p in (conv.weight, conv.bias):
        assert close(p.mean(), 0.0, 0.1) and close(p.std(), 1.0, 0.1)


@pytest.mark.parametrize("cls", [nn.GRU, nn.LSTM])
def test_recurrent_matrices_orthogonal_and_biases_standard_normal(cls):
    rnn = cls(40, 300)
    reference_init_(rnn)
    w_ih, w_hh = rnn.weight_ih_l0, rnn.weight_hh_l0  # (gates * 300, 40), (gates * 300, 300)
    torch.testing.assert_close(w_ih.T @ w_ih, torch.eye(40), atol=1e-4, rtol=0)
    torch.testing.assert_close(w_hh.T @ w_hh, torch.eye(300), atol=1e-4, rtol=0)
    b = torch.cat([rnn.bias_ih_l0, rnn.bias_hh_l0])
    assert close(b.mean(), 0.0, 0.1) and close(b.std(), 1.0, 0.1)


def test_layernorm_and_the_master_query_keep_their_values():
    model = PseLTae()
    with torch.no_grad():
        model.temporal_encoder.in_norm.weight.fill_(0.5)
    query = model.temporal_encoder.query.detach().clone()
    norms = {n: p.detach().clone() for n, p in model.named_parameters() if "norm." in n
             and ("in_norm" in n or "out_norm" in n or "proj_norm" in n)}  # fmt: skip
    key_before = model.temporal_encoder.key.weight.detach().clone()
    reference_init_(model)
    assert torch.equal(model.temporal_encoder.query, query)
    for n, p in model.named_parameters():
        if n in norms:
            assert torch.equal(p, norms[n]), n
    assert torch.all(model.temporal_encoder.in_norm.weight == 0.5)
    # The key projection is a Linear: xavier-normal replaces its N(0, sqrt(2/d_k)) start.
    key = model.temporal_encoder.key.weight
    assert not torch.equal(key, key_before)
    assert close(key.std(), math.sqrt(2 / (256 + 128)), 0.01)
    # The master query was drawn from N(0, sqrt(2 / d_k)) at construction.
    q = torch.cat([PseLTae().temporal_encoder.query.detach().flatten() for _ in range(40)])
    assert close(q.mean(), 0.0, 0.05) and close(q.std(), math.sqrt(2 / 8), 0.03)


def test_models_layers_are_all_reached():
    gru = reference_init_(PseGru())
    w = gru.temporal_encoder.gru.weight_hh_l0  # (3 * 156, 156)
    torch.testing.assert_close(w.T @ w, torch.eye(156), atol=1e-4, rtol=0)
    bn = gru.spatial_encoder.mlp1[0].norm
    assert torch.equal(bn.bias, torch.zeros_like(bn.bias)) and not torch.equal(
        bn.weight, torch.ones_like(bn.weight)
    )
    # The Transformer's attention: the output projection is a Linear, the packed input
    # projection a bare parameter that keeps its construction values.
    model = PseTransformer()
    attention = model.temporal_encoder.layers.layers[0].self_attn
    in_proj = attention.in_proj_weight.detach().clone()
    reference_init_(model)
    assert torch.equal(attention.in_proj_weight, in_proj)
    assert close(attention.out_proj.bias.std(), 1.0, 0.3)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_deterministic_under_a_seed(name):
    def draw(seed):
        torch.manual_seed(seed)  # construction (the L-TAE query) and re-initialisation
        return reference_init_(build_model(name)).state_dict()

    a, b, c = draw(1), draw(1), draw(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
