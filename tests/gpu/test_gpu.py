"""GPU checks: ``.venv/bin/python -m pytest tests/gpu -v`` (CONTRIBUTING.md, "The GPU check").

Each check runs on CUDA, skipped where there is none, and on the CPU, so that the same code is
known to run on every machine. The bodies are in tests/gpu/checks.py.
"""

from __future__ import annotations

import pytest
import torch

from . import checks

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=needs_cuda),
]


@pytest.mark.parametrize("device", DEVICES)
def test_reference_fixture(device):
    checks.check_reference_fixture(torch.device(device), atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_mixed_precision_training_step(device):
    checks.check_mixed_precision_step(torch.device(device))


@pytest.mark.parametrize("device", DEVICES)
def test_short_training_close_to_the_cpu_run(device, tmp_path):
    checks.check_training_close_to_cpu(tmp_path, torch.device(device))


@needs_cuda
def test_the_model_runs_on_the_gpu_by_default():
    # pick_device prefers CUDA, and the fast path's CPU-only chunks are not taken there.
    from psetae.device import pick_device
    from psetae.models import PseTae

    device = pick_device()
    assert device.type == "cuda"
    model = PseTae().to(device).eval()
    pixels = torch.randn(4, 24, 10, 64, device=device)
    mask = torch.ones(4, 24, 64, device=device)
    extra = torch.randn(4, 24, 4, device=device)
    with torch.no_grad():
        assert model(pixels, mask, extra).shape == (4, 20)
    assert torch.cuda.max_memory_allocated() > 0
