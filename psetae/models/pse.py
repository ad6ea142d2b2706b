"""The Pixel-Set Encoder (PSE): one vector per (parcel, date) from an unordered set of pixels.

For every parcel and date independently (SPEC, "Pixel-Set Encoder"):

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

from psetae.models.mlp import mlp

POOLINGS = ("mean", "std", "max", "min")


def _is_compiling() -> bool:
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)  # torch >= 2.3
    return bool(is_compiling is not None and is_compiling())


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


class MaskedMeanStd(torch.autograd.Function):
    """Mean and unbiased standard deviation of each set over its valid pixels.

    ``mean = sum_s m_s h_s / n`` and ``std = sqrt(sum_s m_s (h_s - mean)^2 / max(n-1, 1) + 1e-31)``
    (SPEC). Autograd through these formulas would store and re-read several (N, S, D)
    temporaries; the gradient has a closed form computed in one sweep instead:

        d mean / d h_s = m_s / n,    d std / d h_s = m_s (h_s - mean) / (max(n-1, 1) std)

    (the term through ``mean`` vanishes because ``sum_s m_s (h_s - mean) = 0``).

    The centred pixels ``h - mean`` are needed in both passes. On CPU they are computed a
    few sets at a time: a chunk's temporary stays in cache, while a full (N, S, D) one
    (50 MB in a default training batch) would be a fresh allocation, page-faulted in and
    streamed through memory. Chunks of sets give exactly the same numbers.
    """

    # Floats per temporary on CPU (2 MiB): as large as the eval-mode chunks of PixelSetEncoder,
    # so those are not split again.
    chunk_elements = 1 << 19

    @staticmethod
    def chunk_sets(h: torch.Tensor) -> int:
        """Sets per chunk: all of them off CPU, where one large kernel is best."""
        if h.device.type != "cpu":
            return h.shape[0]
        return max(1, MaskedMeanStd.chunk_elements // (h.shape[1] * h.shape[2]))

    @staticmethod
    def forward(ctx, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = mask.to(h.dtype).unsqueeze(1)  # (N, 1, S)
        n = m.sum(dim=2)  # (N, 1) valid pixels per set
        # A masked sum over pixels is a (1, S) x (S, D) matrix product per set.
        mean = torch.bmm(m, h).squeeze(1) / n  # (N, D)
        k = MaskedMeanStd.chunk_sets(h)
        sq = torch.cat(
            [
                torch.bmm(mc, (hc - meanc.unsqueeze(1)).square_())  # (k, 1, D)
                for hc, mc, meanc in zip(h.split(k), m.split(k), mean.split(k), strict=True)
            ]
        ).squeeze(1)  # (N, D)
        # A single pixel gives sqrt(1e-31) ~ 0, as in the reference.
        std = torch.sqrt(sq / (n - 1).clamp(min=1) + 1e-31)  # (N, D)
        ctx.save_for_backward(h, m, n, mean, std)
        return mean, std

    @staticmethod
    def backward(ctx, g_mean: torch.Tensor, g_std: torch.Tensor) -> tuple[torch.Tensor, None]:
        h, m, n, mean, std = ctx.saved_tensors
        a = (g_mean / n).unsqueeze(1)  # (N, 1, D)
        b = (g_std / ((n - 1).clamp(min=1) * std)).unsqueeze(1)  # (N, 1, D)
        valid = m.transpose(1, 2)  # (N, S, 1)
        grad = torch.empty_like(h)  # (N, S, D), filled chunk by chunk
        k = MaskedMeanStd.chunk_sets(h)
        chunks = zip(*(t.split(k) for t in (grad, h, mean, a, b, valid)), strict=True)
        for out, hc, meanc, ac, bc, vc in chunks:
            torch.addcmul(ac, hc - meanc.unsqueeze(1), bc, out=out)  # (k, S, D)
            out.mul_(vc)  # zero on padded pixels
        return grad, None


def masked_pool(h: torch.Tensor, mask: torch.Tensor, parts: Sequence[str]) -> torch.Tensor:
    """Pool a batch of pixel sets over their valid pixels.

    Parameters
    ----------
    h
        Pixel embeddings (N, S, D), channel last.
    mask
        (N, S), 1 for a valid pixel and 0 for padding; every set needs one valid pixel.
    parts
        Poolings to compute, concatenated in this order.

    Returns
    -------
    torch.Tensor
        (N, len(parts) * D).
    """
    # Pool in float32, also under mixed precision (CUDA): in float16 the std's 1e-31 rounds to
    # 0, and a set of one pixel would get 0 * inf = nan as gradient.
    h = h.float()  # (N, S, D); no copy when h is float32 already
    out = {}
    if "std" in parts:
        out["mean"], out["std"] = MaskedMeanStd.apply(h, mask)  # (N, D) each
    elif "mean" in parts:
        m = mask.to(h.dtype).unsqueeze(1)  # (N, 1, S)
        out["mean"] = torch.bmm(m, h).squeeze(1) / m.sum(dim=2)  # (N, D)
    if "max" in parts or "min" in parts:
        invalid = (mask == 0).unsqueeze(2)  # (N, S, 1)
        if "max" in parts:
            out["max"] = h.masked_fill(invalid, float("-inf")).amax(dim=1)  # (N, D)
        if "min" in parts:
            out["min"] = h.masked_fill(invalid, float("inf")).amin(dim=1)  # (N, D)
    return torch.cat([out[p] for p in parts], dim=1)


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
        self.chunk_pixels = 8192  # pixels per chunk in eval mode on CPU (about 2 MB of floats)

    def embed_and_pool(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MLP1 on every pixel, then pooling: (N, S, C) and (N, S) -> (N, P*D)."""
        h = self.mlp1(x)  # (N, S, D)
        return masked_pool(h, mask, self.pooling)  # (N, P*D)

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
        B, T, C, S = pixels.shape
        # Data-dependent check: skipped under torch.compile, where it would break the graph.
        if not _is_compiling() and bool((mask.sum(dim=2) <= 0).any()):
            raise ValueError("mask: some (parcel, date) has no valid pixel (mask all zero)")

        # Channel last, so that MLP1 is one matrix product over all B*T*S pixels.
        x = pixels.transpose(2, 3).reshape(B * T, S, C).contiguous()  # (B*T, S, C)
        m = mask.reshape(B * T, S)  # (B*T, S)
        if self.training or x.device.type != "cpu":
            pooled = self.embed_and_pool(x, m)  # (B*T, P*D)
        else:
            # Eval-mode BatchNorm treats every row alone, so chunks of sets give the same
            # result; on CPU their activations then stay in cache, which is several times
            # faster than streaming (B*T, S, D) tensors through memory after every step.
            n = max(1, self.chunk_pixels // S)
            pooled = torch.cat(
                [self.embed_and_pool(xc, mc) for xc, mc in zip(x.split(n), m.split(n), strict=True)]
            )  # (B*T, P*D)
        pooled = pooled.view(B, T, -1)  # (B, T, P*D)
        if self.extra_size:
            pooled = torch.cat([pooled, extra.to(pooled.dtype)], dim=2)  # (B, T, P*D + E)
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
