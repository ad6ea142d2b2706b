"""Inference with a checkpoint or an ensemble of checkpoints (e.g. the k folds).

A checkpoint holds the model, the normalisation and geometric-feature statistics of its
training set, the classes and S (see :mod:`psetae.train.checkpoint`): a new folder is
prepared exactly as the training data was, whatever statistics the new folder would have.

Evaluation is deterministic: eval mode (BatchNorm running statistics, no dropout) and the
dataset's evaluation sampling (no jitter, a fixed draw of S pixels per parcel), seeded with
the training run's seed so that re-testing reproduces the metrics recorded in training.

Inference streams: :class:`PredictionStream` reads, predicts and hands out one batch at a
time, :func:`predict_csv` writes each batch's rows into a temporary file renamed when complete,
and :func:`evaluate` accumulates the confusion matrix, so memory does not grow with the number
of parcels. An ensemble is loaded once and the data read once: each batch is read as stored and
every member applies its own normalisation and geometric-feature z-scoring to it (the members
share S and the sampling seed, so they see the same pixels).

An ensemble averages the members' log-probabilities; its class probabilities are the
softmax of that mean (the normalised geometric mean of the members' probabilities), so
that the predicted class is the most probable one.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from psetae.data.dataset import PixelSetDataset, collate_pixel_sets
from psetae.data.format import DatasetFormatError, load_normalisation
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
    "PredictionBatch",
    "PredictionStream",
    "predict",
    "predict_csv",
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


def _uses_extra(meta: dict[str, Any]) -> bool:
    return bool(meta.get("extra_features", meta["extra_stats"] is not None))


@dataclass
class _Member:
    """One checkpoint of an ensemble and how to prepare a raw batch for it."""

    path: Path
    model: nn.Module
    meta: dict[str, Any]
    norm: tuple[torch.Tensor, torch.Tensor] | None  # float32, broadcast against (T, C, S)
    extra_stats: tuple[np.ndarray, np.ndarray] | None  # float64 (E,)


def _load_members(
    paths: list[Path], device: torch.device, npixel: int | None, compile: bool
) -> list[_Member]:
    """Load every checkpoint once; refuse members that cannot share one read of the data."""
    members = []
    for path in paths:
        model, meta = load_model(path, device)
        norm = None
        if meta["normalisation"] is not None:
            mean, std = load_normalisation(_stats(meta["normalisation"]))
            norm = (torch.from_numpy(mean), torch.from_numpy(std))
        extra = _stats(meta["extra_stats"]) if _uses_extra(meta) else None
        if compile:
            from psetae.models import compile_model

            model = compile_model(model)
        members.append(_Member(path, model, meta, norm, extra))
    first = members[0]
    seed = _sampling_seed(first.meta)
    for m in members[1:]:
        if list(m.meta["class_ids"]) != list(first.meta["class_ids"]):
            raise CheckpointError(
                m.path, f"its classes differ from those of {first.path}: cannot ensemble them"
            )
        for what, mine, theirs in (
            ("nomenclature", m.meta["nomenclature"], first.meta["nomenclature"]),
            ("sampling seed", _sampling_seed(m.meta), seed),
            ("S (pixels per parcel)", int(m.meta["npixel"]), int(first.meta["npixel"])),
        ):
            if what.startswith("S ") and npixel is not None:
                continue  # --npixel sets one S for all members
            if mine != theirs:
                raise CheckpointError(
                    m.path,
                    f"its {what} {mine!r} differs from {theirs!r} of {first.path}: the members "
                    "of an ensemble read the same pixels, so they must share S and the seed",
                )
    return members


def _sampling_seed(meta: dict[str, Any]) -> int:
    return int((meta.get("train_config") or {}).get("seed", 0))


def _raw_dataset(
    root: PathLike, meta: dict[str, Any], labelled: bool, npixel: int | None
) -> PixelSetDataset:
    """The folder as stored (no normalisation, no geometric features), sampled as in
    evaluation with the checkpoint's seed; each member normalises the batches itself."""
    return PixelSetDataset(
        root,
        nomenclature=meta["nomenclature"],
        # Evaluating keeps the checkpoint's classes only; predicting keeps every parcel.
        classes=list(meta["class_ids"]) if labelled else None,
        npixel=int(npixel or meta["npixel"]),
        normalisation=None,
        extra_features=False,
        jitter=None,
        train=False,
        seed=_sampling_seed(meta),
        labels_required=labelled,
    )


def _raw_extra(data: PixelSetDataset) -> np.ndarray:
    """(N, E) float64 geometric features of the dataset's parcels, as stored."""
    from psetae.data.format import read_geomfeat

    feats = read_geomfeat(data.root)
    missing = [int(i) for i in data.ids if int(i) not in feats]
    if missing:
        raise DatasetFormatError(
            data.root / "META" / "geomfeat.json", f"no features for ids {missing[:10]}"
        )
    return np.stack([feats[int(i)] for i in data.ids]) if len(data.ids) else np.zeros((0, 0))


@dataclass
class PredictionBatch:
    """The ensemble's output on one batch of parcels.

    Attributes
    ----------
    ids
        (B,) parcel ids.
    log_probs
        (B, K) mean over the members of the log-probabilities (float64).
    labels
        (B,) true class index when evaluating, else None.
    """

    ids: np.ndarray
    log_probs: np.ndarray
    labels: np.ndarray | None

    @property
    def probabilities(self) -> np.ndarray:
        """(B, K) softmax of the mean log-probability: the ensemble's class probabilities."""
        # Shifted by the row maximum for stability; rows are independent, so per batch.
        p = np.exp(self.log_probs - self.log_probs.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)


class PredictionStream:
    """The predictions of a folder, batch by batch, with memory that does not grow with
    the number of parcels.

    Every checkpoint is loaded once; each batch is read once, as stored, and prepared for
    each member with its own normalisation and geometric-feature statistics (the members
    therefore share S and the sampling seed: they see the same pixels).

    Attributes
    ----------
    class_ids, class_names
        The K classes, in logit order.
    checkpoints
        The checkpoint files (after :func:`resolve_checkpoints`).
    dataset
        The folder's dataset (ids and labels, no normalisation).
    """

    def __init__(
        self,
        root: PathLike,
        checkpoints: Checkpoints,
        labelled: bool,
        *,
        batch_size: int = 128,
        device: str | torch.device | None = None,
        num_workers: int = 0,
        npixel: int | None = None,
        progress: bool = True,
        compile: bool = False,
    ) -> None:
        self.checkpoints = resolve_checkpoints(checkpoints)
        self.device = pick_device(device)
        # Every checkpoint and the whole folder are checked before the first model runs.
        self.members = _load_members(self.checkpoints, self.device, npixel, compile)
        meta = self.members[0].meta
        check_input(root, meta["nomenclature"], labels_required=labelled)
        # Class ids must mean the same codes as in training (raster imports number them).
        check_label_codes(root, meta, self.checkpoints[0])
        self.root, self.labelled = root, labelled
        self.dataset = _raw_dataset(root, meta, labelled, npixel)
        needs_extra = any(m.extra_stats is not None for m in self.members)
        self._extra = _raw_extra(self.dataset) if needs_extra else None  # (N, E) float64
        self._norms = [
            None if m.norm is None else self._broadcast(m.norm, m.path) for m in self.members
        ]
        self.class_ids = [int(c) for c in meta["class_ids"]]
        self.class_names = [str(n) for n in meta["class_names"]]
        self.batch_size, self.num_workers, self.progress = batch_size, num_workers, progress

    def _broadcast(
        self, norm: tuple[torch.Tensor, torch.Tensor], path: Path
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self.dataset._broadcastable(norm[0].numpy(), norm[1].numpy(), path)
        return torch.from_numpy(mean).to(self.device), torch.from_numpy(std).to(self.device)

    def __len__(self) -> int:
        """Number of parcels."""
        return len(self.dataset)

    @torch.no_grad()
    def __iter__(self) -> Iterator[PredictionBatch]:
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_pixel_sets,
            pin_memory=self.device.type == "cuda",
        )
        verb = "test" if self.labelled else "predict"
        n = len(self.members)
        desc = f"{verb} with {n} checkpoint{'s' if n > 1 else ''}"
        start = 0
        for batch in progress_bar(loader, self.progress, desc=desc, leave=False):
            b = {k: v.to(self.device) for k, v in batch.items()}
            rows = slice(start, start + len(batch["id"]))
            start = rows.stop
            total = None
            for i, (member, norm) in enumerate(zip(self.members, self._norms, strict=True)):
                pixels = b["pixels"]  # (B, T, C, S) as stored
                if norm is not None:
                    # The same float32 steps as the dataset's (x - mean) / std: equal bits.
                    # The last member may overwrite the raw batch: no copy.
                    pixels = pixels if i == n - 1 else pixels.clone()
                    pixels = pixels.sub_(norm[0]).div_(norm[1])
                extra = None
                if member.extra_stats is not None:
                    mean, std = member.extra_stats
                    e = ((self._extra[rows] - mean) / std).astype(np.float32)  # (B, E)
                    t = pixels.shape[1]
                    extra = torch.from_numpy(e).to(self.device)[:, None].expand(-1, t, -1)
                logits = member.model(pixels, b["mask"], extra=extra, positions=b["positions"])
                logp = torch.log_softmax(logits.double(), dim=1)  # (B, K)
                total = logp if total is None else total + logp
            yield PredictionBatch(
                ids=batch["id"].numpy(),
                log_probs=(total / n).cpu().numpy(),
                labels=batch["label"].numpy() if "label" in batch else None,
            )


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
    compile: bool = False,
) -> Prediction:
    """Predict the class of every parcel of a folder (labels, if any, are not needed).

    The result is held in memory: for millions of parcels use :func:`predict_csv`, which
    streams to the file.

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
    compile
        Run the models through :func:`psetae.models.compile_model` (pays on long runs on a
        GPU only).

    Returns
    -------
    Prediction

    Raises
    ------
    CheckpointError
        Unreadable checkpoints, or ensemble members with different classes, S or seeds.
    psetae.data.format.DatasetFormatError
        A problem with the folder.
    """
    stream = PredictionStream(
        root,
        checkpoints,
        False,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        npixel=npixel,
        progress=progress,
        compile=compile,
    )
    batches = list(stream)
    k = len(stream.class_ids)
    probs = np.concatenate([b.probabilities for b in batches]) if batches else np.zeros((0, k))
    ids = np.concatenate([b.ids for b in batches]) if batches else np.zeros(0, np.int64)
    pred = Prediction(
        ids=ids.astype(np.int64),
        predicted=probs.argmax(axis=1).astype(np.int64),
        probabilities=probs,
        class_ids=stream.class_ids,
        class_names=stream.class_names,
    )
    if out_csv is not None:
        write_predictions_csv(pred, out_csv)
    return pred


def predict_csv(
    root: PathLike,
    checkpoints: Checkpoints,
    out_csv: PathLike,
    *,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    npixel: int | None = None,
    progress: bool = True,
    compile: bool = False,
) -> int:
    """Predict every parcel of a folder into a CSV, batch by batch (what ``psetae predict``
    does): memory does not grow with the number of parcels, and the file appears only when
    complete (it is written under a temporary name, then renamed).

    Parameters are those of :func:`predict`; the CSV is that of
    :func:`write_predictions_csv`.

    Returns
    -------
    int
        The number of parcels written.
    """
    stream = PredictionStream(
        root,
        checkpoints,
        False,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        npixel=npixel,
        progress=progress,
        compile=compile,
    )
    n = 0
    with _csv_writer(out_csv, stream.class_ids) as write:
        for b in stream:
            probs = b.probabilities
            write(b.ids, probs.argmax(axis=1), probs, stream.class_ids, stream.class_names)
            n += len(b.ids)
    return n


def evaluate(
    checkpoints: Checkpoints,
    root: PathLike,
    *,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    npixel: int | None = None,
    progress: bool = True,
    compile: bool = False,
) -> dict[str, Any]:
    """Test checkpoint(s) on a labelled folder, e.g. another region or year.

    The folder is prepared with the checkpoint's normalisation and geometric-feature
    statistics (not its own). Parcels whose class is not one of the checkpoint's classes
    are left out and counted in ``n_skipped``. The confusion matrix is accumulated batch by
    batch, so memory does not grow with the number of parcels.

    Parameters
    ----------
    checkpoints
        One checkpoint or an ensemble.
    root
        A dataset folder labelled in the checkpoint's nomenclature.
    batch_size, device, num_workers, npixel, progress, compile
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
    stream = PredictionStream(
        root,
        checkpoints,
        True,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        npixel=npixel,
        progress=progress,
        compile=compile,
    )
    k = len(stream.class_ids)
    if len(stream) == 0:
        raise PredictError(
            f"{root}: no parcel is labelled with one of the checkpoint's classes "
            f"({stream.class_ids[:5]}...)"
        )
    cm = np.zeros((k, k), dtype=np.int64)
    for b in stream:
        cm += confusion_matrix(b.labels, b.log_probs.argmax(axis=1), k)
    out = summarize(cm, stream.class_names)
    out["root"] = str(root)
    out["checkpoints"] = [str(p) for p in stream.checkpoints]
    n_total = _count_labelled(root, stream.members[0].meta["nomenclature"])
    out["n_skipped"] = int(n_total - len(stream))
    return out


@contextlib.contextmanager
def _csv_writer(path: PathLike, class_ids: Sequence[int]) -> Iterator[Any]:
    """A function writing rows of predictions into ``path`` (atomically, on success)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "class_id", "class_name", *[f"prob_{c}" for c in class_ids]])

        def write(
            ids: np.ndarray,
            predicted: np.ndarray,
            probs: np.ndarray,
            class_ids: Sequence[int],
            class_names: Sequence[str],
        ) -> None:
            codes = np.asarray(class_ids, dtype=np.int64)[predicted]
            w.writerows(
                [
                    int(ids[i]),
                    int(codes[i]),
                    class_names[int(predicted[i])],
                    *[f"{p:.6g}" for p in probs[i]],
                ]
                for i in range(len(ids))
            )

        yield write


def write_predictions_csv(pred: Prediction, path: PathLike) -> Path:
    """Write ``id, class_id, class_name, prob_<class_id>...`` (one row per parcel) atomically.

    Returns
    -------
    Path
        ``path``.
    """
    with _csv_writer(path, pred.class_ids) as write:
        write(pred.ids, pred.predicted, pred.probabilities, pred.class_ids, pred.class_names)
    return Path(path)
