"""Body of the DDP checks of tests/gpu/test_gpu.py, started by torchrun (nccl on GPUs, gloo on
CPUs): ``python -m torch.distributed.run --standalone --nproc_per_node=N
tests/gpu/ddp_worker.py DEVICE OUT``.

Every rank builds the same PSE-TAE and the same global batch of 16 parcels, trains one step
on its 16 / N of them through psetae.train.fit's wrapping (DistributedDataParallel, and
SyncBatchNorm on GPUs), and rank 0 compares with one process on the whole batch: the
BatchNorm running statistics (those of the global batch only if the statistics are
synchronised) and the averaged gradients. Writes OUT/ddp.json.
"""

from __future__ import annotations

import copy
import importlib
import json
import sys
from pathlib import Path

import torch
from torch import nn

from psetae.models import PseTae
from psetae.models.config import PseTaeConfig
from psetae.train import distributed
from tests.tiny import TINY_MODEL

fit_module = importlib.import_module("psetae.train.fit")


def batch(device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    b = {
        "pixels": torch.randn(16, 5, 3, 6, generator=g),
        "mask": torch.ones(16, 5, 6),
        "extra": torch.randn(16, 5, 4, generator=g),
        "positions": torch.arange(5.0).expand(16, 5).contiguous(),
        "label": torch.arange(16) % 3,
    }
    return {k: v.to(device) for k, v in b.items()}


def step(model: nn.Module, b: dict[str, torch.Tensor]) -> None:
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()  # no dropout: the same function on every rank
    logits = model(b["pixels"], b["mask"], extra=b["extra"], positions=b["positions"])
    nn.functional.cross_entropy(logits, b["label"]).backward()


def main(device_name: str, out: Path) -> None:
    device = torch.device(device_name)
    ctx = distributed.setup(device, timeout_s=60)
    device = ctx.device(device)
    torch.manual_seed(0)
    cfg = PseTaeConfig(**{**TINY_MODEL, "dropout": 0.0}).for_data(3, 4, 5, 3)
    model = PseTae(cfg).to(device)
    alone = copy.deepcopy(model)
    trained = fit_module._parallel(model, ctx, device, sync_batchnorm=True, compile=False)
    b = batch(device)
    mine = {k: v[ctx.rank :: ctx.world_size] for k, v in b.items()}
    step(trained, mine)
    if ctx.is_main:
        step(alone, b)
        bn = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        bn_alone = [m for m in alone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        stats = max(
            float((a.running_mean - c.running_mean).abs().max())
            + float((a.running_var - c.running_var).abs().max())
            for a, c in zip(bn, bn_alone, strict=True)
        )
        grads = max(
            float((p.grad - q.grad).abs().max())
            for p, q in zip(model.parameters(), alone.parameters(), strict=True)
        )
        report = {
            "world_size": ctx.world_size,
            "sync": any(isinstance(m, nn.SyncBatchNorm) for m in model.modules()),
            "running_stats_diff": stats,
            "grad_diff": grads,
            "backend": torch.distributed.get_backend() if ctx.enabled else None,
        }
        (out / "ddp.json").write_text(json.dumps(report))
    distributed.teardown()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
