"""Figures of the focal loss (chapter 4): loss and gradient against the true-class probability.

The curves are computed in closed form, for one sample whose true class has probability
``p_t = softmax(z)[y]``. With ``FL(p_t) = -(1 - p_t)^gamma log p_t`` and
``dp_t / dz_y = p_t (1 - p_t)``, the derivative with respect to the true-class logit ``z_y`` is

* exact:    ``dFL/dz_y = -(1 - p_t)^gamma * ((1 - p_t) - gamma * p_t * log p_t)``
* detached: ``dFL/dz_y = -(1 - p_t)^(gamma + 1)``  (the factor ``(1 - p_t)^gamma`` held constant,
  as the reference implementation does).

At ``gamma = 0`` both are the cross-entropy's ``-(1 - p_t)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "focal_loss_curve",
    "focal_loss_grad_curve",
    "plot_focal_loss",
    "plot_focal_gradients",
    "plot_per_class_scores",
]


def focal_loss_curve(p_t: np.ndarray, gamma: float) -> np.ndarray:
    """Focal loss ``-(1 - p_t)^gamma log p_t`` of a sample whose true class has probability ``p_t``.

    Parameters
    ----------
    p_t
        Probabilities of the true class, in (0, 1].
    gamma
        Focusing parameter, >= 0 (0 gives the cross-entropy ``-log p_t``).

    Returns
    -------
    np.ndarray
        The loss, same shape as ``p_t``.

    Raises
    ------
    ValueError
        If ``gamma`` is negative or a probability is outside (0, 1].
    """
    p = _check(p_t, gamma)
    return -((1.0 - p) ** gamma) * np.log(p)


def focal_loss_grad_curve(p_t: np.ndarray, gamma: float, exact: bool = True) -> np.ndarray:
    """Derivative of the focal loss with respect to the true-class logit ``z_y``.

    Parameters
    ----------
    p_t
        Probabilities of the true class, in (0, 1].
    gamma
        Focusing parameter, >= 0.
    exact
        True: the full derivative. False: the derivative with ``(1 - p_t)^gamma`` treated as a
        constant (the reference implementation's backward pass).

    Returns
    -------
    np.ndarray
        ``dFL/dz_y``, same shape as ``p_t`` (negative: raising the true logit lowers the loss).

    Raises
    ------
    ValueError
        If ``gamma`` is negative or a probability is outside (0, 1].
    """
    p = _check(p_t, gamma)
    q = 1.0 - p
    if not exact:
        return -(q ** (gamma + 1.0))
    return -(q**gamma) * (q - gamma * p * np.log(p))


def _check(p_t: np.ndarray, gamma: float) -> np.ndarray:
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    p = np.asarray(p_t, dtype=np.float64)
    if np.any(~(p > 0)) or np.any(p > 1):
        raise ValueError("probabilities p_t must lie in (0, 1]")
    return p


def _p_grid(p_min: float, n: int) -> np.ndarray:
    return np.linspace(p_min, 1.0, n)


def plot_focal_loss(
    gammas: Sequence[float] = (0.0, 0.5, 1.0, 2.0, 5.0),
    p_min: float = 0.01,
    n: int = 400,
    exact: bool = True,
    title: str | None = None,
) -> Figure:
    """Loss (left) and its gradient with respect to the true-class logit (right) against ``p_t``.

    Parameters
    ----------
    gammas
        One curve per focusing parameter; ``0`` is the cross-entropy.
    p_min, n
        The curves are drawn on ``n`` points of ``[p_min, 1]``.
    exact
        Which gradient to draw on the right (see :func:`focal_loss_grad_curve`).
    title
        Figure title (a default one if None).

    Returns
    -------
    Figure
        Two axes, each with one line per gamma, in the order of ``gammas``.
    """
    p = _p_grid(p_min, n)
    # Stacked, at the width of the book's column, so that labels stay legible.
    fig, (ax_loss, ax_grad) = plt.subplots(2, 1, figsize=(7, 7), constrained_layout=True)
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(gammas)))
    for gamma, color in zip(gammas, colors, strict=True):
        label = f"$\\gamma = {gamma:g}$" + (" (cross-entropy)" if gamma == 0 else "")
        ax_loss.plot(p, focal_loss_curve(p, gamma), color=color, label=label)
        ax_grad.plot(p, focal_loss_grad_curve(p, gamma, exact=exact), color=color, label=label)
    ax_loss.set(
        xlabel="probability of the true class $p_t$",
        ylabel="loss",
        title="loss $-(1-p_t)^\\gamma \\log p_t$",
        ylim=(0, 5),
    )
    kind = "exact" if exact else "with $(1-p_t)^\\gamma$ held constant"
    ax_grad.set(
        xlabel="probability of the true class $p_t$",
        ylabel="$\\partial \\mathrm{FL} / \\partial z_y$",
        title=f"gradient w.r.t. the true-class logit ({kind})",
    )
    ax_grad.axhline(0.0, color="0.6", lw=0.8)
    for ax in (ax_loss, ax_grad):
        ax.grid(alpha=0.3)
    ax_loss.legend()
    fig.suptitle(title or "Focal loss against the probability of the true class")
    return fig


def plot_focal_gradients(
    gammas: Sequence[float] = (1.0, 2.0),
    p_min: float = 0.01,
    n: int = 400,
    title: str | None = None,
) -> Figure:
    """The exact and the detached gradient side by side, one axis per gamma.

    Parameters
    ----------
    gammas
        One axis per focusing parameter.
    p_min, n
        The curves are drawn on ``n`` points of ``[p_min, 1]``.
    title
        Figure title (a default one if None).

    Returns
    -------
    Figure
        ``len(gammas)`` axes, each with three lines: cross-entropy, exact, detached.
    """
    p = _p_grid(p_min, n)
    fig, axes = plt.subplots(
        len(gammas), 1, figsize=(7, 3.2 * len(gammas)), constrained_layout=True, squeeze=False
    )
    for ax, gamma in zip(axes[:, 0], gammas, strict=True):
        ax.plot(p, focal_loss_grad_curve(p, 0.0), color="0.5", ls=":", label="cross-entropy")
        ax.plot(p, focal_loss_grad_curve(p, gamma, exact=True), color="C0", label="exact")
        ax.plot(
            p,
            focal_loss_grad_curve(p, gamma, exact=False),
            color="C3",
            ls="--",
            label="$(1-p_t)^\\gamma$ held constant",
        )
        ax.set(
            xlabel="probability of the true class $p_t$",
            ylabel="$\\partial \\mathrm{FL} / \\partial z_y$",
            title=f"$\\gamma = {gamma:g}$",
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(title or "Two gradients of the focal loss")
    return fig


def plot_per_class_scores(
    scores: Mapping[str, Sequence[float]],
    class_names: Sequence[str],
    counts: Sequence[int] | None = None,
    metric: str = "IoU",
    title: str | None = None,
) -> Figure:
    """Grouped horizontal bars of a per-class score for several runs (e.g. gamma 0 vs gamma 1).

    Parameters
    ----------
    scores
        ``{run label: per-class scores (K,)}``; ``nan`` (absent class) draws no bar.
    class_names
        The K class names.
    counts
        Optional number of training samples per class, shown after the name; the classes are
        then sorted from the most to the least frequent.
    metric
        Name of the score, for the axis label.
    title
        Figure title (a default one if None).

    Returns
    -------
    Figure
        One axis with one bar container per run.

    Raises
    ------
    ValueError
        If a run's scores do not have one value per class.
    """
    k = len(class_names)
    for label, values in scores.items():
        if len(values) != k:
            raise ValueError(f"run {label!r} has {len(values)} scores for {k} classes")
    order = np.argsort(-np.asarray(counts), kind="stable") if counts is not None else np.arange(k)
    names = [
        f"{class_names[i]} ({counts[i]})" if counts is not None else class_names[i] for i in order
    ]
    n_runs = len(scores)
    height = 0.8 / max(n_runs, 1)
    fig, ax = plt.subplots(figsize=(7, 0.3 * k * max(n_runs, 2) / 2 + 1.5), constrained_layout=True)
    y = np.arange(k)
    for j, (label, values) in enumerate(scores.items()):
        v = np.asarray(values, dtype=np.float64)[order]
        ax.barh(y + (j - (n_runs - 1) / 2) * height, v, height=height, label=label)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set(xlabel=metric, xlim=(0, 1), title=title or f"Per-class {metric}")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    return fig
