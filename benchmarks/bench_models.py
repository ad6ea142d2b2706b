"""Speed of the PSE-TAE model on this machine: inference and training step, as a fraction
of the rate of a large fp32 matrix product timed in the same run.

    .venv/bin/python benchmarks/bench_models.py [--threads 2] [--repeats 10] [--compile]

Prints a table: median milliseconds per batch (B=128, T=24, C=10, S=64, the paper's
default model), FLOPs counted by torch.utils.flop_counter, achieved GFLOP/s, their ratio
to the matrix-product rate, and the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from psetae.losses import FocalLoss
from psetae.models import PseTae


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def paired_ms(
    fn: Callable[[], object], matmul: Callable[[], object], repeats: int, warmup: int = 3
) -> tuple[list[float], list[float]]:
    """Wall times (ms) of ``fn`` and of ``matmul``, alternated, so that both see the same
    load from other processes on a shared machine."""
    for _ in range(warmup):
        fn()
    model_ms, matmul_ms = [], []
    for _ in range(repeats):
        for fun, times in ((matmul, matmul_ms), (fn, model_ms)):
            start = time.perf_counter()
            fun()
            times.append(1000 * (time.perf_counter() - start))
    return model_ms, matmul_ms


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` as counted by PyTorch's FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    B, T, C, S, E = args.batch, 24, 10, 64, 4
    pixels = torch.randn(B, T, C, S)
    mask = (torch.rand(B, T, S) < 0.8).float()
    mask[:, :, 0] = 1  # every set has a valid pixel
    extra = torch.randn(B, T, E)
    positions = torch.cumsum(torch.randint(5, 20, (B, T)), dim=1).float()
    labels = torch.randint(0, 20, (B,))

    # Reference rate: a large fp32 matrix product, timed in this very run, alternated with
    # the model's calls.
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    matmul_flops = 2 * n**3

    def matmul() -> None:
        torch.mm(a, b)

    matmul()

    rows = []

    def measure(name: str, model: torch.nn.Module, with_positions: bool) -> None:
        pos = positions if with_positions else None
        criterion = FocalLoss(gamma=1.0)
        # foreach: one kernel per operation for all parameters rather than one per
        # parameter (PyTorch's default on CPU); see the "Adam step alone" line.
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)

        def infer() -> None:
            model.eval()
            with torch.no_grad():
                model(pixels, mask, extra, pos)

        def train_step() -> None:
            model.train()
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(pixels, mask, extra, pos), labels)
            loss.backward()
            optimizer.step()

        for label, fn in (("inference", infer), ("train step", train_step)):
            flops = count_flops(fn)
            model_ms, matmul_ms = paired_ms(fn, matmul, args.repeats)
            ms = statistics.median(model_ms)
            # Ratio of the rates within each pair, then the median over the pairs.
            ratio = statistics.median(
                (flops / t) / (matmul_flops / u) for t, u in zip(model_ms, matmul_ms, strict=True)
            )
            rate = flops / ms / 1e6
            mm_rate = matmul_flops / statistics.median(matmul_ms) / 1e6
            rows.append((f"{name}: {label}", ms, flops / 1e9, rate, mm_rate, ratio))

    model = PseTae()
    measure("eager, fixed positions", model, False)
    measure("eager, positions (B, T)", model, True)
    if args.compile:
        measure("compiled, fixed positions", torch.compile(model), False)

    # The optimiser step alone: PyTorch's default Adam on CPU against foreach.
    adam_ms = {}
    for foreach in (False, True):
        model = PseTae()
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=foreach)
        adam_ms[foreach] = median_ms(opt.step, args.repeats)

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, B={B} T={T} C={C} S={S}")
    print(f"matmul: fp32 {n}x{n} @ {n}x{n}, timed alternately with each case\n")
    header = (
        f"{'case':<40} {'ms/batch':>9} {'GFLOP':>7} {'GFLOP/s':>8} {'matmul GFLOP/s':>15}"
        f" {'of matmul':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, ms, gflop, rate, mm_rate, ratio in rows:
        print(f"{name:<40} {ms:9.1f} {gflop:7.3f} {rate:8.1f} {mm_rate:15.1f} {ratio:10.1%}")
    print(
        f"\nAdam step alone: {adam_ms[False]:.2f} ms (default, one kernel per parameter), "
        f"{adam_ms[True]:.2f} ms (foreach=True, used above)"
    )
    print(f"peak resident memory: {peak_mb:.0f} MiB")


if __name__ == "__main__":
    main()
