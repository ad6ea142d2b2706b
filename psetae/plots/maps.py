"""Maps of predictions (chapter 7): declared crops beside predicted crops, errors highlighted.

Takes the GeoDataFrame of :func:`psetae.maps.join_predictions` (or the file written by
:func:`psetae.maps.write_prediction_map`, read back with geopandas) and returns a ``Figure``
that fits the book's 7.5 in column, its legend included.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

__all__ = ["plot_prediction_map", "distinct_colours", "MAX_COLOURS"]

#: Distinct colours available: tab20, tab20b and tab20c one after the other.
MAX_COLOURS = 60
_OTHER = "other"
_WIDTH = 7.5  # inches: the book's column
_MAP_HEIGHT = 3.9


def distinct_colours(n: int) -> np.ndarray:
    """(n, 4) RGBA colours, all different, for n <= :data:`MAX_COLOURS`.

    Raises
    ------
    ValueError
        More colours than :data:`MAX_COLOURS`.
    """
    if n > MAX_COLOURS:
        raise ValueError(f"at most {MAX_COLOURS} distinct colours, not {n}")
    table = np.concatenate([plt.get_cmap(m)(np.arange(20)) for m in ("tab20", "tab20b", "tab20c")])
    return table[:n]


def _grouped(gdf, true_column: str, pred_column: str, max_classes: int) -> dict[str, str]:
    """``{code: legend entry}``: each code itself, or "other" beyond the ``max_classes - 1``
    most frequent codes (declared and predicted counts together) when there are more."""
    values = [str(v) for col in (true_column, pred_column) for v in gdf[col].dropna()]
    codes, counts = np.unique(values, return_counts=True)
    if len(codes) <= max_classes:
        return {c: c for c in codes}
    kept = set(codes[np.argsort(-counts, kind="stable")[: max_classes - 1]])
    return {c: (c if c in kept else _OTHER) for c in codes}


def _fit_legend(fig: Figure, handles: list[Patch], fontsize: float):
    """A legend below the maps in as many columns as fit the figure's width."""
    renderer = fig.canvas.get_renderer()
    width = fig.get_figwidth() * fig.dpi
    ncol = min(len(handles), 8)
    while True:
        legend = fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=fontsize,
                            frameon=False, handlelength=1.2, columnspacing=1.0)  # fmt: skip
        if ncol == 1 or legend.get_window_extent(renderer).width <= 0.98 * width:
            return legend
        legend.remove()
        ncol -= 1


def plot_prediction_map(gdf, *, true_column: str = "true_code", pred_column: str = "pred_code",
                        title: str | None = None, max_classes: int = 30) -> Figure:  # fmt: skip
    """Declared (left) and predicted (right) classes of the parcels; wrong parcels outlined red.

    The figure is 7.5 in wide; the legend sits below the maps in as many columns as fit that
    width, and the figure grows in height to hold it. Every class has its own colour.

    Parameters
    ----------
    gdf
        A GeoDataFrame with the two class columns (any codes) and the parcel polygons.
    true_column, pred_column
        The declared and the predicted class columns (the same codes).
    title
        Figure title (default: the overall accuracy over parcels with both values).
    max_classes
        Most legend entries: with more codes, the ``max_classes - 1`` most frequent keep their
        colour and the rest share one, "other" (errors are still outlined per code). At most
        :data:`MAX_COLOURS`.

    Raises
    ------
    KeyError
        A column is missing.
    ValueError
        ``max_classes`` is not in [2, :data:`MAX_COLOURS`].
    """
    if not 2 <= max_classes <= MAX_COLOURS:
        raise ValueError(f"max_classes must be in [2, {MAX_COLOURS}], not {max_classes}")
    for col in (true_column, pred_column):
        if col not in gdf.columns:
            raise KeyError(f"no column {col!r}; columns are {list(gdf.columns)}")
    known = gdf[true_column].notna() & gdf[pred_column].notna()
    entry = _grouped(gdf, true_column, pred_column, max_classes)
    labels = sorted(set(entry.values()) - {_OTHER}) + ([_OTHER] if _OTHER in entry.values() else [])
    colours = distinct_colours(len(labels))
    if labels and labels[-1] == _OTHER:
        colours[-1] = (0.35, 0.35, 0.35, 1.0)  # dark grey: not a class colour
    index = {c: labels.index(e) for c, e in entry.items()}
    wrong = known & (gdf[true_column].astype(str) != gdf[pred_column].astype(str))
    fig, axes = plt.subplots(1, 2, figsize=(_WIDTH, _MAP_HEIGHT), sharex=True, sharey=True)
    for ax, col, name in ((axes[0], true_column, "declared"), (axes[1], pred_column, "predicted")):
        values = gdf[col].map(lambda v: index.get(str(v), np.nan) if v == v else np.nan)
        gdf.assign(_k=values).plot(column="_k", ax=ax, cmap=ListedColormap(colours), vmin=-0.5,
                                   vmax=len(labels) - 0.5, edgecolor="white", linewidth=0.3,
                                   missing_kwds={"color": "lightgrey"})  # fmt: skip
        ax.set_title(name)
        ax.set_axis_off()
    if wrong.any():
        gdf[wrong].boundary.plot(ax=axes[1], color="red", linewidth=1.2)
    handles = [Patch(color=colours[k], label=c) for k, c in enumerate(labels)]
    handles.append(Patch(facecolor="none", edgecolor="red", label="wrong"))
    legend = _fit_legend(fig, handles, fontsize=8)
    legend_h = legend.get_window_extent(fig.canvas.get_renderer()).height / fig.dpi + 0.1
    fig.set_figheight(_MAP_HEIGHT + legend_h)
    oa = float((~wrong[known]).mean()) if known.any() else float("nan")
    fig.suptitle(title or f"{int(known.sum())} parcels, overall accuracy {oa:.2f}")
    fig.tight_layout(rect=(0, legend_h / (_MAP_HEIGHT + legend_h), 1, 1))
    return fig
