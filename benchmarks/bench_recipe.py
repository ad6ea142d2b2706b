"""The training recipe, honestly: each departure from the reference protocol and each option,
measured over seeds on one fold of the simulated data, beside the random forest.

    .venv/bin/python benchmarks/bench_recipe.py [--root data/s2agri-sim] [--seeds 0 1 2]
        [--epochs 20] [--parcels 3000] [--variants default pytorch_init ...] [--threads 1]

Every variant is the package's default training (reference initialisation, exact focal
gradient, fixed evaluation draws, constant learning rate) with one thing changed:

    default           the package's defaults
    pytorch_init      PyTorch's own initialisation instead of the reference's
    reference_grad    the reference's focal gradient (the factor (1 - p)^gamma held constant)
    random_eval       the test parcels sampled at random with jitter, as the reference evaluates
    draws_5           test-time averaging over 5 draws of S pixels per parcel
    cosine            a cosine learning-rate schedule
    weight_decay      Adam's weight decay 1e-4
    forest            the random-forest baseline (psetae baseline) on the same split

Prints, per variant, the test OA and mIoU of each seed, their mean and standard deviation, and
in how many seeds the variant beat the default on mIoU (paired by seed). Seeds change the
split too, so the pairing compares like with like.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from psetae.data.dataset import PixelSetDataset
from psetae.metrics import confusion_matrix, mean_iou, overall_accuracy
from psetae.train.crossval import _parcel_ids, make_datasets
from psetae.train.fit import TrainConfig, evaluate_model, fit
from psetae.train.forest import pixel_set_statistics, train_forest
from psetae.train.splits import kfold_splits

VARIANTS = {
    "default": {},
    "pytorch_init": {"init": "pytorch"},
    "reference_grad": {"focal_gradient": "reference"},
    "random_eval": {},  # the same training as default; only the test sampling differs
    "draws_5": {"eval_draws": 5},
    "cosine": {"lr_schedule": "cosine"},
    "weight_decay": {"weight_decay": 1e-4},
    "forest": {},
}


def split_for(root: Path, config: TrainConfig, parcels: int, seed: int):
    ids = _parcel_ids(root, config)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(ids, size=min(parcels, len(ids)), replace=False).tolist())
    return kfold_splits(chosen, folds=5, seed=seed)[0]


def random_eval(model: torch.nn.Module, test: PixelSetDataset, config: TrainConfig) -> dict:
    """Test as the reference does: random draws of S pixels and jitter on the test parcels."""
    noisy = test.subset(np.arange(len(test)), train=True)
    noisy.jitter = config.jitter
    return evaluate_model(model, noisy, config)


def run(variant: str, root: Path, seed: int, args: argparse.Namespace, work: Path) -> dict:
    base = TrainConfig(epochs=args.epochs, seed=seed, device="cpu", progress=False, num_workers=0)
    config = dataclasses.replace(base, **VARIANTS[variant])
    split = split_for(root, config, args.parcels, seed)
    train, val, test = make_datasets(root, split, config)
    t0 = time.perf_counter()
    if variant == "forest":
        forest = train_forest(train, n_trees=100, seed=seed)
        pred = forest.predict_proba(pixel_set_statistics(test)).argmax(1)
        cm = confusion_matrix(test.labels, pred, forest.num_classes)
    else:
        result = fit(train, val, config, work / f"{variant}-{seed}", resume=False)
        ev = (
            random_eval(result.model, test, config)
            if variant == "random_eval"
            else (evaluate_model(result.model, test, config))
        )
        cm = ev["cm"]
    return {"oa": overall_accuracy(cm), "miou": mean_iou(cm), "s": time.perf_counter() - t0}


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", type=Path, default=Path("data/s2agri-sim"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--parcels", type=int, default=3000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"# {args.root}: {args.parcels} parcels, fold 1 of 5, {args.epochs} epochs, "
        f"seeds {args.seeds}, {args.threads} thread(s)",
        flush=True,
    )
    results: dict[str, dict[int, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            results[variant] = {}
            for seed in args.seeds:
                r = run(variant, args.root, seed, args, Path(tmp))
                results[variant][seed] = r
                print(f"{variant:15s} seed {seed}: OA {r['oa']:.4f} mIoU {r['miou']:.4f} "
                      f"({r['s']:.0f} s)", flush=True)  # fmt: skip
    print("\n| variant | OA mean ± std | mIoU mean ± std | mIoU above default (seeds) |")
    print("|---|---|---|---|")
    for variant, by_seed in results.items():
        oa = [r["oa"] for r in by_seed.values()]
        miou = [r["miou"] for r in by_seed.values()]
        wins = "-"
        if variant != "default" and "default" in results:
            diffs = [by_seed[s]["miou"] - results["default"][s]["miou"] for s in by_seed]
            wins = f"{sum(d > 0 for d in diffs)}/{len(diffs)} (mean {np.mean(diffs):+.3f})"
        print(f"| {variant} | {np.mean(oa):.3f} ± {_sd(oa):.3f} | {np.mean(miou):.3f} ± "
              f"{_sd(miou):.3f} | {wins} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
