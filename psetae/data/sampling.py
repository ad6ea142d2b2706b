"""Sampling S pixels of one parcel, with its mask (the rules of the book's contract page, book/contract.md).

- more than S pixels: S drawn at random without replacement, mask all ones;
- 1 to S pixels: all of them in their stored order, padded to S by repeating the first
  pixel, mask 1 for the real pixels and 0 for the padding;
- no pixel: zeros, with mask[0] = 1 so that pooling has one (zero) pixel to work on.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["sample_indices", "sample_pixels", "jitter"]


def sample_indices(n: int, s: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Which of a parcel's ``n`` pixels fill the ``s`` slots, and the mask.

    Parameters
    ----------
    n
        Number of pixels of the parcel (may be 0).
    s
        Number of pixels to return (S).
    rng
        Source of randomness for the draw when ``n > s``.

    Returns
    -------
    (index, mask)
        ``index`` int64 (s,) into the parcel's pixels (empty if ``n == 0``) and ``mask``
        float32 (s,).
    """
    if s < 1:
        raise ValueError(f"the number of sampled pixels must be >= 1, not {s}")
    mask = np.ones(s, dtype=np.float32)
    if n > s:
        return rng.choice(n, size=s, replace=False), mask
    if n == 0:
        mask[1:] = 0.0
        return np.empty(0, dtype=np.int64), mask
    index = np.zeros(s, dtype=np.int64)  # padding repeats pixel 0
    index[:n] = np.arange(n)
    mask[n:] = 0.0
    return index, mask


def sample_pixels(x: np.ndarray, s: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``s`` pixels of one parcel.

    Parameters
    ----------
    x
        The parcel, (T, C, n), any dtype.
    s
        Number of pixels to return (S).
    rng
        Source of randomness when ``n > s``.

    Returns
    -------
    (pixels, mask)
        ``pixels`` (T, C, s) with the dtype of ``x`` and ``mask`` float32 (s,).
    """
    t, c, n = x.shape
    index, mask = sample_indices(n, s, rng)
    if n == 0:
        return np.zeros((t, c, s), dtype=x.dtype), mask
    return x[:, :, index], mask  # (T, C, S)


def jitter(
    x: torch.Tensor, sigma: float, clip: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Add Gaussian noise N(0, sigma^2) clipped to [-clip, clip] to ``x``, in place.

    torch draws normal numbers about four times faster than numpy on CPU, and jitter is
    the largest cost of a training item.
    """
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    noise.mul_(sigma).clamp_(-clip, clip)
    return x.add_(noise)
