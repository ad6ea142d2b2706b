"""A random-forest baseline: the classical model that SITS papers and courses compare against.

Each parcel becomes one row of per-date statistics of its pixel set, as in BreizhCrops and the
sits book: the mean and the standard deviation of every band on every date, over all of the
parcel's pixels (no sampling), followed by its geometric features::

    features = [mean (T, C) | std (T, C) | geometric (E,)]        (2 * T * C + E,)

A scikit-learn ``RandomForestClassifier`` is trained on the training parcels of a split (the
same splits as :func:`psetae.train.crossval.cross_validate`) and tested with the same metrics.

The trained forest is saved as plain arrays in ``forest.npz`` (node children, split features
and thresholds, leaf class fractions) and read back with ``allow_pickle=False``: a forest file
cannot run code, unlike a pickled scikit-learn estimator. :class:`ForestModel` predicts from
these arrays with numpy and gives exactly scikit-learn's probabilities.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from psetae.data.format import DatasetFormatError
from psetae.io import atomic_write

__all__ = [
    "FOREST_FILE",
    "ForestModel",
    "cross_validate_forest",
    "find_forests",
    "forest_predict",
    "pixel_set_statistics",
    "train_forest",
]

#: The file name of a saved forest in a fold folder (beside PSE-TAE's ``best.pt``).
FOREST_FILE = "forest.npz"
_FORMAT = "psetae-forest-1"


def pixel_set_statistics(dataset: Any) -> np.ndarray:
    """Per-date mean and standard deviation of every band, then the geometric features.

    Parameters
    ----------
    dataset
        A :class:`~psetae.data.dataset.PixelSetDataset`. Its raw pixels are used (all of
        them, not normalised: a forest does not need it); its geometric features as it
        serves them (z-scored with its ``extra_stats``), if it has any.

    Returns
    -------
    np.ndarray
        (N, 2 * T * C + E) float64. A parcel with no pixels has zeros for its statistics.
    """
    n = len(dataset)
    t, c = int(dataset.sequence_length), int(dataset.num_channels)
    extra = dataset.extra_size
    out = np.zeros((n, 2 * t * c + extra), dtype=np.float64)
    for i in range(n):
        pixels = np.asarray(dataset.raw_pixels(i), dtype=np.float64)  # (T, C, n_pixels)
        if pixels.shape[-1]:
            out[i, : t * c] = pixels.mean(axis=-1).ravel()
            out[i, t * c : 2 * t * c] = pixels.std(axis=-1).ravel()
    if extra:
        out[:, 2 * t * c :] = dataset.extra_table()
    return out


@dataclass
class ForestModel:
    """A trained random forest as arrays, with the facts needed to apply it to a dataset.

    Attributes
    ----------
    left, right
        (nodes,) children of every node of every tree, as indices into these arrays; -1 at a
        leaf.
    feature, threshold
        (nodes,) the split of every internal node: go left when ``x[feature] <= threshold``.
    value
        (nodes, K) class fractions at every node (only the leaves' are used).
    roots
        (trees,) the root node of each tree.
    meta
        ``class_ids``, ``class_names``, ``nomenclature``, ``sequence_length``,
        ``num_channels``, ``extra_size``, ``extra_stats`` and the forest's settings.
    """

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.value.shape[1])

    @classmethod
    def from_sklearn(cls, forest: Any, num_classes: int, meta: dict[str, Any]) -> ForestModel:
        """Flatten a fitted ``RandomForestClassifier`` whose labels are 0..K-1."""
        lefts, rights, feats, thresholds, values, roots = [], [], [], [], [], []
        offset = 0
        columns = np.asarray(forest.classes_, dtype=np.int64)  # labels seen in training
        for est in forest.estimators_:
            tree = est.tree_
            left = tree.children_left.astype(np.int64)
            right = tree.children_right.astype(np.int64)
            leaf = left == -1
            lefts.append(np.where(leaf, -1, left + offset))
            rights.append(np.where(leaf, -1, right + offset))
            feats.append(tree.feature.astype(np.int64))
            thresholds.append(tree.threshold.astype(np.float64))
            fractions = tree.value[:, 0, :].astype(np.float64)
            fractions /= fractions.sum(axis=1, keepdims=True)
            full = np.zeros((len(left), num_classes), dtype=np.float64)
            full[:, columns] = fractions
            values.append(full)
            roots.append(offset)
            offset += len(left)
        return cls(
            np.concatenate(lefts),
            np.concatenate(rights),
            np.concatenate(feats),
            np.concatenate(thresholds),
            np.concatenate(values),
            np.asarray(roots, dtype=np.int64),
            dict(meta),
        )

    def leaves(self, x: np.ndarray, tree: int) -> np.ndarray:
        """(N,) the leaf that each row of ``x`` reaches in tree ``tree``."""
        node = np.full(len(x), self.roots[tree], dtype=np.int64)
        active = np.arange(len(x))
        while len(active):
            n = node[active]
            internal = self.left[n] != -1
            active, n = active[internal], n[internal]
            go_left = x[active, self.feature[n]] <= self.threshold[n]
            node[active] = np.where(go_left, self.left[n], self.right[n])
        return node

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(N, K) class probabilities: the mean over trees of the leaves' class fractions.

        ``features`` are compared in float32, as scikit-learn does, so the result equals its
        ``predict_proba``.
        """
        x = np.asarray(features, dtype=np.float32)
        proba = np.zeros((len(x), self.num_classes), dtype=np.float64)
        for tree in range(len(self.roots)):
            proba += self.value[self.leaves(x, tree)]
        return proba / len(self.roots)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``forest.npz`` atomically (arrays only, no pickle)."""
        path = Path(path)
        with atomic_write(path) as f:
            np.savez_compressed(
                f,
                format=np.array(_FORMAT),
                meta=np.array(json.dumps(self.meta)),
                left=self.left,
                right=self.right,
                feature=self.feature,
                threshold=self.threshold,
                value=self.value,
                roots=self.roots,
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ForestModel:
        """Read a forest written by :meth:`save` (``allow_pickle=False``).

        Raises
        ------
        DatasetFormatError
            If the file is not a readable psetae forest or its arrays do not fit together.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != _FORMAT:
                    raise DatasetFormatError(path, f"not a {_FORMAT} file")
                arrays = {k: z[k] for k in ("left", "right", "feature", "threshold", "value")}
                roots, meta = z["roots"], json.loads(str(z["meta"]))
        except (OSError, ValueError, KeyError) as exc:
            raise DatasetFormatError(path, f"not a readable psetae forest ({exc})") from exc
        nodes = len(arrays["left"])
        bad = [k for k, v in arrays.items() if len(v) != nodes]
        children = np.concatenate([arrays["left"], arrays["right"], roots])
        if bad or arrays["value"].ndim != 2 or children.max(initial=0) >= nodes:
            raise DatasetFormatError(path, "the forest's arrays do not fit together")
        return cls(**arrays, roots=roots, meta=meta)


def train_forest(
    train_set: Any,
    n_trees: int = 100,
    seed: int = 0,
    n_jobs: int | None = None,
    meta: dict[str, Any] | None = None,
) -> ForestModel:
    """Fit a random forest on the per-date statistics of ``train_set``'s labelled parcels.

    Parameters
    ----------
    train_set
        A labelled :class:`~psetae.data.dataset.PixelSetDataset`.
    n_trees
        Trees in the forest (the sits book's and BreizhCrops' default: 100).
    seed
        ``random_state`` of the forest.
    n_jobs
        Processes for scikit-learn (None: one).
    meta
        Extra facts to store with the forest (class names, nomenclature, ...).
    """
    from sklearn.ensemble import RandomForestClassifier

    if not train_set.has_labels:
        raise DatasetFormatError(train_set.root, "the random forest needs labelled parcels")
    x = pixel_set_statistics(train_set)
    forest = RandomForestClassifier(n_estimators=int(n_trees), random_state=seed, n_jobs=n_jobs)
    forest.fit(x.astype(np.float32), train_set.labels)
    info = {
        "sequence_length": int(train_set.sequence_length),
        "num_channels": int(train_set.num_channels),
        "extra_size": int(train_set.extra_size),
        "n_trees": int(n_trees),
        "seed": int(seed),
        **(meta or {}),
    }
    return ForestModel.from_sklearn(forest, int(train_set.num_classes), info)


def forest_log_probs(forest: ForestModel, dataset: Any) -> np.ndarray:
    """(N, K) log-probabilities of the forest on ``dataset`` (zeros become -inf)."""
    with np.errstate(divide="ignore"):
        return np.log(forest.predict_proba(pixel_set_statistics(dataset)))


def cross_validate_forest(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    folds: int = 5,
    config: Any = None,
    split: Any = None,
    n_trees: int = 100,
    n_jobs: int | None = None,
    notify: Any = "stderr",
) -> dict[str, Any]:
    """The random-forest baseline on exactly the splits and metrics of ``cross_validate``.

    Writes ``splits.json``, ``fold_<k>/forest.npz`` and ``fold_<k>/test.json`` and
    ``results.json`` (the same keys as PSE-TAE's, with ``"model": "random_forest"``) into
    ``out_dir``; the forests can then be evaluated or used to predict like checkpoints.

    Parameters
    ----------
    root, out_dir, folds, split
        As for :func:`psetae.train.crossval.cross_validate`.
    config
        The :class:`~psetae.train.fit.TrainConfig` whose data settings (nomenclature,
        classes, extra features, seed) define the splits and classes; the model settings
        are not used.
    n_trees, n_jobs
        The forest's size and scikit-learn's processes.
    notify
        As for ``cross_validate``: where the notices of settings the data changed go
        (``"stderr"``: printed there; None: silence).

    Returns
    -------
    dict
        The content of ``results.json``.
    """
    from psetae.data.names import class_names as dataset_class_names
    from psetae.io import write_json_atomic
    from psetae.metrics import confusion_matrix, summarize
    from psetae.train.crossval import make_datasets, prepare_run
    from psetae.train.fit import TrainConfig

    root, out = Path(root), Path(out_dir)
    # The same checks, settings and splits as cross_validate, before anything is written.
    if notify == "stderr":
        config, splits = prepare_run(root, out, folds, config or TrainConfig(), split)
    else:
        config, splits = prepare_run(root, out, folds, config or TrainConfig(), split, notify)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "splits.json", [s.to_dict() for s in splits])
    records, total = [], None
    names: list[str] = []
    for k, s in enumerate(splits, start=1):
        train_set, val_set, test_set = make_datasets(root, s, config)
        names = dataset_class_names(root, config.nomenclature, list(train_set.class_ids))
        meta = {
            "class_ids": [int(c) for c in train_set.class_ids],
            "class_names": names,
            "nomenclature": config.nomenclature,
            "extra_stats": None
            if train_set.extra_stats is None
            else [np.asarray(v).tolist() for v in train_set.extra_stats],
        }
        forest = train_forest(train_set, n_trees, config.seed, n_jobs, meta)
        fold_dir = out / f"fold_{k}"
        fold_dir.mkdir(exist_ok=True)
        forest.save(fold_dir / FOREST_FILE)
        record: dict[str, Any] = {"fold": k, "n_train": len(train_set), "n_val": len(val_set)}
        val_cm = confusion_matrix(
            val_set.labels, forest_log_probs(forest, val_set).argmax(1), forest.num_classes
        )
        record["val_miou"] = summarize(val_cm, names)["miou"]
        record["n_test"] = len(test_set) if test_set is not None else 0
        record["test"] = None
        if test_set is not None:
            pred = forest_log_probs(forest, test_set).argmax(1)
            cm = confusion_matrix(test_set.labels, pred, forest.num_classes)
            record["test"] = summarize(cm, names)
            total = cm if total is None else total + cm
            write_json_atomic(fold_dir / "test.json", record["test"])
        records.append(record)
    overall = None
    if total is not None:
        overall = summarize(total, names)
        for key in ("oa", "miou"):
            vals = np.array(
                [r["test"][key] for r in records if r["test"] and r["test"][key] is not None]
            )
            overall[f"{key}_mean"] = float(vals.mean()) if len(vals) else None
            overall[f"{key}_std"] = float(vals.std()) if len(vals) else None
    results = {
        "root": str(root),
        "model": "random_forest",
        "n_trees": int(n_trees),
        "folds": records,
        "overall": overall,
        "checkpoints": [str(out / f"fold_{k}" / FOREST_FILE) for k in range(1, len(splits) + 1)],
        "config": config.to_dict(),
    }
    write_json_atomic(out / "results.json", results)
    return results


def find_forests(paths: Any) -> list[Path] | None:
    """The forest files that ``paths`` (a file or folder, or several) stand for, or None if
    they are not forests (then they are PSE-TAE-style checkpoints).

    A folder stands for its ``forest.npz`` or for the ``fold_*/forest.npz`` of a
    cross-validation run.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            here = [path / FOREST_FILE] if (path / FOREST_FILE).is_file() else []
            folds = sorted(path.glob(f"fold_*/{FOREST_FILE}"), key=lambda p: p.parent.name)
            found += here or folds
        elif path.suffix == ".npz":
            found.append(path)
    return found or None


def forest_predict(root: str | os.PathLike, forests: list[Path], labelled: bool) -> dict[str, Any]:
    """Apply one forest, or the mean of the probabilities of several (the folds), to a folder.

    The folder is prepared as the forests' training data was (their classes and
    geometric-feature statistics).

    Returns
    -------
    dict
        ``ids`` (N,), ``probabilities`` (N, K), ``labels`` (N,) or None, ``class_ids``,
        ``class_names``.

    Raises
    ------
    DatasetFormatError
        Unreadable forest files, or forests with different classes.
    """
    from psetae.data.dataset import PixelSetDataset

    models = [ForestModel.load(p) for p in forests]
    meta = models[0].meta
    for path, m in zip(forests, models, strict=True):
        if m.meta.get("class_ids") != meta.get("class_ids"):
            raise DatasetFormatError(path, f"its classes differ from those of {forests[0]}")
    stats = meta.get("extra_stats")
    data = PixelSetDataset(
        root,
        nomenclature=meta["nomenclature"],
        classes=list(meta["class_ids"]) if labelled else None,
        npixel=1,
        extra_features=bool(meta.get("extra_size")),
        extra_stats=None if stats is None else tuple(np.asarray(v) for v in stats),
        jitter=None,
        train=False,
        labels_required=labelled,
    )
    features = pixel_set_statistics(data)
    probs = np.mean([m.predict_proba(features) for m in models], axis=0)  # (N, K)
    return {
        "ids": np.asarray(data.ids, dtype=np.int64),
        "probabilities": probs,
        "labels": np.asarray(data.labels, dtype=np.int64) if labelled else None,
        "class_ids": [int(c) for c in meta["class_ids"]],
        "class_names": [str(n) for n in meta["class_names"]],
    }
