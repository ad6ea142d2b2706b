"""Speed-only machinery of the Pixel-Set Encoder: the same function in fewer passes over memory.

Nothing here changes what the model computes: ``tests/models/test_fast.py`` checks both
paths equal, outputs and gradients, in training and eval mode. The plain path (the book's
code, in :mod:`psetae.models.mlp` and :mod:`psetae.models.pse`) is what to read; this
module is what runs by default, because MLP1 and the pooling touch every pixel: in a
default batch (B=128, T=24, S=64) an (N, S, D) activation is 50 MB, and each elementwise
pass over it costs about as much as the matrix products.

What it does, and why:

- :func:`mlp_forward`: in eval mode BatchNorm is a fixed affine map per channel, so it is
  folded into the Linear's weight and bias (one pass instead of two); the ReLU runs in place
  (no new 50 MB tensor). In training mode the layers run as written, ReLU in place.
- :class:`MaskedMeanStd`: the mean and std of each set with a closed-form backward, computed
  in one sweep; autograd through the plain formulas stores and re-reads several (N, S, D)
  temporaries.

- :func:`embed_and_pool`: in eval mode on CPU, MLP1 and the pooling a chunk of sets at a
  time, on one thread, so that the activations stay in cache.

Elsewhere every step is one large operation over the whole batch: on a machine shared with
other processes each parallel region waits at a barrier for threads the scheduler has taken
away, so many small regions make a shared machine many times slower (issue 13;
``benchmarks/bench_models.py --competitor torch``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from psetae.models.mlp import LinearBlock


def folded(block: LinearBlock) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (out, in) and bias (out,) of Linear followed by eval-mode BatchNorm."""
    bn = block.norm
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (out,)
    weight = block.linear.weight * scale[:, None]  # (out, in)
    bias = (block.linear.bias - bn.running_mean) * scale + bn.bias  # (out,)
    return weight, bias


def mlp_forward(blocks: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Run a stack of :class:`LinearBlock` on ``x`` (..., C): ``blocks(x)``, faster.

    Parameters
    ----------
    blocks
        An :func:`~psetae.models.mlp.mlp`.
    x
        (..., blocks[0].linear.in_features).

    Returns
    -------
    torch.Tensor
        (..., out), equal to ``blocks(x)`` up to rounding.
    """
    lead = x.shape[:-1]
    z = x.reshape(-1, x.shape[-1])  # (rows, C)
    for block in blocks:
        if block.training or block.norm.running_mean is None:
            z = block.norm(block.linear(z))  # (rows, out), batch statistics
        else:
            z = F.linear(z, *folded(block))  # (rows, out), running statistics folded in
        if block.relu:
            # In place: BatchNorm's and Linear's backward need their inputs, not this output.
            z = torch.relu_(z)
    return z.view(*lead, z.shape[-1])  # (..., out)


def embed_and_pool(
    blocks: nn.Sequential,
    pixels: torch.Tensor,
    mask: torch.Tensor,
    pool: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    chunk_pixels: int,
) -> torch.Tensor:
    """MLP1 then pooling, ``pool(mlp_forward(blocks, x), mask)``, a chunk of sets at a time.

    Parameters
    ----------
    blocks
        MLP1, an :func:`~psetae.models.mlp.mlp`.
    pixels
        (B, T, C, S) pixel sets.
    mask
        (B, T, S).
    pool
        (N, S, D), (N, S) -> (N, P*D), e.g. :func:`~psetae.models.pse.masked_pool`.
    chunk_pixels
        Pixels per chunk; all at once if the batch has no more.

    Returns
    -------
    torch.Tensor
        (B, T, P*D).

    Notes
    -----
    Every row of eval-mode MLP1 is computed alone, so chunks of sets give the same result.
    On CPU a chunk's activations then stay in cache, several times faster than streaming
    (B*T, S, D) tensors through memory after every step. The chunks run on one thread
    (:func:`one_thread`).
    """
    B, T, C, S = pixels.shape
    x = pixels.reshape(B * T, C, S)  # (N, C, S)
    m = mask.reshape(B * T, S)  # (N, S)
    n = max(1, chunk_pixels // S)  # sets per chunk
    with one_thread():
        pooled = [
            pool(mlp_forward(blocks, xc.transpose(1, 2)), mc)  # (n, P*D)
            for xc, mc in zip(x.split(n), m.split(n), strict=True)
        ]
    return torch.cat(pooled).view(B, T, -1)  # (B, T, P*D)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the enclosed operations on one torch thread, then restore the thread count.

    The chunks of :func:`embed_and_pool` are small: split among threads, each operation
    would be a parallel region ending at a barrier, hundreds per batch, and on a machine
    shared with other processes every barrier waits for a thread that the scheduler has
    taken away (issue 13: 57 times slower next to another 2-thread process). In cache, one
    thread does the work almost as fast as two.
    """
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class MaskedMeanStd(torch.autograd.Function):
    """Mean and unbiased std of each set over its valid pixels, with a closed-form gradient.

    ``mean = sum_s m_s h_s / n`` and ``std = sqrt(sum_s m_s (h_s - mean)^2 / max(n-1, 1) + 1e-31)``
    (book/contract.md), and

        d mean / d h_s = m_s / n,    d std / d h_s = m_s (h_s - mean) / (max(n-1, 1) std)

    (the term through ``mean`` vanishes because ``sum_s m_s (h_s - mean) = 0``).
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = mask.to(h.dtype).unsqueeze(1)  # (N, 1, S)
        n = m.sum(dim=2)  # (N, 1) valid pixels per set
        # A masked sum over pixels is a (1, S) x (S, D) matrix product per set.
        mean = torch.bmm(m, h).squeeze(1) / n  # (N, D)
        centred = (h - mean.unsqueeze(1)).square_()  # (N, S, D)
        sq = torch.bmm(m, centred).squeeze(1)  # (N, D)
        std = torch.sqrt(sq / (n - 1).clamp(min=1) + 1e-31)  # (N, D); one pixel gives ~0
        ctx.save_for_backward(h, m, n, mean, std)
        return mean, std

    @staticmethod
    def backward(ctx, g_mean: torch.Tensor, g_std: torch.Tensor) -> tuple[torch.Tensor, None]:
        h, m, n, mean, std = ctx.saved_tensors
        a = (g_mean / n).unsqueeze(1)  # (N, 1, D)
        b = (g_std / ((n - 1).clamp(min=1) * std)).unsqueeze(1)  # (N, 1, D)
        grad = torch.addcmul(a, h - mean.unsqueeze(1), b)  # (N, S, D)
        return grad.mul_(m.transpose(1, 2)), None  # zero on padded pixels


def masked_mean_std(h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over the valid pixels: h (..., S, D), mask (..., S) -> 2 x (..., D).

    The same values as :func:`psetae.models.pse.masked_mean` and
    :func:`~psetae.models.pse.masked_std`.
    """
    S, D = h.shape[-2:]
    lead = h.shape[:-2]
    mean, std = MaskedMeanStd.apply(h.reshape(-1, S, D), mask.reshape(-1, S))  # (N, D) each
    return mean.view(*lead, D), std.view(*lead, D)


def use_fast(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch every Pixel-Set Encoder in ``model`` to this module's path or to the plain one.

    Both compute the same function; the plain path is the book's code. Returns ``model``.
    """
    for module in model.modules():
        if isinstance(getattr(module, "fast", None), bool):
            module.fast = enabled
    return model


def compile_model(model: nn.Module, fast: bool = False, **options: object) -> nn.Module:
    """``torch.compile(model)``, for long runs where its one-off compile time pays.

    Parameters
    ----------
    model
        Any module of :mod:`psetae.models`.
    fast
        Keep this module's path inside the compiled graph; by default the plain path is
        compiled, whose elementwise steps the compiler fuses itself.
    **options
        Passed to :func:`torch.compile` (``mode``, ``dynamic``, ...).

    Returns
    -------
    nn.Module
        The compiled module (it shares ``model``'s parameters).
    """
    use_fast(model, fast)
    return torch.compile(model, **options)
