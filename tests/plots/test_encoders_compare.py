"""Tests of psetae/plots/encoders_compare.py: the figures draw the numbers they are given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from psetae.plots.encoders_compare import plot_attention_heads, plot_encoder_comparison


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_attention_heads_one_image_per_parcel_heads_by_dates():
    rng = np.random.default_rng(0)
    attention = rng.dirichlet(np.ones(24), size=(3, 16))  # (N, H, T)
    fig = plot_attention_heads(attention, np.arange(24) * 10.0, titles=["a", "b", "c"])
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 3
    assert [ax.get_title(loc="left") for ax in panels] == ["a", "b", "c"]
    for ax, a in zip(panels, attention, strict=True):
        np.testing.assert_allclose(ax.images[0].get_array(), a)  # heads down, dates across
    # one colour scale for all panels, from 0 to the largest weight
    assert {ax.images[0].get_clim() for ax in panels} == {(0.0, attention.max())}
    assert panels[0].get_xticklabels()[1].get_text() == "20"  # days, not indices
    assert fig.get_size_inches()[0] <= 7.5


def test_attention_heads_refuses_shapes_that_do_not_fit():
    a = np.full((2, 4, 5), 0.2)
    with pytest.raises(ValueError, match=r"\(N, n_head, T\)"):
        plot_attention_heads(a[0], np.arange(5))
    with pytest.raises(ValueError, match="positions"):
        plot_attention_heads(a, np.arange(6))
    with pytest.raises(ValueError, match="titles"):
        plot_attention_heads(a, np.arange(5), titles=["only one"])


def test_comparison_draws_every_run_and_the_mean_in_the_given_order():
    scores = {"a": [0.1, 0.3], "b": [0.5, 0.6, 1.0], "forest": [0.4]}
    costs = {"a": 2.0, "b": 8.0, "forest": float("nan")}
    fig = plot_encoder_comparison(scores, costs, title="t")
    left, right = fig.axes
    rows = {"a": 2, "b": 1, "forest": 0}  # the first model on top
    labels = {
        t.get_text(): y for t, y in zip(left.get_yticklabels(), left.get_yticks(), strict=True)
    }
    assert labels == rows
    dots = [line for line in left.lines if line.get_marker() == "o"]
    bars = [line for line in left.lines if line.get_marker() != "o"]
    for line, (m, s) in zip(dots, scores.items(), strict=True):
        np.testing.assert_allclose(line.get_xdata(), s)
        assert set(line.get_ydata()) == {rows[m]}
    np.testing.assert_allclose([b.get_xdata()[0] for b in bars], [0.2, 0.7, 0.4])
    # the right panel: mean score against cost, without the model that has no cost
    points = [(float(line.get_xdata()[0]), float(line.get_ydata()[0])) for line in right.lines]
    assert points == [(2.0, pytest.approx(0.2)), (8.0, pytest.approx(0.7))]
    assert [t.get_text() for t in right.texts] == ["a", "b"]


def test_comparison_without_costs_has_one_panel_and_refuses_bad_input():
    assert len(plot_encoder_comparison({"a": [0.1]}).axes) == 1
    with pytest.raises(ValueError, match="no model"):
        plot_encoder_comparison({})
    with pytest.raises(ValueError, match="without a score"):
        plot_encoder_comparison({"a": []})
    with pytest.raises(ValueError, match="costs for models without scores"):
        plot_encoder_comparison({"a": [0.1]}, {"z": 1.0})
