"""Speed and memory of every registered model on a CUDA GPU.

    .venv/bin/python benchmarks/bench_gpu.py [--batch 128] [--repeats 20] [--no-amp]

For each model of ``psetae.models.MODELS`` (PSE-TAE alone without a registry): median
milliseconds per batch for inference and for a training step (forward under float16
autocast as psetae.train.fit runs it, focal loss, scaled backward, Adam), parcels per second,
and the peak GPU memory of each (``torch.cuda.max_memory_allocated``). Batches of the default
shape (T=24, C=10, S=64) are made on the GPU, so the figures leave out the data loading.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import batch, registered_models  # noqa: E402

from psetae.losses import FocalLoss  # noqa: E402


def cuda_ms(fn: Callable[[], object], repeats: int, warmup: int = 5) -> list[float]:
    """Wall times (ms) of ``fn`` on the GPU, measured with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return times


def gpu_workloads(
    model: torch.nn.Module, data: dict[str, torch.Tensor], use_amp: bool
) -> dict[str, Callable[[], None]]:
    """``inference`` and ``train step`` (as psetae.train.fit takes it) closures on the GPU."""
    criterion = FocalLoss(gamma=1.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    inputs = (data["pixels"], data["mask"], data["extra"])

    def infer() -> None:
        model.eval()
        with torch.no_grad():
            model(*inputs)

    def train_step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
            logits = model(*inputs)
        scaler.scale(criterion(logits.float(), data["label"])).backward()
        scaler.step(optimizer)
        scaler.update()

    return {"inference": infer, "train step": train_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-amp", action="store_true", help="train in float32")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False)")
    device = torch.device("cuda")
    use_amp = not args.no_amp
    data = {k: v.to(device) for k, v in batch(args.batch).items()}

    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(device)}, B={args.batch}")
    print(f"training under float16 autocast: {use_amp}\n")
    header = f"{'model':<16} {'case':<11} {'ms/batch':>9} {'parcels/s':>10} {'peak MiB':>9}"
    print(header)
    print("-" * len(header))
    for name, factory in registered_models().items():
        model = factory().to(device)
        for label, fn in gpu_workloads(model, data, use_amp).items():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            ms = statistics.median(cuda_ms(fn, args.repeats))
            peak = torch.cuda.max_memory_allocated(device) / 2**20
            print(f"{name:<16} {label:<11} {ms:9.2f} {args.batch / ms * 1e3:10.0f} {peak:9.0f}")


if __name__ == "__main__":
    main()
