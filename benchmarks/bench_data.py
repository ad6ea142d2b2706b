"""How fast parcels are loaded, from the folder form and the packed form, next to training.

Prints parcels per second for:

- the folder form (one ``.npy`` per parcel, as the reference reads it) and the packed form
  (one memory-mapped array), each in a single process and through a DataLoader with 2
  workers and batches of 128;
- a PSE-TAE training step (forward, backward, Adam) at B = 128 on this machine's CPU, if
  :mod:`psetae.models` is available.

Loading keeps up with training when its parcels/s exceed the training step's.

Usage::

    .venv/bin/python benchmarks/bench_data.py                 # builds 3,000 parcels in a temp dir
    .venv/bin/python benchmarks/bench_data.py --parcels 5000
    .venv/bin/python benchmarks/bench_data.py --root path/to/dataset   # an existing folder

Files are read from a warm page cache (they were just written); a cold first epoch on a
slow disk is slower for the folder form, which opens one file per parcel.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from psetae.data.dataset import PixelSetDataset, collate_pixel_sets
from psetae.data.format import compute_normalisation, write_dataset
from psetae.data.packed import pack_dataset

T, C, E = 24, 10, 4
DATES = [
    20170105, 20170115, 20170204, 20170224, 20170316, 20170405, 20170425, 20170515,
    20170525, 20170604, 20170614, 20170624, 20170704, 20170714, 20170724, 20170803,
    20170813, 20170902, 20170922, 20171012, 20171101, 20171121, 20171211, 20171231,
]  # fmt: skip


def random_dataset(root: Path, n_parcels: int, seed: int = 0) -> Path:
    """Random int16 reflectance with an S2-Agri-like spread of parcel sizes (1 to ~600)."""
    rng = np.random.default_rng(seed)
    sizes = np.clip(rng.lognormal(np.log(80), 0.9, n_parcels), 1, 600).astype(int)
    pixels = {i: rng.integers(0, 6000, (T, C, n), dtype=np.int16) for i, n in enumerate(sizes)}
    labels = {"label_44class": {i: int(rng.integers(0, 20)) for i in range(n_parcels)}}
    geom = {i: rng.uniform(0, 1, E).tolist() for i in range(n_parcels)}
    norm = compute_normalisation(pixels, per="date_channel")
    return write_dataset(root, pixels, labels, DATES, geom, normalisation=norm)


def build(root: Path, n_parcels: int) -> str:
    """Write a dataset with the simulator if it is there, else random data."""
    try:
        from psetae.data.simulate import simulate_s2agri
    except ImportError:
        random_dataset(root, n_parcels)
        return "random data (write_dataset)"
    try:
        simulate_s2agri(root, n_parcels=n_parcels, seed=0)
    except Exception as e:  # the simulator is work in progress: do not let it stop the bench
        print(f"note: simulator failed ({type(e).__name__}: {e}); using random data")
        random_dataset(root, n_parcels)
        return "random data (write_dataset)"
    return "the simulator (simulate_s2agri)"


def rate_single(ds: PixelSetDataset, n: int) -> float:
    """Parcels/s of ds[i] in this process, over n parcels in random order."""
    order = np.random.default_rng(0).permutation(len(ds))[:n]
    start = time.perf_counter()
    for i in order:
        ds[int(i)]
    return len(order) / (time.perf_counter() - start)


def rate_loader(ds: PixelSetDataset, workers: int, batch: int = 128) -> float:
    """Parcels/s of a shuffled epoch through a DataLoader (second epoch: workers warm)."""
    loader = DataLoader(
        ds,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        collate_fn=collate_pixel_sets,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    for _ in loader:  # first epoch starts the workers
        pass
    start = time.perf_counter()
    n = sum(len(b["id"]) for b in loader)
    return n / (time.perf_counter() - start)


def rate_training(ds: PixelSetDataset, batch: int = 128, steps: int = 10) -> float | None:
    """Parcels/s of PSE-TAE training steps (forward, backward, Adam) at batch size ``batch``."""
    try:
        from psetae.models import PseTae
    except ImportError as e:
        print(f"training step: skipped, psetae.models is not available ({e})")
        return None
    torch.manual_seed(0)
    model = PseTae(
        input_dim=ds.num_channels, extra_size=ds.extra_size, len_max_seq=ds.sequence_length
    )
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    b = collate_pixel_sets([ds[i % len(ds)] for i in range(batch)])
    labels = b["label"] % model.num_classes

    def step() -> None:
        opt.zero_grad()
        logits = model(b["pixels"], b["mask"], b.get("extra"), b["positions"])
        torch.nn.functional.cross_entropy(logits, labels).backward()
        opt.step()

    for _ in range(2):  # warm-up
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="an existing dataset folder")
    parser.add_argument("--parcels", type=int, default=3000, help="parcels to build (default 3000)")
    parser.add_argument(
        "--single", type=int, default=2000, help="parcels timed per single-process run"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        if args.root is None:
            root = Path(tmp) / "dataset"
            start = time.perf_counter()
            source = build(root, args.parcels)
            print(
                f"built {args.parcels} parcels from {source} in {time.perf_counter() - start:.1f} s"
            )
        else:
            root = args.root
        packed_root = Path(tmp) / "packed"
        start = time.perf_counter()
        pack_dataset(root, out=packed_root)
        print(f"packed in {time.perf_counter() - start:.1f} s")

        kw = dict(labels_required=False, train=True, npixel=64, normalisation=None)
        if (root / "normalisation.json").is_file():
            kw["normalisation"] = root / "normalisation.json"
        folder = PixelSetDataset(root, use_packed=False, **kw)
        packed = PixelSetDataset(packed_root, **kw)
        sizes = np.array([folder._store.count(int(i)) for i in folder.ids])
        print(
            f"dataset: {len(folder)} parcels, T={folder.sequence_length}, C={folder.num_channels}, "
            f"pixels per parcel median {int(np.median(sizes))}, max {sizes.max()}; "
            f"torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}"
        )
        n = min(args.single, len(folder))
        print(f"folder form, 1 process:        {rate_single(folder, n):8.0f} parcels/s")
        print(f"packed form, 1 process:        {rate_single(packed, n):8.0f} parcels/s")
        print(f"folder form, DataLoader 2 wk:  {rate_loader(folder, 2):8.0f} parcels/s")
        print(f"packed form, DataLoader 2 wk:  {rate_loader(packed, 2):8.0f} parcels/s")
        train = rate_training(packed)
        if train is not None:
            print(f"PSE-TAE training step, B=128:  {train:8.0f} parcels/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
