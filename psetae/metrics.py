"""Classification metrics computed from a confusion matrix.

Every metric here is a function of the confusion matrix ``cm`` (K, K), with rows the true
class and columns the predicted class. Summing the matrices of several folds and computing
the metrics of the sum gives the "overall" figures of a cross-validation.

Convention for classes absent from a fold
-----------------------------------------
A class is *present* when it occurs in the truth or in the predictions (its row or its
column of ``cm`` is non-zero). Per-class values (IoU, precision, recall, F1) are ``nan``
for classes that are absent from both, and every macro average (mean IoU, macro precision,
recall and F1) is the mean over the present classes only. A present class whose ratio has
an empty denominator gets 0, not ``nan``: a class that is in the truth but never predicted
has precision 0 (the classifier never finds it), and a class that is predicted but absent
from the truth has recall 0 (every prediction of it is wrong). A matrix with no sample at
all has no present class: every macro average is then ``nan``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "confusion_matrix",
    "overall_accuracy",
    "present_classes",
    "per_class_iou",
    "mean_iou",
    "precision",
    "recall",
    "f1_score",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "summarize",
]

ArrayLike = np.ndarray | Sequence[int]


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> np.ndarray:
    """Count (true class, predicted class) pairs.

    Parameters
    ----------
    y_true, y_pred
        Integer class indices in ``0 .. num_classes-1``, same length (N,).
    num_classes
        K, the number of classes.

    Returns
    -------
    numpy.ndarray
        int64 (K, K): ``cm[i, j]`` = number of samples of true class i predicted as j.

    Raises
    ------
    ValueError
        If the lengths differ, the inputs are not 1-D integers or an index is out of range.
    """
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    k = int(num_classes)
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D, got shapes {t.shape} and {p.shape}")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but y_pred has {p.size}")
    if t.size and not (np.issubdtype(t.dtype, np.integer) and np.issubdtype(p.dtype, np.integer)):
        raise ValueError(f"class indices must be integers, got {t.dtype} and {p.dtype}")
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.size and (a.min() < 0 or a.max() >= k):
            raise ValueError(
                f"{name} has class indices in [{a.min()}, {a.max()}], outside 0..{k - 1}"
            )
    # One bincount over the flattened pair index t*K + p.
    flat = t.astype(np.int64) * k + p.astype(np.int64)
    return np.bincount(flat, minlength=k * k).reshape(k, k).astype(np.int64)


def _check_cm(cm: np.ndarray) -> np.ndarray:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix must be square (K, K), got shape {cm.shape}")
    if (cm < 0).any():
        raise ValueError("a confusion matrix cannot hold negative counts")
    return cm.astype(np.float64)


def overall_accuracy(cm: np.ndarray) -> float:
    """Fraction of correctly classified samples: ``trace(cm) / sum(cm)`` (``nan`` if empty)."""
    cm = _check_cm(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total > 0 else float("nan")


def present_classes(cm: np.ndarray) -> np.ndarray:
    """Boolean (K,): the class occurs in the truth (row) or in the predictions (column)."""
    cm = _check_cm(cm)
    return (cm.sum(axis=0) + cm.sum(axis=1)) > 0


def _ratio(num: np.ndarray, den: np.ndarray, present: np.ndarray) -> np.ndarray:
    # nan for absent classes, 0 for present classes with an empty denominator.
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    out[~present] = np.nan
    return out


def per_class_iou(cm: np.ndarray) -> np.ndarray:
    """Intersection over union of each class: ``TP / (TP + FP + FN)``, (K,).

    ``nan`` for classes absent from both truth and prediction (see the module docstring).
    """
    cm = _check_cm(cm)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    return _ratio(tp, union, present_classes(cm))


def precision(cm: np.ndarray) -> np.ndarray:
    """Per-class precision ``TP / (TP + FP)``, (K,); 0 if never predicted, ``nan`` if absent."""
    cm = _check_cm(cm)
    return _ratio(np.diag(cm), cm.sum(axis=0), present_classes(cm))


def recall(cm: np.ndarray) -> np.ndarray:
    """Per-class recall ``TP / (TP + FN)``, (K,); 0 if not in the truth, ``nan`` if absent."""
    cm = _check_cm(cm)
    return _ratio(np.diag(cm), cm.sum(axis=1), present_classes(cm))


def f1_score(cm: np.ndarray) -> np.ndarray:
    """Per-class F1 ``2 TP / (2 TP + FP + FN)``, (K,); ``nan`` for absent classes.

    This equals the harmonic mean of precision and recall whenever both are non-zero, and is
    0 (not undefined) when one of them is 0.
    """
    cm = _check_cm(cm)
    tp = np.diag(cm)
    den = cm.sum(axis=0) + cm.sum(axis=1)  # = 2 TP + FP + FN
    return _ratio(2 * tp, den, present_classes(cm))


def _macro(values: np.ndarray) -> float:
    if np.isnan(values).all():
        return float("nan")
    return float(np.nanmean(values))


def mean_iou(cm: np.ndarray) -> float:
    """Mean of :func:`per_class_iou` over the present classes (``nan`` if none)."""
    return _macro(per_class_iou(cm))


def macro_precision(cm: np.ndarray) -> float:
    """Mean of :func:`precision` over the present classes."""
    return _macro(precision(cm))


def macro_recall(cm: np.ndarray) -> float:
    """Mean of :func:`recall` over the present classes."""
    return _macro(recall(cm))


def macro_f1(cm: np.ndarray) -> float:
    """Mean of :func:`f1_score` over the present classes."""
    return _macro(f1_score(cm))


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values]


def summarize(cm: np.ndarray, class_names: Sequence[str] | None = None) -> dict:
    """All metrics of one confusion matrix as a JSON-serialisable dict.

    Parameters
    ----------
    cm
        (K, K) confusion matrix, rows = truth, columns = prediction.
    class_names
        Optional K names, stored under ``"class_names"``.

    Returns
    -------
    dict
        ``n``, ``oa``, ``miou``, ``macro_precision``, ``macro_recall``, ``macro_f1``,
        ``per_class`` (lists ``iou``, ``precision``, ``recall``, ``f1``, ``support``; absent
        classes as ``None``) and ``confusion_matrix`` (list of lists). Undefined scalars
        are ``None`` so that the dict is strict JSON.
    """
    arr = _check_cm(cm)
    if class_names is not None and len(class_names) != arr.shape[0]:
        raise ValueError(f"{len(class_names)} class names for a {arr.shape[0]}-class matrix")

    def scalar(x: float) -> float | None:
        return None if np.isnan(x) else x

    out = {
        "n": int(arr.sum()),
        "oa": scalar(overall_accuracy(arr)),
        "miou": scalar(mean_iou(arr)),
        "macro_precision": scalar(macro_precision(arr)),
        "macro_recall": scalar(macro_recall(arr)),
        "macro_f1": scalar(macro_f1(arr)),
        "per_class": {
            "iou": _nan_to_none(per_class_iou(arr)),
            "precision": _nan_to_none(precision(arr)),
            "recall": _nan_to_none(recall(arr)),
            "f1": _nan_to_none(f1_score(arr)),
            "support": [int(v) for v in arr.sum(axis=1)],
        },
        "confusion_matrix": np.asarray(cm).astype(np.int64).tolist(),
    }
    if class_names is not None:
        out["class_names"] = [str(n) for n in class_names]
    return out
