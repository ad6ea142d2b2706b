"""Figures of a pixel-set dataset (chapter 1): a parcel's pixels over the season, per-class
temporal profiles, the class imbalance and the acquisition calendar.

Every function takes plain arrays (no dataset object), draws on a new figure and returns it,
so that the book, the command line and the tests can use them alike.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "to_dates",
    "plot_parcel_pixels",
    "plot_class_profiles",
    "plot_class_counts",
    "plot_acquisition_calendar",
]


def to_dates(dates: Sequence[int] | np.ndarray) -> list[_dt.date]:
    """YYYYMMDD integers (or strings) -> ``datetime.date`` objects (for matplotlib's date axes).

    Raises
    ------
    ValueError
        If a value is not a valid YYYYMMDD date.
    """
    out = []
    for d in np.asarray(dates).tolist():
        s = str(d)
        if len(s) != 8 or not s.isdigit():
            raise ValueError(f"date {d!r} is not YYYYMMDD")
        out.append(_dt.date(int(s[:4]), int(s[4:6]), int(s[6:])))
    return out


def _month_axis(ax: plt.Axes) -> None:
    ax.xaxis.set_major_locator(mdates.MonthLocator())
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%b"))


def plot_parcel_pixels(
    values: np.ndarray,
    dates: Sequence[int] | np.ndarray,
    ylabel: str = "value",
    title: str | None = None,
    max_pixels: int = 100,
    seed: int = 0,
) -> Figure:
    """Every pixel of one parcel over the season, with the parcel's mean and spread.

    Parameters
    ----------
    values
        (T, n): one value per date and pixel (a band's reflectance, NDVI, ...); n >= 1.
    dates
        The T acquisition dates, YYYYMMDD.
    ylabel, title
        Axis label and title.
    max_pixels
        At most this many pixel lines are drawn (a random subset, drawn with ``seed``);
        the mean and the band use every pixel.
    seed
        Seed of the subset of drawn pixels.

    Returns
    -------
    Figure
        One axis: the thin pixel lines, then the mean line (the last line), and a shaded band
        mean +- one standard deviation.

    Raises
    ------
    ValueError
        If ``values`` is not (T, n) with n >= 1 and T dates.
    """
    v = np.asarray(values, dtype=np.float64)
    x = to_dates(dates)
    if v.ndim != 2 or v.shape[0] != len(x) or v.shape[1] == 0:
        raise ValueError(f"values must be (T={len(x)}, n>=1), got {v.shape}")
    n = v.shape[1]
    shown = np.arange(n)
    if n > max_pixels:
        shown = np.sort(np.random.default_rng(seed).choice(n, size=max_pixels, replace=False))
    fig, ax = plt.subplots(figsize=(7.5, 3.8), constrained_layout=True)
    ax.plot(x, v[:, shown], color="C0", lw=0.6, alpha=0.25)
    mean, std = v.mean(axis=1), v.std(axis=1)
    ax.fill_between(x, mean - std, mean + std, color="C1", alpha=0.25, label="mean ± 1 std")
    ax.plot(x, mean, color="C1", lw=2.2, marker="o", ms=3.5, label=f"mean of the {n} pixels")
    ax.plot([], [], color="C0", lw=0.6, alpha=0.6, label=f"one line per pixel ({len(shown)} shown)")
    _month_axis(ax)
    ax.set(xlabel="acquisition date", ylabel=ylabel, title=title or "One parcel's pixels")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return fig


def plot_class_profiles(
    values: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    dates: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    ylabel: str = "value",
    title: str | None = None,
    ncols: int = 4,
) -> Figure:
    """Temporal profile of every class: median and 10-90 % band of a per-parcel value.

    Parameters
    ----------
    values
        (N, T): one value per parcel and date (e.g. the parcel's mean NDVI).
    labels
        (N,) class index in ``0 .. K-1`` of each parcel.
    dates
        The T acquisition dates, YYYYMMDD.
    class_names
        The K class names; one panel per class, empty classes get an empty panel.
    ylabel, title
        Shared y label and figure title.
    ncols
        Panels per row.

    Returns
    -------
    Figure
        ``K`` axes in reading order (extra grid cells removed); a class with parcels has one
        line (its median) and a shaded band.

    Raises
    ------
    ValueError
        If the shapes do not agree or a label is outside ``0 .. K-1``.
    """
    v = np.asarray(values, dtype=np.float64)
    y = np.asarray(labels)
    x = to_dates(dates)
    k = len(class_names)
    if v.ndim != 2 or v.shape[1] != len(x) or y.shape != (v.shape[0],):
        raise ValueError(
            f"values (N, T={len(x)}) and labels (N,) expected, got {v.shape}, {y.shape}"
        )
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must be in 0..{k - 1}")
    nrows = -(-k // ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(7.5, 1.6 * nrows + 0.9),  # the book's column width: labels stay legible
        sharex=True,
        sharey=True,
        constrained_layout=True,
        squeeze=False,
    )
    flat = axes.ravel()
    for ax in flat[k:]:
        ax.remove()
    for c, ax in enumerate(flat[:k]):
        rows = v[y == c]
        if len(rows):
            lo, med, hi = np.percentile(rows, [10, 50, 90], axis=0)
            ax.fill_between(x, lo, hi, color=f"C{c % 10}", alpha=0.25)
            ax.plot(x, med, color=f"C{c % 10}", lw=1.8)
        ax.set_title(f"{class_names[c]} (n={len(rows)})", fontsize=8)
        ax.grid(alpha=0.3)
        _month_axis(ax)
        ax.xaxis.set_major_locator(mdates.MonthLocator(bymonth=(1, 4, 7, 10)))
        ax.tick_params(labelsize=8)
    fig.supylabel(ylabel)
    fig.supxlabel("acquisition date")
    fig.suptitle(title or "Temporal profile of each class (median, 10-90 % band)")
    return fig


def plot_class_counts(
    counts: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    log: bool = False,
    title: str | None = None,
) -> Figure:
    """Horizontal bars of the number of parcels per class, from the most to the least frequent.

    Parameters
    ----------
    counts
        (K,) number of parcels of each class.
    class_names
        The K class names.
    log
        Logarithmic count axis (useful for long tails).
    title
        Axis title (a default one if None).

    Returns
    -------
    Figure
        One axis with K bars (a single bar container), each annotated with its share in %.

    Raises
    ------
    ValueError
        If ``counts`` and ``class_names`` have different lengths.
    """
    c = np.asarray(counts, dtype=np.int64)
    if c.shape != (len(class_names),):
        raise ValueError(f"{c.shape[0]} counts for {len(class_names)} class names")
    order = np.argsort(-c, kind="stable")
    total = max(int(c.sum()), 1)
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(c) + 1.2), constrained_layout=True)
    bars = ax.barh(np.arange(len(c)), c[order], color="C0")
    for bar, n in zip(bars, c[order], strict=True):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {n} ({100 * n / total:.1f} %)",
            va="center",
            fontsize="x-small",
        )
    ax.set_yticks(np.arange(len(c)), [class_names[i] for i in order])
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    ax.set_xlim(right=(c.max() * (8 if log else 1.25)) if c.max() > 0 else 1)
    ax.set(xlabel="number of parcels" + (" (log scale)" if log else ""))
    ax.set_title(title or "Parcels per class")
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_acquisition_calendar(
    dates: Sequence[int] | np.ndarray,
    cloud_fraction: Sequence[float] | np.ndarray | None = None,
    title: str | None = None,
) -> Figure:
    """The acquisition dates on a time line (top) and the gaps between them in days (bottom).

    Parameters
    ----------
    dates
        The T acquisition dates, YYYYMMDD, increasing.
    cloud_fraction
        Optional (T,) fraction in [0, 1] of cloudy pixels (or of any quality flag) per date;
        the stems are then as high as it and coloured by it.
    title
        Figure title (a default one if None).

    Returns
    -------
    Figure
        Two axes: the time line (one stem per date) and a bar chart of the T-1 gaps.

    Raises
    ------
    ValueError
        If the dates are not increasing or ``cloud_fraction`` has the wrong length.
    """
    x = to_dates(dates)
    if any(b <= a for a, b in zip(x[:-1], x[1:], strict=True)):
        raise ValueError("dates must be strictly increasing")
    gaps = np.array([(b - a).days for a, b in zip(x[:-1], x[1:], strict=True)])
    fig, (ax_t, ax_g) = plt.subplots(
        2, 1, figsize=(7.5, 4.6), sharex=True, constrained_layout=True, height_ratios=(1.2, 1)
    )
    if cloud_fraction is None:
        ax_t.vlines(x, 0, 1, color="C0", lw=2)
        ax_t.plot(x, np.ones(len(x)), "o", color="C0")
        ax_t.set(yticks=[], ylim=(0, 1.3))
    else:
        cf = np.asarray(cloud_fraction, dtype=np.float64)
        if cf.shape != (len(x),):
            raise ValueError(f"cloud_fraction must have {len(x)} values, got {cf.shape}")
        colors = plt.get_cmap("coolwarm")(np.clip(cf, 0, 1))
        ax_t.vlines(x, 0, cf, colors=colors, lw=2)
        sc = ax_t.scatter(x, cf, c=cf, cmap="coolwarm", vmin=0, vmax=1, zorder=3)
        fig.colorbar(sc, ax=ax_t, label="cloudy fraction", pad=0.01)
        ax_t.set(ylabel="cloudy fraction", ylim=(0, 1.05))
    ax_t.set_title(f"{len(x)} acquisitions")
    ax_t.grid(axis="x", alpha=0.3)
    mids = [a + (b - a) / 2 for a, b in zip(x[:-1], x[1:], strict=True)]
    ax_g.bar(mids, gaps, width=[0.8 * g for g in gaps], color="C2")
    ax_g.set(ylabel="gap (days)", xlabel="acquisition date")
    ax_g.grid(axis="y", alpha=0.3)
    _month_axis(ax_g)
    fig.suptitle(title or "Acquisition calendar")
    return fig
