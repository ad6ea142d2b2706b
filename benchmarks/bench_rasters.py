"""Speed and peak memory of ``import_rasters`` on synthetic scenes of two sizes.

Each scene is written by :func:`psetae.data.scene.simulate_scene` (10 bands + a cloud band,
24 dates, fields at the same density), then imported in a fresh process, so that the peak
resident memory (``ru_maxrss``) is the import's own. The target: an S2-Agri-sized import
(191,703 parcels) in under 10 minutes, i.e. >= ~320 parcels/s, with a peak memory that does
not grow with the scene.

    python benchmarks/bench_rasters.py                       # 1024^2 / 5,000 and 2048^2 / 20,000
    python benchmarks/bench_rasters.py --sizes 512 1024 --repeats 3

Scenes are cached under ``--work`` (default a folder in the system temporary directory).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(scene: Path, out: Path, tile: int) -> None:
    import numpy as np  # noqa: F401  (imported before the baseline is read)

    from psetae.data.rasters import import_rasters

    base = _peak_kib()
    t0, c0 = time.perf_counter(), _cpu()
    res = import_rasters(scene / "rasters", scene / "parcels.gpkg", out, label_column="code",
                         name_column="name", cloud_band="CLOUD", tile=tile, overwrite=True)  # fmt: skip
    dt, cpu = time.perf_counter() - t0, _cpu() - c0
    print(json.dumps({"seconds": dt, "cpu_seconds": cpu, "parcels": res.n_parcels,
                      "base_kib": base, "peak_kib": _peak_kib()}))  # fmt: skip


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak_kib() -> int:
    """This process's peak resident memory (VmHWM; ru_maxrss would carry the parent's over)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048], help="scene sides")
    ap.add_argument("--density", type=float, default=20000 / 2048**2, help="fields per pixel")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "psetae-bench")
    ap.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.tile)
        return
    from psetae.data.scene import simulate_scene

    print("(measured on a shared, loaded machine: compare ratios, not absolute figures)")
    for size in args.sizes:
        n_fields = int(round(args.density * size * size))
        scene = args.work / f"scene-{size}-{n_fields}"
        if not scene.exists():
            t0 = time.perf_counter()
            simulate_scene(scene, width=size, height=size, n_fields=n_fields, seed=0)
            print(f"scene {size}x{size}, {n_fields} fields written in "
                  f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
        runs = []
        for _ in range(args.repeats):
            cmd = [sys.executable, __file__, "--tile", str(args.tile), "--child", str(scene),
                   str(args.work / f"ds-{size}")]  # fmt: skip
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
        sec = statistics.median(r["seconds"] for r in runs)
        cpu = statistics.median(r["cpu_seconds"] for r in runs)
        n = runs[0]["parcels"]
        peak = max(r["peak_kib"] for r in runs) / 1024
        grow = max(r["peak_kib"] - r["base_kib"] for r in runs) / 1024
        print(
            f"{size:>5}^2 px, 24 dates, 10 bands + cloud, {n:>6} parcels: wall {sec:6.1f} s, "
            f"CPU {cpu:6.1f} s (medians of {len(runs)}): {n / sec:5.0f} parcels/s wall, "
            f"{n / cpu:5.0f} per CPU second; peak RSS {peak:5.0f} MiB ({grow:+.0f} MiB over "
            f"the imported modules); 191,703 parcels: {191703 / (n / sec) / 60:.1f} min wall, "
            f"{191703 / (n / cpu) / 60:.1f} min of one core"
        )


if __name__ == "__main__":
    main()
