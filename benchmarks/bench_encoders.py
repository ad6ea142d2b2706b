"""The full comparison of book chapter 6: every temporal encoder after the PSE, and a random forest.

    .venv/bin/python benchmarks/bench_encoders.py [--epochs 100] [--seeds 0 1 2] [--folds 5]
        [--max-parcels N] [--npixel 64] [--batch-size 128] [--dataset simulated|s2agri]
        [--device auto]
        [--out runs/bench_encoders]

It executes the chapter itself (``book/06_ltae_and_baselines.ipynb``, with papermill) with the
full setting instead of the chapter's small CI run, so the comparison is the chapter's code and
nothing else: the same folds for every model, one training per model, seed and fold with
``psetae.train.fit.fit``, the random forest on the same training and test parcels. By default:
all parcels of the simulated S2-Agri, 5 folds, all 5 tested, 100 epochs, seeds 0, 1, 2, S = 64,
batches of 128 (5 encoders x 3 seeds x 5 folds = 75 trainings: hours, for a GPU). It trains
every encoder once ``psetae.train.fit.TrainConfig`` has ``model_name``; before that, PSE-TAE
and the forest only (the chapter says so in its output).

Prints the table the chapter writes: per model its parameters, FLOPs per parcel, time per batch of
128 parcels (forward and training step, on the device it ran on) and the mean and standard
deviation of the test OA and mIoU over seeds and folds, then the ordering by mIoU. Writes into
``--out``: ``runs.csv`` (one row per model, fold and seed), ``table.csv`` and the executed
notebook ``06_ltae_and_baselines.ipynb`` with its figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "06_ltae_and_baselines.ipynb"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--folds", type=int, default=5, help="k of the k-fold split (all tested)")
    p.add_argument("--max-parcels", type=int, default=None, help="a sample (default: all)")
    p.add_argument("--npixel", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--dataset", default="simulated", choices=["simulated", "s2agri"])
    p.add_argument("--data-dir", default=str(ROOT / "data"))
    p.add_argument("--device", default="auto")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_encoders")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.folds < 2 or args.batch_size < 2 or not args.seeds:
        p.error("need --epochs >= 1, --folds >= 2, --batch-size >= 2 and at least one seed")
    return args


def main(argv: list[str] | None = None) -> int:
    import pandas as pd
    import papermill

    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    parameters = {
        "dataset": args.dataset,
        "data_dir": str(Path(args.data_dir).resolve()),
        "device": args.device,
        "max_parcels": args.max_parcels,
        "folds": args.folds,
        "test_folds": args.folds,
        "epochs": args.epochs,
        "seeds": list(args.seeds),
        "npixel": args.npixel,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "results_dir": str(args.out.resolve()),
    }
    print("executing", CHAPTER.relative_to(ROOT), "with", parameters, flush=True)
    papermill.execute_notebook(
        str(CHAPTER),
        str(args.out / CHAPTER.name),
        parameters=parameters,
        cwd=str(CHAPTER.parent),
        progress_bar=False,
    )
    table = pd.read_csv(args.out / "table.csv", index_col=0)  # written by the chapter
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string())
    order = table["miou mean"].dropna().sort_values(ascending=False)
    print("ordering by mean test mIoU:", " > ".join(f"{m} ({v:.3f})" for m, v in order.items()))
    print(f"times measured on: {table['measured on'].iloc[0]}")
    print(f"per-run rows: {args.out / 'runs.csv'}; executed chapter: {args.out / CHAPTER.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
