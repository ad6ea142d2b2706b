"""The book's figures fit its ~700 px column without being shrunk, so their labels stay legible.

A figure wider than the column is scaled down in the page, and its 8 pt labels with it (to 3-5 px
for the widest ones before). Each figure of the chapters is at most 7.5 inches wide (750 px at
100 dpi, displayed at about that size) and its tick labels are at least 7.5 pt.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from psetae.plots.data import plot_acquisition_calendar, plot_class_counts, plot_class_profiles
from psetae.plots.encoders import plot_architecture, plot_attention_calendar, plot_master_query
from psetae.plots.losses import plot_focal_gradients, plot_focal_loss
from psetae.plots.maps import plot_prediction_map
from psetae.plots.training import (
    plot_attention_per_class,
    plot_confusion_matrix,
    plot_learning_curves,
)

K, T = 20, 24
NAMES = [f"class {i} with a long name" for i in range(K)]
DATES = [20170103 + 100 * (i // 2) + 10 * (i % 2) for i in range(T)]
rng = np.random.default_rng(0)
HISTORY = [
    {"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_oa": 0.5, "val_miou": 0.3}
    for e in range(1, 6)
]


def _parcels():
    import geopandas as gpd
    from shapely.geometry import box

    true = [NAMES[i % K] for i in range(60)]
    pred = [NAMES[(i + 1) % K] if i % 4 == 0 else t for i, t in enumerate(true)]
    geoms = [box(i % 10, i // 10, i % 10 + 0.9, i // 10 + 0.9) for i in range(60)]
    return gpd.GeoDataFrame({"true_code": true, "pred_code": pred}, geometry=geoms)


FIGURES = {
    "class profiles": lambda: plot_class_profiles(
        rng.random((200, T)), rng.integers(0, K, 200), DATES, NAMES
    ),
    "class counts": lambda: plot_class_counts(np.arange(1, K + 1) * 10, NAMES),
    "calendar": lambda: plot_acquisition_calendar(DATES, cloud_fraction=rng.random(T)),
    "confusion matrix": lambda: plot_confusion_matrix(rng.integers(0, 9, (K, K)), NAMES),
    "attention per class": lambda: plot_attention_per_class(
        rng.dirichlet(np.ones(T), size=K), dates=[str(d) for d in DATES], class_names=NAMES
    ),
    "learning curves": lambda: plot_learning_curves(HISTORY, best_epoch=3),
    "focal loss": lambda: plot_focal_loss([0.0, 1.0, 2.0]),
    "focal gradients": lambda: plot_focal_gradients([0.0, 1.0]),
    "attention calendar": lambda: plot_attention_calendar(
        rng.dirichlet(np.ones(T), size=(2, 4)), np.arange(T) * 10.0
    ),
    "architecture": plot_architecture,
    "prediction map": lambda: plot_prediction_map(_parcels()),
    "master query": lambda: plot_master_query(
        np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), [1.0, 0.2]
    ),
}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("name", FIGURES)
def test_figure_fits_the_column_with_legible_ticks(name):
    fig = FIGURES[name]()
    width, _ = fig.get_size_inches()
    assert width <= 7.5, f"{name}: {width:.1f} in wide, shrunk in the page"
    fig.canvas.draw()
    for ax in fig.axes:
        for label in ax.get_xticklabels() + ax.get_yticklabels():
            if label.get_text():
                assert label.get_fontsize() >= 7.5, (
                    f"{name}: tick label {label.get_text()!r} at {label.get_fontsize()} pt"
                )
