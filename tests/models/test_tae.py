"""Tests of psetae/models/tae.py: positional encoding and Temporal Attention Encoder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from psetae.models.tae import TemporalAttentionEncoder, positional_encoding

from .naive_psetae import naive_pe, naive_tae, randomise_batchnorm


def test_default_parameter_count():
    tae = TemporalAttentionEncoder()
    assert sum(p.numel() for p in tae.parameters() if p.requires_grad) == 132992


def test_positional_encoding_hand_computed():
    pe = positional_encoding(torch.tensor([0.0, 1.0, 300.0]), d=4, period=10000)
    # columns: sin(p), cos(p), sin(p / 100), cos(p / 100)
    expected = [
        [0.0, 1.0, 0.0, 1.0],
        [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)],
        [math.sin(300), math.cos(300), math.sin(3), math.cos(3)],
    ]
    torch.testing.assert_close(pe, torch.tensor(expected), atol=1e-6, rtol=0)


def test_positional_encoding_shapes_and_formula():
    positions = torch.tensor([[0.0, 17.0, 330.0], [5.0, 6.0, 7.0]])
    pe = positional_encoding(positions, d=10, period=1000)
    assert pe.shape == (2, 3, 10) and pe.dtype == torch.float32
    np.testing.assert_allclose(pe.numpy(), naive_pe(positions.numpy(), 10, 1000), atol=1e-6)
    assert positional_encoding([1, 2, 3, 4], d=6).shape == (4, 6)


def make_tae(**kwargs) -> TemporalAttentionEncoder:
    tae = TemporalAttentionEncoder(**kwargs)
    randomise_batchnorm(tae)
    return tae.eval()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(in_channels=16, n_head=2, d_k=8, mlp3=(32, 12), T=1000, len_max_seq=7),
        dict(in_channels=12, n_head=3, d_k=5, mlp3=(36, 20, 10), T=500, len_max_seq=7),
    ],
)
def test_eval_matches_naive_computation(kwargs):
    tae = make_tae(**kwargs)
    x = torch.randn(3, 7, kwargs["in_channels"])
    positions = torch.tensor([[0, 10, 25, 40, 41, 90, 200]] * 3, dtype=torch.float32)
    positions[1] += 3.0
    with torch.no_grad():
        out, att = tae(x, positions, return_attention=True)
    exp_out, exp_att = naive_tae(tae, x, positions.numpy())
    np.testing.assert_allclose(out.double().numpy(), exp_out, atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(att.double().numpy(), exp_att, atol=1e-6)


def test_attention_shape_and_sums_to_one():
    tae = make_tae()
    out, att = tae(torch.randn(5, 24, 128), return_attention=True)
    assert out.shape == (5, 128) and att.shape == (5, 4, 24)
    torch.testing.assert_close(att.sum(-1), torch.ones(5, 4))
    assert (att >= 0).all()


def test_without_positions_uses_one_to_T():
    tae = make_tae()
    x = torch.randn(2, 24, 128)
    one_to_t = torch.arange(1, 25, dtype=torch.float32).expand(2, 24)
    with torch.no_grad():
        torch.testing.assert_close(tae(x), tae(x, one_to_t))


@pytest.mark.parametrize("T", [1, 5, 30])
def test_other_sequence_lengths(T):
    tae = make_tae()
    x = torch.randn(2, T, 128)
    with torch.no_grad():
        out = tae(x)
        expected = tae(x, torch.arange(1, T + 1, dtype=torch.float32).expand(2, T))
    torch.testing.assert_close(out, expected)
    exp_out, _ = naive_tae(tae, x, np.arange(1, T + 1)[None].repeat(2, 0))
    np.testing.assert_allclose(out.double().numpy(), exp_out, atol=2e-5, rtol=1e-4)


def test_fixed_positions_equal_the_same_positions_per_parcel():
    days = [0, 20, 40, 60, 80, 100, 120, 140, 160, 180, 190, 200]
    days += [210, 220, 230, 240, 250, 260, 270, 280, 290, 300, 310, 330]
    tae = make_tae(positions=days)
    x = torch.randn(3, 24, 128)
    with torch.no_grad():
        fixed = tae(x)
        per_parcel = tae(x, torch.tensor(days, dtype=torch.float32).expand(3, 24))
        one_to_t = tae(x, torch.arange(1, 25, dtype=torch.float32).expand(3, 24))
    torch.testing.assert_close(fixed, per_parcel)
    # per-parcel positions take priority over the fixed ones
    assert (fixed - one_to_t).abs().max() > 1e-3


def test_parcels_with_different_calendars_share_a_batch():
    tae = make_tae()
    x = torch.randn(3, 24, 128)
    positions = torch.cumsum(torch.randint(1, 30, (3, 24)), dim=1).float()
    with torch.no_grad():
        batch = tae(x, positions)
        alone = torch.cat([tae(x[i : i + 1], positions[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)


def test_batch_of_one():
    tae = make_tae()
    out, att = tae(torch.randn(1, 24, 128), return_attention=True)
    assert out.shape == (1, 128) and att.shape == (1, 4, 24)


def test_fixed_positions_with_another_length_raises():
    tae = make_tae(len_max_seq=3, positions=[0, 5, 9])
    with pytest.raises(ValueError, match="fixed positions are for 3 dates"):
        tae(torch.randn(2, 4, 128))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(mlp3=(256, 128)), "mlp3"),
        (dict(len_max_seq=3, positions=[0, 1]), "positions"),
    ],
)
def test_bad_configuration_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TemporalAttentionEncoder(**kwargs)


def test_bad_input_raises():
    tae = make_tae()
    with pytest.raises(ValueError, match="x must be"):
        tae(torch.randn(2, 24, 64))
    with pytest.raises(ValueError, match="positions must be"):
        tae(torch.randn(2, 24, 128), torch.zeros(24))
