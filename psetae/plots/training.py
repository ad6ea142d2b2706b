"""Figures of a trained PSE-TAE: confusion matrix, per-class IoU, learning curves, attention.

Every function draws on a new figure (or on the axes it is given), returns the
:class:`matplotlib.figure.Figure`, and never calls ``plt.show()``: the caller decides.
They take plain NumPy arrays and lists, so that they work on the outputs of
:mod:`psetae.metrics` and :mod:`psetae.train` as well as on anything computed by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "plot_confusion_matrix",
    "plot_per_class_iou",
    "plot_learning_curves",
    "mean_attention_per_class",
    "plot_attention_per_class",
]


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def _names(class_names: Sequence[str] | None, k: int) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(k)]
    if len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for {k} classes")
    return [str(n) for n in class_names]


def plot_confusion_matrix(
    cm: np.ndarray,
    class_names: Sequence[str] | None = None,
    normalize: str | None = "true",
    title: str = "Confusion matrix",
    ax: Axes | None = None,
    annotate: bool | None = None,
) -> Figure:
    """Heat map of a confusion matrix (rows: true class, columns: predicted class).

    Parameters
    ----------
    cm
        (K, K) counts, ``cm[i, j]`` = samples of true class i predicted as j.
    class_names
        K labels for the axes; ``0 .. K-1`` if ``None``.
    normalize
        ``"true"``: each row divided by its sum (the diagonal is then the recall of each
        class; rows of absent classes stay 0); ``"all"``: divided by the total; ``None``:
        raw counts.
    title
        Title of the axes.
    ax
        Axes to draw on; a new figure if ``None``.
    annotate
        Write the value in each cell; by default only when K <= 12 (else unreadable).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If ``cm`` is not square, the names do not match K, or ``normalize`` is unknown.
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square (K, K) matrix, got shape {cm.shape}")
    k = cm.shape[0]
    names = _names(class_names, k)
    if normalize == "true":
        rows = cm.sum(axis=1, keepdims=True)
        values = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        label, fmt = "fraction of the true class", ".2f"
    elif normalize == "all":
        total = cm.sum()
        values = cm / total if total > 0 else np.zeros_like(cm)
        label, fmt = "fraction of all samples", ".3f"
    elif normalize is None:
        values, label, fmt = cm, "count", ".0f"
    else:
        raise ValueError(f"normalize must be 'true', 'all' or None, got {normalize!r}")
    if annotate is None:
        annotate = k <= 12
    side = min(max(4.0, 0.3 * k + 2.5), 7.5)  # at most the book's column, so labels stay legible
    fig, ax = _axes(ax, (side, side))
    sns.heatmap(
        values,
        ax=ax,
        cmap="Blues",
        vmin=0.0,
        vmax=1.0 if normalize == "true" else None,
        square=True,
        annot=annotate,
        fmt=fmt,
        annot_kws={"fontsize": 7},
        xticklabels=names,
        yticklabels=names,
        cbar_kws={"label": label, "shrink": 0.8},
        linewidths=0.2,
        linecolor="white",
    )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=90, labelsize=8)
    ax.tick_params(axis="y", labelrotation=0, labelsize=8)
    return fig


def plot_per_class_iou(
    iou: np.ndarray,
    class_names: Sequence[str] | None = None,
    support: Sequence[int] | np.ndarray | None = None,
    title: str = "Intersection over union per class",
    ax: Axes | None = None,
) -> Figure:
    """Horizontal bars of the IoU of each class, with the mean IoU as a dashed line.

    Parameters
    ----------
    iou
        (K,) IoU per class in [0, 1]; ``nan`` (a class absent from truth and prediction)
        is drawn as an empty bar labelled "absent".
    class_names
        K labels; ``0 .. K-1`` if ``None``.
    support
        Optional (K,) number of true samples per class, written after each label, so that
        the reader sees which classes are rare.
    title
        Title of the axes.
    ax
        Axes to draw on; a new figure if ``None``.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If the lengths of ``iou``, ``class_names`` and ``support`` differ.
    """
    iou = np.asarray(iou, dtype=np.float64)
    if iou.ndim != 1:
        raise ValueError(f"iou must be 1-D (K,), got shape {iou.shape}")
    k = iou.shape[0]
    names = _names(class_names, k)
    if support is not None:
        support = np.asarray(support)
        if support.shape != (k,):
            raise ValueError(f"support must have shape ({k},), got {support.shape}")
        names = [f"{n} (n={int(s)})" for n, s in zip(names, support, strict=True)]
    fig, ax = _axes(ax, (7.0, max(3.0, 0.3 * k + 1.2)))
    y = np.arange(k)
    shown = np.nan_to_num(iou, nan=0.0)
    colors = sns.color_palette("viridis", as_cmap=True)(shown)
    ax.barh(y, shown, color=colors, edgecolor="0.3", linewidth=0.5)
    for yi, v in zip(y, iou, strict=True):
        text = "absent" if np.isnan(v) else f"{v:.2f}"
        ax.text((0 if np.isnan(v) else v) + 0.01, yi, text, va="center", fontsize=7)
    if not np.isnan(iou).all():
        miou = float(np.nanmean(iou))
        ax.axvline(miou, color="crimson", linestyle="--", linewidth=1.2, label=f"mIoU = {miou:.3f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.08)
    ax.set_xlabel("IoU = TP / (TP + FP + FN)")
    ax.set_ylabel("class")
    ax.set_title(title)
    return fig


def plot_learning_curves(
    history: Sequence[Mapping[str, float]],
    losses: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    best_epoch: int | None = None,
    title: str = "Learning curves",
) -> Figure:
    """Loss (left) and validation metrics (right) against the epoch.

    Parameters
    ----------
    history
        One mapping per epoch, e.g. ``{"epoch": 1, "train_loss": 0.9, "val_loss": 1.0,
        "val_oa": 0.6, "val_miou": 0.3}``. Without an ``"epoch"`` key, epochs are 1, 2, ...
    losses
        Keys drawn on the left axes; by default every key whose name contains ``loss``.
    metrics
        Keys drawn on the right axes; by default every other numeric key except ``epoch``,
        ``time``/``seconds``-like and ``memory``-like keys.
    best_epoch
        Draw a vertical line at this epoch (e.g. the one kept for its validation mIoU).
    title
        Title of the figure.

    Returns
    -------
    matplotlib.figure.Figure
        With two axes: losses, metrics.

    Raises
    ------
    ValueError
        If the history is empty or a requested key is missing from every epoch.
    """
    if len(history) == 0:
        raise ValueError("the history is empty: nothing to plot")
    keys: list[str] = []
    for row in history:
        for key, value in row.items():
            if key not in keys and isinstance(value, int | float) and not isinstance(value, bool):
                keys.append(key)
    skip = ("epoch", "time", "second", "memory", "lr", "bytes")
    if losses is None:
        losses = [k for k in keys if "loss" in k]
    if metrics is None:
        metrics = [k for k in keys if "loss" not in k and not any(s in k for s in skip)]
    for key in [*losses, *metrics]:
        if key not in keys:
            raise ValueError(f"no epoch of the history has a numeric {key!r}; it has {keys}")
    epochs = np.array([row.get("epoch", i + 1) for i, row in enumerate(history)], dtype=float)

    def series(key: str) -> np.ndarray:
        return np.array([row.get(key, np.nan) for row in history], dtype=float)

    def style(key: str) -> str:
        # Training curves dashed, the others (validation) solid.
        return "--" if key.startswith("train") else "-"

    # Stacked, at the width of the book's column, so that labels stay legible.
    fig, (ax_loss, ax_metric) = plt.subplots(2, 1, figsize=(7, 6.5), layout="constrained")
    for key in losses:
        ax_loss.plot(epochs, series(key), linestyle=style(key), marker="o", markersize=3, label=key)
    for key in metrics:
        ax_metric.plot(
            epochs, series(key), linestyle=style(key), marker="o", markersize=3, label=key
        )
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("loss")
    ax_metric.set_ylabel("score")
    ax_metric.set_title("metrics")
    for ax in (ax_loss, ax_metric):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best_epoch is not None:
            ax.axvline(best_epoch, color="0.4", linestyle=":", label=f"best epoch ({best_epoch})")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def mean_attention_per_class(
    attention: np.ndarray, labels: np.ndarray, num_classes: int
) -> np.ndarray:
    """Mean attention weights over the parcels of each class.

    Parameters
    ----------
    attention
        (N, H, T) attention of N parcels (H heads, T dates), or (N, T) for one head.
    labels
        (N,) class index of each parcel, in ``0 .. num_classes-1``.
    num_classes
        K.

    Returns
    -------
    numpy.ndarray
        (K, H, T) (or (K, T) for (N, T) input); rows of classes without any parcel are ``nan``.

    Raises
    ------
    ValueError
        If the shapes do not match or a label is out of range.
    """
    att = np.asarray(attention, dtype=np.float64)
    labels = np.asarray(labels)
    single = att.ndim == 2
    if single:
        att = att[:, None, :]  # (N, 1, T)
    if att.ndim != 3:
        raise ValueError(f"attention must be (N, H, T) or (N, T), got shape {np.shape(attention)}")
    if labels.shape != (att.shape[0],):
        raise ValueError(f"labels must have shape ({att.shape[0]},), got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in 0..{num_classes - 1}")
    out = np.full((num_classes, att.shape[1], att.shape[2]), np.nan)  # (K, H, T)
    for k in range(num_classes):
        members = labels == k
        if members.any():
            out[k] = att[members].mean(axis=0)  # (H, T)
    return out[:, 0, :] if single else out


def plot_attention_per_class(
    mean_attention: np.ndarray,
    dates: Sequence[object] | None = None,
    class_names: Sequence[str] | None = None,
    title: str = "Mean attention per class",
    per_head: bool = False,
) -> Figure:
    """Heat map of the mean attention of each class over the acquisition calendar.

    Parameters
    ----------
    mean_attention
        (K, H, T) or (K, T), e.g. from :func:`mean_attention_per_class`. With heads and
        ``per_head=False`` the heads are averaged (each row still sums to 1).
    dates
        T labels of the dates (``datetime.date``, strings or day numbers) for the x axis.
    class_names
        K labels for the y axis.
    title
        Title of the figure.
    per_head
        One heat map per head instead of the average of the heads.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per heat map (1, or H with ``per_head``), plus colour bar axes.

    Raises
    ------
    ValueError
        If the shapes and label lists do not agree.
    """
    att = np.asarray(mean_attention, dtype=np.float64)
    if att.ndim == 2:
        att = att[:, None, :]  # (K, 1, T)
    if att.ndim != 3:
        raise ValueError(f"mean_attention must be (K, H, T) or (K, T), got {att.shape}")
    k, h, t = att.shape
    names = _names(class_names, k)
    if dates is None:
        date_labels = [str(i) for i in range(t)]
    else:
        if len(dates) != t:
            raise ValueError(f"{len(dates)} dates for attention over {t} dates")
        date_labels = [d.strftime("%d %b") if hasattr(d, "strftime") else str(d) for d in dates]
    maps = [att[:, i, :] for i in range(h)] if per_head else [att.mean(axis=1)]
    subtitles = [f"head {i}" for i in range(h)] if per_head else [None]
    vmax = float(np.nanmax([np.nanmax(m) for m in maps])) if not np.isnan(att).all() else 1.0
    width = 7.5  # the book's column: a wider figure is shrunk and its labels with it
    fig, axes = plt.subplots(
        len(maps), 1, figsize=(width, len(maps) * max(2.5, 0.28 * k + 2.2)), layout="constrained"
    )
    axes = np.atleast_1d(axes)
    for ax, m, sub in zip(axes, maps, subtitles, strict=True):
        sns.heatmap(
            m,
            ax=ax,
            cmap="magma",
            vmin=0.0,
            vmax=vmax,
            xticklabels=date_labels,
            yticklabels=names,
            cbar_kws={"label": "attention weight"},
        )
        ax.set_xlabel("acquisition date")
        ax.set_ylabel("class")
        ax.tick_params(axis="x", labelrotation=90, labelsize=8)
        ax.tick_params(axis="y", labelrotation=0, labelsize=8)
        if sub is not None:
            ax.set_title(sub)
    fig.suptitle(title)
    return fig
