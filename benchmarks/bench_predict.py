"""End-to-end speed and peak memory of ``psetae predict`` on large simulated folders.

For each size: simulate a folder under /tmp (the simulator streams, block by block), write a
checkpoint of the default PSE-TAE fitted to it (random weights: the speed is that of a
trained model), then run ``python -m psetae predict`` in a fresh process and print

- parcels per second end to end (process start to CSV renamed in place, imports included)
  and inside the command (the predict call alone);
- the peak resident memory of that process (``VmHWM`` of ``/proc/self/status``), and its
  ratio to the smallest size's: memory that does not grow with the parcels gives ~1.0.

The folder is deleted afterwards. Target (issue 13): >= 3,000 parcels/s on 2 CPU threads with
the default model, peak memory independent of the number of parcels. The load average is
printed: on a machine shared with other jobs the figures are lower bounds.

Usage::

    .venv/bin/python benchmarks/bench_predict.py                        # 20,000 and 80,000
    .venv/bin/python benchmarks/bench_predict.py --sizes 20000 1000000 --threads 2
    .venv/bin/python benchmarks/bench_predict.py --num-workers 2 --ensemble 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs the CLI in the fresh process, then reports its own peak memory and the command's time.
CHILD = """
import sys, time
t0 = time.perf_counter()
from psetae.cli import main
rc = main(sys.argv[1:])
seconds = time.perf_counter() - t0
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
print(f'BENCH seconds={seconds:.3f} vmhwm_kb={hwm}', flush=True)
raise SystemExit(rc)
"""


def write_checkpoint(root: Path, path: Path, seed: int = 0) -> Path:
    """A checkpoint of the default PSE-TAE for ``root`` (as training would save it)."""
    from psetae.data.dataset import PixelSetDataset
    from psetae.train.checkpoint import save_checkpoint
    from psetae.train.crossval import resolve_classes, resolve_normalisation
    from psetae.train.fit import TrainConfig, dataset_metadata, init_model

    config = TrainConfig(seed=seed, device="cpu")
    data = PixelSetDataset(
        root,
        classes=resolve_classes(config),
        normalisation=resolve_normalisation(root, config, []),
        train=False,
        ids=None,
    )
    model = init_model(data, config)
    save_checkpoint(
        path,
        {
            **dataset_metadata(data, config),
            "model_name": config.model_name,
            "model_config": model.config.to_dict(),
            "state_dict": model.state_dict(),
            "train_config": config.to_dict(),
            "epoch": 0,
            "best_epoch": 0,
            "best_metric": float("nan"),
            "history": [],
            "optimizer": None,
            "scaler": None,
        },
    )
    return path


def run_predict(root: Path, checkpoints: list[Path], args: argparse.Namespace) -> dict:
    out = root.parent / "predictions.csv"
    cmd = [sys.executable, "-c", CHILD, "predict", str(root), "--checkpoint"]
    cmd += [str(c) for c in checkpoints]
    cmd += ["--out", str(out), "--threads", str(args.threads), "--no-progress"]
    cmd += ["--num-workers", str(args.num_workers), "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"predict failed:\n{done.stdout}\n{done.stderr}")
    line = [x for x in done.stdout.splitlines() if x.startswith("BENCH")][-1]
    fields = dict(kv.split("=") for kv in line.split()[1:])
    rows = sum(1 for _ in open(out)) - 1
    return {
        "wall": wall,
        "command": float(fields["seconds"]),
        "vmhwm_mb": int(fields["vmhwm_kb"]) / 1024,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 80_000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--ensemble", type=int, default=1, help="members (same seed)")
    args = parser.parse_args()

    from psetae.data.simulate import simulate_s2agri

    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"threads {args.threads}, workers {args.num_workers}, ensemble of {args.ensemble}")
    first_hwm = None
    for n in args.sizes:
        tmp = Path(tempfile.mkdtemp(prefix="bench_predict_", dir="/tmp"))
        try:
            t0 = time.perf_counter()
            root = simulate_s2agri(tmp / "data", n_parcels=n, seed=0)
            sim = time.perf_counter() - t0
            ckpts = [write_checkpoint(root, tmp / f"m{i}.pt") for i in range(args.ensemble)]
            r = run_predict(root, ckpts, args)
            assert r["rows"] == n, (r["rows"], n)
            first_hwm = first_hwm or r["vmhwm_mb"]
            print(
                f"{n:>9,} parcels: {n / r['wall']:7,.0f} parcels/s end to end "
                f"({r['wall']:.1f} s), {n / r['command']:7,.0f} in the command; "
                f"peak memory {r['vmhwm_mb']:.0f} MB (x{r['vmhwm_mb'] / first_hwm:.2f}); "
                f"simulated in {sim:.0f} s; load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
