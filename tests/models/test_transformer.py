"""Tests of psetae/models/transformer.py: PSE + Transformer encoder."""

from __future__ import annotations

import pytest
import torch

from psetae.models import ConfigError, PseTransformer

from .naive_psetae import naive_pe, random_batch, randomise_batchnorm

PSE = (10 * 32 + 32 + 2 * 32) + (32 * 64 + 64 + 2 * 64) + (132 * 128 + 128 + 2 * 128)
DECODER = (128 * 64 + 64 + 2 * 64) + (64 * 32 + 32 + 2 * 32) + (32 * 20 + 20)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_default_parameter_count_by_hand():
    d, ff = 128, 256
    layer = (
        3 * d * d + 3 * d  # query, key and value projections
        + d * d + d  # output projection
        + d * ff + ff + ff * d + d  # feed-forward
        + 2 * 2 * d  # two LayerNorms
    )  # fmt: skip
    model = PseTransformer()
    assert n_params(model.temporal_encoder) == layer == 132480
    assert n_params(model) == PSE + layer + DECODER == 163604
    assert n_params(PseTransformer(n_layers=2).temporal_encoder) == 2 * layer


def test_encoder_encodes_each_dates_own_day_and_averages_the_dates():
    enc = PseTransformer().temporal_encoder.eval()
    x = torch.randn(2, 7, 128)
    days = torch.tensor([[0, 4, 9, 20, 21, 50, 80], [0, 1, 2, 3, 4, 5, 6]]).float()
    pe = torch.from_numpy(naive_pe(days.numpy(), 128, 1000.0)).float()
    with torch.no_grad():
        torch.testing.assert_close(enc(x, days), enc.layers(x + pe).mean(dim=1))


def test_the_dates_are_a_set_of_days():
    # Self-attention and the mean are symmetric: only the days say when a date was taken.
    model = PseTransformer().eval()
    randomise_batchnorm(model)
    pixels, mask, extra = random_batch(B=2, T=24, S=4)
    days = torch.cumsum(torch.randint(1, 20, (2, 24)), 1).float()
    perm = torch.randperm(24)
    with torch.no_grad():
        a = model(pixels, mask, extra, days)
        b = model(pixels[:, perm], mask[:, perm], extra[:, perm], days[:, perm])
        c = model(pixels[:, perm], mask[:, perm], extra[:, perm], days)
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-4


def test_any_number_of_dates_and_bad_heads():
    model = PseTransformer().eval()
    for T in (5, 40):
        pixels, mask, extra = random_batch(B=2, T=T, S=4)
        assert model(pixels, mask, extra).shape == (2, 20)
    with pytest.raises(ConfigError, match="multiple of n_head = 3"):
        PseTransformer(n_head=3)
