"""Cross-validation on a tiny simulated S2-Agri: folds, summed matrices, fixed splits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from psetae.data.classes import S2AGRI_CLASSES
from psetae.data.format import read_labels
from psetae.data.simulate import simulate_s2agri
from psetae.metrics import confusion_matrix
from psetae.predict import predict
from psetae.train.checkpoint import load_checkpoint
from psetae.train.crossval import cross_validate, make_datasets
from psetae.train.fit import TrainConfig
from psetae.train.splits import Split, save_split

TINY_MODEL = {"mlp1": [10, 8, 8], "mlp2": [20, 16], "n_head": 2, "d_k": 4, "mlp3": [32, 16]}


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory):
    return simulate_s2agri(tmp_path_factory.mktemp("sim") / "s2", n_parcels=80, preset="test")


def config(**kw):
    base = dict(epochs=1, batch_size=16, npixel=8, device="cpu", progress=False, model=TINY_MODEL)
    base.update(kw)
    return TrainConfig(**base)


def test_five_folds(sim_root, tmp_path):
    out = tmp_path / "cv"
    res = cross_validate(sim_root, out, folds=5, config=config())
    kept = {i: c for i, c in read_labels(sim_root, "label_44class").items() if c in S2AGRI_CLASSES}
    splits = json.loads((out / "splits.json").read_text())
    assert len(splits) == 5 and len(res.folds) == 5
    assert sorted(i for s in splits for i in s["test"]) == sorted(kept)
    # 60/20/20 up to rounding.
    for s in splits:
        n = len(kept)
        assert abs(len(s["test"]) - n / 5) <= 1 and abs(len(s["val"]) - n / 5) <= 1
    # Every parcel kept is tested once: the summed matrix counts them all, and equals the
    # sum of the per-fold matrices.
    assert res.confusion_matrix.sum() == len(kept)
    fold_cms = [np.array(f["test"]["confusion_matrix"]) for f in res.folds]
    np.testing.assert_array_equal(sum(fold_cms), res.confusion_matrix)
    # Recompute fold 1's matrix from its checkpoint's own predictions on its test ids.
    f1_test = splits[0]["test"]
    pred = predict(sim_root, res.checkpoints[0], progress=False)
    by_id = dict(zip(pred.ids.tolist(), pred.predicted.tolist(), strict=True))
    lut = {c: k for k, c in enumerate(S2AGRI_CLASSES)}
    cm = confusion_matrix([lut[kept[i]] for i in f1_test], [by_id[i] for i in f1_test], 20)
    np.testing.assert_array_equal(cm, fold_cms[0])
    results = json.loads((out / "results.json").read_text())
    oa = np.trace(res.confusion_matrix) / res.confusion_matrix.sum()
    assert results["overall"]["oa"] == pytest.approx(oa)
    assert results["overall"]["oa_mean"] == pytest.approx(
        np.mean([f["test"]["oa"] for f in results["folds"]])
    )
    for i in range(1, 6):
        assert (out / f"fold_{i}" / "best.pt").is_file()
        assert (out / f"fold_{i}" / "test.json").is_file()
    ck = load_checkpoint(res.checkpoints[0])
    assert ck["class_ids"] == S2AGRI_CLASSES and ck["class_names"][0] == "Meadow"


def test_statistics_come_from_the_training_parcels(sim_root):
    ids = sorted(read_labels(sim_root, "label_44class"))
    ids = [i for i in ids if read_labels(sim_root, "label_44class")[i] in S2AGRI_CLASSES]
    split = Split(train=ids[:40], val=ids[40:55], test=ids[55:])
    train, val, test = make_datasets(sim_root, split, config(normalisation="compute"))
    assert train.train
    assert not val.train and not test.train
    from psetae.data.format import load_parcel, read_geomfeat

    px = np.concatenate([load_parcel(sim_root, i).astype(np.float64) for i in split.train], 2)
    np.testing.assert_allclose(train.normalisation[0], px.mean(axis=(0, 2)), rtol=1e-5)
    np.testing.assert_allclose(val.normalisation[1], px.std(axis=(0, 2)), rtol=1e-4)
    g = np.stack([read_geomfeat(sim_root)[i] for i in split.train])
    np.testing.assert_allclose(test.extra_stats[0], g.mean(axis=0), rtol=1e-5)


def test_fixed_split_and_resume(sim_root, tmp_path):
    ids = [i for i, c in read_labels(sim_root, "label_44class").items() if c in S2AGRI_CLASSES]
    ids.sort()
    path = tmp_path / "split.json"
    save_split(Split(train=ids[:50], val=ids[50:65], test=ids[65:]), path)
    out = tmp_path / "run"
    res = cross_validate(sim_root, out, config=config(), split=path)
    assert len(res.folds) == 1 and res.folds[0]["n_test"] == len(ids) - 65
    # Running again resumes: nothing is retrained and the results are the same.
    again = cross_validate(sim_root, out, config=config(), split=path)
    assert again.overall["confusion_matrix"] == res.overall["confusion_matrix"]
    # The same folder with another split is refused.
    save_split(Split(train=ids[:40], val=ids[40:65], test=ids[65:]), path)
    with pytest.raises(ValueError, match="other splits"):
        cross_validate(sim_root, out, config=config(), split=path)


def test_fixed_split_with_unknown_ids(sim_root, tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": [1, 2], "val": [999999]}))
    with pytest.raises(ValueError, match=r"split\.json: .* not parcels"):
        cross_validate(sim_root, tmp_path / "run", config=config(), split=path)
