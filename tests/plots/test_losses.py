"""Tests of psetae/plots/losses.py: the closed-form curves and the figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from psetae.plots.losses import (
    focal_loss_curve,
    focal_loss_grad_curve,
    plot_focal_gradients,
    plot_focal_loss,
    plot_per_class_scores,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _autograd(p_t: float, gamma: float, detach: bool) -> tuple[float, float]:
    """Loss and d loss / d z_y by autograd, for a 3-class logit vector with p_t on class 0."""
    # logits (a, 0, 0) give p_0 = e^a / (e^a + 2): choose a for the wanted p_t.
    a = float(np.log(2 * p_t / (1 - p_t)))
    z = torch.tensor([a, 0.0, 0.0], dtype=torch.float64, requires_grad=True)
    logp = torch.log_softmax(z, dim=0)[0]
    factor = (1 - logp.exp()) ** gamma
    if detach:
        factor = factor.detach()
    loss = -factor * logp
    loss.backward()
    return loss.item(), z.grad[0].item()


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("p_t", [0.05, 0.3, 0.7, 0.95])
def test_curves_match_autograd(gamma: float, p_t: float) -> None:
    loss, grad = _autograd(p_t, gamma, detach=False)
    _, grad_detached = _autograd(p_t, gamma, detach=True)
    assert focal_loss_curve(np.array(p_t), gamma) == pytest.approx(loss, rel=1e-9)
    assert focal_loss_grad_curve(np.array(p_t), gamma) == pytest.approx(grad, rel=1e-9)
    assert focal_loss_grad_curve(np.array(p_t), gamma, exact=False) == pytest.approx(
        grad_detached, rel=1e-9
    )


def test_gamma_zero_is_cross_entropy() -> None:
    p = np.array([0.1, 0.5, 0.9])
    np.testing.assert_allclose(focal_loss_curve(p, 0.0), -np.log(p))
    np.testing.assert_allclose(focal_loss_grad_curve(p, 0.0), p - 1)
    np.testing.assert_allclose(focal_loss_grad_curve(p, 0.0, exact=False), p - 1)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="gamma"):
        focal_loss_curve(np.array([0.5]), -1.0)
    with pytest.raises(ValueError, match="p_t"):
        focal_loss_curve(np.array([0.0, 0.5]), 1.0)
    with pytest.raises(ValueError, match="p_t"):
        focal_loss_grad_curve(np.array([1.5]), 1.0)


def test_plot_focal_loss() -> None:
    gammas = (0.0, 1.0, 2.0)
    fig = plot_focal_loss(gammas, n=50)
    ax_loss, ax_grad = fig.axes
    assert len(ax_loss.get_lines()) == 3
    # the gradient axis also has the horizontal zero line
    assert len(ax_grad.get_lines()) == 4
    x, y = ax_loss.get_lines()[0].get_data()
    np.testing.assert_allclose(y, -np.log(x))
    assert ax_loss.get_xlabel() and ax_grad.get_ylabel()


def test_plot_focal_gradients() -> None:
    fig = plot_focal_gradients((1.0, 2.0, 5.0), n=30)
    assert len(fig.axes) == 3
    for ax, gamma in zip(fig.axes, (1.0, 2.0, 5.0), strict=True):
        ce, exact, detached = ax.get_lines()
        p = exact.get_xdata()
        np.testing.assert_allclose(detached.get_ydata(), -((1 - p) ** (gamma + 1)))
        # the exact gradient is never smaller in magnitude than the detached one
        assert np.all(np.abs(exact.get_ydata()) >= np.abs(detached.get_ydata()) - 1e-12)
        np.testing.assert_allclose(ce.get_ydata(), p - 1)


def test_plot_per_class_scores_sorted_by_count() -> None:
    names = ["a", "b", "c"]
    fig = plot_per_class_scores(
        {"g0": [0.1, 0.5, 0.9], "g1": [0.2, np.nan, 0.8]}, names, counts=[5, 50, 20]
    )
    (ax,) = fig.axes
    assert len(ax.containers) == 2
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["b (50)", "c (20)", "a (5)"]
    widths = [bar.get_width() for bar in ax.containers[0]]
    assert widths == pytest.approx([0.5, 0.9, 0.1])
    with pytest.raises(ValueError, match="scores for 3 classes"):
        plot_per_class_scores({"x": [0.1]}, names)
