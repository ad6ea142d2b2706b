"""The simulator: how fast it is, how much memory it needs, and what the models make of it.

Three sub-commands, each printing figures:

- ``speed``: seconds to simulate and write the ``book`` preset (median of ``--repeat`` runs);
- ``memory``: peak RSS of simulating and writing ``--sizes`` parcels, each in a fresh process
  (it should not grow with the count: the writer streams chunks of parcels);
- ``compare``: on the ``book`` preset over ``--seeds``, fold 1 of the paper's 5-fold split
  (60% train, 20% validation, 20% test, stratified by nothing but shuffled by the seed): a
  logistic regression on each parcel's mean time series (per band and date, standardised), a
  random forest (100 trees) on mean + std per band and date + the 4 geometric features, and
  PSE-TAE trained for ``--epochs`` epochs on one thread (best validation epoch kept). OA and mIoU
  on the test fold, over the paper's 20 classes, against the labels as written (with label
  noise on, those are the declared, noisy labels, as with real data).

Usage::

    export PYTHONPATH=$PWD   # this checkout's psetae
    python benchmarks/bench_simulate.py speed --repeat 3
    python benchmarks/bench_simulate.py memory --sizes 20000 80000
    python benchmarks/bench_simulate.py compare --seeds 0 1 2 --epochs 12

Run ``compare`` with another checkout's ``psetae`` first on ``PYTHONPATH`` to measure an older
simulator the same way (the script uses only ``simulate_s2agri(root, preset=, seed=)``).
The machine is shared: timings depend on its load.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from psetae.data.classes import S2AGRI_CLASSES
from psetae.data.format import load_parcel, read_geomfeat, read_labels


def cmd_speed(args: argparse.Namespace) -> None:
    from psetae.data import simulate

    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            start = time.perf_counter()
            simulate.simulate_s2agri(Path(tmp) / f"s{r}", preset="book", seed=r)
            seconds.append(time.perf_counter() - start)
    n = simulate.PRESETS["book"].n_parcels
    print(
        f"simulator v{simulate.SIMULATOR_VERSION}: book preset ({n} parcels) "
        f"median {np.median(seconds):.1f} s over {args.repeat} runs {[round(s, 1) for s in seconds]}"
    )


_CHILD = """
import resource, sys, time
from psetae.data.simulate import simulate_s2agri
start = time.perf_counter()
simulate_s2agri(sys.argv[1], preset="book", n_parcels=int(sys.argv[2]), seed=0)
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def cmd_memory(args: argparse.Namespace) -> None:
    for n in args.sizes:
        with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, str(Path(tmp) / "sim"), str(n)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            du = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
        seconds, rss_kb = float(out[0]), int(out[1])
        print(
            f"{n:>9,} parcels: {seconds:6.1f} s, peak RSS {rss_kb / 1024:6.0f} MiB, "
            f"{du / 2**30:.2f} GiB on disk, {n / seconds:,.0f} parcels/s"
        )


def parcel_features(root: Path, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Mean (N, T*C) and mean + std + geometric features (N, 2*T*C + 4) of each parcel."""
    geom = read_geomfeat(root)
    means, full = [], []
    for pid in ids:
        a = load_parcel(root, pid).astype(np.float64)  # (T, C, n)
        if a.shape[2]:
            m, s = a.mean(2).ravel(), a.std(2).ravel()
        else:  # an empty parcel: nothing to see but its shape
            m = s = np.zeros(a.shape[0] * a.shape[1])
        means.append(m)
        full.append(np.concatenate([m, s, geom[pid]]))
    return np.array(means), np.array(full)


def _scores(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> tuple[float, float]:
    from psetae.metrics import confusion_matrix, mean_iou, overall_accuracy

    cm = confusion_matrix(y_true, y_pred, k)
    return overall_accuracy(cm), mean_iou(cm)


def run_baselines(root: Path, split, seed: int) -> dict[str, tuple[float, float]]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = read_labels(root, "label_44class")
    index = {c: k for k, c in enumerate(S2AGRI_CLASSES)}
    out = {}
    xm_tr, xf_tr = parcel_features(root, split.train)
    xm_te, xf_te = parcel_features(root, split.test)
    y_tr = np.array([index[labels[i]] for i in split.train])
    y_te = np.array([index[labels[i]] for i in split.test])
    k = len(S2AGRI_CLASSES)
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    lr.fit(xm_tr, y_tr)
    out["logreg (mean)"] = _scores(y_te, lr.predict(xm_te), k)
    rf = RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=seed)
    rf.fit(xf_tr, y_tr)
    out["RF (mean+std+geom)"] = _scores(y_te, rf.predict(xf_te), k)
    return out


def run_psetae(root: Path, split, seed: int, epochs: int, out_dir: Path) -> tuple[float, float]:
    import torch

    from psetae.train.crossval import make_datasets
    from psetae.train.fit import TrainConfig, evaluate_model, fit

    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=epochs, seed=seed, device="cpu", amp=False, progress=False)
    train, val, test = make_datasets(root, split, cfg)
    result = fit(train, val, cfg, out_dir, resume=False)
    metrics = evaluate_model(result.model, test, cfg)
    return metrics["oa"], metrics["miou"]


def cmd_compare(args: argparse.Namespace) -> None:
    from psetae.data import simulate
    from psetae.data.dataset import PixelSetDataset
    from psetae.train.splits import kfold_splits

    rows: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for seed in args.seeds:
            root = Path(tmp) / f"sim{seed}"
            start = time.perf_counter()
            simulate.simulate_s2agri(root, preset="book", seed=seed)
            sim_s = time.perf_counter() - start
            ids = PixelSetDataset(root, classes=S2AGRI_CLASSES, npixel=1, train=False).ids
            split = kfold_splits([int(i) for i in ids], folds=5, seed=seed)[0]
            res = run_baselines(root, split, seed)
            if args.epochs > 0:
                start = time.perf_counter()
                res[f"PSE-TAE ({args.epochs} ep)"] = run_psetae(
                    root, split, seed, args.epochs, Path(tmp) / f"run{seed}"
                )
                res[f"PSE-TAE ({args.epochs} ep)"] += (time.perf_counter() - start,)
            for name, r in res.items():
                rows.setdefault(name, []).append(r[:2])
                extra = f" ({r[2]:.0f} s)" if len(r) > 2 else ""
                print(f"seed {seed} ({sim_s:.0f} s to simulate): {name:22s} OA {r[0]:.3f} "
                      f"mIoU {r[1]:.3f}{extra}", flush=True)  # fmt: skip
    print(f"\nsimulator v{simulate.SIMULATOR_VERSION}, book preset, seeds {args.seeds}, "
          "fold 1 test set, mean +- std over seeds")  # fmt: skip
    summary = {}
    for name, vals in rows.items():
        a = np.array(vals)
        summary[name] = {"oa": a[:, 0].tolist(), "miou": a[:, 1].tolist()}
        print(f"  {name:22s} OA {a[:, 0].mean():.3f} +- {a[:, 0].std():.3f}   "
              f"mIoU {a[:, 1].mean():.3f} +- {a[:, 1].std():.3f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--repeat", type=int, default=3)
    m = sub.add_parser("memory")
    m.add_argument("--sizes", type=int, nargs="+", default=[20_000, 80_000])
    m.add_argument("--tmp", default=None, help="folder for the temporary sets (default: /tmp)")
    c = sub.add_parser("compare")
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    c.add_argument("--epochs", type=int, default=12, help="PSE-TAE epochs (0: baselines only)")
    c.add_argument("--tmp", default=None)
    c.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    {"speed": cmd_speed, "memory": cmd_memory, "compare": cmd_compare}[args.cmd](args)
    print(
        f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB"
    )


if __name__ == "__main__":
    main()
