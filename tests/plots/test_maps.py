"""The prediction map fits the book's column, legend included, with a colour per class."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import geopandas as gpd
import matplotlib.pyplot as plt
import numpy as np
import pytest
from shapely.geometry import box

from psetae.plots.maps import MAX_COLOURS, plot_prediction_map


def _map(k: int, n: int = 120, seed: int = 0) -> gpd.GeoDataFrame:
    """n unit squares whose declared codes cycle through k long codes; a third predicted wrong."""
    rng = np.random.default_rng(seed)
    codes = [f"crop code {c:03d} (long)" for c in range(k)]
    true = [codes[i % k] for i in range(n)]
    pred = [codes[int(rng.integers(k))] if i % 3 == 0 else t for i, t in enumerate(true)]
    geoms = [box(i % 12, i // 12, i % 12 + 0.9, i // 12 + 0.9) for i in range(n)]
    return gpd.GeoDataFrame({"true_code": true, "pred_code": pred}, geometry=geoms)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _legend_colours(fig):
    (legend,) = fig.legends
    patches = [h for h in legend.legend_handles if h.get_label() != "wrong"]
    return [p.get_label() for p in patches], [tuple(p.get_facecolor()) for p in patches]


@pytest.mark.parametrize("k", [5, 25, 45])
def test_map_and_legend_fit_the_column(k):
    fig = plot_prediction_map(_map(k), max_classes=MAX_COLOURS)
    assert fig.get_figwidth() <= 7.5
    fig.canvas.draw()
    # what the notebook shows: the figure's tight bounding box (legend included)
    tight = fig.get_tightbbox(fig.canvas.get_renderer())
    assert tight.width <= 7.5 + 1e-6, f"{k} classes: {tight.width:.2f} in wide inline"
    (legend,) = fig.legends
    extent = legend.get_window_extent().transformed(fig.dpi_scale_trans.inverted())
    for ax in fig.axes:  # the legend lies below the maps, not over them
        box_ = ax.get_window_extent().transformed(fig.dpi_scale_trans.inverted())
        assert extent.y1 <= box_.y0 + 1e-6


def test_every_class_has_its_own_colour_past_20():
    labels, colours = _legend_colours(plot_prediction_map(_map(45), max_classes=45))
    assert len(labels) == 45 and len(set(colours)) == 45


def test_rare_classes_grouped_as_other():
    gdf = _map(45)
    labels, colours = _legend_colours(plot_prediction_map(gdf, max_classes=10))
    assert len(labels) == 10 and labels[-1] == "other" and len(set(colours)) == 10
    counts = gdf["true_code"].value_counts().add(gdf["pred_code"].value_counts(), fill_value=0)
    top = set(counts.sort_values(ascending=False, kind="stable").index[:9])
    assert set(labels[:-1]) == top
    with pytest.raises(ValueError, match="max_classes"):
        plot_prediction_map(gdf, max_classes=MAX_COLOURS + 1)
