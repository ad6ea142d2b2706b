"""Figures of book chapter 6: the L-TAE's many heads, and the comparison of temporal encoders.

Every function takes plain arrays or mappings, draws on a new figure and returns it, so that a
notebook can ``plt.show()`` it and a test can inspect its axes and artists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

__all__ = ["plot_attention_heads", "plot_encoder_comparison"]


def _numpy(x: np.ndarray | torch.Tensor | Sequence[float]) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def plot_attention_heads(
    attention: np.ndarray | torch.Tensor,
    positions: Sequence[float] | np.ndarray | torch.Tensor,
    titles: Sequence[str] | None = None,
    suptitle: str | None = None,
) -> Figure:
    """Attention of many heads as images: one panel per parcel, heads down, dates across.

    With 16 heads (the L-TAE's default) a line per head is unreadable; an image shows at once
    which dates each head looks at.

    Parameters
    ----------
    attention
        (N, n_head, T) weights, each row summing to 1.
    positions
        (T,) days of the dates (tick labels of the date axis).
    titles
        One title per panel.
    suptitle
        Title of the whole figure.

    Returns
    -------
    matplotlib.figure.Figure
        N image axes of shape (n_head, T) sharing one colour scale, and a colour bar.

    Raises
    ------
    ValueError
        If ``attention`` is not 3-D, or ``positions`` or ``titles`` do not fit it.
    """
    a = _numpy(attention).astype(np.float64)
    if a.ndim != 3:
        raise ValueError(f"attention must be (N, n_head, T), got shape {a.shape}")
    n, heads, t = a.shape
    days = _numpy(positions).astype(np.float64)
    if days.shape != (t,):
        raise ValueError(f"positions must be (T,) = ({t},), got {days.shape}")
    if titles is not None and len(titles) != n:
        raise ValueError(f"{len(titles)} titles for {n} parcels")
    fig, axes = plt.subplots(
        n, 1, figsize=(7.5, 1.0 + 0.12 * heads * n + 0.5 * n), squeeze=False, layout="constrained"
    )
    vmax = float(a.max())
    step = max(1, t // 12)  # at most about 12 day labels
    for i, ax in enumerate(axes[:, 0]):
        image = ax.imshow(a[i], aspect="auto", cmap="viridis", vmin=0.0, vmax=vmax)
        ax.grid(False)  # a style's grid lines would hide cells of the image
        ax.set_ylabel("head")
        ax.set_yticks([0, heads - 1], [1, heads])
        ax.set_xticks(range(0, t, step), [f"{d:.0f}" for d in days[::step]])
        if titles is not None:
            ax.set_title(titles[i], fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("day of the date (days since the first acquisition)")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="attention weight", shrink=0.9)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_encoder_comparison(
    scores: Mapping[str, Sequence[float]],
    costs: Mapping[str, float] | None = None,
    *,
    metric: str = "test mIoU",
    cost_label: str = "CPU time per batch (ms)",
    title: str | None = None,
) -> Figure:
    """Scores of several models over seeds, and (optionally) the mean score against a cost.

    Parameters
    ----------
    scores
        Model name -> its score in each run (one per seed); the models are drawn in this order.
    costs
        Model name -> a cost (time, parameters, FLOPs); models without one (NaN or missing,
        e.g. a random forest next to the networks) are left out of the second panel.
    metric, cost_label
        Axis labels.
    title
        Title of the whole figure.

    Returns
    -------
    matplotlib.figure.Figure
        Left: one row per model, a dot per run and a bar at the mean. Right (with ``costs``):
        the mean score against the cost, one labelled point per model.

    Raises
    ------
    ValueError
        If ``scores`` is empty, a model has no score, or ``costs`` names an unknown model.
    """
    names = list(scores)
    if not names:
        raise ValueError("no model to plot")
    runs = {m: np.asarray(scores[m], dtype=np.float64) for m in names}
    empty = [m for m in names if runs[m].size == 0]
    if empty:
        raise ValueError(f"models without a score: {empty}")
    unknown = sorted(set(costs or {}) - set(names))
    if unknown:
        raise ValueError(f"costs for models without scores: {unknown}")
    panels = 2 if costs else 1
    fig, axes = plt.subplots(
        1, panels, figsize=(7.5, 1.2 + 0.45 * len(names)), squeeze=False, layout="constrained"
    )
    ax = axes[0, 0]
    rows = np.arange(len(names))[::-1]  # the first model on top
    for row, m in zip(rows, names, strict=True):
        ax.plot(runs[m], np.full(runs[m].size, row), "o", color="C0", alpha=0.7, ms=5)
        ax.plot([runs[m].mean()] * 2, [row - 0.3, row + 0.3], color="C3", linewidth=2.5)
    ax.set_yticks(rows, names)
    ax.set_xlabel(metric)
    ax.set_title("each run (dot) and the mean (bar)", fontsize=9, loc="left")
    if costs:
        ax = axes[0, 1]
        for i, m in enumerate(names):
            c = costs.get(m, math.nan)
            if c is None or not np.isfinite(c):
                continue
            ax.plot(c, runs[m].mean(), "o", color=f"C{i % 10}", ms=7)
            ax.annotate(m, (c, runs[m].mean()), textcoords="offset points", xytext=(5, 4))
        ax.set_xlabel(cost_label)
        ax.set_ylabel(f"mean {metric}")
        ax.set_title("mean score against cost", fontsize=9, loc="left")
        ax.margins(x=0.25, y=0.2)
    if title:
        fig.suptitle(title)
    return fig
