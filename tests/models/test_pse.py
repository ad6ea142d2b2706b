"""Tests of psetae/models/pse.py: the Pixel-Set Encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from psetae.models.pse import PixelSetEncoder, masked_pool, parse_pooling

from .naive_psetae import naive_pse, random_batch, randomise_batchnorm


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_default_parameter_count():
    # SPEC: 416 + 2240 (MLP1) + 17280 (MLP2)
    assert n_params(PixelSetEncoder()) == 19936


@pytest.mark.parametrize(
    ("kwargs", "C", "E"),
    [
        ({}, 10, 4),
        (dict(input_dim=3, mlp1=(3, 8), pooling="max_min", mlp2=(16, 12), extra_size=0), 3, 0),
        (
            dict(
                input_dim=5,
                mlp1=(5, 7, 9, 6),
                pooling="std_max_mean_min",
                mlp2=(26, 11, 8),
                extra_size=2,
            ),
            5,
            2,
        ),
        (dict(input_dim=10, mlp1=(10, 16), pooling="min", mlp2=(16, 4), extra_size=0), 10, 0),
    ],
)
@pytest.mark.parametrize("fast", [True, False])
def test_eval_matches_naive_computation(kwargs, C, E, fast):
    pse = PixelSetEncoder(**kwargs)
    pse.fast = fast
    randomise_batchnorm(pse)
    pse.eval()
    pixels, mask, extra = random_batch(B=3, T=4, C=C, S=9, E=E)
    mask[0, 0] = 0
    mask[0, 0, 0] = 1  # a set of one pixel
    with torch.no_grad():
        out = pse(pixels, mask, extra)
    expected = naive_pse(pse, pixels, mask, extra)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.double().numpy(), expected, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("fast", [True, False])
def test_train_mode_batch_statistics_over_all_pixels(fast):
    # SPEC: in training, BatchNorm statistics run over all pixels, padded copies included.
    pse = PixelSetEncoder(input_dim=4, mlp1=(4, 6), mlp2=(16, 5), extra_size=4).train()
    pse.fast = fast
    pixels, mask, extra = random_batch(B=2, T=3, C=4, S=8, E=4)
    out = pse(pixels, mask, extra)
    expected = naive_pse(pse, pixels, mask, extra, batch_stats=True)
    np.testing.assert_allclose(out.detach().double().numpy(), expected, atol=1e-4, rtol=1e-4)


def test_single_pixel_std_is_zero_and_mean_is_the_pixel():
    pse = PixelSetEncoder(input_dim=2, mlp1=(2, 3), pooling="mean_std", mlp2=(6, 4), extra_size=0)
    pse.eval()
    h = torch.tensor([[1.0, 2.0, 3.0]])  # (1, D): pixel embedding
    from psetae.models.pse import masked_pool

    pooled = masked_pool(
        h[:, None, :].expand(1, 4, 3).contiguous(), torch.tensor([[1.0, 0, 0, 0]]), ["mean", "std"]
    )
    torch.testing.assert_close(
        pooled, torch.tensor([[1.0, 2.0, 3.0, 0.0, 0.0, 0.0]]), atol=1e-12, rtol=0
    )


def test_pooling_hand_computed():
    from psetae.models.pse import masked_pool

    h = torch.tensor([[[1.0], [3.0], [8.0], [100.0]]])  # (1, S=4, D=1); last pixel padding
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    out = masked_pool(h, mask, ["mean", "std", "max", "min"])
    # mean 4, unbiased variance ((9 + 1 + 16) / 2) = 13
    expected = torch.tensor([[4.0, 13.0**0.5, 8.0, 1.0]])
    torch.testing.assert_close(out, expected)


def test_pixel_permutation_invariance():
    pse = PixelSetEncoder(pooling="mean_std_max_min", mlp2=(260, 128))
    randomise_batchnorm(pse)
    pse.eval()
    pixels, mask, extra = random_batch(B=2, T=3, S=12)
    perm = torch.randperm(12)
    with torch.no_grad():
        a = pse(pixels, mask, extra)
        b = pse(pixels[..., perm], mask[..., perm], extra)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("pooling", ["mean", "std", "max", "min", "mean_std_max_min"])
def test_padded_pixel_values_do_not_matter(pooling, fast):
    # Issue 9: each pooling alone, too (pooling="mean" once ignored the mask).
    parts = len(pooling.split("_"))
    pse = PixelSetEncoder(pooling=pooling, mlp2=(parts * 64 + 4, 128))
    pse.fast = fast
    randomise_batchnorm(pse)
    pse.eval()
    pixels, mask, extra = random_batch(B=3, T=2, S=10, min_valid=1)
    assert (mask == 0).any()
    other = torch.where(mask[:, :, None, :] > 0, pixels, 1e3 * torch.randn_like(pixels))
    with torch.no_grad():
        torch.testing.assert_close(pse(pixels, mask, extra), pse(other, mask, extra))


def test_batch_of_one_in_eval_and_train():
    pse = PixelSetEncoder()
    pixels, mask, extra = random_batch(B=1, T=3, S=5)
    assert pse.train()(pixels, mask, extra).shape == (1, 3, 128)
    pixels, mask, extra = random_batch(B=1, T=1, S=1)
    assert pse.eval()(pixels, mask, extra).shape == (1, 1, 128)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p, m, e: (p[:, :, :3], m, e), "pixels"),
        (lambda p, m, e: (p, m[:, :, :2], e), "mask"),
        (lambda p, m, e: (p, m, None), "extra"),
        (lambda p, m, e: (p, m, e[:, :, :2]), "extra"),
        (lambda p, m, e: (p, torch.zeros_like(m), e), "no valid pixel"),
    ],
)
def test_bad_input_raises_clear_errors(change, message):
    pse = PixelSetEncoder()
    with pytest.raises(ValueError, match=message):
        pse(*change(*random_batch(B=2, T=2, S=4)))


def test_extra_given_without_extra_size_raises():
    pse = PixelSetEncoder(mlp2=(128, 128), extra_size=0)
    with pytest.raises(ValueError, match="extra_size = 0"):
        pse(*random_batch(B=2, T=2, S=4))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(pooling="mean_median"),
        dict(pooling="mean_mean", mlp2=(132, 128)),
        dict(pooling=""),
        dict(mlp2=(130, 128)),
        dict(input_dim=4),
        dict(extra_size=-1),
    ],
)
def test_bad_configuration_raises(kwargs):
    with pytest.raises(ValueError):
        PixelSetEncoder(**kwargs)


def test_parse_pooling_keeps_order():
    assert parse_pooling("std_min_mean") == ["std", "min", "mean"]


def test_pooling_in_half_precision_keeps_gradients_finite():
    # Under CUDA autocast MLP1 yields float16; a one-pixel set must not get a nan gradient.
    h = torch.randn(3, 4, 5).half().requires_grad_()  # (N, S, D)
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.float32)
    pooled = masked_pool(h, mask, ["mean", "std"])  # (N, 2D)
    pooled.sum().backward()
    assert torch.isfinite(h.grad).all()
    expected = masked_pool(h.detach().float(), mask, ["mean", "std"])
    torch.testing.assert_close(pooled, expected)
