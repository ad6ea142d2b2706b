"""How long the pre-flight check (psetae.data.validate.check_dataset) takes on a dataset.

Prints the median of a few runs on the given folder, with the parcels as stored (int16:
headers only) and, with ``--float``, on a float32 copy in a temporary folder (headers plus
the streamed NaN scan of every pixel). Files are read from a warm page cache.

Usage::

    .venv/bin/python benchmarks/bench_check_dataset.py data/s2agri-sim [--float] [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from psetae.data.format import list_data_ids, load_parcel
from psetae.data.validate import check_dataset


def _median_seconds(root: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        check_dataset(root)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--float", action="store_true", help="also time a float32 copy")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ids = list_data_ids(args.root)
    seconds = _median_seconds(args.root, args.runs)
    print(f"{args.root}: {len(ids)} parcels, check_dataset median {seconds:.2f} s")
    if args.float:
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "float"
            (copy / "DATA").mkdir(parents=True)
            shutil.copytree(args.root / "META", copy / "META")
            for pid in ids:
                np.save(copy / "DATA" / f"{pid}.npy", load_parcel(args.root, pid).astype("f4"))
            seconds = _median_seconds(copy, args.runs)
            print(f"float32 copy: check_dataset median {seconds:.2f} s (with the NaN scan)")


if __name__ == "__main__":
    main()
