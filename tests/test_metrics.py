"""Metrics against values computed by hand on small matrices."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from psetae import metrics as M

# Four classes, class 3 absent from both truth and prediction.
Y_TRUE_A = [0, 0, 0, 1, 1, 2, 2, 2, 2]
Y_PRED_A = [0, 0, 1, 1, 2, 2, 2, 2, 0]
CM_A = np.array([[2, 1, 0, 0], [0, 1, 1, 0], [1, 0, 3, 0], [0, 0, 0, 0]])


def test_confusion_matrix_by_hand():
    cm = M.confusion_matrix(Y_TRUE_A, Y_PRED_A, 4)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, CM_A)


def test_confusion_matrix_matches_a_loop():
    rng = np.random.default_rng(3)
    t = rng.integers(0, 6, 500)
    p = rng.integers(0, 6, 500)
    expected = np.zeros((6, 6), dtype=np.int64)
    for a, b in zip(t, p, strict=True):
        expected[a, b] += 1
    np.testing.assert_array_equal(M.confusion_matrix(t, p, 6), expected)


def test_metrics_with_a_class_absent_from_both():
    assert M.overall_accuracy(CM_A) == pytest.approx(6 / 9)
    iou = M.per_class_iou(CM_A)
    np.testing.assert_allclose(iou[:3], [2 / 4, 1 / 3, 3 / 5])
    assert math.isnan(iou[3])
    # Mean over the three present classes only.
    assert M.mean_iou(CM_A) == pytest.approx(43 / 90)
    np.testing.assert_allclose(M.precision(CM_A)[:3], [2 / 3, 1 / 2, 3 / 4])
    np.testing.assert_allclose(M.recall(CM_A)[:3], [2 / 3, 1 / 2, 3 / 4])
    assert math.isnan(M.precision(CM_A)[3]) and math.isnan(M.recall(CM_A)[3])
    assert M.macro_precision(CM_A) == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)


def test_class_predicted_but_absent_from_truth():
    # Class 3 predicted once but never true; class 2 absent from both.
    cm = M.confusion_matrix([0, 0, 1], [0, 3, 1], 4)
    np.testing.assert_array_equal(cm[0], [1, 0, 0, 1])
    iou = M.per_class_iou(cm)
    np.testing.assert_allclose(iou[[0, 1, 3]], [1 / 2, 1.0, 0.0])
    assert math.isnan(iou[2])
    assert M.mean_iou(cm) == pytest.approx(0.5)
    np.testing.assert_allclose(M.precision(cm)[[0, 1, 3]], [1.0, 1.0, 0.0])
    np.testing.assert_allclose(M.recall(cm)[[0, 1, 3]], [0.5, 1.0, 0.0])
    np.testing.assert_allclose(M.f1_score(cm)[[0, 1, 3]], [2 / 3, 1.0, 0.0])
    assert M.macro_precision(cm) == pytest.approx(2 / 3)
    assert M.macro_recall(cm) == pytest.approx(0.5)
    assert M.macro_f1(cm) == pytest.approx(5 / 9)


def test_class_in_truth_never_predicted():
    cm = M.confusion_matrix([0, 1, 1], [0, 0, 0], 2)
    np.testing.assert_array_equal(cm, [[1, 0], [2, 0]])
    np.testing.assert_allclose(M.per_class_iou(cm), [1 / 3, 0.0])
    np.testing.assert_allclose(M.precision(cm), [1 / 3, 0.0])
    np.testing.assert_allclose(M.recall(cm), [1.0, 0.0])
    np.testing.assert_allclose(M.f1_score(cm), [0.5, 0.0])
    assert M.overall_accuracy(cm) == pytest.approx(1 / 3)


def test_f1_is_harmonic_mean_when_defined():
    rng = np.random.default_rng(0)
    cm = rng.integers(1, 20, (5, 5))
    p, r = M.precision(cm), M.recall(cm)
    np.testing.assert_allclose(M.f1_score(cm), 2 * p * r / (p + r))


def test_summed_folds_equal_pooled_predictions():
    # Fold 1 lacks class 2, fold 2 lacks class 0: the sum is the matrix of all samples.
    t1, p1 = [0, 0, 1], [0, 1, 1]
    t2, p2 = [1, 2, 2], [2, 2, 1]
    cm = M.confusion_matrix(t1, p1, 3) + M.confusion_matrix(t2, p2, 3)
    np.testing.assert_array_equal(cm, M.confusion_matrix(t1 + t2, p1 + p2, 3))
    # By hand: [[1,1,0],[0,1,1],[0,1,1]] -> IoU 1/2, 1/4, 1/3.
    assert M.mean_iou(cm) == pytest.approx((1 / 2 + 1 / 4 + 1 / 3) / 3)
    fold1 = M.per_class_iou(M.confusion_matrix(t1, p1, 3))
    assert math.isnan(fold1[2])


def test_empty_matrix_is_nan_not_an_error():
    cm = np.zeros((3, 3), dtype=np.int64)
    assert math.isnan(M.overall_accuracy(cm))
    assert math.isnan(M.mean_iou(cm))
    assert M.summarize(cm)["miou"] is None


def test_summarize_is_strict_json():
    s = M.summarize(CM_A, class_names=["a", "b", "c", "d"])
    text = json.dumps(s, allow_nan=False)
    back = json.loads(text)
    assert back["per_class"]["iou"][3] is None
    assert back["miou"] == pytest.approx(43 / 90)
    assert back["per_class"]["support"] == [3, 2, 4, 0]
    assert back["confusion_matrix"] == CM_A.tolist()


@pytest.mark.parametrize(
    ("t", "p", "k", "match"),
    [
        ([0, 1], [0], 2, "2 values"),
        ([0, 2], [0, 1], 2, "outside 0..1"),
        ([0, -1], [0, 1], 2, "outside"),
        ([0.5, 1.0], [0, 1], 2, "integers"),
        ([[0, 1]], [[0, 1]], 2, "1-D"),
    ],
)
def test_bad_input(t, p, k, match):
    with pytest.raises(ValueError, match=match):
        M.confusion_matrix(t, p, k)


def test_non_square_matrix_rejected():
    with pytest.raises(ValueError, match="square"):
        M.mean_iou(np.zeros((2, 3)))
