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


def _torchrun_ddp(device: str, n: int, out) -> dict:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]
    cmd += [str(repo / "tests" / "gpu" / "ddp_worker.py"), device, str(out)]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "ddp.json").read_text())


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_ddp_nccl_sync_batchnorm_equals_one_process_on_the_global_batch(tmp_path):
    """2 ranks x 8 parcels with SyncBatchNorm: the BatchNorm running statistics and the
    averaged gradients of one process on all 16."""
    r = _torchrun_ddp("cuda", 2, tmp_path)
    assert r["backend"] == "nccl" and r["sync"] and r["world_size"] == 2
    assert r["running_stats_diff"] < 1e-5 and r["grad_diff"] < 1e-5


def test_ddp_gloo_on_cpus_keeps_batchnorm_local(tmp_path):
    """On CPUs (gloo) BatchNorm is local: the running statistics are rank 0's 8 parcels',
    not those of the 16, which the SyncBatchNorm check above relies on to mean something."""
    r = _torchrun_ddp("cpu", 2, tmp_path)
    assert r["backend"] == "gloo" and not r["sync"]
    assert r["running_stats_diff"] > 1e-3


@needs_cuda
def test_torchrun_one_process_on_the_gpu(tmp_path):
    """torchrun with one rank on this GPU: alone, no process group and no wrapping (the
    same step as one process); a machine with 2 GPUs runs the nccl check above."""
    r = _torchrun_ddp("cuda", 1, tmp_path)
    assert r["world_size"] == 1
    assert r["running_stats_diff"] < 1e-5 and r["grad_diff"] < 1e-5
