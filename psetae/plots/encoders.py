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

from psetae.models.tae import positional_encoding

__all__ = [
    "plot_pixel_sets",
    "plot_positional_encoding",
    "plot_encoding_dimensions",
    "plot_attention_calendar",
]


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
        n, 1, figsize=(9, 0.9 + 0.28 * c * n), squeeze=False, sharex=True, layout="constrained"
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
    fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
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
    fig, ax = plt.subplots(figsize=(9, 3.5), layout="constrained")
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
        n, 1, figsize=(9, 1.2 + 1.9 * n), squeeze=False, sharex=True, layout="constrained"
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
