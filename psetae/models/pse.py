"""The Pixel-Set Encoder (PSE): one vector per (parcel, date) from an unordered set of pixels.

For every parcel and date independently (book/contract.md, "The Pixel-Set Encoder"):

1. MLP1 embeds each pixel: (C,) -> (D,), shared by all pixels;
2. the set is pooled over its valid pixels (mean, std, max, min: any combination);
3. the parcel's extra (geometric) features are appended;
4. MLP2 maps the pooled vector to the output size d.

Pooling is symmetric, so the output does not depend on the order of the pixels, and it
only looks at the valid pixels, so padding never changes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from psetae.models.fast import embed_and_pool, masked_mean_std, mlp_forward
from psetae.models.mlp import mlp

POOLINGS = ("mean", "std", "max", "min")


def parse_pooling(pooling: str) -> list[str]:
    """Split a pooling string such as ``"mean_std"`` into its parts, checking each.

    Raises
    ------
    ValueError
        If the string is empty, names an unknown pooling or repeats one.
    """
    parts = pooling.split("_") if pooling else []
    unknown = [p for p in parts if p not in POOLINGS]
    if not parts or unknown or len(set(parts)) != len(parts):
        raise ValueError(
            f"pooling {pooling!r} must join distinct parts of {POOLINGS} with '_', e.g. 'mean_std'"
        )
    return parts


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid pixels: h (..., S, D), mask (..., S) -> (..., D)."""
    m = mask.unsqueeze(-1)  # (..., S, 1)
    n = m.sum(dim=-2)  # (..., 1) valid pixels
    return (m * h).sum(dim=-2) / n  # (..., D)


def masked_std(h: torch.Tensor, mask: torch.Tensor, eps: float = 1e-31) -> torch.Tensor:
    """Unbiased standard deviation over the valid pixels: (..., S, D), (..., S) -> (..., D).

    ``eps`` keeps the gradient of a one-pixel set finite: its variance is 0 and the
    derivative of sqrt at 0 is infinite.
    """
    m = mask.unsqueeze(-1)  # (..., S, 1)
    n = m.sum(dim=-2)  # (..., 1)
    mu = masked_mean(h, mask).unsqueeze(-2)  # (..., 1, D)
    var = (m * (h - mu) ** 2).sum(dim=-2) / torch.clamp(n - 1, min=1)  # (..., D)
    return torch.sqrt(var + eps)  # (..., D)


def masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Maximum over the valid pixels: (..., S, D), (..., S) -> (..., D)."""
    return h.masked_fill(mask.unsqueeze(-1) == 0, float("-inf")).amax(dim=-2)  # (..., D)


def masked_min(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Minimum over the valid pixels: (..., S, D), (..., S) -> (..., D)."""
    return h.masked_fill(mask.unsqueeze(-1) == 0, float("inf")).amin(dim=-2)  # (..., D)


POOL = {"mean": masked_mean, "std": masked_std, "max": masked_max, "min": masked_min}


def masked_pool(
    h: torch.Tensor, mask: torch.Tensor, parts: Sequence[str], fast: bool = False
) -> torch.Tensor:
    """Pool pixel sets over their valid pixels.

    Parameters
    ----------
    h
        Pixel embeddings (..., S, D), channel last.
    mask
        (..., S), 1 for a valid pixel and 0 for padding; every set needs one valid pixel.
    parts
        Poolings to compute, concatenated in this order.
    fast
        Compute the mean and std with :func:`psetae.models.fast.masked_mean_std` (the same
        values in fewer passes over memory).

    Returns
    -------
    torch.Tensor
        (..., len(parts) * D).
    """
    # Pool in float32, also under mixed precision (CUDA): in float16 the std's 1e-31 rounds to
    # 0, and a set of one pixel would get 0 * inf = nan as gradient.
    h = h.float()  # (..., S, D); no copy when h is float32 already
    mask = mask.to(h.dtype)  # (..., S)
    out = {}
    if fast and "std" in parts:
        out["mean"], out["std"] = masked_mean_std(h, mask)  # (..., D) each
    for p in parts:
        if p not in out:
            out[p] = POOL[p](h, mask)  # (..., D)
    return torch.cat([out[p] for p in parts], dim=-1)  # (..., P*D)


class PixelSetEncoder(nn.Module):
    """Pixel-Set Encoder: (B, T, C, S) pixel sets -> (B, T, d) embeddings.

    Parameters
    ----------
    input_dim
        Spectral channels C; must equal ``mlp1[0]``.
    mlp1
        Widths of the pixel MLP, ``[C, ..., D]`` (ReLU after every layer).
    pooling
        Poolings joined by ``_`` from ``mean``, ``std``, ``max``, ``min``.
    mlp2
        Widths of the set MLP; ``mlp2[0]`` must be ``len(pooling parts) * D + extra_size``.
        One width means no layer: the pooled vector is the output (the reference allows it).
    extra_size
        Number E of extra features appended after pooling; 0 for none.

    Raises
    ------
    ValueError
        If the widths do not fit together or the pooling string is invalid.
    """

    def __init__(
        self,
        input_dim: int = 10,
        mlp1: Sequence[int] = (10, 32, 64),
        pooling: str = "mean_std",
        mlp2: Sequence[int] = (132, 128),
        extra_size: int = 4,
    ) -> None:
        super().__init__()
        self.pooling = parse_pooling(pooling)
        if mlp1[0] != input_dim:
            raise ValueError(f"mlp1[0] = {mlp1[0]} must equal input_dim = {input_dim}")
        if extra_size < 0:
            raise ValueError(f"extra_size must be >= 0, got {extra_size}")
        expected = len(self.pooling) * mlp1[-1] + extra_size
        if mlp2[0] != expected:
            raise ValueError(
                f"mlp2[0] = {mlp2[0]} must be len(pooling) * mlp1[-1] + extra_size = "
                f"{len(self.pooling)} * {mlp1[-1]} + {extra_size} = {expected}"
            )
        self.input_dim = input_dim
        self.extra_size = extra_size
        self.mlp1 = mlp(mlp1, relu_last=True)
        self.mlp2 = mlp(mlp2, relu_last=False) if len(mlp2) > 1 else nn.Sequential()
        self.out_dim = int(mlp2[-1])
        # Run MLP1 and the pooling through psetae.models.fast: the same function, faster.
        # False gives the plain code above (psetae.models.fast.use_fast(model, False)).
        self.fast = True
        # Pixels per chunk of the fast eval path on CPU: 2 MB of activations at D = 64, in
        # a core's cache.
        self.chunk_pixels = 8192

    def pool_fast(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The fast path's pooling: (N, S, D), (N, S) -> (N, P*D)."""
        return masked_pool(h, mask, self.pooling, fast=True)

    def forward(
        self, pixels: torch.Tensor, mask: torch.Tensor, extra: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Encode every (parcel, date) pixel set.

        Parameters
        ----------
        pixels
            (B, T, C, S) reflectances.
        mask
            (B, T, S), 1 for a valid pixel, 0 for padding.
        extra
            (B, T, E) extra features, required iff ``extra_size > 0``.

        Returns
        -------
        torch.Tensor
            (B, T, d) with d = ``mlp2[-1]``.

        Raises
        ------
        ValueError
            If a shape does not match, ``extra`` is missing or unexpected, or a
            (parcel, date) has no valid pixel.
        """
        check_inputs(pixels, mask, extra, self.input_dim, self.extra_size)
        # Data-dependent check: skipped under torch.compile, where it would break the graph.
        if not torch.compiler.is_compiling() and bool((mask.sum(dim=2) <= 0).any()):
            raise ValueError("mask: some (parcel, date) has no valid pixel (mask all zero)")

        if self.fast and not self.training and pixels.device.type == "cpu":
            pooled = embed_and_pool(
                self.mlp1, pixels, mask, self.pool_fast, self.chunk_pixels
            )  # (B, T, P*D)
        else:
            # Channel last, one row per pixel: MLP1 is one matrix product over all pixels.
            x = pixels.transpose(2, 3)  # (B, T, S, C)
            h = mlp_forward(self.mlp1, x) if self.fast else self.mlp1(x)  # (B, T, S, D)
            pooled = masked_pool(h, mask, self.pooling, fast=self.fast)  # (B, T, P*D)
        if self.extra_size:
            pooled = torch.cat([pooled, extra.to(pooled.dtype)], dim=-1)  # (B, T, P*D + E)
        return self.mlp2(pooled)  # (B, T, d)


def check_inputs(
    pixels: torch.Tensor,
    mask: torch.Tensor,
    extra: torch.Tensor | None,
    input_dim: int,
    extra_size: int,
) -> None:
    """Raise a ValueError naming the argument whose shape does not fit the batch contract."""
    if pixels.dim() != 4 or pixels.shape[2] != input_dim:
        raise ValueError(
            f"pixels must be (B, T, C={input_dim}, S), got shape {tuple(pixels.shape)}"
        )
    B, T, _, S = pixels.shape
    if tuple(mask.shape) != (B, T, S):
        raise ValueError(f"mask must be (B, T, S) = {(B, T, S)}, got {tuple(mask.shape)}")
    if extra_size and extra is None:
        raise ValueError(f"extra (B, T, {extra_size}) is required: the model has extra_size > 0")
    if not extra_size and extra is not None:
        raise ValueError("extra was given but the model has extra_size = 0")
    if extra is not None and tuple(extra.shape) != (B, T, extra_size):
        raise ValueError(
            f"extra must be (B, T, E) = {(B, T, extra_size)}, got {tuple(extra.shape)}"
        )
