"""Checkpoints: one file that is enough to predict, and to resume training exactly.

A checkpoint is a ``dict`` saved with :func:`torch.save` that holds only tensors, lists, tuples,
dicts, strings, numbers, booleans and ``None``, so that it loads with
``torch.load(path, weights_only=True)`` (no arbitrary unpickling). Keys:

========================  ==================================================================
``format``                ``"psetae-checkpoint"``
``version``               :data:`CHECKPOINT_VERSION` (1: no ``model_name``; it loads as PSE-TAE)
``model_name``            the registry name of the model (:mod:`psetae.models.registry`)
``model_config``          the model's config dataclass as a dict (``config.to_dict()``)
``state_dict``            the model weights (the best epoch's in ``best.pt``)
``normalisation``         ``{"mean": tensor, "std": tensor}`` applied to the pixels, or None
``extra_stats``           ``{"mean": tensor, "std": tensor}`` of the geometric features, or None
``class_ids``             the dataset's class codes, in the order of the logits
``class_names``           a name for each class
``nomenclature``          which nomenclature of ``labels.json`` the classes come from
``npixel``                S, pixels sampled per parcel
``extra_features``        whether the model takes the geometric features
``sequence_length``       T, the number of dates of the training data
``train_config``          :class:`~psetae.train.fit.TrainConfig` as a dict
``epoch``                 the last finished epoch (1-based)
``best_epoch``            the epoch with the best validation mIoU, ``best_metric`` its value
``history``               per-epoch metrics (list of dicts)
``optimizer``             optimizer state (resume only; None in a stripped checkpoint)
``scaler``                GradScaler state on CUDA (resume only), else None
========================  ==================================================================

No RNG state is stored: training reseeds everything random from ``(seed, epoch)`` at the
start of each epoch (see :mod:`psetae.train.fit`), which alone makes a resume exact.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from psetae.errors import PsetaeError
from psetae.io import atomic_write

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "to_plain",
]

CHECKPOINT_FORMAT = "psetae-checkpoint"
CHECKPOINT_VERSION = 2
#: The model of a version-1 checkpoint (written before the registry): PSE-TAE.
DEFAULT_MODEL_NAME = "psetae"
REQUIRED_KEYS = (
    "model_config",
    "state_dict",
    "normalisation",
    "extra_stats",
    "class_ids",
    "class_names",
    "nomenclature",
    "npixel",
)


class CheckpointError(PsetaeError, ValueError):
    """A checkpoint file is missing, unreadable or not a psetae checkpoint (names the file)."""

    def __init__(self, path: str | os.PathLike, message: str) -> None:
        self.path = Path(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")


def to_plain(obj: Any) -> Any:
    """Convert numpy arrays and scalars and paths into tensors, numbers and strings.

    Used on everything that goes into a checkpoint, so that ``weights_only=True`` loads it.
    """
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj)).clone()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {(k if isinstance(k, (str, int)) else str(k)): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple):  # kept: the optimizer's state has tuples (Adam's betas)
        return tuple(to_plain(v) for v in obj)
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint")


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temporary file in the same folder, then
    ``os.replace``), so an interruption never leaves a truncated checkpoint behind.

    Parameters
    ----------
    path
        Destination file (its folder must exist).
    checkpoint
        The content; converted with :func:`to_plain`. ``format`` and ``version`` are added.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    content = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION}
    content.update(to_plain(checkpoint))
    with atomic_write(path) as f:
        torch.save(content, f)
    return path


def load_checkpoint(path: str | os.PathLike, require_resume: bool = False) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` and check its content.

    Parameters
    ----------
    path
        A file written by :func:`save_checkpoint`.
    require_resume
        Also require the optimizer state and epoch needed to resume training.

    Returns
    -------
    dict
        The checkpoint, tensors on the CPU; ``model_name`` is set (``"psetae"`` for a
        version-1 checkpoint).

    Raises
    ------
    CheckpointError
        Missing or unreadable file, another format, a newer version, or missing keys.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to parse an untrusted file is "unreadable"
        raise CheckpointError(path, _unreadable(e)) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(path, "not a psetae checkpoint (no 'format' marker)")
    version = ckpt.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            path, f"checkpoint version {version!r} is newer than this psetae reads"
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if require_resume:
        missing += [k for k in ("optimizer", "epoch") if ckpt.get(k) is None]
    if missing:
        raise CheckpointError(path, f"missing {', '.join(missing)}")
    ckpt.setdefault("model_name", DEFAULT_MODEL_NAME)
    return ckpt


def _unreadable(error: Exception) -> str:
    """Why torch refused a file, in one line, without torch's advice to load it unsafely."""
    text = str(error)
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if refused:
        return (
            f"not a readable checkpoint: it would import {refused.group(1)}, which a "
            "checkpoint never needs; refused and not loaded, for safety"
        )
    # torch's own text may advise loading with weights_only=False: never pass that on.
    lines = [line for line in text.splitlines() if line.strip() and "weights_only" not in line]
    first = lines[0].strip() if lines else type(error).__name__
    return f"not a readable checkpoint ({first})"
