"""Tests of psetae/losses.py: the focal loss."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from psetae.losses import FocalLoss, focal_loss

FIXTURE = Path(__file__).resolve().parent / "data" / "psetae_reference.npz"


@pytest.mark.parametrize("gamma", ["0.0", "1.0", "2.0"])
def test_matches_reference_fixture(gamma):
    with np.load(FIXTURE, allow_pickle=False) as z:
        logits, targets = torch.from_numpy(z["logits"]), torch.from_numpy(z["targets"])
        expected = json.loads(str(z["meta"]))["focal_loss"][gamma]
    for reference_gradient in (False, True):
        loss = focal_loss(logits, targets, float(gamma), reference_gradient=reference_gradient)
        assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_hand_computed_value():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])  # p_true = 3/4, then 1/2
    target = torch.tensor([1, 0])
    fl = [(1 / 4) ** 2 * -math.log(3 / 4), (1 / 2) ** 2 * -math.log(1 / 2)]
    out = focal_loss(logits, target, gamma=2.0, reduction="none")
    torch.testing.assert_close(out, torch.tensor(fl))
    assert focal_loss(logits, target, gamma=2.0).item() == pytest.approx(sum(fl) / 2)
    assert focal_loss(logits, target, gamma=2.0, reduction="sum").item() == pytest.approx(sum(fl))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gamma_zero_is_cross_entropy(reduction):
    logits, target = torch.randn(16, 7), torch.randint(0, 7, (16,))
    torch.testing.assert_close(
        focal_loss(logits, target, gamma=0.0, reduction=reduction),
        F.cross_entropy(logits, target, reduction=reduction),
    )


def analytic_gradient(logits, target, gamma, reference):
    """d(mean FL)/d(logits) by hand. With s = softmax and p = s[target]:
    dp/dz = p (onehot - s); dFL/dp = gamma (1-p)^(gamma-1) log p - (1-p)^gamma / p, and the
    reference drops the first term."""
    s = torch.softmax(logits.double(), 1)
    onehot = F.one_hot(target, logits.shape[1]).double()
    p = s.gather(1, target[:, None])
    dfl_dp = -((1 - p) ** gamma) / p
    if not reference:
        dfl_dp = dfl_dp + gamma * (1 - p) ** (gamma - 1) * torch.log(p)
    return dfl_dp * p * (onehot - s) / logits.shape[0]


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("reference", [False, True])
def test_gradients(gamma, reference):
    logits = torch.randn(10, 5, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 5, (10,))
    focal_loss(logits, target, gamma, reference_gradient=reference).backward()
    expected = analytic_gradient(logits.detach(), target, gamma, reference)
    torch.testing.assert_close(logits.grad, expected)


def test_default_is_the_exact_gradient():
    logits = torch.randn(10, 5, requires_grad=True)
    target = torch.randint(0, 5, (10,))
    FocalLoss(gamma=2.0)(logits, target).backward()
    torch.testing.assert_close(
        logits.grad.double(), analytic_gradient(logits.detach(), target, 2.0, reference=False)
    )


def test_confident_prediction_keeps_finite_gradient():
    logits = torch.tensor([[0.0, 200.0]], requires_grad=True)  # p_true == 1 in float32
    loss = focal_loss(logits, torch.tensor([1]), gamma=0.5)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_alpha_weights():
    logits, target = torch.randn(12, 4), torch.randint(0, 4, (12,))
    alpha = torch.tensor([0.1, 0.2, 0.3, 0.4])
    plain = focal_loss(logits, target, 1.0, reduction="none")
    torch.testing.assert_close(
        focal_loss(logits, target, 1.0, alpha=alpha, reduction="none"), alpha[target] * plain
    )
    torch.testing.assert_close(focal_loss(logits, target, 1.0, alpha=0.25), 0.25 * plain.mean())
    module = FocalLoss(1.0, alpha=alpha)
    assert "alpha" in module.state_dict()
    torch.testing.assert_close(module(logits, target), (alpha[target] * plain).mean())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(gamma=-1.0), "gamma"),
        (dict(reduction="avg"), "reduction"),
        (dict(alpha=torch.ones(3)), "alpha"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        focal_loss(torch.randn(2, 4), torch.tensor([0, 1]), **kwargs)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="logits must be"):
        focal_loss(torch.randn(2, 4), torch.tensor([0, 1, 2]))


def test_module_accepts_int_and_list_alpha():
    logits, target = torch.randn(6, 3), torch.randint(0, 3, (6,))
    plain = focal_loss(logits, target, 2.0, reduction="none")
    torch.testing.assert_close(FocalLoss(2.0, alpha=2)(logits, target), 2 * plain.mean())
    weights = [1.0, 0.5, 3.0]
    torch.testing.assert_close(
        FocalLoss(2.0, alpha=weights)(logits, target),
        (torch.tensor(weights)[target] * plain).mean(),
    )
