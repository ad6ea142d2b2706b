"""Tests of psetae/plots/data.py: the figures have the expected axes, lines and values."""

from __future__ import annotations

import datetime as dt

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from psetae.plots.data import (
    plot_acquisition_calendar,
    plot_class_counts,
    plot_class_profiles,
    plot_parcel_pixels,
    to_dates,
)

DATES = [20170103, 20170123, 20170212, 20170304, 20170410]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_to_dates() -> None:
    assert to_dates(np.array(DATES[:2])) == [dt.date(2017, 1, 3), dt.date(2017, 1, 23)]
    with pytest.raises(ValueError, match="YYYYMMDD"):
        to_dates([2017013])


def test_plot_parcel_pixels_mean_line() -> None:
    v = np.arange(15, dtype=float).reshape(5, 3)  # (T, n)
    fig = plot_parcel_pixels(v, DATES, ylabel="NDVI")
    (ax,) = fig.axes
    lines = ax.get_lines()
    # 3 pixel lines, the mean line and an empty line that only labels the pixels in the legend
    assert len(lines) == 5
    np.testing.assert_allclose(lines[3].get_ydata(), [1, 4, 7, 10, 13])
    assert ax.get_ylabel() == "NDVI"


def test_plot_parcel_pixels_subsamples_lines() -> None:
    v = np.random.default_rng(0).random((5, 300))
    fig = plot_parcel_pixels(v, DATES, max_pixels=20)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 22
    np.testing.assert_allclose(lines[20].get_ydata(), v.mean(axis=1))
    with pytest.raises(ValueError, match="values must be"):
        plot_parcel_pixels(np.zeros((4, 3)), DATES)
    with pytest.raises(ValueError, match="values must be"):
        plot_parcel_pixels(np.zeros((5, 0)), DATES)


def test_plot_class_profiles_medians() -> None:
    rng = np.random.default_rng(1)
    values = rng.random((30, 5))
    labels = np.array([0] * 10 + [2] * 20)
    fig = plot_class_profiles(values, labels, DATES, ["a", "b", "c"], ncols=2)
    assert len(fig.axes) == 3  # the fourth grid cell is removed
    a, b, c = fig.axes
    np.testing.assert_allclose(a.get_lines()[0].get_ydata(), np.median(values[:10], axis=0))
    assert len(b.get_lines()) == 0 and b.get_title() == "b (n=0)"
    np.testing.assert_allclose(c.get_lines()[0].get_ydata(), np.median(values[10:], axis=0))
    with pytest.raises(ValueError, match="labels must be"):
        plot_class_profiles(values, labels + 1, DATES, ["a", "b", "c"])


def test_plot_class_counts_sorted() -> None:
    fig = plot_class_counts([3, 30, 10], ["rare", "common", "mid"], log=True)
    (ax,) = fig.axes
    (bars,) = ax.containers
    assert [b.get_width() for b in bars] == [30, 10, 3]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["common", "mid", "rare"]
    assert ax.get_xscale() == "log"
    with pytest.raises(ValueError, match="counts for"):
        plot_class_counts([1, 2], ["a"])


def test_plot_acquisition_calendar_gaps() -> None:
    fig = plot_acquisition_calendar(DATES)
    ax_t, ax_g = fig.axes
    (bars,) = ax_g.containers
    assert [b.get_height() for b in bars] == [20, 20, 20, 37]
    fig = plot_acquisition_calendar(DATES, cloud_fraction=[0, 0.5, 1, 0.2, 0.1])
    assert len(fig.axes) == 3  # time line, gaps and the colour bar
    with pytest.raises(ValueError, match="cloud_fraction"):
        plot_acquisition_calendar(DATES, cloud_fraction=[0.1])
    with pytest.raises(ValueError, match="increasing"):
        plot_acquisition_calendar(DATES[::-1])
