"""pick_device: CUDA, then Apple MPS, then CPU; forcing a device this machine lacks is an error."""

from __future__ import annotations

import pytest
import torch

from psetae.device import pick_device


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto").type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device(None) == torch.device("cpu")


def test_forced_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda:0")
    with pytest.raises(ValueError, match="MPS is not available"):
        pick_device("mps")


def test_default_num_threads_shares_the_cores_among_local_ranks(monkeypatch):
    import os

    from psetae.device import default_num_threads

    monkeypatch.setattr(
        os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7}, raising=False
    )
    assert default_num_threads({}) == 8
    assert default_num_threads({"LOCAL_WORLD_SIZE": "2"}) == 4
    assert default_num_threads({"LOCAL_WORLD_SIZE": "3"}) == 2
    assert default_num_threads({"LOCAL_WORLD_SIZE": "16"}) == 1  # at least one
    for bad in ("0", "two", "-1"):
        with pytest.raises(ValueError, match="LOCAL_WORLD_SIZE"):
            default_num_threads({"LOCAL_WORLD_SIZE": bad})
