"""Speed of every registered model on this machine, side by side with a plain comparator.

    .venv/bin/python benchmarks/bench_models.py [--threads 2] [--repeats 10] [--batch 128]
        [--compile] [--competitor none|torch|busy|all] [--competitor-threads 2]

For each model of ``psetae.models.MODELS`` (PSE-TAE alone when there is no registry yet):
parameters, FLOPs (torch.utils.flop_counter), median milliseconds per batch for inference
and for a training step (forward, focal loss, backward, Adam), achieved GFLOP/s and their
share of the rate of a large fp32 matrix product timed alternately in the same run.

PSE-TAE is also timed with the plain path of the package (``psetae.models.fast.use_fast(m,
False)``, the book's code) and against :class:`ReferenceStylePseTae`: plain PyTorch in the
reference's style, written from SPEC (not the reference's code). Both compute the same
function with the same weights, which the script checks before timing.

``--competitor torch`` starts another process that multiplies matrices with
``--competitor-threads`` threads, ``busy`` starts that many pure-Python busy loops (one
process each); the benchmark times everything alone, then next to the competitor, and prints
the slowdown of each. The competitors stop by themselves after a time limit and are killed at
the end. On a machine shared with other work every figure moves: quote them with the load.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from psetae.losses import FocalLoss
from psetae.models import PseTae, compile_model
from psetae.models.fast import use_fast
from psetae.models.tae import positional_encoding

B_DEFAULT, T, C, S, E, K = 128, 24, 10, 64, 4, 20


# --- the comparator: plain PyTorch, reference-style, written from SPEC ----------------------


class ReferenceStyleLinearBN(nn.Module):
    """Linear on (N, S, C), then BatchNorm1d on (N, C, S) and ReLU, laid out as the reference's."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.norm = nn.BatchNorm1d(n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x.permute(0, 2, 1)).permute(0, 2, 1)  # (N, C, S) -> (N, C', S)
        return F.relu(self.norm(x))  # (N, C', S)


class ReferenceStyleLinearBlock(nn.Module):
    """Linear -> BatchNorm1d (-> ReLU) on (N, C) rows."""

    def __init__(self, n_in: int, n_out: int, relu: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.norm = nn.BatchNorm1d(n_out)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.linear(x))
        return F.relu(x) if self.relu else x


class ReferenceStylePseTae(nn.Module):
    """Plain PyTorch, reference-style, written from SPEC: the default PSE-TAE, for timing only.

    Pixels as (B*T, C, S) with BatchNorm over (N, C, S), masked pooling with plain tensor ops,
    multi-head attention with the values repeated per head, nn.Linear and softmax. Its state
    dict pairs one to one, in order, with :class:`psetae.models.PseTae`'s.
    """

    def __init__(self) -> None:
        super().__init__()
        self.mlp1 = nn.Sequential(ReferenceStyleLinearBN(10, 32), ReferenceStyleLinearBN(32, 64))
        self.mlp2 = nn.Sequential(ReferenceStyleLinearBlock(132, 128, relu=False))
        self.in_norm = nn.LayerNorm(128)
        self.fc1_q = nn.Linear(128, 128)
        self.fc1_k = nn.Linear(128, 128)
        self.fc2 = nn.Sequential(nn.BatchNorm1d(128), nn.Linear(128, 128))
        self.mlp3 = nn.Sequential(
            ReferenceStyleLinearBlock(512, 128), ReferenceStyleLinearBlock(128, 128)
        )
        self.dropout = nn.Dropout(0.2)
        self.attention_dropout = nn.Dropout(0.1)
        self.out_norm = nn.LayerNorm(128)
        self.decoder = nn.Sequential(
            ReferenceStyleLinearBlock(128, 64), ReferenceStyleLinearBlock(64, 32), nn.Linear(32, K)
        )
        self.n_head, self.d_k = 4, 32
        self.register_buffer(
            "pe", positional_encoding(torch.arange(1, T + 1), 128, 1000.0), persistent=False
        )

    def forward(self, pixels, mask, extra, positions=None):
        b, t, c, s = pixels.shape
        x = pixels.reshape(b * t, c, s)  # (N, C, S)
        m = mask.reshape(b * t, 1, s)  # (N, 1, S)
        h = self.mlp1(x)  # (N, D, S)
        n = m.sum(dim=-1)  # (N, 1)
        mean = (h * m).sum(dim=-1) / n  # (N, D)
        var = ((h - mean.unsqueeze(-1)) ** 2 * m).sum(dim=-1) / (n - 1).clamp(min=1)
        std = torch.sqrt(var + 1e-31)  # (N, D)
        pooled = torch.cat([mean, std, extra.reshape(b * t, -1)], dim=1)  # (N, 132)
        e = self.mlp2(pooled).view(b, t, -1)  # (B, T, d)

        pe = self.pe if positions is None else positional_encoding(positions, 128, 1000.0)
        e = self.in_norm(e) + pe  # (B, T, d)
        H, dk, d = self.n_head, self.d_k, e.shape[-1]
        q = self.fc2(self.fc1_q(e).mean(dim=1)).view(b, H, dk)  # (B, H, dk)
        q = q.permute(1, 0, 2).reshape(H * b, 1, dk)  # (H*B, 1, dk)
        k = self.fc1_k(e).view(b, t, H, dk).permute(2, 0, 1, 3).reshape(H * b, t, dk)
        v = e.repeat(H, 1, 1)  # (H*B, T, d): the values, one copy per head
        a = torch.softmax(torch.bmm(q, k.transpose(1, 2)) / math.sqrt(dk), dim=2)  # (H*B, 1, T)
        o = torch.bmm(self.attention_dropout(a), v).view(H, b, d)  # (H, B, d)
        o = o.permute(1, 0, 2).reshape(b, H * d)  # (B, H*d)
        y = self.out_norm(self.dropout(self.mlp3(o)))  # (B, 128)
        return self.decoder(y)  # (B, K)


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy src's state dict into dst's, pairing the tensors in order (shapes checked)."""
    pairs = zip(src.state_dict().values(), dst.state_dict().items(), strict=True)
    new = {}
    for vs, (kd, vd) in pairs:
        if vs.shape != vd.shape:
            raise RuntimeError(f"cannot copy {tuple(vs.shape)} into {kd} {tuple(vd.shape)}")
        new[kd] = vs.clone()
    dst.load_state_dict(new)


# --- models ---------------------------------------------------------------------------------


def registered_models() -> dict[str, Callable[[], nn.Module]]:
    """Name -> factory (default config) of every model of ``psetae.models.MODELS``; PSE-TAE
    alone where the package has no registry."""
    import psetae.models as models

    registry, build = getattr(models, "MODELS", None), getattr(models, "build_model", None)
    if not registry or build is None:
        return {"psetae": PseTae}
    return {name: (lambda name=name: build(name)) for name in registry}


# --- timing ---------------------------------------------------------------------------------


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` as counted by PyTorch's FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def paired_ms(fns: list[Callable[[], object]], repeats: int, warmup: int = 2) -> list[list[float]]:
    """Wall times (ms) of each of ``fns``, called in turn ``repeats`` times, so that all of
    them see the same load from other processes."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            out.append(1000 * (time.perf_counter() - start))
    return times


def batch(b: int) -> dict[str, torch.Tensor]:
    """A random default-shaped batch of the batch contract."""
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(b, T, S, generator=g) < 0.8).float()
    mask[:, :, 0] = 1  # every set has a valid pixel
    return {
        "pixels": torch.randn(b, T, C, S, generator=g),
        "mask": mask,
        "extra": torch.randn(b, T, E, generator=g),
        "positions": torch.cumsum(torch.randint(5, 20, (b, T), generator=g), dim=1).float(),
        "label": torch.randint(0, K, (b,), generator=g),
    }


def workloads(model: nn.Module, data: dict[str, torch.Tensor]) -> dict[str, Callable[[], None]]:
    """``inference`` and ``train step`` closures of one model on one batch."""
    criterion = FocalLoss(gamma=1.0)
    # foreach: one kernel per operation for all parameters, not one per parameter.
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
    args = (data["pixels"], data["mask"], data["extra"])

    def infer() -> None:
        model.eval()
        with torch.no_grad():
            model(*args)

    def train_step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        criterion(model(*args), data["label"]).backward()
        optimizer.step()

    return {"inference": infer, "train step": train_step}


# --- competitors ----------------------------------------------------------------------------

TORCH_COMPETITOR = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
a, b = torch.randn(512, 512), torch.randn(512, 512)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    for _ in range(20):
        torch.relu(torch.mm(a, b) + 1.0)
"""
BUSY_COMPETITOR = """
import sys, time
end = time.time() + float(sys.argv[2])
while time.time() < end:
    sum(range(10000))
"""


@contextmanager
def competitor(kind: str, threads: int, seconds: float) -> Iterator[None]:
    """Run a competing load (``torch``: one process with ``threads`` threads; ``busy``:
    ``threads`` busy-loop processes) for at most ``seconds``; killed on exit."""
    if kind == "none":
        yield
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if kind == "torch":
        commands = [[sys.executable, "-c", TORCH_COMPETITOR, str(threads), str(seconds)]]
    else:
        commands = [[sys.executable, "-c", BUSY_COMPETITOR, "1", str(seconds)]] * threads
    procs = [subprocess.Popen(c, env=env) for c in commands]
    try:
        time.sleep(1.0)  # let them start computing
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=B_DEFAULT)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument(
        "--competitor",
        choices=["none", "torch", "busy", "all"],
        default="none",
        help="also time PSE-TAE and the comparator next to a competing process",
    )
    parser.add_argument("--competitor-threads", type=int, default=2)
    parser.add_argument("--competitor-seconds", type=float, default=300.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = batch(args.batch)

    # Reference rate: a large fp32 matrix product, timed alternately with the models.
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    matmul_gflop = 2 * n**3 / 1e9

    def matmul() -> None:
        torch.mm(a, b)

    # PSE-TAE three ways, same weights: the package, its plain path, the comparator.
    package = PseTae()
    plain = use_fast(PseTae(), False)
    comparator = ReferenceStylePseTae()
    for m in (plain, comparator):
        copy_weights(package, m)
    with torch.no_grad():
        x = (data["pixels"][:8], data["mask"][:8], data["extra"][:8])
        ref = comparator.eval()(*x)
        for m in (package, plain):
            torch.testing.assert_close(m.eval()(*x), ref, atol=1e-4, rtol=1e-4)
    psetae_cases = {
        "psetae (package)": package,
        "psetae (package, plain path)": plain,
        "comparator: plain PyTorch, reference-style, written from SPEC": comparator,
    }
    cases = dict(psetae_cases)
    for name, factory in registered_models().items():
        if name not in ("psetae", "pse-tae", "pse_tae"):
            cases[name] = factory()
    if args.compile:
        start = time.perf_counter()
        compiled = compile_model(PseTae())
        copy_weights(package, compiled)
        for fn in workloads(compiled, data).values():
            fn()  # compiles both graphs
        compile_s = time.perf_counter() - start
        cases["psetae (torch.compile)"] = compiled

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, B={args.batch} T={T}")
    print(f"C={C} S={S}; os.cpu_count()={os.cpu_count()}, load average {os.getloadavg()}")
    if args.compile:
        print(f"torch.compile: {compile_s:.1f} s to compile inference and training")
    print(f"matmul: fp32 {n}x{n} @ {n}x{n}, timed alternately with each case\n")
    header = (
        f"{'model':<62} {'case':<11} {'params':>8} {'GFLOP':>6} {'ms/batch':>9}"
        f" {'GFLOP/s':>8} {'of matmul':>9}"
    )
    print(header)
    print("-" * len(header))
    alone: dict[tuple[str, str], float] = {}
    for name, model in cases.items():
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        for label, fn in workloads(model, data).items():
            gflop = count_flops(fn) / 1e9
            model_ms, matmul_ms = paired_ms([fn, matmul], args.repeats)
            ms = statistics.median(model_ms)
            share = statistics.median(
                (gflop / t) / (matmul_gflop / u) for t, u in zip(model_ms, matmul_ms, strict=True)
            )
            alone[name, label] = ms
            print(
                f"{name[:62]:<62} {label:<11} {params:8,d} {gflop:6.2f} {ms:9.1f}"
                f" {gflop / ms * 1e3:8.1f} {share:9.1%}"
            )
    comp = "comparator: plain PyTorch, reference-style, written from SPEC"
    print()
    for label in ("inference", "train step"):
        for name in ("psetae (package)", "psetae (package, plain path)", "psetae (torch.compile)"):
            if (name, label) in alone:
                ratio = alone[comp, label] / alone[name, label]
                print(f"{label}: {name} is {ratio:.1f}x the comparator's speed")

    kinds = ["torch", "busy"] if args.competitor == "all" else [args.competitor]
    for kind in kinds:
        if kind == "none":
            continue
        print(f"\nnext to a competitor: {kind}, {args.competitor_threads} threads")
        print(
            f"{'model':<40} {'case':<11} {'alone ms':>9} {'busy ms':>9} {'worst ms':>9}"
            f" {'slowdown':>9}"
        )
        for label in ("inference", "train step"):
            fns = {
                name: workloads(m, data)[label]
                for name, m in cases.items()
                if name in psetae_cases or name == "psetae (torch.compile)"
            }
            # Alone and busy measured back to back, each case in turn.
            quiet = paired_ms(list(fns.values()), args.repeats)
            with competitor(kind, args.competitor_threads, args.competitor_seconds):
                loaded = paired_ms(list(fns.values()), args.repeats)
            for name, q, ld in zip(fns, quiet, loaded, strict=True):
                mq, ml = statistics.median(q), statistics.median(ld)
                print(
                    f"{name[:40]:<40} {label:<11} {mq:9.1f} {ml:9.1f} {max(ld):9.1f}"
                    f" {ml / mq:8.1f}x"
                )

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"\npeak resident memory: {peak_mb:.0f} MiB")


if __name__ == "__main__":
    main()
