"""Tests of psetae/plots/encoders.py: each figure has the axes, images and lines it promises."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from psetae.models.tae import positional_encoding
from psetae.plots.encoders import (
    plot_attention_calendar,
    plot_encoding_dimensions,
    plot_pixel_sets,
    plot_positional_encoding,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_pixel_sets_one_panel_per_set_and_padding_hatched():
    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(3, 10, 16)).astype(np.float32)
    mask = np.ones((3, 16), dtype=np.float32)
    mask[1, 5:] = 0  # 11 padding columns in the second set
    fig = plot_pixel_sets(pixels, mask, titles=["a", "b", "c"])
    panels = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert len(panels) == 3
    assert [ax.get_title(loc="left") for ax in panels] == ["a", "b", "c"]
    assert panels[0].images[0].get_array().shape == (10, 16)
    # one hatched span per padding column, only where the mask is 0
    assert [len(ax.patches) for ax in panels] == [0, 11, 0]
    assert len(fig.axes) == 4  # 3 panels + colour bar


def test_pixel_sets_rejects_mismatched_mask():
    with pytest.raises(ValueError, match="mask"):
        plot_pixel_sets(np.zeros((2, 10, 8)), np.ones((2, 7)))


def test_positional_encoding_heat_map_shows_the_table():
    positions = torch.tensor([0.0, 10.0, 35.0, 90.0])
    pe = positional_encoding(positions, 16)
    fig = plot_positional_encoding(pe, positions)
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), pe.numpy())
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "10", "35", "90"]


def test_encoding_dimensions_curve_and_marks_per_dimension():
    positions = np.array([0.0, 20.0, 50.0, 120.0])
    fig = plot_encoding_dimensions(positions, d=128, dims=[0, 1, 64])
    ax = fig.axes[0]
    assert len(ax.lines) == 6  # a curve and its acquisition markers per dimension
    x, y = ax.lines[3].get_data()  # markers of dim 1 = cos(p); lines: curve, marks, ...
    np.testing.assert_allclose(x, positions)
    np.testing.assert_allclose(y, np.cos(positions), atol=1e-6)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        "dim 0 (sin, period 6 d)",
        "dim 1 (cos, period 6 d)",
        "dim 64 (sin, period 199 d)",
    ]
    with pytest.raises(ValueError, match="dims"):
        plot_encoding_dimensions(positions, d=8, dims=[8])


def test_attention_calendar_one_line_per_head_per_parcel():
    attention = torch.softmax(torch.randn(2, 4, 6), dim=2)
    positions = torch.tensor([[0.0, 5, 10, 20, 40, 80], [0.0, 7, 14, 21, 28, 35]])
    fig = plot_attention_calendar(attention, positions, titles=["p1", "p2"])
    assert len(fig.axes) == 2
    for i, ax in enumerate(fig.axes):
        assert len(ax.lines) == 5  # 4 heads + the uniform level
        x, y = ax.lines[2].get_data()
        np.testing.assert_allclose(x, positions[i].numpy())
        np.testing.assert_allclose(y, attention[i, 2].numpy())
        assert ax.lines[4].get_ydata()[0] == pytest.approx(1 / 6)
    # a single parcel (n_head, T) with a shared calendar
    fig = plot_attention_calendar(attention[0], positions[0])
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="positions"):
        plot_attention_calendar(attention, positions[:, :5])


def test_architecture_one_box_and_name_per_stage_and_arrows_between():
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    from psetae.plots.encoders import ARCHITECTURE, plot_architecture

    fig = plot_architecture()
    ax = fig.axes[0]
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(boxes) == len(ARCHITECTURE) and len(arrows) == len(ARCHITECTURE) - 1
    texts = [t.get_text() for t in ax.texts]
    assert [s[0] for s in ARCHITECTURE] == [t for t in texts if t in {s[0] for s in ARCHITECTURE}]
    assert "logits (B, K)" in texts
    with pytest.raises(ValueError):
        plot_architecture([])


def test_master_query_bars_are_the_softmax_of_the_scaled_scores():
    from psetae.plots.encoders import plot_master_query

    keys = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    query = np.array([2.0, 0.5])
    fig = plot_master_query(keys, query, labels=["a", "b", "c"])
    heights = np.array([b.get_height() for b in fig.axes[1].patches])
    scores = keys @ query / np.sqrt(2)
    np.testing.assert_allclose(heights, np.exp(scores) / np.exp(scores).sum())
    assert heights.argmax() == 0, "the key aligned with the query gets the most weight"
    with pytest.raises(ValueError):
        plot_master_query(keys, query, labels=["a"])
