"""Shared fixtures of the model tests."""

from __future__ import annotations

import pytest
import torch

from .naive_psetae import load_fixture


@pytest.fixture(scope="session")
def reference():
    """The reference implementation's fixture (tests/data/psetae_reference.npz)."""
    return load_fixture()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
