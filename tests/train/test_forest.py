"""The random-forest baseline (psetae/train/forest.py)."""

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from psetae.data.dataset import PixelSetDataset
from psetae.data.format import DatasetFormatError
from psetae.train.forest import ForestModel, pixel_set_statistics, train_forest


def fitted_forest(num_classes=5, absent=(2,), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 7))
    y = (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] > 0.5) + (x[:, 2] > 1)
    y[y == 2] = 4  # class 2 never occurs in training: its column must be zeros
    sk = RandomForestClassifier(n_estimators=7, random_state=seed, max_depth=6).fit(x, y)
    return sk, ForestModel.from_sklearn(sk, num_classes, {"n_trees": 7}), rng


def test_numpy_forest_equals_scikit_learn_probabilities_with_an_absent_class():
    sk, forest, rng = fitted_forest()
    x = rng.normal(size=(200, 7))
    mine = forest.predict_proba(x)
    theirs = sk.predict_proba(x)  # columns of sk.classes_ only
    np.testing.assert_allclose(mine[:, sk.classes_], theirs, rtol=0, atol=1e-12)
    assert np.all(mine[:, 2] == 0) and mine.shape == (200, 5)
    np.testing.assert_allclose(mine.sum(1), 1.0, atol=1e-12)


def test_save_and_load_round_trip_without_pickle(tmp_path):
    sk, forest, rng = fitted_forest()
    path = forest.save(tmp_path / "forest.npz")
    back = ForestModel.load(path)
    x = rng.normal(size=(50, 7))
    np.testing.assert_array_equal(back.predict_proba(x), forest.predict_proba(x))
    assert back.meta == {"n_trees": 7}


def test_load_refuses_object_arrays_and_broken_files(tmp_path):
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, format=np.array("psetae-forest-1"), meta=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DatasetFormatError, match="pickled.npz"):
        ForestModel.load(pickled)
    _, forest, _ = fitted_forest()
    forest.left = forest.left[:-1]
    broken = forest.save(tmp_path / "broken.npz")
    with pytest.raises(DatasetFormatError, match="do not fit together"):
        ForestModel.load(broken)


def test_statistics_are_per_date_mean_and_std_of_all_pixels(tiny_root, tiny):
    ds = PixelSetDataset(tiny_root, classes=None, labels_required=False, train=False)
    feats = pixel_set_statistics(ds)
    t, c = tiny.t, tiny.c
    assert feats.shape == (len(ds), 2 * t * c + 4)
    arrays = tiny.arrays()
    for i, pid in enumerate(ds.ids):
        px = arrays[int(pid)].astype(np.float64)
        if px.shape[-1] == 0:
            assert np.all(feats[i, : 2 * t * c] == 0)
            continue
        # band b on date d: mean at d * C + b, std after all the means
        for d in range(t):
            for b in range(c):
                assert feats[i, d * c + b] == pytest.approx(px[d, b].mean())
                assert feats[i, t * c + d * c + b] == pytest.approx(px[d, b].std())
    np.testing.assert_allclose(feats[:, 2 * t * c :], ds.extra_table(), rtol=1e-6)


def test_train_forest_learns_the_tiny_labels(tiny_root):
    ds = PixelSetDataset(tiny_root, classes=[1, 3, 4], train=False)
    forest = train_forest(ds, n_trees=20, seed=0)
    pred = forest.predict_proba(pixel_set_statistics(ds)).argmax(1)
    assert forest.num_classes == 3
    assert np.mean(pred == ds.labels) >= 0.8  # a forest fits its own training set
