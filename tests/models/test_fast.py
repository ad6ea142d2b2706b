"""Tests of psetae/models/fast.py: the fast path computes what the plain path computes."""

from __future__ import annotations

import copy

import pytest
import torch

from psetae.models import PseTae, compile_model, use_fast
from psetae.models.fast import MaskedMeanStd, masked_mean_std, mlp_forward
from psetae.models.mlp import mlp
from psetae.models.pse import PixelSetEncoder, masked_mean, masked_std

from .naive_psetae import random_batch, randomise_batchnorm


def fast_and_plain(module: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Two copies of ``module`` with the same weights: fast path, plain path."""
    return use_fast(copy.deepcopy(module), True), use_fast(copy.deepcopy(module), False)


def run(module: torch.nn.Module, inputs: tuple[torch.Tensor | None, ...]):
    """Output, and gradients of a random projection of it w.r.t. the pixels and parameters."""
    pixels = inputs[0].clone().requires_grad_()
    out = module(pixels, *inputs[1:])
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    (weights * out).sum().backward()
    grads = {n: p.grad for n, p in module.named_parameters()}
    return out, pixels.grad, grads


SHAPES = [
    dict(B=3, T=5, S=16),
    dict(B=2, T=1, S=1),  # sets of one pixel, one date
    dict(B=2, T=7, S=13),  # odd sizes
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("pooling", ["mean_std", "mean", "std_max", "min_mean_max_std"])
@pytest.mark.parametrize("training", [True, False])
def test_pse_fast_equals_plain(shape, pooling, training):
    parts = len(pooling.split("_"))
    pse = PixelSetEncoder(input_dim=10, mlp1=(10, 12, 9), pooling=pooling, mlp2=(parts * 9 + 4, 6))
    randomise_batchnorm(pse)
    pse.chunk_pixels = 2 * shape["S"]  # several chunks of 2 sets, the last shorter
    fast, plain = fast_and_plain(pse)
    inputs = random_batch(**shape)
    inputs[1][0, 0] = 0
    inputs[1][0, 0, 0] = 1  # a set of one pixel
    out_f, gx_f, gp_f = run(fast.train(training), inputs)
    out_p, gx_p, gp_p = run(plain.train(training), inputs)
    assert out_f.dtype == out_p.dtype == torch.float32
    torch.testing.assert_close(out_f, out_p, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx_f, gx_p, atol=1e-5, rtol=1e-4)
    assert gp_f.keys() == gp_p.keys()
    for name in gp_p:
        torch.testing.assert_close(
            gp_f[name], gp_p[name], atol=1e-5, rtol=1e-4, msg=lambda m, name=name: f"{name}: {m}"
        )
    # Training mode also moves the running statistics, identically.
    for (name, a), b in zip(fast.state_dict().items(), plain.state_dict().values(), strict=True):
        torch.testing.assert_close(
            a, b, atol=1e-6, rtol=1e-5, msg=lambda m, name=name: f"{name}: {m}"
        )


@pytest.mark.parametrize("training", [True, False])
def test_psetae_fast_equals_plain(training):
    model = PseTae(mlp4=(128, 64, 32, 5), dropout=0.0)
    randomise_batchnorm(model)
    fast, plain = fast_and_plain(model)
    for m in (fast, plain):
        m.train(training)
        m.temporal_encoder.attention_dropout.p = 0.0  # dropout would draw differently
    inputs = random_batch(B=4, T=6, S=11)
    out_f, gx_f, gp_f = run(fast, inputs)
    out_p, gx_p, gp_p = run(plain, inputs)
    torch.testing.assert_close(out_f, out_p, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx_f, gx_p, atol=1e-5, rtol=1e-4)
    for name in gp_p:
        # Rounding of sums over all pixels, through four BatchNorms (some gradients are 0 +- 1e-5).
        scale = float(gp_p[name].abs().max())
        torch.testing.assert_close(
            gp_f[name],
            gp_p[name],
            atol=max(1e-4 * scale, 2e-5),
            rtol=1e-3,
            msg=lambda m, n=name: f"{n}: {m}",
        )


def test_use_fast_switches_every_pixel_set_encoder():
    model = PseTae()
    assert model.spatial_encoder.fast  # the default
    assert use_fast(model, False) is model and not model.spatial_encoder.fast
    assert use_fast(model).spatial_encoder.fast


@pytest.mark.parametrize("training", [True, False])
def test_mlp_forward_equals_the_blocks(training):
    blocks = mlp([5, 7, 3], relu_last=False)
    randomise_batchnorm(blocks)
    fast_blocks, plain_blocks = copy.deepcopy(blocks), copy.deepcopy(blocks)
    x = 3 * torch.randn(2, 3, 4, 5)  # (..., C) of rank 4
    a = mlp_forward(fast_blocks.train(training), x)
    b = plain_blocks.train(training)(x)
    assert a.shape == b.shape == (2, 3, 4, 3)
    assert bool((a < 0).any()), "no ReLU after the last block"
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    for u, v in zip(
        fast_blocks.state_dict().values(), plain_blocks.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(u, v)


def test_masked_mean_std_equals_the_plain_formulas_with_gradients():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(2, 2, 6, 3, dtype=torch.float64, generator=g, requires_grad=True)
    mask = torch.tensor(
        [[[1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]], [[1, 0, 1, 0, 1, 0], [1, 1, 1, 0, 0, 0]]],
        dtype=torch.float64,
    )  # (2, 2, 6), with a one-pixel set
    w_mean, w_std = torch.randn(2, 2, 3, dtype=torch.float64), torch.randn(2, 2, 3).double()
    mean, std = masked_mean_std(h, mask)
    (grad,) = torch.autograd.grad((w_mean * mean).sum() + (w_std * std).sum(), h)
    mean_ref, std_ref = masked_mean(h, mask), masked_std(h, mask)
    torch.testing.assert_close(mean, mean_ref)
    torch.testing.assert_close(std, std_ref)
    (expected,) = torch.autograd.grad((w_mean * mean_ref).sum() + (w_std * std_ref).sum(), h)
    torch.testing.assert_close(grad, expected)
    assert bool((grad[0, 1, 1:] == 0).all()), "padding gets no gradient"


def test_masked_mean_std_gradient_by_finite_differences():
    g = torch.Generator().manual_seed(2)
    h = torch.randn(4, 6, 3, dtype=torch.float64, generator=g, requires_grad=True)
    mask = (torch.rand(4, 6, generator=g) < 0.6).double()
    mask[:, :2] = 1  # two valid pixels at least: sqrt is smooth there
    assert torch.autograd.gradcheck(lambda x: MaskedMeanStd.apply(x, mask), (h,))


def test_compile_model_gives_the_same_outputs():
    # The "eager" backend checks the plumbing without the minute-long C++ compile.
    model = PseTae(mlp4=(128, 64, 32, 5)).eval()
    randomise_batchnorm(model)
    pixels, mask, extra = random_batch(B=2, T=3, S=5)
    with torch.no_grad():
        expected = model(pixels, mask, extra)
        compiled = compile_model(copy.deepcopy(model), backend="eager")
        torch.testing.assert_close(compiled(pixels, mask, extra), expected)


def test_one_thread_restores_the_thread_count():
    from psetae.models.fast import one_thread

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError), one_thread():
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
        pse = PixelSetEncoder().eval()
        with torch.no_grad():
            pse(*random_batch(B=2, T=2, S=4))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
