"""Maps of predictions (chapter 7): declared crops beside predicted crops, errors highlighted.

Takes the GeoDataFrame of :func:`psetae.maps.join_predictions` (or the file written by
:func:`psetae.maps.write_prediction_map`, read back with geopandas) and returns a ``Figure``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

__all__ = ["plot_prediction_map"]


def plot_prediction_map(gdf, *, true_column: str = "true_code", pred_column: str = "pred_code",
                        title: str | None = None) -> Figure:  # fmt: skip
    """Declared (left) and predicted (right) classes of the parcels; wrong parcels outlined red.

    Parameters
    ----------
    gdf
        A GeoDataFrame with the two class columns (any codes) and the parcel polygons.
    true_column, pred_column
        The declared and the predicted class columns (the same codes).
    title
        Figure title (default: the overall accuracy over parcels with both values).

    Raises
    ------
    KeyError
        A column is missing.
    """
    for col in (true_column, pred_column):
        if col not in gdf.columns:
            raise KeyError(f"no column {col!r}; columns are {list(gdf.columns)}")
    known = gdf[true_column].notna() & gdf[pred_column].notna()
    codes = sorted({str(c) for c in gdf[true_column].dropna()} |
                   {str(c) for c in gdf[pred_column].dropna()})  # fmt: skip
    colours = plt.get_cmap("tab20")(np.arange(len(codes)) % 20)
    cmap = ListedColormap(colours)
    index = {c: k for k, c in enumerate(codes)}
    wrong = known & (gdf[true_column].astype(str) != gdf[pred_column].astype(str))
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.5), sharex=True, sharey=True)
    for ax, col, name in ((axes[0], true_column, "declared"), (axes[1], pred_column, "predicted")):
        values = gdf[col].map(lambda v: index.get(str(v), np.nan) if v == v else np.nan)
        gdf.assign(_k=values).plot(column="_k", ax=ax, cmap=cmap, vmin=-0.5,
                                   vmax=len(codes) - 0.5, edgecolor="white", linewidth=0.3,
                                   missing_kwds={"color": "lightgrey"})  # fmt: skip
        ax.set_title(name)
        ax.set_axis_off()
    if wrong.any():
        gdf[wrong].boundary.plot(ax=axes[1], color="red", linewidth=1.2)
    handles = [Patch(color=colours[k], label=c) for k, c in enumerate(codes)]
    handles.append(Patch(facecolor="none", edgecolor="red", label="wrong"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8,
               frameon=False)  # fmt: skip
    oa = float((~wrong[known]).mean()) if known.any() else float("nan")
    fig.suptitle(title or f"{int(known.sum())} parcels, overall accuracy {oa:.2f}")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
