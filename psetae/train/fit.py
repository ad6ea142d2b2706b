"""Training one split: Adam + focal loss, the best epoch by validation mIoU, exact resume.

Reproducibility. Everything random in an epoch is seeded from ``(seed, epoch)`` alone: the
shuffling of the training set, the pixels drawn and the jitter added by the dataset (through
a per-epoch view of it), and dropout (``torch.manual_seed`` at the start of the
epoch). So an interrupted run that resumes from its last checkpoint redraws exactly what the
uninterrupted run would have drawn, and ends with the same weights and metrics. This
per-epoch reseeding is the only mechanism: no global RNG state is saved in the checkpoint.

Any registered model trains here (``TrainConfig.model_name``, see
:mod:`psetae.models.registry`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from psetae.data.names import class_names
from psetae.data.rasters import read_label_codes
from psetae.device import pick_device
from psetae.io import write_json_atomic
from psetae.losses import FocalLoss
from psetae.metrics import confusion_matrix, mean_iou, overall_accuracy
from psetae.models.config import ConfigError
from psetae.models.init import reference_init_
from psetae.models.registry import build_model, model_config
from psetae.progress import epoch_lines_wanted, progress_bar
from psetae.train import distributed
from psetae.train.checkpoint import load_checkpoint, save_checkpoint
from psetae.train.errors import TrainError

__all__ = [
    "TrainConfig",
    "FitResult",
    "fit",
    "init_model",
    "model_config_for",
    "dataset_metadata",
    "evaluate_model",
    "evaluate_distributed",
    "epoch_seed",
    "epoch_line",
]

#: Config fields that may change when resuming. The resumed run equals an uninterrupted one
#: exactly only with the same ``num_workers`` (each worker has its own sampling stream) and
#: the same kind of device.
_RESUMABLE_CHANGES = {"epochs", "progress", "num_workers", "device"}

#: The allowed values of the TrainConfig fields that are a choice among names.
_CHOICES = {
    "init": ("reference", "pytorch"),
    "lr_schedule": ("constant", "cosine"),
    "focal_gradient": ("exact", "reference"),
}


@dataclass
class TrainConfig:
    """Everything that defines a training run. The defaults are the paper's protocol.

    Parameters
    ----------
    epochs
        Number of epochs (paper: 100).
    batch_size
        Parcels per batch (paper: 128).
    lr
        Adam's learning rate (paper: 1e-3).
    weight_decay
        Adam's weight decay (paper: 0).
    gamma
        Focal loss exponent (paper: 1; 0 is cross-entropy).
    npixel
        S, pixels sampled per parcel (paper: 64).
    jitter
        ``(sigma, clip)`` of the Gaussian noise added to normalised training inputs
        (paper: (0.01, 0.05)), or None for no jitter.
    seed
        Seeds the model's initialisation, the data order, the pixel sampling and dropout.
    device
        ``"auto"`` (CUDA, then MPS, then CPU) or a device name.
    amp
        Mixed precision (float16 autocast + gradient scaling); used on CUDA only.
    num_workers
        DataLoader worker processes (0 = load in the main process).
    progress
        Show progress bars (in a terminal or a notebook; one line per epoch otherwise).
    model_name
        The model to train, a name of :data:`psetae.models.registry.MODELS`.
    model
        Overrides of the model's config fields, e.g. ``{"mlp3": [512, 64, 64]}``. The
        widths fixed by the data (input channels, extra features, number of dates and
        classes) are always set from the dataset.
    nomenclature
        Which nomenclature of ``labels.json`` to learn; ``"auto"``: the dataset's only one,
        or ``label_44class`` among several (see :func:`psetae.train.adapt.adapt_to_data`).
    classes
        The class codes to keep, in logit order; ``"auto"``: the paper's 20 classes for
        ``label_44class`` and every stored label otherwise; None: every stored label.
    extra_features
        Feed the geometric features to the model.
    normalisation
        ``"auto"``: the dataset's ``normalisation.json`` or ``.pkl`` if it has one, else per
        channel statistics of the training parcels; ``"compute"``: always the latter;
        ``"none"``; or the path of a .json / .npz / .pkl file.
    drop_nonfinite
        Drop the parcels that have NaN or infinite pixels (default: refuse the dataset).
    init
        ``"reference"``: the reference's initialisation (xavier-normal Linear weights,
        normal(0, 1) biases and BatchNorm weights; see :func:`psetae.models.init.reference_init_`);
        ``"pytorch"``: PyTorch's own.
    lr_schedule
        ``"constant"`` (paper) or ``"cosine"``: the learning rate decays from ``lr`` to 0
        along half a cosine over ``epochs`` (set per epoch, so resuming stays exact when
        ``epochs`` is unchanged).
    focal_gradient
        ``"exact"``: the focal loss's true gradient; ``"reference"``: the reference's, which
        treats the factor ``(1 - p)^gamma`` as a constant (see chapter 4).
    eval_draws
        Evaluation draws of S pixels per parcel whose probabilities are averaged (1: one
        fixed draw; more: test-time averaging over draws).
    """

    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    gamma: float = 1.0
    npixel: int = 64
    jitter: tuple[float, float] | None = (0.01, 0.05)
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int = 0
    progress: bool = True
    model_name: str = "psetae"
    model: dict[str, Any] = field(default_factory=dict)
    nomenclature: str = "label_44class"
    classes: list[int] | str | None = "auto"
    extra_features: bool = True
    normalisation: str | None = "auto"
    drop_nonfinite: bool = False
    init: str = "reference"
    lr_schedule: str = "constant"
    focal_gradient: str = "exact"
    eval_draws: int = 1

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise TrainError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.jitter is not None:
            self.jitter = tuple(float(v) for v in self.jitter)  # type: ignore[assignment]
            if len(self.jitter) != 2:
                raise TrainError(f"jitter must be (sigma, clip) or None, got {self.jitter}")
        if isinstance(self.classes, str):
            if self.classes != "auto":
                raise TrainError(f"classes must be 'auto', None or a list, got {self.classes!r}")
        elif self.classes is not None:
            self.classes = [int(c) for c in self.classes]
            if len(set(self.classes)) != len(self.classes) or not self.classes:
                raise TrainError(f"classes must be distinct class codes, got {self.classes}")
        for name in ("epochs", "batch_size", "npixel", "eval_draws"):
            if int(getattr(self, name)) < 1:
                raise TrainError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise TrainError(f"num_workers must be >= 0, got {self.num_workers}")
        if not self.lr > 0:
            raise TrainError(f"lr must be > 0, got {self.lr}")
        if "positions" in self.model:
            raise ConfigError("positions come from the data; do not override them")
        model_config(self.model_name, self.model)  # an unknown name or key is refused now

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["jitter"] = list(self.jitter) if self.jitter is not None else None
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`TrainError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TrainError(f"unknown training config keys {unknown}; known: {sorted(known)}")
        return cls(**d)


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    model
        The model with the best epoch's weights, in eval mode.
    best_epoch, best_metric
        The epoch (1-based) with the best validation mIoU, and that mIoU (0 and ``-inf``
        if no epoch had a defined validation mIoU; the last weights are then kept).
    history
        One dict per epoch: ``epoch``, ``train_loss``, ``train_oa``, ``train_miou``,
        ``val_loss``, ``val_oa``, ``val_miou``, ``lr``, ``seconds``. The training figures are
        gathered during the epoch (training mode, weights changing, random sampling and
        jitter); the validation figures after it, in eval mode.
    best_path, last_path, history_path
        ``best.pt``, ``last.pt`` and ``history.json`` in the output folder.
    """

    model: nn.Module
    best_epoch: int
    best_metric: float
    history: list[dict[str, float]]
    best_path: Path
    last_path: Path
    history_path: Path


def epoch_seed(seed: int, epoch: int, stream: str = "") -> int:
    """A 63-bit seed that depends only on ``(seed, epoch, stream)``."""
    digest = hashlib.sha256(f"psetae:{seed}:{epoch}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# --------------------------------------------------------------------------- model and data


def model_config_for(dataset: Any, config: TrainConfig) -> dict[str, Any]:
    """The config of ``config.model_name`` for a dataset, as a dict: the model's defaults,
    then ``config.model``, then the widths the data fixes (channels, extra features, dates,
    classes). The one place where a model's config meets the data.
    """
    cfg = model_config(config.model_name, config.model).for_data(
        dataset.num_channels, dataset.extra_size, dataset.sequence_length, dataset.num_classes
    )
    return cfg.to_dict()


def init_model(dataset: Any, config: TrainConfig) -> nn.Module:
    """A freshly initialised model (seeded with ``config.seed``) fitted to ``dataset``."""
    torch.manual_seed(config.seed)
    model = build_model(config.model_name, model_config_for(dataset, config))
    if config.init == "reference":
        reference_init_(model)
    return model


def epoch_lr(config: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (1-based) under ``config.lr_schedule``."""
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / config.epochs))
    return config.lr


def _stats_dict(stats: Any) -> dict[str, Any] | None:
    if stats is None:
        return None
    if isinstance(stats, dict):
        mean, std = stats["mean"], stats["std"]
    else:
        mean, std = stats
    return {
        "mean": torch.as_tensor(np.asarray(mean, dtype=np.float64)),
        "std": torch.as_tensor(np.asarray(std, dtype=np.float64)),
    }


def dataset_metadata(dataset: Any, config: TrainConfig) -> dict[str, Any]:
    """What a checkpoint must hold about the training data to prepare new data the same way:
    normalisation, geometric-feature statistics, classes, nomenclature, S."""
    return {
        "normalisation": _stats_dict(dataset.normalisation),
        "extra_stats": _stats_dict(dataset.extra_stats) if config.extra_features else None,
        "class_ids": [int(c) for c in dataset.class_ids],
        "class_names": class_names(dataset.root, config.nomenclature, dataset.class_ids),
        "nomenclature": config.nomenclature,
        # {class id: code} of an imported dataset: evaluate/predict/map refuse another mapping
        "label_codes": read_label_codes(dataset.root, config.nomenclature),
        "npixel": int(config.npixel),
        "extra_features": bool(config.extra_features),
        "sequence_length": int(dataset.sequence_length),
    }


def evaluation_draws(dataset: Any, draws: int) -> list[Any]:
    """``draws`` evaluation views of ``dataset``: itself, then views whose fixed draw of S
    pixels per parcel is seeded otherwise (test-time averaging over draws)."""
    subset = getattr(dataset, "subset", None)
    if draws <= 1 or not callable(subset) or not hasattr(dataset, "seed"):
        return [dataset]
    views = [dataset]
    for d in range(1, draws):
        view = subset(np.arange(len(dataset)))
        view.seed = epoch_seed(dataset.seed, d, "eval draw") % 2**63
        views.append(view)
    return views


def _epoch_view(dataset: Any, seed: int, epoch: int, rank: int = 0) -> Any:
    """The training set for one epoch, its pixel sampling and jitter seeded by (seed, epoch).

    A :class:`~psetae.data.dataset.PixelSetDataset` keeps one random stream per process,
    seeded by its ``seed``; a fresh view per epoch (``subset`` shares the files and
    statistics) with a per-epoch seed makes each epoch's draws independent of the epochs
    before it, which is what makes resuming exact. Under torchrun each rank draws from its own
    stream (``rank``), else the ranks would draw the same pixels for different parcels in
    lockstep. Other datasets are used as they are.
    """
    subset = getattr(dataset, "subset", None)
    if not callable(subset) or not hasattr(dataset, "seed"):
        return dataset
    view = subset(np.arange(len(dataset)))
    view.seed = epoch_seed(seed, epoch, _rank_stream("data", rank)) % 2**63
    return view


def _loader(
    dataset: Dataset, config: TrainConfig, device: torch.device, shuffle: bool, epoch: int
) -> DataLoader:
    from psetae.data.dataset import collate_pixel_sets

    generator = torch.Generator().manual_seed(epoch_seed(config.seed, epoch, "order"))
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=shuffle,
        num_workers=config.num_workers,
        collate_fn=collate_pixel_sets,
        pin_memory=device.type == "cuda",
        generator=generator,
        # BatchNorm cannot train on a batch of one parcel (the TAE's query is normalised over
        # parcels): in training, drop a last batch of one (a random parcel, the order is shuffled).
        drop_last=shuffle and len(dataset) % config.batch_size == 1,
    )


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}


def _forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(
        batch["pixels"], batch["mask"], extra=batch.get("extra"), positions=batch.get("positions")
    )  # (B, K)


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    device: torch.device | None = None,
    desc: str = "eval",
) -> dict[str, Any]:
    """Loss, confusion matrix, OA and mIoU of ``model`` (eval mode) on a labelled dataset.

    Returns
    -------
    dict
        ``loss`` (mean focal loss), ``cm`` (K, K) numpy array, ``oa``, ``miou``.
    """
    device = device or next(model.parameters()).device
    model.eval()
    criterion = FocalLoss(gamma=config.gamma, reduction="sum")
    k = model.num_classes
    cm = np.zeros((k, k), dtype=np.int64)
    total, n = 0.0, 0
    views = evaluation_draws(dataset, config.eval_draws)
    loaders = [_loader(v, config, device, shuffle=False, epoch=0) for v in views]
    draws = zip(*loaders, strict=True)  # the same parcels in the same order
    for batches in progress_bar(
        draws, config.progress, desc=desc, leave=False, total=len(loaders[0])
    ):
        batch = _to_device(batches[0], device)
        logits = _forward(model, batch).float()  # (B, K)
        if len(batches) > 1:
            # The mean of the draws' probabilities; its log is a valid logit (softmax(log p) = p).
            probs = torch.softmax(logits, dim=1)
            for other in batches[1:]:
                probs += torch.softmax(_forward(model, _to_device(other, device)).float(), dim=1)
            logits = torch.log(probs / len(batches))
        total += float(criterion(logits, batch["label"]))
        n += int(batch["label"].shape[0])
        cm += confusion_matrix(batch["label"].cpu().numpy(), logits.argmax(1).cpu().numpy(), k)
    return {
        "loss": total / n if n else float("nan"),
        "cm": cm,
        "oa": overall_accuracy(cm),
        "miou": mean_iou(cm),
    }


def _train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    criterion: FocalLoss,
    device: torch.device,
    use_amp: bool,
    progress: bool,
    desc: str,
) -> dict[str, float]:
    model.train()
    k = _unwrapped(model).num_classes
    cm = np.zeros((k, k), dtype=np.int64)
    total, n = 0.0, 0
    bar = progress_bar(loader, progress, desc=desc, leave=False)
    for batch in bar:
        batch = _to_device(batch, device)
        labels = batch["label"]  # (B,)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            logits = _forward(model, batch)  # (B, K)
        loss = criterion(logits.float(), labels)  # the loss in float32 even under autocast
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        b = int(labels.shape[0])
        total += float(loss.detach()) * b
        n += b
        cm += confusion_matrix(labels.cpu().numpy(), logits.detach().argmax(1).cpu().numpy(), k)
        if progress:
            bar.set_postfix(loss=f"{total / n:.4f}")
    return {"loss": total / n, "oa": overall_accuracy(cm), "miou": mean_iou(cm), "cm": cm, "n": n}


def _check_resumable(saved: dict[str, Any], config: TrainConfig, path: Path) -> None:
    saved = {"model_name": "psetae", **saved}  # runs older than the registry trained PSE-TAE
    now = config.to_dict()
    diffs = [
        k
        for k in sorted(set(saved) | set(now))
        if k not in _RESUMABLE_CHANGES and saved.get(k) != now.get(k)
    ]
    if diffs:
        raise TrainError(
            f"{path}: cannot resume, the training config differs in {diffs} "
            "(use another output folder or resume=False)"
        )


def epoch_line(record: dict[str, float], epochs: int, desc: str = "") -> str:
    """One epoch of the history as one line of a log, e.g.
    ``fold 1/5 epoch 3/100: train loss 1.2034, val loss 1.3101, val OA 0.6120, val mIoU 0.3012
    (4.1 s)``."""
    prefix = f"{desc} " if desc else ""
    return (
        f"{prefix}epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f}, "
        f"val loss {record['val_loss']:.4f}, val OA {record['val_oa']:.4f}, "
        f"val mIoU {record['val_miou']:.4f} ({record['seconds']:.1f} s)"
    )


def _json_number(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


# --------------------------------------------------------------------------- several processes
# torchrun starts one process per GPU (or several on CPUs); psetae.train.distributed tells each
# its rank. Alone (no torchrun), every function below reduces to the one-process behaviour.


def _rank_stream(name: str, rank: int) -> str:
    """The name of a random stream of one rank; rank 0 keeps the one-process name."""
    return name if rank == 0 else f"{name}:rank{rank}"


def _unwrapped(model: nn.Module) -> nn.Module:
    """The model itself inside a DistributedDataParallel or torch.compile wrapper."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def _local_batch(ctx: distributed.Distributed, global_batch: int) -> int:
    """This rank's share of ``--batch-size`` (the global batch), equal on every rank."""
    if global_batch % ctx.world_size:
        raise distributed.DistributedError(
            f"--batch-size {global_batch} is not divisible by the {ctx.world_size} processes: "
            "the ranks must take the same number of steps per epoch"
        )
    local = ctx.batch_size(global_batch)
    if ctx.enabled and local < 2:
        raise distributed.DistributedError(
            f"--batch-size {global_batch} leaves {local} parcel per process: BatchNorm needs "
            "at least 2 per process"
        )
    return local


def _parallel(
    model: nn.Module,
    ctx: distributed.Distributed,
    device: torch.device,
    sync_batchnorm: bool,
    compile: bool,
) -> nn.Module:
    """The module that trains: ``model`` alone; under torchrun ``model`` (its BatchNorm
    synchronised over the ranks on GPUs) in DistributedDataParallel, which averages the
    gradients over the ranks at every step. It shares ``model``'s parameters."""
    trained = model
    if ctx.enabled:
        if sync_batchnorm and device.type == "cuda":  # SyncBatchNorm takes GPU inputs only
            # In place for the children: ``model`` keeps its identity, config and weights.
            trained = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [device.index] if device.type == "cuda" else None
        trained = DistributedDataParallel(trained, device_ids=ids)
    if compile:
        from psetae.models import compile_model

        trained = compile_model(trained)
    return trained


def _train_loader(
    dataset: Dataset,
    config: TrainConfig,
    device: torch.device,
    epoch: int,
    ctx: distributed.Distributed,
) -> DataLoader:
    """The shuffled training batches of one rank for one epoch.

    One DistributedSampler, also alone (``num_replicas=1``), so that the order is the same
    permutation for any number of ranks: rank r takes every N-th parcel of it, so with the
    batch B divisible by N the ranks' j-th batches together are the j-th batch of one
    process. When N does not divide the parcels, the sampler repeats up to N - 1 of them.
    """
    from psetae.data.dataset import collate_pixel_sets

    sampler = DistributedSampler(
        dataset,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=True,
        seed=epoch_seed(config.seed, 0, "order"),
        drop_last=False,
    )
    sampler.set_epoch(epoch)
    local = _local_batch(ctx, config.batch_size)
    return DataLoader(
        dataset,
        batch_size=local,
        sampler=sampler,
        num_workers=config.num_workers,
        collate_fn=collate_pixel_sets,
        pin_memory=device.type == "cuda",
        # BatchNorm cannot train on a batch of one parcel (the TAE's query is normalised
        # over parcels): drop a last batch of one (a random parcel, the order is shuffled).
        # Every rank has as many parcels, so all drop it or none.
        drop_last=len(sampler) % local == 1,
    )


def _sum_metrics(
    ctx: distributed.Distributed, loss: float, n: int, cm: np.ndarray, device: torch.device
) -> dict[str, Any]:
    """Mean loss, confusion matrix, OA and mIoU over all ranks from one rank's share."""
    loss_sum = loss * n if n else 0.0
    total, count = ctx.sum(np.array([loss_sum, n], dtype=np.float64), device)
    cm = ctx.sum(cm, device)
    return {
        "loss": float(total / count) if count else float("nan"),
        "cm": cm,
        "oa": overall_accuracy(cm),
        "miou": mean_iou(cm),
    }


def evaluate_distributed(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    device: torch.device | None = None,
    desc: str = "eval",
    ctx: distributed.Distributed | None = None,
) -> dict[str, Any]:
    """:func:`evaluate_model` with the parcels shared among the ranks of a torchrun job.

    Rank r evaluates parcels ``r, r + N, ...`` (no padding, so no parcel counts twice when N
    does not divide them); the loss sums, parcel counts and confusion matrices are added
    over the ranks, so every rank gets the metrics of one process on the whole set. Alone,
    it is :func:`evaluate_model`.
    """
    ctx = ctx or distributed.from_env()
    model = _unwrapped(model)
    if not ctx.enabled:
        return evaluate_model(model, dataset, config, device, desc=desc)
    shard = ctx.shard(len(dataset))
    subset = getattr(dataset, "subset", None)
    part = subset(shard) if callable(subset) else torch.utils.data.Subset(dataset, shard)
    device = device or next(model.parameters()).device
    k = model.num_classes
    if len(part):
        ev = evaluate_model(model, part, config, device, desc=desc)
        loss, cm = ev["loss"], ev["cm"]
    else:  # fewer parcels than ranks
        loss, cm = 0.0, np.zeros((k, k), dtype=np.int64)
    return _sum_metrics(ctx, loss, int(cm.sum()), cm, device)


def fit(
    train_data: Dataset,
    val_data: Dataset,
    config: TrainConfig | None = None,
    out_dir: str | os.PathLike = "run",
    *,
    resume: bool = True,
    callback: Callable[[dict[str, float]], None] | None = None,
    desc: str = "",
    compile: bool = False,
    sync_batchnorm: bool = True,
    dist_timeout_s: float = distributed.DEFAULT_TIMEOUT_S,
) -> FitResult:
    """Train PSE-TAE on one split, keeping the epoch with the best validation mIoU.

    Writes into ``out_dir``: ``last.pt`` after every epoch (everything needed to resume),
    ``best.pt`` whenever the validation mIoU improves (weights and metadata, enough to
    predict), and ``history.json`` (one record per epoch).

    Parameters
    ----------
    train_data
        A labelled :class:`~psetae.data.dataset.PixelSetDataset` in training mode.
    val_data
        A labelled dataset in evaluation mode, prepared with the same normalisation and
        geometric-feature statistics as ``train_data``.
    config
        The run's :class:`TrainConfig` (defaults: the paper's protocol).
    out_dir
        Folder for the checkpoints and the history (created if needed).
    resume
        If ``out_dir/last.pt`` exists, continue from it (the config may differ only in
        ``epochs``, ``progress``, ``num_workers`` and ``device``; keep the last two to get
        exactly the uninterrupted run's result). If False, start over.
    callback
        Called with each epoch's history record, e.g. to plot live in a notebook.
    desc
        Label of the progress bar and of the per-epoch lines (e.g. ``"fold 2/5"``).
    compile
        Train the model through :func:`psetae.models.compile_model` (off by default: it
        compiles for minutes first, and gave no gain on CPU).
    sync_batchnorm
        Under torchrun on GPUs, BatchNorm statistics of the global batch (SyncBatchNorm);
        False keeps each rank's own. On CPUs BatchNorm is always local.
    dist_timeout_s
        Under torchrun, how long a rank waits for the others before the job fails.

    Returns
    -------
    FitResult

    Raises
    ------
    TrainError
        If a dataset has unlabelled parcels, the datasets disagree on the classes, or the
        checkpoint to resume from was made with another config.

    Notes
    -----
    Under ``torchrun`` (see :mod:`psetae.train.distributed`) every rank calls ``fit`` with
    the same arguments: ``config.batch_size`` is the global batch, split across the ranks;
    the gradients are averaged over the ranks; the validation metrics are those of the whole
    set; only rank 0 writes files.
    """
    config = config or TrainConfig()
    out = Path(out_dir)
    last_path, best_path, history_path = out / "last.pt", out / "best.pt", out / "history.json"
    for name, data in (("training", train_data), ("validation", val_data)):
        if not getattr(data, "has_labels", True):
            raise TrainError(f"the {name} set has parcels without a label: cannot train on it")
    if list(train_data.class_ids) != list(val_data.class_ids):
        raise TrainError(
            f"training and validation classes differ: {list(train_data.class_ids)} vs "
            f"{list(val_data.class_ids)}"
        )
    device = pick_device(config.device)
    ctx = distributed.setup(device, dist_timeout_s)
    device = ctx.device(device)
    _local_batch(ctx, config.batch_size)  # refuse a batch the ranks cannot share, now
    if not ctx.is_main:  # one progress bar for the job, rank 0's (the config saved is its)
        config = dataclasses.replace(config, progress=False)
    use_amp = bool(config.amp) and device.type == "cuda"

    model = init_model(train_data, config).to(device)
    trained = _parallel(model, ctx, device, sync_batchnorm, compile)  # shares model's weights
    name = config.model_name
    # foreach: one fused pass over all parameters instead of a loop of small kernels (faster on CPU).
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True
    )
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    criterion = FocalLoss(
        gamma=config.gamma, reference_gradient=config.focal_gradient == "reference"
    )
    meta = dataset_metadata(train_data, config)

    history: list[dict[str, float]] = []
    best_epoch, best_metric, start = 0, -math.inf, 1
    if resume and last_path.exists():
        ckpt = load_checkpoint(last_path, require_resume=True)
        _check_resumable(ckpt["train_config"], config, last_path)
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if use_amp and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        history = list(ckpt["history"])
        best_epoch = int(ckpt["best_epoch"])
        best_metric = float(ckpt["best_metric"])
        start = int(ckpt["epoch"]) + 1
    elif ctx.is_main:
        # Starting over: a best.pt left by an earlier run must not be mistaken for ours.
        best_path.unlink(missing_ok=True)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)  # only now: everything above may refuse the input
    ctx.barrier()  # every rank has read last.pt before rank 0 replaces it

    def checkpoint(epoch: int, for_resume: bool) -> dict[str, Any]:
        return {
            **meta,
            "model_name": name,
            "model_config": model.config.to_dict(),
            "state_dict": model.state_dict(),
            "train_config": config.to_dict(),
            "epoch": epoch,
            "best_epoch": best_epoch,
            "best_metric": best_metric,
            "history": history,
            "optimizer": optimizer.state_dict() if for_resume else None,
            "scaler": scaler.state_dict() if (for_resume and use_amp) else None,
        }

    # Without bars (turned off, or stderr is a file), one line per epoch tells the progress;
    # a notebook with bars off stays quiet (its cells print what they mean to show).
    log_epochs = epoch_lines_wanted(config.progress)
    epochs = progress_bar(
        range(start, config.epochs + 1),
        config.progress,
        desc=desc or "epochs",
        initial=start - 1,
        total=config.epochs,
    )
    for epoch in epochs:
        t0 = time.perf_counter()
        torch.manual_seed(epoch_seed(config.seed, epoch, _rank_stream("torch", ctx.rank)))
        for group in optimizer.param_groups:
            group["lr"] = epoch_lr(config, epoch)
        view = _epoch_view(train_data, config.seed, epoch, ctx.rank)
        loader = _train_loader(view, config, device, epoch, ctx)
        tr = _train_one_epoch(
            trained,
            loader,
            optimizer,
            scaler,
            criterion,
            device,
            use_amp,
            config.progress,
            desc=f"epoch {epoch}",
        )
        if ctx.enabled:  # the training figures of the global batch, as in one process
            tr = _sum_metrics(ctx, tr["loss"], tr["n"], tr["cm"], device)
        va = evaluate_distributed(model, val_data, config, device, "validation", ctx)
        record = {
            "epoch": epoch,
            "train_loss": tr["loss"],
            "train_oa": tr["oa"],
            "train_miou": tr["miou"],
            "val_loss": va["loss"],
            "val_oa": va["oa"],
            "val_miou": va["miou"],
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
        }
        history.append(record)
        improved = va["miou"] > best_metric  # nan never improves
        if improved:
            best_epoch, best_metric = epoch, float(va["miou"])
            if ctx.is_main:
                save_checkpoint(best_path, checkpoint(epoch, for_resume=False))
        if ctx.is_main:
            save_checkpoint(last_path, checkpoint(epoch, for_resume=True))
            write_json_atomic(
                history_path, [{k: _json_number(v) for k, v in r.items()} for r in history]
            )
        if log_epochs:
            if ctx.is_main:
                print(epoch_line(record, config.epochs, desc), flush=True)
        else:
            epochs.set_postfix(val_miou=f"{va['miou']:.3f}", best=f"{best_metric:.3f}")
        if callback is not None:
            callback(record)

    if ctx.is_main and not best_path.exists():
        # No epoch had a defined validation mIoU (or no epoch ran): keep the last weights.
        save_checkpoint(best_path, checkpoint(start - 1, for_resume=False))
    ctx.barrier()  # rank 0 has written best.pt
    best = load_checkpoint(best_path)
    model.load_state_dict(best["state_dict"])
    model.eval()
    return FitResult(
        model=model,
        best_epoch=best_epoch,
        best_metric=best_metric,
        history=history,
        best_path=best_path,
        last_path=last_path,
        history_path=history_path,
    )
