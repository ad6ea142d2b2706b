"""The bodies of the GPU checks, written for any device: tests/gpu/test_gpu.py runs each on CUDA
(skipped without it) and on the CPU (so that the code is known to run before a GPU is there)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from psetae.data.simulate import simulate_s2agri
from psetae.losses import FocalLoss
from psetae.models import psetae_from_reference
from psetae.train.crossval import make_datasets
from psetae.train.fit import FitResult, TrainConfig, fit
from psetae.train.splits import Split
from tests.models.naive_psetae import load_fixture


def check_reference_fixture(device: torch.device, atol: float = 1e-4) -> None:
    """The reference fixture (tests/data/psetae_reference.npz) through the converter, on
    ``device``: spatial, temporal and logits to ``atol``."""
    ref = load_fixture()
    model = psetae_from_reference(ref["state_dict"]).to(device).eval()
    pixels, mask, extra = (ref[k].to(device) for k in ("pixels", "mask", "extra"))
    with torch.no_grad():
        spatial = model.spatial_encoder(pixels, mask, extra)  # (B, T, d)
        temporal = model.temporal_encoder(spatial)  # (B, d')
        logits = model(pixels, mask, extra)  # (B, K)
    got = {"spatial": spatial, "temporal": temporal, "logits": logits}
    for name, value in got.items():
        assert value.device.type == device.type, name
        torch.testing.assert_close(
            value.cpu(), ref[name], atol=atol, rtol=0, msg=lambda m, n=name: f"{n}: {m}"
        )


def check_mixed_precision_step(device: torch.device) -> None:
    """One training step under float16 autocast and gradient scaling, as psetae.train.fit
    takes it on CUDA: finite loss, finite gradients, weights that moved."""
    ref = load_fixture()
    model = psetae_from_reference(ref["state_dict"]).to(device).train()
    pixels, mask, extra = (ref[k].to(device) for k in ("pixels", "mask", "extra"))
    mask[0, 0] = 0
    mask[0, 0, 0] = 1  # a set of one pixel: its std's gradient must stay finite
    labels = torch.arange(pixels.shape[0], device=device) % model.num_classes
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    before = [p.detach().clone() for p in model.parameters()]
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
        logits = model(pixels, mask, extra)  # (B, K)
    loss = FocalLoss(gamma=1.0)(logits.float(), labels)
    scaler.scale(loss).backward()
    assert math.isfinite(float(loss.detach()))
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
    scaler.step(optimizer)
    scaler.update()
    # Every weight matrix moved (a bias just before a BatchNorm has a zero gradient).
    pairs = zip(before, model.named_parameters(), strict=True)
    still = [name for a, (name, p) in pairs if p.dim() > 1 and torch.equal(a, p.detach())]
    assert not still, f"weights that did not move: {still}"


def short_training(root: Path, out: Path, device: str) -> FitResult:
    """Three epochs of a small PSE-TAE on the simulated dataset at ``root``."""
    config = TrainConfig(
        epochs=3,
        batch_size=32,
        npixel=16,
        seed=0,
        device=device,
        progress=False,
        model={"mlp3": [512, 32], "mlp4": [32, 16, 20]},
    )
    ids = sorted(int(p.stem) for p in (root / "DATA").glob("*.npy"))
    split = Split(train=ids[: len(ids) * 3 // 4], val=ids[len(ids) * 3 // 4 :])
    train, val, _ = make_datasets(root, split, config)
    return fit(train, val, config, out)


def simulated(tmp: Path) -> Path:
    """A small simulated S2-Agri look-alike in ``tmp``."""
    return simulate_s2agri(tmp / "sim", n_parcels=200, seed=0, preset="test")


def check_training_close_to_cpu(tmp: Path, device: torch.device) -> None:
    """A short training on ``device`` ends close to the same training on the CPU.

    Mixed precision and another dropout stream make the runs differ; the losses must stay
    within 10% of each other, epoch by epoch, and the final accuracies within 0.15.
    """
    root = simulated(tmp)
    on_cpu = short_training(root, tmp / "cpu", "cpu")
    on_device = short_training(root, tmp / device.type, str(device))
    assert next(on_device.model.parameters()).device.type == device.type
    for a, b in zip(on_cpu.history, on_device.history, strict=True):
        assert math.isfinite(b["train_loss"]) and math.isfinite(b["val_loss"])
        assert abs(a["train_loss"] - b["train_loss"]) <= 0.1 * a["train_loss"], (a, b)
        assert abs(a["val_loss"] - b["val_loss"]) <= 0.1 * a["val_loss"], (a, b)
    assert abs(on_cpu.history[-1]["val_oa"] - on_device.history[-1]["val_oa"]) <= 0.15
    # It learnt something: the loss went down on both.
    for run in (on_cpu, on_device):
        assert run.history[-1]["train_loss"] < run.history[0]["train_loss"]
