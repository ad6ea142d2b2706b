"""Inference with a checkpoint or an ensemble of checkpoints (e.g. the k folds).

A checkpoint holds the model, the normalisation and geometric-feature statistics of its
training set, the classes and S (see :mod:`psetae.train.checkpoint`): a new folder is
prepared exactly as the training data was, whatever statistics the new folder would have.

Evaluation is deterministic: eval mode (BatchNorm running statistics, no dropout) and the
dataset's evaluation sampling (no jitter, a fixed draw of S pixels per parcel), seeded with
the training run's seed so that re-testing reproduces the metrics recorded in training.

An ensemble averages the members' log-probabilities; its class probabilities are the
softmax of that mean (the normalised geometric mean of the members' probabilities), so
that the predicted class is the most probable one.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from psetae.data.dataset import PixelSetDataset, collate_pixel_sets
from psetae.data.rasters import check_label_codes
from psetae.device import pick_device
from psetae.errors import PsetaeError
from psetae.io import atomic_write
from psetae.metrics import confusion_matrix, summarize
from psetae.models.config import ConfigError
from psetae.models.registry import build_model
from psetae.progress import progress_bar
from psetae.train.checkpoint import CheckpointError, load_checkpoint
from psetae.train.inputs import check_input

__all__ = [
    "PredictError",
    "Prediction",
    "load_model",
    "predict",
    "evaluate",
    "resolve_checkpoints",
    "write_predictions_csv",
]

PathLike = str | os.PathLike
Checkpoints = PathLike | Sequence[PathLike]


class PredictError(PsetaeError, ValueError):
    """No checkpoint given, or a folder with nothing to predict or test."""


@dataclass
class Prediction:
    """Predictions for the parcels of a folder.

    Attributes
    ----------
    ids
        (N,) parcel ids, sorted.
    predicted
        (N,) predicted class index in ``0..K-1``.
    probabilities
        (N, K) class probabilities (float64; rows sum to 1).
    class_ids
        The K class codes of the nomenclature, in logit order.
    class_names
        The K class names.
    labels
        (N,) true class index when the folder is labelled with these classes, else None.
    """

    ids: np.ndarray
    predicted: np.ndarray
    probabilities: np.ndarray
    class_ids: list[int]
    class_names: list[str]
    labels: np.ndarray | None = None

    @property
    def predicted_class_ids(self) -> np.ndarray:
        """(N,) predicted class codes of the nomenclature."""
        return np.asarray(self.class_ids, dtype=np.int64)[self.predicted]


def resolve_checkpoints(checkpoints: Checkpoints) -> list[Path]:
    """Expand checkpoint arguments into checkpoint files.

    A file is used as is; a training folder stands for its ``best.pt``; a cross-validation
    folder stands for the ``best.pt`` of all its ``fold_*`` folders (an ensemble).

    Raises
    ------
    CheckpointError
        A path that is neither a file nor such a folder.
    PredictError
        No checkpoint at all.
    """
    items = [checkpoints] if isinstance(checkpoints, (str, os.PathLike)) else list(checkpoints)
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            if (path / "best.pt").is_file():
                out.append(path / "best.pt")
                continue
            folds = sorted(
                (p for p in path.glob("fold_*/best.pt") if p.parent.name[5:].isdigit()),
                key=lambda p: int(p.parent.name[5:]),
            )
            if not folds:
                raise CheckpointError(path, "folder holds no best.pt nor fold_*/best.pt")
            out.extend(folds)
        else:
            out.append(path)
    if not out:
        raise PredictError("no checkpoint given")
    return out


def load_model(
    checkpoint: PathLike, device: str | torch.device | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model from a checkpoint, in eval mode: any registered model, by the name the
    checkpoint stores (``"psetae"`` for a checkpoint written before the registry).

    Parameters
    ----------
    checkpoint
        A ``.pt`` file written by training (``best.pt`` or ``last.pt``).
    device
        Where to put the model (default: :func:`~psetae.device.pick_device`).

    Returns
    -------
    (model, meta)
        The model and the checkpoint's other content (``class_ids``, ``class_names``,
        ``normalisation``, ``extra_stats``, ``nomenclature``, ``npixel``, ``train_config``,
        ``epoch``, ``history``, ...), without the weights, optimizer and RNG states.

    Raises
    ------
    CheckpointError
        Unreadable file, an unknown model name, or weights that do not fit the stored
        model config.
    """
    ckpt = load_checkpoint(checkpoint)
    try:
        model = build_model(ckpt["model_name"], dict(ckpt["model_config"]))
    except ConfigError as e:
        raise CheckpointError(checkpoint, f"cannot build its model ({e})") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(
            checkpoint, f"weights do not fit the model config ({first})"
        ) from None
    model.to(pick_device(device)).eval()
    meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer", "rng", "scaler")}
    return model, meta


def _stats(stored: Any) -> tuple[np.ndarray, np.ndarray] | None:
    if stored is None:
        return None
    return np.asarray(stored["mean"].numpy()), np.asarray(stored["std"].numpy())


def _dataset_for(
    root: PathLike, meta: dict[str, Any], labelled: bool, npixel: int | None
) -> PixelSetDataset:
    """The folder prepared as the checkpoint's training data was."""
    seed = int((meta.get("train_config") or {}).get("seed", 0))
    return PixelSetDataset(
        root,
        nomenclature=meta["nomenclature"],
        # Evaluating keeps the checkpoint's classes only; predicting keeps every parcel.
        classes=list(meta["class_ids"]) if labelled else None,
        npixel=int(npixel or meta["npixel"]),
        normalisation=_stats(meta["normalisation"]),
        extra_features=bool(meta.get("extra_features", meta["extra_stats"] is not None)),
        extra_stats=_stats(meta["extra_stats"]),
        jitter=None,
        train=False,
        seed=seed,
        labels_required=labelled,
    )


@torch.no_grad()
def _log_probs(
    model: nn.Module,
    dataset: PixelSetDataset,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    progress: bool,
    desc: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N,), log-probabilities (N, K)) in the dataset's order."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_pixel_sets,
        pin_memory=device.type == "cuda",
    )
    ids, out = [], []
    for batch in progress_bar(loader, progress, desc=desc, leave=False):
        b = {k: v.to(device) for k, v in batch.items()}
        logits = model(b["pixels"], b["mask"], extra=b.get("extra"), positions=b.get("positions"))
        out.append(torch.log_softmax(logits.double(), dim=1).cpu().numpy())  # (B, K)
        ids.append(batch["id"].numpy())
    k = model.num_classes
    if not out:
        return np.zeros(0, dtype=np.int64), np.zeros((0, k))
    return np.concatenate(ids), np.concatenate(out)


def _run(
    root: PathLike,
    checkpoints: Checkpoints,
    labelled: bool,
    batch_size: int,
    device: str | torch.device | None,
    num_workers: int,
    npixel: int | None,
    progress: bool,
) -> tuple[Prediction, list[dict[str, Any]], int]:
    paths = resolve_checkpoints(checkpoints)
    dev = pick_device(device)
    # Every checkpoint and the whole folder are checked before the first model runs.
    first = load_checkpoint(paths[0])
    for path in paths[1:]:
        if list(load_checkpoint(path)["class_ids"]) != list(first["class_ids"]):
            raise CheckpointError(
                path, f"its classes differ from those of {paths[0]}: cannot ensemble them"
            )
    check_input(root, first["nomenclature"], labels_required=labelled)
    check_label_codes(root, first, paths[0])  # class ids mean the same codes as in training
    del first
    metas: list[dict[str, Any]] = []
    total = ids = np.zeros(0)  # replaced by the first checkpoint's
    labels = None
    n_total = 0
    verb = "test" if labelled else "predict"
    for i, path in enumerate(paths):
        model, meta = load_model(path, dev)
        metas.append(meta)
        data = _dataset_for(root, meta, labelled, npixel)
        desc = f"{verb} with checkpoint {i + 1}/{len(paths)}"
        these_ids, logp = _log_probs(model, data, batch_size, num_workers, dev, progress, desc)
        if i > 0 and not np.array_equal(ids, these_ids):
            raise PredictError(f"{path}: selects other parcels of {root} than {paths[0]} does")
        ids = these_ids
        total = logp if i == 0 else total + logp
        if labelled:
            labels = np.asarray(data.labels, dtype=np.int64)
            n_total = _count_labelled(root, meta["nomenclature"])
    mean_logp = total / len(paths)  # (N, K)
    # Softmax of the mean log-probability, shifted by the row maximum for stability.
    probs = np.exp(mean_logp - mean_logp.max(axis=1, keepdims=True))  # (N, K)
    probs /= probs.sum(axis=1, keepdims=True)
    pred = Prediction(
        ids=ids.astype(np.int64),
        predicted=probs.argmax(axis=1).astype(np.int64),
        probabilities=probs,
        class_ids=[int(c) for c in metas[0]["class_ids"]],
        class_names=[str(n) for n in metas[0]["class_names"]],
        labels=labels,
    )
    return pred, metas, n_total


def _count_labelled(root: PathLike, nomenclature: str) -> int:
    from psetae.data.format import read_labels

    return len(read_labels(root, nomenclature))


def predict(
    root: PathLike,
    checkpoints: Checkpoints,
    out_csv: PathLike | None = None,
    *,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    npixel: int | None = None,
    progress: bool = True,
) -> Prediction:
    """Predict the class of every parcel of a folder (labels, if any, are not needed).

    Parameters
    ----------
    root
        A dataset folder (``META/labels.json`` may be absent).
    checkpoints
        One checkpoint, or several for an ensemble (mean of log-probabilities); folders
        are expanded by :func:`resolve_checkpoints`.
    out_csv
        If given, write the predictions there (see :func:`write_predictions_csv`).
    batch_size, device, num_workers
        How to run the model.
    npixel
        Pixels sampled per parcel (default: the checkpoint's S).
    progress
        Show a progress bar.

    Returns
    -------
    Prediction

    Raises
    ------
    CheckpointError
        Unreadable checkpoints, or ensemble members with different classes.
    psetae.data.format.DatasetFormatError
        A problem with the folder.
    """
    pred, _, _ = _run(root, checkpoints, False, batch_size, device, num_workers, npixel, progress)
    if out_csv is not None:
        write_predictions_csv(pred, out_csv)
    return pred


def evaluate(
    checkpoints: Checkpoints,
    root: PathLike,
    *,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    npixel: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Test checkpoint(s) on a labelled folder, e.g. another region or year.

    The folder is prepared with the checkpoint's normalisation and geometric-feature
    statistics (not its own). Parcels whose class is not one of the checkpoint's classes
    are left out and counted in ``n_skipped``.

    Parameters
    ----------
    checkpoints
        One checkpoint or an ensemble.
    root
        A dataset folder labelled in the checkpoint's nomenclature.
    batch_size, device, num_workers, npixel, progress
        As in :func:`predict`.

    Returns
    -------
    dict
        :func:`~psetae.metrics.summarize` of the confusion matrix (``oa``, ``miou``,
        per-class metrics, ``confusion_matrix``, ``class_names``), plus ``root``,
        ``checkpoints`` and ``n_skipped``.

    Raises
    ------
    psetae.data.format.DatasetFormatError
        The folder has no labels in the checkpoint's nomenclature, or another problem.
    PredictError
        No parcel of the folder belongs to the checkpoint's classes.
    """
    pred, _, n_total = _run(
        root, checkpoints, True, batch_size, device, num_workers, npixel, progress
    )
    if len(pred.ids) == 0:
        raise PredictError(
            f"{root}: no parcel is labelled with one of the checkpoint's classes "
            f"({pred.class_ids[:5]}...)"
        )
    cm = confusion_matrix(pred.labels, pred.predicted, len(pred.class_ids))
    out = summarize(cm, pred.class_names)
    out["root"] = str(root)
    out["checkpoints"] = [str(p) for p in resolve_checkpoints(checkpoints)]
    out["n_skipped"] = int(n_total - len(pred.ids))
    return out


def write_predictions_csv(pred: Prediction, path: PathLike) -> Path:
    """Write ``id, class_id, class_name, prob_<class_id>...`` (one row per parcel) atomically.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "class_id", "class_name", *[f"prob_{c}" for c in pred.class_ids]])
        codes = pred.predicted_class_ids
        for i in range(len(pred.ids)):
            k = int(pred.predicted[i])
            w.writerow(
                [
                    int(pred.ids[i]),
                    int(codes[i]),
                    pred.class_names[k],
                    *[f"{p:.6g}" for p in pred.probabilities[i]],
                ]
            )
    return path
