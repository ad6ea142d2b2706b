"""Tests of psetae/plots/training.py: each function returns a figure with the expected axes."""

from __future__ import annotations

import datetime

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from psetae.plots.training import (
    mean_attention_per_class,
    plot_attention_per_class,
    plot_confusion_matrix,
    plot_learning_curves,
    plot_per_class_iou,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _heatmap_values(ax) -> np.ndarray:
    """The array drawn by seaborn's heatmap (a QuadMesh) on an axes."""
    mesh = ax.collections[0]
    rows = len(ax.get_yticklabels())
    return np.asarray(mesh.get_array()).reshape(rows, -1)


def test_confusion_matrix_rows_are_normalised_by_the_true_class():
    cm = np.array([[8, 2, 0], [1, 1, 0], [0, 0, 0]])
    fig = plot_confusion_matrix(cm, ["a", "b", "c"], title="t")
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # the heat map and its colour bar
    assert ax.get_title() == "t"
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    values = _heatmap_values(ax)
    # Hand-computed: row 0 = [0.8, 0.2, 0], row 1 = [0.5, 0.5, 0], the empty row stays 0.
    np.testing.assert_allclose(values, [[0.8, 0.2, 0], [0.5, 0.5, 0], [0, 0, 0]])
    # Small matrices are annotated, one text per cell.
    assert len(ax.texts) == 9


def test_confusion_matrix_counts_and_errors():
    cm = np.array([[3, 1], [0, 2]])
    values = _heatmap_values(plot_confusion_matrix(cm, normalize=None).axes[0])
    np.testing.assert_allclose(values, cm)
    values = _heatmap_values(plot_confusion_matrix(cm, normalize="all").axes[0])
    np.testing.assert_allclose(values, cm / 6)
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="class names"):
        plot_confusion_matrix(cm, ["only one"])
    with pytest.raises(ValueError, match="normalize"):
        plot_confusion_matrix(cm, normalize="rows")


def test_per_class_iou_bars_and_mean_line():
    iou = np.array([0.5, np.nan, 0.25])
    fig = plot_per_class_iou(iou, ["a", "b", "c"], support=[10, 0, 3])
    ax = fig.axes[0]
    assert len(fig.axes) == 1
    widths = [p.get_width() for p in ax.patches]
    np.testing.assert_allclose(widths, [0.5, 0.0, 0.25])
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["a (n=10)", "b (n=0)", "c (n=3)"]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["0.50", "absent", "0.25"]
    # The mean over present classes is (0.5 + 0.25) / 2.
    (line,) = ax.get_lines()
    assert line.get_xdata()[0] == pytest.approx(0.375)
    assert "0.375" in ax.get_legend().get_texts()[0].get_text()
    with pytest.raises(ValueError, match="support"):
        plot_per_class_iou(iou, support=[1, 2])


def test_learning_curves_split_losses_and_metrics():
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "val_oa": 0.5 + e / 10,
         "val_miou": 0.2 + e / 20, "seconds": 3.0}
        for e in (1, 2, 3)
    ]  # fmt: skip
    fig = plot_learning_curves(history, best_epoch=2, title="curves")
    ax_loss, ax_metric = fig.axes
    assert fig._suptitle.get_text() == "curves"
    assert ax_loss.get_xlabel() == "epoch" and ax_metric.get_xlabel() == "epoch"
    loss_labels = [line.get_label() for line in ax_loss.get_lines()]
    metric_labels = [line.get_label() for line in ax_metric.get_lines()]
    # "seconds" is neither a loss nor a metric; the dotted line marks the best epoch.
    assert loss_labels == ["train_loss", "val_loss", "best epoch (2)"]
    assert metric_labels == ["val_oa", "val_miou", "best epoch (2)"]
    np.testing.assert_allclose(ax_loss.get_lines()[0].get_ydata(), [1, 0.5, 1 / 3])
    np.testing.assert_allclose(ax_metric.get_lines()[0].get_xdata(), [1, 2, 3])


def test_learning_curves_errors():
    with pytest.raises(ValueError, match="empty"):
        plot_learning_curves([])
    with pytest.raises(ValueError, match="val_f1"):
        plot_learning_curves([{"train_loss": 1.0}], metrics=["val_f1"])


def test_mean_attention_per_class_matches_a_hand_computation():
    att = np.array(
        [
            [[1.0, 0.0], [0.5, 0.5]],  # parcel of class 0
            [[0.0, 1.0], [0.5, 0.5]],  # parcel of class 0
            [[0.2, 0.8], [0.9, 0.1]],  # parcel of class 2
        ]
    )  # (N=3, H=2, T=2)
    out = mean_attention_per_class(att, np.array([0, 0, 2]), num_classes=3)
    assert out.shape == (3, 2, 2)
    np.testing.assert_allclose(out[0], [[0.5, 0.5], [0.5, 0.5]])
    assert np.isnan(out[1]).all()  # no parcel of class 1
    np.testing.assert_allclose(out[2], att[2])
    single = mean_attention_per_class(att[:, 0], np.array([0, 0, 2]), num_classes=3)
    assert single.shape == (3, 2)
    with pytest.raises(ValueError, match="labels"):
        mean_attention_per_class(att, np.array([0, 5, 1]), num_classes=3)


def test_attention_heat_map_averages_heads_and_labels_dates():
    mean = np.array([[[0.6, 0.4], [0.2, 0.8]], [[1.0, 0.0], [0.0, 1.0]]])  # (K=2, H=2, T=2)
    dates = [datetime.date(2017, 1, 3), datetime.date(2017, 2, 12)]
    fig = plot_attention_per_class(mean, dates=dates, class_names=["x", "y"], title="att")
    assert len(fig.axes) == 2  # one heat map and its colour bar
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["03 Jan", "12 Feb"]
    assert ax.get_xlabel() == "acquisition date" and ax.get_ylabel() == "class"
    np.testing.assert_allclose(_heatmap_values(ax), [[0.4, 0.6], [0.5, 0.5]])
    per_head = plot_attention_per_class(mean, per_head=True)
    assert len(per_head.axes) == 4  # two heat maps, two colour bars
    titles = [a.get_title() for a in per_head.axes if a.get_title()]
    assert titles == ["head 0", "head 1"]
    with pytest.raises(ValueError, match="dates"):
        plot_attention_per_class(mean, dates=dates[:1])


def test_learning_curves_dash_training_curves_and_use_integer_epochs():
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.0 / e} for e in (1, 2, 3)]
    ax_loss = plot_learning_curves(history).axes[0]
    styles = {line.get_label(): line.get_linestyle() for line in ax_loss.get_lines()}
    assert styles == {"train_loss": "--", "val_loss": "-"}
    ticks = ax_loss.get_xticks()
    np.testing.assert_allclose(ticks, np.round(ticks))
