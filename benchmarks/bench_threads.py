"""Does training depend on the number of torch threads? The same seed, 1 thread, 2 threads,
then 1 thread again: prints each run's last validation mIoU and the largest weight difference
from the first run.

    .venv/bin/python benchmarks/bench_threads.py [--root data/s2agri-sim] [--parcels 1500] [--epochs 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from psetae.train.crossval import _parcel_ids, make_datasets
from psetae.train.fit import TrainConfig, fit
from psetae.train.splits import kfold_splits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--root", type=Path, default=Path("data/s2agri-sim"))
    p.add_argument("--parcels", type=int, default=1500)
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    config = TrainConfig(epochs=args.epochs, device="cpu", progress=False, seed=0)
    split = kfold_splits(_parcel_ids(args.root, config)[: args.parcels], 5, 0)[0]
    runs = []
    for threads in (1, 2, 1):
        torch.set_num_threads(threads)
        train, val, _ = make_datasets(args.root, split, config)
        with tempfile.TemporaryDirectory() as out:
            result = fit(train, val, config, out, resume=False)
        weights = torch.cat([q.detach().flatten() for q in result.model.parameters()])
        runs.append((threads, weights, result.history[-1]["val_miou"]))
    for threads, weights, miou in runs:
        diff = float((weights - runs[0][1]).abs().max())
        print(f"{threads} thread(s): val mIoU {miou:.4f}, max |w - w(first run)| {diff:.3g}")


if __name__ == "__main__":
    main()
