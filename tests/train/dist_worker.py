"""The body of tests/train/test_distributed.py's torchrun jobs (and of its one-process runs).

``python -m torch.distributed.run --standalone --nproc_per_node=2 tests/train/dist_worker.py
MODE ROOT OUT`` with MODE ``checks`` (every check, a JSON report per rank in OUT) or ``hang``
(rank 1 stops answering after its second step; rank 0 must fail on the collective timeout).
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from psetae.data.dataset import PixelSetDataset
from psetae.train import distributed
from psetae.train.fit import TrainConfig, evaluate_distributed, evaluate_model, fit
from tests.tiny import TINY_MODEL

# The module, not the function that psetae.train exports under the same name.
fit_module = importlib.import_module("psetae.train.fit")

TRAIN_IDS = list(range(10, 34))  # 24 parcels: 3 global batches of 8
VAL_IDS = list(range(34, 47))  # 13 parcels: uneven over 2 ranks
ONE_STEP_IDS = list(range(10, 26))  # 16 parcels: one global batch of 16
TIMEOUT_S = 5.0


def config(**kw) -> TrainConfig:
    base = dict(
        epochs=2,
        batch_size=8,
        npixel=12,  # at least every parcel's pixel count: the draw is no draw, on every rank
        jitter=None,
        seed=0,
        device="cpu",
        progress=False,
        model={**TINY_MODEL, "dropout": 0.0},
        nomenclature="crop",
        classes=None,
    )
    return TrainConfig(**{**base, **kw})


def datasets(root: Path, train_ids: list[int]) -> tuple[PixelSetDataset, PixelSetDataset]:
    kw = {"npixel": 12, "jitter": None, "seed": 0}
    train = PixelSetDataset(root, "crop", ids=train_ids, **kw)
    val = PixelSetDataset(
        root, "crop", ids=VAL_IDS, train=False, extra_stats=train.extra_stats, **kw
    )
    return train, val


def _flat(optimizer: torch.optim.Optimizer, what: str = "data") -> torch.Tensor:
    tensors = [getattr(p, what) for g in optimizer.param_groups for p in g["params"]]
    return torch.cat([t.detach().flatten() for t in tensors])


def one_step(root: Path, out: Path) -> dict[str, torch.Tensor]:
    """One Adam step on 16 parcels with BatchNorm in eval mode (running statistics: the
    same function of each parcel on every rank) and every Dropout off: the gradient of the
    global batch and the weights after the step."""
    got: dict[str, torch.Tensor] = {}

    def eval_batchnorm(module: nn.Module, args: tuple) -> None:
        # The TAE's attention dropout (0.1) is not config.dropout: switch off every Dropout.
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.Dropout)):
            module.eval()

    def record(optimizer, args, kwargs) -> None:
        got["grad"], got["weights"] = _flat(optimizer, "grad").clone(), _flat(optimizer).clone()

    hooks = [
        nn.modules.module.register_module_forward_pre_hook(eval_batchnorm),
        register_optimizer_step_post_hook(record),
    ]
    try:
        train, val = datasets(root, ONE_STEP_IDS)
        fit(train, val, config(epochs=1, batch_size=16), out, resume=False)
    finally:
        for h in hooks:
            h.remove()
    return got


def checks(root: Path, out: Path) -> None:
    ctx = distributed.setup(torch.device("cpu"), timeout_s=TIMEOUT_S)
    report: dict = {"rank": ctx.rank, "world_size": dist.get_world_size()}

    # One step of 2 x 8 parcels against one process's 16 (compared by the test).
    step = one_step(root, out / "one_step")
    if ctx.is_main:
        torch.save(step, out / "one_step_ddp.pt")

    # After every step the ranks hold the same weights; record what each rank trained on.
    diffs, moved, seen = [], [], []
    previous: list[torch.Tensor] = []

    def compare(optimizer, args, kwargs) -> None:
        w = _flat(optimizer)
        gathered = [torch.zeros_like(w) for _ in range(ctx.world_size)]
        dist.all_gather(gathered, w)
        diffs.append(float((gathered[0] - gathered[1]).abs().max()))
        moved.append(float((w - previous[-1]).abs().max()) if previous else float("inf"))
        previous.append(w.clone())

    import psetae.data.dataset as dataset_module

    collate = dataset_module.collate_pixel_sets

    def recording_collate(items):
        batch = collate(items)
        ids = batch["id"].tolist()
        if set(ids) <= set(TRAIN_IDS):
            seen.append(ids)
        return batch

    writes: list[str] = []
    save, write_json = fit_module.save_checkpoint, fit_module.write_json_atomic

    def recording_save(path, *a, **k):
        writes.append(str(path))
        return save(path, *a, **k)

    def recording_json(path, *a, **k):
        writes.append(str(path))
        return write_json(path, *a, **k)

    dataset_module.collate_pixel_sets = recording_collate
    fit_module.save_checkpoint, fit_module.write_json_atomic = recording_save, recording_json
    hook = register_optimizer_step_post_hook(compare)
    try:
        train, val = datasets(root, TRAIN_IDS)
        result = fit(train, val, config(), out / "full", resume=False, dist_timeout_s=TIMEOUT_S)
    finally:
        hook.remove()
        dataset_module.collate_pixel_sets = collate
        fit_module.save_checkpoint, fit_module.write_json_atomic = save, write_json
    report.update(rank_diffs=diffs, moved=moved, seen=seen, writes=writes)

    # Validation on 13 parcels shared 7 / 6: the metrics of one process on all 13.
    shared = evaluate_distributed(result.model, val, config(), torch.device("cpu"))
    alone = evaluate_model(result.model, val, config(), torch.device("cpu"))
    report["val"] = {
        "shared_cm": shared["cm"].tolist(),
        "alone_cm": alone["cm"].tolist(),
        "shared_loss": shared["loss"],
        "alone_loss": alone["loss"],
        "history_last": result.history[-1],
    }

    # Interrupted after epoch 1, resumed to epoch 2: the uninterrupted run's weights.
    fit(train, val, config(epochs=1), out / "resumed", resume=False)
    resumed = fit(train, val, config(), out / "resumed", resume=True)
    if ctx.is_main:
        a = torch.load(out / "full" / "last.pt", weights_only=True)
        b = torch.load(out / "resumed" / "last.pt", weights_only=True)
        report["resume_max_diff"] = max(
            float((a["state_dict"][k].double() - b["state_dict"][k].double()).abs().max())
            for k in a["state_dict"]
        )
        report["resume_history_equal"] = [
            {k: v for k, v in r.items() if k != "seconds"} for r in a["history"]
        ] == [{k: v for k, v in r.items() if k != "seconds"} for r in b["history"]]
        report["resumed_epochs"] = len(resumed.history)
    (out / f"report_{ctx.rank}.json").write_text(json.dumps(report))
    distributed.teardown()


def hang(root: Path, out: Path) -> None:
    """Rank 1 stops answering after its second step, as a rank stuck on a dead disk."""
    ctx = distributed.setup(torch.device("cpu"), timeout_s=TIMEOUT_S)
    steps = []

    def stall(optimizer, args, kwargs) -> None:
        steps.append(1)
        if ctx.rank == 1 and len(steps) == 2:
            time.sleep(300)

    register_optimizer_step_post_hook(stall)
    train, val = datasets(root, TRAIN_IDS)
    fit(train, val, config(), out / "hang", resume=False, dist_timeout_s=TIMEOUT_S)


if __name__ == "__main__":
    torch.set_num_threads(1)
    np.seterr(all="ignore")
    mode, root, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    {"checks": checks, "hang": hang}[mode](root, out)
