"""Figures of the encoders (chapters 2 and 3 of the book): pixel sets, positional encoding, attention.

Every function takes plain arrays (NumPy or CPU tensors), draws on a new figure and returns it,
so that a notebook can ``plt.show()`` it and a test can inspect its axes and artists.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from psetae.models.tae import positional_encoding

__all__ = [
    "plot_pixel_sets",
    "plot_positional_encoding",
    "plot_encoding_dimensions",
    "plot_attention_calendar",
    "plot_architecture",
    "plot_master_query",
]

# The stages of PSE-TAE, top to bottom: (label, detail, tensor shape after it, colour).
ARCHITECTURE = (
    ("parcel", "T dates x C bands x n pixels", "(T, C, n)", "#d9d9d9"),
    ("sampling", "draw S pixels, mask the padding", "(B, T, C, S) + mask (B, T, S)", "#d9d9d9"),
    ("PSE: MLP1", "shared MLP on every pixel", "(B, T, S, 64)", "#9ecae1"),
    ("PSE: pooling", "masked mean and std over the pixels", "(B, T, 128)", "#9ecae1"),
    ("PSE: MLP2", "+ 4 geometric features", "(B, T, 128)", "#9ecae1"),
    (
        "TAE: attention",
        "positional encoding of the days; one master query per head",
        "(B, 4 x 128)",
        "#fdae6b",
    ),
    ("TAE: MLP3", "Linear-BN-ReLU, dropout, LayerNorm", "(B, 128)", "#fdae6b"),
    ("decoder: MLP4", "128 -> 64 -> 32 -> K", "logits (B, K)", "#a1d99b"),
)


def plot_architecture(
    stages: Sequence[tuple[str, str, str, str]] = ARCHITECTURE,
    title: str = "PSE-TAE, from a parcel to class scores",
) -> Figure:
    """Draw the model as a column of boxes joined by arrows, with the tensor shape on each arrow.

    Parameters
    ----------
    stages
        ``(name, detail, shape after the stage, colour)`` per box, top to bottom; by default
        the paper's PSE-TAE (:data:`ARCHITECTURE`).
    title
        Title of the figure.

    Returns
    -------
    matplotlib.figure.Figure
        One axes without ticks; one box (patch) and one name text per stage, one arrow between
        consecutive stages.
    """
    n = len(stages)
    if n == 0:
        raise ValueError("at least one stage to draw")
    fig, ax = plt.subplots(figsize=(7, 0.85 * n + 0.6), layout="constrained")
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.5, n - 0.3)
    ax.axis("off")
    for i, (name, detail, shape, colour) in enumerate(stages):
        y = n - 1 - i  # first stage on top
        ax.add_patch(
            FancyBboxPatch(
                (0.3, y - 0.3), 5.4, 0.6, boxstyle="round,pad=0.02", fc=colour, ec="0.3", lw=1
            )
        )
        ax.text(0.5, y + 0.08, name, fontsize=10, fontweight="bold", va="center")
        ax.text(0.5, y - 0.16, detail, fontsize=8, va="center", color="0.2")
        ax.text(6.0, y, shape, fontsize=9, va="center", family="monospace")
        if i < n - 1:
            ax.add_patch(
                FancyArrowPatch(
                    (3.0, y - 0.32),
                    (3.0, y - 0.68),
                    arrowstyle="-|>",
                    mutation_scale=12,
                    color="0.3",
                )
            )
    ax.set_title(title, fontsize=11)
    return fig


def plot_master_query(
    keys: np.ndarray | torch.Tensor,
    query: np.ndarray | torch.Tensor,
    labels: Sequence[str] | None = None,
    title: str = "The master query scores every date by its key",
) -> Figure:
    """Intuition for attention with one query: 2-D keys, the query, and the softmax weights.

    Parameters
    ----------
    keys
        (T, 2) one key per date, in a 2-D key space (a toy: real keys have d_k dimensions).
    query
        (2,) the master query.
    labels
        T names of the dates.
    title
        Title of the figure.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes, stacked: the key space (one arrow per key and the query), and the weights
        ``softmax(k_t . q / sqrt(2))`` as one bar per date.
    """
    k = _numpy(keys).astype(np.float64)
    q = _numpy(query).astype(np.float64)
    if k.ndim != 2 or k.shape[1] != 2 or q.shape != (2,):
        raise ValueError(f"keys (T, 2) and query (2,) expected, got {k.shape} and {q.shape}")
    t = len(k)
    names = list(labels) if labels is not None else [f"date {i + 1}" for i in range(t)]
    if len(names) != t:
        raise ValueError(f"{len(names)} labels for {t} keys")
    scores = k @ q / np.sqrt(2.0)  # (T,)
    weights = np.exp(scores - scores.max())
    weights /= weights.sum()  # (T,) softmax over the dates
    fig, (ax_k, ax_w) = plt.subplots(
        2, 1, figsize=(7, 7), layout="constrained", height_ratios=(1.3, 1)
    )
    lim = 1.3 * max(np.abs(k).max(), np.abs(q).max())
    # The query first (thick, grey, behind), then the keys on top; labels off the arrows.
    grey = {"arrowstyle": "-|>", "color": "0.6", "lw": 4}
    ax_k.annotate("", xy=q, xytext=(0, 0), arrowprops=grey)
    ax_k.text(q[0] / 2, q[1] / 2 - 0.1 * lim, "master query q", fontsize=9, ha="center", va="top")
    for i in range(t):
        colour = f"C{i % 10}"
        arrow = {"arrowstyle": "->", "color": colour, "lw": 2}
        ax_k.annotate("", xy=k[i], xytext=(0, 0), arrowprops=arrow)
        label = f"{names[i]}\nk.q = {k[i] @ q:.2f}"
        up = k[i][1] >= 0  # the label beyond the arrow's tip, above or below it
        ax_k.text(
            k[i][0],
            k[i][1] + (0.06 if up else -0.06) * lim,
            label,
            fontsize=8,
            ha="center",
            va="bottom" if up else "top",
            color=colour,
        )
    ax_k.set(
        xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xlabel="key dim 1", ylabel="key dim 2"
    )
    ax_k.axhline(0, color="0.8", lw=0.8)
    ax_k.axvline(0, color="0.8", lw=0.8)
    ax_k.set_title("keys of the dates and the query: aligned means a high score", fontsize=9)
    ax_w.bar(range(t), weights, color=[f"C{i % 10}" for i in range(t)])
    ax_w.set_xticks(range(t), names, fontsize=8)
    ax_w.set_ylabel("attention weight")
    ax_w.set_ylim(0, 1)
    ax_w.set_title("softmax of the scores over the dates (sums to 1)", fontsize=9)
    fig.suptitle(title)
    return fig


def _numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def plot_pixel_sets(
    pixels: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor,
    titles: Sequence[str] | None = None,
    band_names: Sequence[str] | None = None,
    suptitle: str | None = None,
) -> Figure:
    """Show pixel sets as images, one panel per set: bands down, pixels across, padding hatched.

    Parameters
    ----------
    pixels
        (N, C, S) reflectances of N sets (e.g. N parcels on one date).
    mask
        (N, S), 1 for a real pixel and 0 for padding.
    titles
        One title per panel (e.g. the parcel's class and number of pixels).
    band_names
        C names for the y axis; ``None`` numbers the bands.
    suptitle
        Title of the whole figure.

    Returns
    -------
    matplotlib.figure.Figure
        A figure with N image axes and one colour bar.

    Raises
    ------
    ValueError
        If the shapes of ``pixels`` and ``mask`` do not match.
    """
    x, m = _numpy(pixels), _numpy(mask)
    if x.ndim != 3 or m.shape != (x.shape[0], x.shape[2]):
        raise ValueError(f"pixels must be (N, C, S) and mask (N, S), got {x.shape} and {m.shape}")
    n, c, s = x.shape
    fig, axes = plt.subplots(
        n, 1, figsize=(7.5, 0.9 + 0.28 * c * n), squeeze=False, sharex=True, layout="constrained"
    )
    vmin, vmax = np.percentile(x[np.broadcast_to(m[:, None, :] > 0, x.shape)], [1, 99])
    image = None
    for i, ax in enumerate(axes[:, 0]):
        image = ax.imshow(
            x[i], aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest"
        )
        for j in np.flatnonzero(m[i] == 0):  # grey out and hatch each padding column
            ax.axvspan(j - 0.5, j + 0.5, facecolor="white", alpha=0.6, hatch="//", linewidth=0)
        ax.set_yticks(range(c))
        ax.set_yticklabels(
            band_names if band_names is not None else [str(b) for b in range(c)], fontsize=7
        )
        ax.set_ylabel("band")
        ax.grid(False)
        if titles is not None:
            ax.set_title(titles[i], fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("pixel slot (order carries no meaning; hatched = padding)")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="normalised reflectance", shrink=0.8)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_positional_encoding(
    encoding: np.ndarray | torch.Tensor,
    positions: Sequence[float] | np.ndarray | torch.Tensor,
    title: str = "Positional encoding of the acquisition days",
) -> Figure:
    """Heat map of a positional encoding: one row per date, one column per dimension.

    Parameters
    ----------
    encoding
        (T, d) encoding of T dates.
    positions
        (T,) the dates' positions (days), used to label the rows.
    title
        Title of the axes.

    Returns
    -------
    matplotlib.figure.Figure
        A figure with the heat map's axes and its colour bar.
    """
    pe, pos = _numpy(encoding), _numpy(positions)
    if pe.ndim != 2 or pos.shape != (pe.shape[0],):
        raise ValueError(f"encoding must be (T, d) and positions (T,), got {pe.shape}, {pos.shape}")
    fig, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
    image = ax.imshow(pe, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    step = max(1, len(pos) // 12)
    ax.set_yticks(range(0, len(pos), step))
    ax.set_yticklabels([f"{p:g}" for p in pos[::step]])
    ax.grid(False)
    ax.set_xlabel("encoding dimension (even: sin, odd: cos)")
    ax.set_ylabel("position (days since first date)")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="value")
    return fig


def plot_encoding_dimensions(
    positions: Sequence[float] | np.ndarray | torch.Tensor,
    d: int,
    dims: Sequence[int],
    period: float = 1000.0,
    days: float | None = None,
    title: str = "A few dimensions of the positional encoding",
) -> Figure:
    """Plot chosen dimensions of the sinusoidal encoding as functions of the day.

    Each dimension is drawn as a continuous curve over ``[0, days]`` and the acquisition
    positions are marked on it, so one sees which values the model actually receives.

    Parameters
    ----------
    positions
        (T,) acquisition positions (days).
    d
        Size of the encoding.
    dims
        Dimensions to draw (0 <= dim < d).
    period
        ``T_pe`` of :func:`psetae.models.tae.positional_encoding`.
    days
        Right end of the curves; by default the last position plus 5%.
    title
        Title of the axes.

    Returns
    -------
    matplotlib.figure.Figure
        A figure with one axes holding one curve and one marker line per dimension.
    """
    pos = _numpy(positions).astype(np.float64)
    if any(not 0 <= k < d for k in dims):
        raise ValueError(f"dims {list(dims)} must lie in [0, {d})")
    end = float(days) if days is not None else float(pos.max()) * 1.05 + 1.0
    grid = np.linspace(0.0, end, 400)
    curves = positional_encoding(torch.from_numpy(grid), d, period).numpy()  # (400, d)
    marks = positional_encoding(torch.from_numpy(pos), d, period).numpy()  # (T, d)
    fig, ax = plt.subplots(figsize=(7.5, 3.5), layout="constrained")
    for k in dims:
        wavelength = 2 * np.pi * float(period) ** (2 * (k // 2) / d)  # days
        kind = "sin" if k % 2 == 0 else "cos"
        (line,) = ax.plot(grid, curves[:, k], label=f"dim {k} ({kind}, period {wavelength:.0f} d)")
        ax.plot(pos, marks[:, k], "o", color=line.get_color(), markersize=4)
    ax.set_xlabel("days since first acquisition (dots: acquisition dates)")
    ax.set_ylabel("encoding value")
    ax.set_title(title)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return fig


def plot_attention_calendar(
    attention: np.ndarray | torch.Tensor,
    positions: Sequence[float] | np.ndarray | torch.Tensor,
    titles: Sequence[str] | None = None,
    suptitle: str | None = None,
) -> Figure:
    """Attention weights of every head over the acquisition calendar, one panel per parcel.

    Parameters
    ----------
    attention
        (N, n_head, T) weights (each row sums to 1), or (n_head, T) for one parcel.
    positions
        (T,) days shared by all parcels, or (N, T) one calendar per parcel.
    titles
        One title per panel.
    suptitle
        Title of the whole figure.

    Returns
    -------
    matplotlib.figure.Figure
        N axes, each with one line per head (and a dashed uniform-attention level 1/T).
    """
    a = _numpy(attention)
    if a.ndim == 2:
        a = a[None]
    n, heads, t = a.shape
    pos = _numpy(positions).astype(np.float64)
    pos = np.broadcast_to(pos, (n, t)) if pos.ndim == 1 else pos
    if pos.shape != (n, t):
        raise ValueError(f"positions must be (T,) or (N, T) = {(n, t)}, got {pos.shape}")
    fig, axes = plt.subplots(
        n, 1, figsize=(7.5, 1.2 + 1.9 * n), squeeze=False, sharex=True, layout="constrained"
    )
    for i, ax in enumerate(axes[:, 0]):
        for h in range(heads):
            ax.plot(pos[i], a[i, h], marker="o", markersize=3, label=f"head {h + 1}")
        ax.axhline(1.0 / t, color="grey", linestyle="--", linewidth=1, label="uniform 1/T")
        ax.set_ylabel("weight")
        if titles is not None:
            ax.set_title(titles[i], fontsize=9, loc="left")
    axes[0, 0].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    axes[-1, 0].set_xlabel("days since first acquisition")
    if suptitle:
        fig.suptitle(suptitle)
    return fig
