"""Shared fixtures: a tiny hand-made dataset in the pixel-set format, one torch thread."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from psetae.data.format import write_dataset

# Four dates: days since the first are 0, 10, 30 and 55.
TINY_DATES = [20170105, 20170115, 20170204, 20170301]
TINY_POSITIONS = [0.0, 10.0, 30.0, 55.0]
TINY_T, TINY_C = 4, 3
# id -> number of pixels: fewer than 64, none, more than 64, exactly 64, one, more.
TINY_SIZES = {10: 5, 11: 0, 12: 100, 13: 64, 14: 1, 20: 70}
TINY_LABELS = {
    "label_44class": {10: 1, 11: 3, 12: 4, 13: 1, 14: 3, 20: 99},
    "label_19class": {10: 0, 11: 2, 12: 2, 13: 0, 14: 1, 20: 5},
}
TINY_GEOMFEAT = {
    10: [10.0, 5.0, 2.0, 0.5],
    11: [4.0, 1.0, 4.0, 1.0],
    12: [40.0, 100.0, 0.4, 0.8],
    13: [30.0, 64.0, 0.47, 0.7],
    14: [4.0, 1.0, 4.0, 1.0],
    20: [36.0, 70.0, 0.51, 0.6],
}


def tiny_arrays(dtype: type = np.int16, seed: int = 0) -> dict[int, np.ndarray]:
    """The pixels of the tiny dataset: {id: (T, C, n)} reflectance-like integers."""
    rng = np.random.default_rng(seed)
    return {
        pid: rng.integers(0, 10000, size=(TINY_T, TINY_C, n)).astype(dtype)
        for pid, n in TINY_SIZES.items()
    }


def make_tiny_dataset(root: Path, **overrides: object) -> Path:
    """Write the tiny dataset to ``root``; keyword arguments replace write_dataset's."""
    kwargs: dict[str, object] = {
        "pixels": tiny_arrays(),
        "labels": TINY_LABELS,
        "dates": TINY_DATES,
        "geomfeat": TINY_GEOMFEAT,
    }
    kwargs.update(overrides)
    return write_dataset(root, **kwargs)


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """A freshly written tiny dataset folder (int16 pixels, two nomenclatures)."""
    return make_tiny_dataset(tmp_path / "tiny")


@pytest.fixture
def tiny() -> SimpleNamespace:
    """The tiny dataset's constants and helpers, for tests that need their own variant."""
    return SimpleNamespace(
        dates=TINY_DATES,
        positions=TINY_POSITIONS,
        t=TINY_T,
        c=TINY_C,
        sizes=TINY_SIZES,
        labels=TINY_LABELS,
        geomfeat=TINY_GEOMFEAT,
        arrays=tiny_arrays,
        make=make_tiny_dataset,
    )


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # The tests run tiny tensors: threads only add synchronisation, badly so on a busy machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
