"""Cross-validation as in the paper (k folds of 60/20/20), or one fixed split.

``cross_validate`` writes into ``out_dir``::

    config.json        the TrainConfig
    splits.json        the ids of every fold's train / val / test sets
    fold_1/            best.pt, last.pt, history.json, test.json (per-fold test metrics)
    ...
    results.json       per-fold and overall metrics, per-fold and summed confusion matrices

Normalisation and geometric-feature statistics are taken from each fold's training parcels
(or from the dataset's own normalisation file, see ``TrainConfig.normalisation``), and the
validation and test parcels are prepared with them, so nothing of the test set leaks in.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from psetae.data.dataset import PixelSetDataset
from psetae.data.format import (
    NORMALISATION_JSON,
    NORMALISATION_PKL,
    DatasetFormatError,
    compute_normalisation,
    load_parcel,
    read_json,
    read_labels,
)
from psetae.data.names import default_classes
from psetae.io import write_json_atomic
from psetae.metrics import summarize
from psetae.train import distributed
from psetae.train.adapt import adapt_to_data, resolve_nomenclature
from psetae.train.checkpoint import load_checkpoint
from psetae.train.errors import TrainError
from psetae.train.fit import TrainConfig, evaluate_distributed, fit
from psetae.train.inputs import check_input
from psetae.train.splits import Split, fraction_split, kfold_splits, load_split, save_splits

__all__ = [
    "prepare_run",
    "CrossValResult",
    "cross_validate",
    "make_datasets",
    "resolve_classes",
    "resolve_normalisation",
]


@dataclass
class CrossValResult:
    """What :func:`cross_validate` returns (also written to ``results.json``).

    Attributes
    ----------
    folds
        One dict per fold: ``fold``, ``best_epoch``, ``val_miou``, ``test`` (the
        :func:`~psetae.metrics.summarize` of its test set, or None without a test set).
    overall
        :func:`~psetae.metrics.summarize` of the confusion matrix summed over the folds
        (None if no fold has a test set), plus ``oa_mean``/``oa_std``/``miou_mean``/
        ``miou_std`` over the folds.
    confusion_matrix
        (K, K) summed test confusion matrix.
    checkpoints
        ``best.pt`` of every fold (an ensemble for :func:`psetae.predict.predict`).
    results_path
        ``out_dir/results.json``.
    """

    folds: list[dict[str, Any]]
    overall: dict[str, Any] | None
    confusion_matrix: np.ndarray
    checkpoints: list[Path]
    results_path: Path


def resolve_classes(config: TrainConfig) -> list[int] | None:
    """The class codes to keep for ``config`` (``"auto"`` resolved)."""
    if config.classes == "auto":
        return default_classes(config.nomenclature)
    return config.classes  # type: ignore[return-value]


def resolve_normalisation(
    root: str | os.PathLike, config: TrainConfig, train_ids: Sequence[int]
) -> Any:
    """The ``normalisation`` argument for the datasets of one split.

    Returns
    -------
    None, a path, or a ``(mean, std)`` tuple computed per channel over ``train_ids``.
    """
    root = Path(root)
    choice = config.normalisation
    if choice is None or choice == "none":
        return None
    if choice == "auto":
        for name in (NORMALISATION_JSON, NORMALISATION_PKL):
            if (root / name).is_file():
                return root / name
        pkls = sorted(root.glob("*.pkl"))
        if len(pkls) == 1:
            return pkls[0]
        choice = "compute"
    if choice == "compute":
        return compute_normalisation((load_parcel(root, i) for i in train_ids), per="channel")
    path = Path(choice)
    if not path.is_file():
        raise DatasetFormatError(path, "normalisation file not found")
    return path


def _dataset(root: Path, config: TrainConfig, ids: Sequence[int], train: bool, **kw: Any):
    return PixelSetDataset(
        root,
        nomenclature=config.nomenclature,
        classes=resolve_classes(config),
        npixel=config.npixel,
        extra_features=config.extra_features,
        jitter=config.jitter,
        train=train,
        seed=config.seed,
        ids=list(ids),
        drop_nonfinite=config.drop_nonfinite,
        **kw,
    )


def make_datasets(
    root: str | os.PathLike, split: Split, config: TrainConfig
) -> tuple[PixelSetDataset, PixelSetDataset, PixelSetDataset | None]:
    """The training (random sampling), validation and test (deterministic) datasets of a split.

    The normalisation and the geometric-feature statistics come from the training parcels
    (or the dataset's normalisation file) and are applied to all three.
    """
    root = Path(root)
    norm = resolve_normalisation(root, config, split.train)
    train = _dataset(root, config, split.train, True, normalisation=norm)
    shared = {"normalisation": train.normalisation, "extra_stats": train.extra_stats}
    val = _dataset(root, config, split.val, False, **shared)
    test = _dataset(root, config, split.test, False, **shared) if split.test else None
    return train, val, test


def _parcel_ids(root: Path, config: TrainConfig) -> list[int]:
    """Ids of the labelled parcels of the classes kept (the ones to split)."""
    ds = PixelSetDataset(
        root,
        nomenclature=config.nomenclature,
        classes=resolve_classes(config),
        npixel=1,
        extra_features=False,
        train=False,
        drop_nonfinite=config.drop_nonfinite,
    )
    return [int(i) for i in ds.ids]


def _splits_for(
    root: Path,
    out: Path,
    folds: int,
    config: TrainConfig,
    split: Split | str | os.PathLike | tuple[float, float] | None,
) -> list[Split]:
    ids = _parcel_ids(root, config)
    if split is None:
        splits = kfold_splits(ids, folds=folds, seed=config.seed)
        source = f"{folds}-fold split of {root}"
    elif isinstance(split, tuple):
        val_fraction, test_fraction = split
        splits = [fraction_split(ids, val_fraction, test_fraction, seed=config.seed)]
        source = f"split of {root} by fractions (val {val_fraction}, test {test_fraction})"
    else:
        source = str(split) if not isinstance(split, Split) else "split"
        splits = [split if isinstance(split, Split) else load_split(split)]
        splits[0].restricted_to(ids, source=source)
    saved = out / "splits.json"
    if saved.exists():
        previous = read_json(saved)
        if previous != [s.to_dict() for s in splits]:
            raise TrainError(
                f"{saved}: holds other splits than the {source} asked for "
                "(use another output folder)"
            )
    return splits


def _notice(line: str) -> None:
    print(f"psetae: {line}", file=sys.stderr, flush=True)


def prepare_run(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    folds: int,
    config: TrainConfig,
    split: Split | str | os.PathLike | tuple[float, float] | None = None,
    notify: Callable[[str], None] | None = _notice,
) -> tuple[TrainConfig, list[Split]]:
    """Everything a run decides and checks before it writes anything.

    The nomenclature is resolved, the dataset checked (:func:`~psetae.train.inputs.check_input`),
    the settings that the data decides are adapted (:func:`~psetae.train.adapt.adapt_to_data`,
    one notice per change through ``notify``), the splits made or read and compared with
    those of an earlier run in ``out_dir``, and a chosen normalisation file read.

    Returns
    -------
    (config, splits)
        The config the run will use and its splits.
    """
    root, out = Path(root), Path(out_dir)
    config = dataclasses.replace(
        config, nomenclature=resolve_nomenclature(root, config.nomenclature)
    )
    check_input(root, config.nomenclature, drop_nonfinite=config.drop_nonfinite)
    every = config.classes is None or (
        config.classes == "auto" and default_classes(config.nomenclature) is None
    )
    if every:
        # Every stored class, fixed over the whole dataset: a class absent from one fold's
        # training parcels keeps its logit, and every fold has the same classes.
        codes = sorted({c for c in read_labels(root, config.nomenclature).values() if c >= 0})
        config = dataclasses.replace(config, classes=codes)
    config, notices = adapt_to_data(root, config)
    splits = _splits_for(root, out, folds, config, split)
    if config.normalisation not in (None, "none", "auto", "compute"):
        resolve_normalisation(root, config, [])
    for line in notices if notify else ():  # said once the run is known to go ahead
        notify(line)
    return config, splits


def cross_validate(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    folds: int = 5,
    config: TrainConfig | None = None,
    split: Split | str | os.PathLike | tuple[float, float] | None = None,
    *,
    resume: bool = True,
    notify: Callable[[str], None] | None = _notice,
    compile: bool = False,
    sync_batchnorm: bool = True,
    dist_timeout_s: float = distributed.DEFAULT_TIMEOUT_S,
) -> CrossValResult:
    """Train and test PSE-TAE with the paper's k-fold protocol, or on one fixed split.

    Parameters
    ----------
    root
        A labelled dataset folder.
    out_dir
        Where to write checkpoints and results (see the module docstring).
    folds
        k of the k-fold split (test = fold i, validation = fold i+1, train = the rest);
        ignored when ``split`` is given.
    config
        The :class:`~psetae.train.fit.TrainConfig` (defaults: the paper's protocol).
    split
        Instead of the k folds: a fixed split (a :class:`~psetae.train.splits.Split` or the
        path of its JSON), or ``(val_fraction, test_fraction)`` for one shuffled split by
        fractions (:func:`~psetae.train.splits.fraction_split`).
    resume
        Continue folds from their ``last.pt`` (finished folds are only re-tested).
    notify
        Called with each notice of a setting the data changed (default: printed to stderr);
        None for silence.
    compile, sync_batchnorm, dist_timeout_s
        As in :func:`~psetae.train.fit.fit`. Under ``torchrun`` the folds run one after
        the other, each on all the ranks; only rank 0 writes.

    Returns
    -------
    CrossValResult

    Raises
    ------
    psetae.train.inputs.InvalidInputError, psetae.data.format.DatasetFormatError
        A dataset the training would refuse (checked before anything is written).
    TrainError
        A bad split file, or an output folder that holds another experiment.
    """
    root = Path(root)
    out = Path(out_dir)
    # The whole input is checked before anything is written: the dataset, the split, the
    # normalisation file, and an output folder holding another experiment.
    config, splits = prepare_run(root, out, folds, config or TrainConfig(), split, notify)
    main = distributed.from_env().is_main  # under torchrun only rank 0 writes
    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_splits(splits, out / "splits.json")
        write_json_atomic(out / "config.json", config.to_dict())
    parallel = {"compile": compile, "sync_batchnorm": sync_batchnorm}

    fold_results: list[dict[str, Any]] = []
    checkpoints: list[Path] = []
    total_cm: np.ndarray | None = None
    class_names: list[str] | None = None
    for i, s in enumerate(splits, start=1):
        fold_dir = out / f"fold_{i}"
        train_set, val_set, test_set = make_datasets(root, s, config)
        desc = f"fold {i}/{len(splits)}"
        result = fit(
            train_set,
            val_set,
            config,
            fold_dir,
            resume=resume,
            desc=desc,
            dist_timeout_s=dist_timeout_s,
            **parallel,
        )
        checkpoints.append(result.best_path)
        class_names = list(load_checkpoint(result.best_path)["class_names"])
        record: dict[str, Any] = {
            "fold": i,
            "best_epoch": result.best_epoch,
            "val_miou": result.best_metric if np.isfinite(result.best_metric) else None,
            "n_train": len(train_set),
            "n_val": len(val_set),
            "n_test": len(test_set) if test_set is not None else 0,
            "test": None,
        }
        if test_set is not None:
            dev = next(result.model.parameters()).device  # this rank's, under torchrun
            ev = evaluate_distributed(result.model, test_set, config, dev, f"{desc} test")
            record["test"] = summarize(ev["cm"], class_names)
            total_cm = ev["cm"] if total_cm is None else total_cm + ev["cm"]
            if main:
                write_json_atomic(fold_dir / "test.json", record["test"])
        fold_results.append(record)

    overall = None
    if total_cm is not None:
        overall = summarize(total_cm, class_names)
        tested = [r["test"] for r in fold_results if r["test"] is not None]
        for key in ("oa", "miou"):
            vals = np.array([t[key] for t in tested if t[key] is not None], dtype=np.float64)
            overall[f"{key}_mean"] = float(vals.mean()) if len(vals) else None
            overall[f"{key}_std"] = float(vals.std()) if len(vals) else None
    else:
        k = len(class_names or [])
        total_cm = np.zeros((k, k), dtype=np.int64)
    results_path = out / "results.json"
    if main:
        write_json_atomic(
            results_path,
            {
                "root": str(root),
                "folds": fold_results,
                "overall": overall,
                "checkpoints": [str(p) for p in checkpoints],
                "config": config.to_dict(),
            },
        )
    return CrossValResult(
        folds=fold_results,
        overall=overall,
        confusion_matrix=total_cm,
        checkpoints=checkpoints,
        results_path=results_path,
    )
