"""Tests of psetae/data/sampling.py: the S-pixel sampling rules of SPEC.md, and jitter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from psetae.data.sampling import jitter, sample_indices, sample_pixels


def _parcel(n: int) -> np.ndarray:
    # Pixel j holds the value 1000 * t + 100 * c + j: every column is recognisable.
    t, c = np.meshgrid(np.arange(3), np.arange(2), indexing="ij")
    return (1000 * t + 100 * c)[:, :, None] + np.arange(n)[None, None, :]  # (3, 2, n)


def test_more_pixels_than_s_draws_without_replacement():
    x = _parcel(100)
    pixels, mask = sample_pixels(x, 16, np.random.default_rng(0))
    assert pixels.shape == (3, 2, 16) and mask.shape == (16,)
    np.testing.assert_array_equal(mask, np.ones(16))
    chosen = pixels[0, 0]  # at t = 0, c = 0 the value is the pixel's index
    assert len(set(chosen.tolist())) == 16 and chosen.min() >= 0 and chosen.max() < 100
    np.testing.assert_array_equal(pixels, x[:, :, chosen])


def test_draw_depends_on_the_generator_only():
    a, _ = sample_indices(100, 16, np.random.default_rng(1))
    b, _ = sample_indices(100, 16, np.random.default_rng(1))
    c, _ = sample_indices(100, 16, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_every_pixel_can_be_drawn():
    rng = np.random.default_rng(0)
    seen = np.zeros(10, dtype=bool)
    for _ in range(50):
        seen[sample_indices(10, 3, rng)[0]] = True
    assert seen.all()


def test_fewer_pixels_pad_with_the_first():
    x = _parcel(3)
    pixels, mask = sample_pixels(x, 6, np.random.default_rng(0))
    np.testing.assert_array_equal(mask, [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(pixels[:, :, :3], x)
    for k in range(3, 6):
        np.testing.assert_array_equal(pixels[:, :, k], x[:, :, 0])


def test_exactly_s_pixels_keeps_them_in_order():
    x = _parcel(8)
    pixels, mask = sample_pixels(x, 8, np.random.default_rng(0))
    np.testing.assert_array_equal(pixels, x)
    np.testing.assert_array_equal(mask, np.ones(8))


def test_no_pixel_gives_zeros_and_one_mask():
    x = np.zeros((3, 2, 0), dtype=np.int16)
    pixels, mask = sample_pixels(x, 4, np.random.default_rng(0))
    assert pixels.shape == (3, 2, 4) and pixels.dtype == np.int16
    assert not pixels.any()
    np.testing.assert_array_equal(mask, [1, 0, 0, 0])


def test_one_pixel():
    x = _parcel(1)
    pixels, mask = sample_pixels(x, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(mask, [1, 0, 0])
    np.testing.assert_array_equal(pixels, np.repeat(x, 3, axis=2))


def test_s_must_be_positive():
    with pytest.raises(ValueError, match=">= 1"):
        sample_indices(5, 0, np.random.default_rng(0))


def test_jitter_is_clipped_gaussian():
    t = torch.zeros((100, 1000))
    out = jitter(t, 0.01, 0.05, torch.Generator().manual_seed(0))
    assert out is t and t.dtype == torch.float32  # in place
    x = t.numpy()
    assert np.abs(x).max() <= 0.05
    assert abs(float(x.mean())) < 1e-3
    assert abs(float(x.std()) - 0.01) < 2e-4  # clipping at 5 sigma barely changes the std
    y = jitter(torch.zeros((100, 1000)), 1.0, 0.5, torch.Generator().manual_seed(1)).numpy()
    assert np.abs(y).max() == pytest.approx(0.5)
    # P(|Z| < 0.5) = 0.383 for Z ~ N(0, 1): the rest is clipped to +-0.5.
    assert float(np.mean(np.abs(y) < 0.5)) == pytest.approx(0.383, abs=0.01)


def test_without_replacement_never_repeats_a_pixel():
    # S = n - 1: drawing with replacement would repeat a pixel in all but ~7e-6 of the draws,
    # so 50 seeds tell the two apart deterministically (not by the luck of one seed).
    for seed in range(50):
        index, _ = sample_indices(17, 16, np.random.default_rng(seed))
        assert len(set(index.tolist())) == 16
