"""Inference: loading, predicting, ensembles, CSV, evaluation on another folder."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from psetae.data.dataset import PixelSetDataset, collate_pixel_sets
from psetae.data.format import write_dataset
from psetae.metrics import confusion_matrix
from psetae.predict import evaluate, load_model, predict, predict_csv, resolve_checkpoints
from psetae.train.checkpoint import CheckpointError
from psetae.train.fit import TrainConfig, fit
from tests.tiny import TINY_MODEL


def write_crops(root, n=40, seed=0, shift=0.0, labels=True, extra_class=False):
    """n parcels of classes 0, 1, 2 (channel 0 mean = class + shift); ids 10.."""
    rng = np.random.default_rng(seed)
    pixels, lab, geom = {}, {}, {}
    for k in range(n):
        pid = 10 + k
        cls = k % 3
        x = rng.normal(0.0, 1.0, (5, 3, int(rng.integers(0, 12)))).astype(np.float32)
        x[:, 0] += cls + shift
        pixels[pid] = x
        lab[pid] = 7 if (extra_class and k == 0) else cls
        geom[pid] = [float(x.shape[2]), float(rng.normal()), 1.0, float(cls)]
    dates = [20170101 + 3 * i for i in range(5)]
    return write_dataset(root, pixels, {"crop": lab} if labels else {}, dates, geom)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("pred")
    root = write_crops(base / "train")
    ckpts = []
    # Two members as two folds would be: one seed, other training parcels, hence other
    # geometric-feature statistics, and other normalisations (per channel; per date and
    # channel), which the ensemble must apply member by member.
    norms = [
        (np.array([0.5, -1.0, 0.0], np.float32), np.array([2.0, 1.0, 0.5], np.float32)),
        (np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3), np.full((5, 3), 1.5, np.float32)),
    ]
    for member, (first, norm) in enumerate(zip((10, 20), norms, strict=True)):
        cfg = TrainConfig(
            epochs=2,
            batch_size=8,
            npixel=6,
            seed=0,
            device="cpu",
            progress=False,
            model=TINY_MODEL,
            nomenclature="crop",
            classes=None,
        )
        train_ids = [i for i in range(10, 50) if not first <= i < first + 12]
        kw = {"npixel": 6, "seed": 0, "normalisation": norm}
        train = PixelSetDataset(root, "crop", ids=train_ids, **kw)
        val = PixelSetDataset(
            root,
            "crop",
            ids=range(first, first + 12),
            train=False,
            extra_stats=train.extra_stats,
            **kw,
        )
        ckpts.append(fit(train, val, cfg, base / f"run{member}").best_path)
    return root, ckpts


def _manual_log_probs(ckpt, root, **dataset_kw):
    """Independent path: build the dataset by hand from the checkpoint's statistics."""
    model, meta = load_model(ckpt, "cpu")
    norm = meta["normalisation"]
    stats = meta["extra_stats"]
    ds = PixelSetDataset(
        root,
        "crop",
        npixel=meta["npixel"],
        train=False,
        seed=meta["train_config"]["seed"],
        normalisation=None if norm is None else (norm["mean"].numpy(), norm["std"].numpy()),
        extra_stats=(stats["mean"].numpy(), stats["std"].numpy()),
        jitter=None,
        **dataset_kw,
    )
    batch = collate_pixel_sets([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        logits = model(batch["pixels"], batch["mask"], batch["extra"], batch["positions"])
    return ds, torch.log_softmax(logits.double(), 1).numpy()


def test_load_model(trained):
    _, ckpts = trained
    model, meta = load_model(ckpts[0], "cpu")
    assert not model.training
    assert meta["class_ids"] == [0, 1, 2] and meta["nomenclature"] == "crop"
    assert "state_dict" not in meta and "optimizer" not in meta
    raw = torch.load(ckpts[0], weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, raw["state_dict"][k])


def test_predict_one_checkpoint_and_csv(trained, tmp_path):
    root, ckpts = trained
    pred = predict(root, ckpts[0], tmp_path / "p.csv", progress=False)
    ds, logp = _manual_log_probs(ckpts[0], root, labels_required=False)
    np.testing.assert_array_equal(pred.ids, ds.ids)
    np.testing.assert_allclose(pred.probabilities, np.exp(logp), atol=1e-6)
    np.testing.assert_array_equal(pred.predicted, logp.argmax(1))
    np.testing.assert_allclose(pred.probabilities.sum(1), 1.0)
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "class_id", "class_name", "prob_0", "prob_1", "prob_2"]
    assert len(rows) == 1 + len(ds)
    first = rows[1]
    assert int(first[0]) == int(pred.ids[0]) and int(first[1]) == int(pred.predicted[0])
    np.testing.assert_allclose([float(v) for v in first[3:]], pred.probabilities[0], rtol=1e-5)
    # Deterministic: a second run gives the same numbers.
    again = predict(root, ckpts[0], progress=False)
    np.testing.assert_array_equal(again.probabilities, pred.probabilities)


def test_ensemble_is_the_mean_of_log_probabilities(trained):
    root, ckpts = trained
    pred = predict(root, ckpts, progress=False)
    _, a = _manual_log_probs(ckpts[0], root, labels_required=False)
    _, b = _manual_log_probs(ckpts[1], root, labels_required=False)
    mean = (a + b) / 2
    expected = np.exp(mean) / np.exp(mean).sum(1, keepdims=True)
    np.testing.assert_allclose(pred.probabilities, expected, atol=1e-6)
    np.testing.assert_array_equal(pred.predicted, mean.argmax(1))
    # A folder of fold checkpoints is expanded to the ensemble.
    folder = ckpts[0].parent.parent / "cv"
    for i, c in enumerate(ckpts, start=1):
        (folder / f"fold_{i}").mkdir(parents=True, exist_ok=True)
        shutil.copy(c, folder / f"fold_{i}" / "best.pt")
    assert [p.parent.name for p in resolve_checkpoints(folder)] == ["fold_1", "fold_2"]


def test_predict_unlabelled_folder(trained, tmp_path):
    _, ckpts = trained
    root = write_crops(tmp_path / "new", n=9, seed=5, labels=False)
    pred = predict(root, ckpts[0], progress=False)
    assert len(pred.ids) == 9 and pred.labels is None


def test_evaluate_on_another_folder_uses_training_statistics(trained, tmp_path):
    _, ckpts = trained
    # Another "year": shifted reflectance, different geometry, a parcel of unknown class.
    other = write_crops(tmp_path / "other", n=30, seed=9, shift=0.5, extra_class=True)
    out = evaluate(ckpts[0], other, progress=False)
    assert out["n_skipped"] == 1 and out["n"] == 29
    ds, logp = _manual_log_probs(ckpts[0], other, classes=[0, 1, 2])
    cm = confusion_matrix(ds.labels, logp.argmax(1), 3)
    assert out["confusion_matrix"] == cm.tolist()
    assert out["oa"] == pytest.approx(np.trace(cm) / cm.sum())
    json.dumps(out, allow_nan=False)
    # The folder's own statistics would give other inputs: the test above is meaningful.
    own = PixelSetDataset(other, "crop", classes=[0, 1, 2], npixel=6, train=False)
    assert not np.allclose(own.extra_stats[0], ds.extra_stats[0])


def test_bad_checkpoints(trained, tmp_path):
    root, ckpts = trained
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        predict(root, tmp_path / "missing.pt", progress=False)
    with pytest.raises(CheckpointError, match="no best.pt"):
        predict(root, tmp_path, progress=False)
    raw = torch.load(ckpts[1], weights_only=True)
    raw["class_ids"] = [0, 1, 5]
    torch.save(raw, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="classes differ"):
        predict(root, [ckpts[0], tmp_path / "other.pt"], progress=False)
    raw["state_dict"] = {"nonsense": torch.zeros(1)}
    torch.save(raw, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_model(tmp_path / "broken.pt", "cpu")


def test_evaluate_without_any_known_class(trained, tmp_path):
    _, ckpts = trained
    pixels = {1: np.ones((5, 3, 4), np.float32), 2: np.ones((5, 3, 2), np.float32)}
    root = write_dataset(
        tmp_path / "odd",
        pixels,
        {"crop": {1: 8, 2: 9}},
        [20170101 + 3 * i for i in range(5)],
        {1: [1.0] * 4, 2: [2.0] * 4},
    )
    with pytest.raises(ValueError, match=r"odd: no parcel"):
        evaluate(ckpts[0], root, progress=False)


def test_the_progress_bars_say_what_they_do(trained, monkeypatch):
    import psetae.predict as predict_module

    descs = []

    def recording_bar(iterable, enabled=True, **kwargs):
        descs.append(kwargs.get("desc"))
        return iterable

    monkeypatch.setattr(predict_module, "progress_bar", recording_bar)
    root, ckpts = trained
    evaluate(ckpts, root, device="cpu")
    predict(root, ckpts[0], device="cpu")
    # One pass over the data for the whole ensemble.
    assert descs == ["test with 2 checkpoints", "predict with 1 checkpoint"]


def test_an_ensemble_reads_each_parcel_once(trained, monkeypatch):
    root, ckpts = trained
    reads = []
    original = PixelSetDataset.__getitem__

    def counting(self, i):
        reads.append(int(self.ids[i]))
        return original(self, i)

    monkeypatch.setattr(PixelSetDataset, "__getitem__", counting)
    pred = predict(root, ckpts, batch_size=7, progress=False)
    assert sorted(reads) == sorted(pred.ids.tolist()) and len(reads) == 40


def test_ensemble_members_must_share_s_and_the_seed(trained, tmp_path):
    root, ckpts = trained
    raw = torch.load(ckpts[1], weights_only=True)
    raw["train_config"]["seed"] = 3
    torch.save(raw, tmp_path / "seed.pt")
    with pytest.raises(CheckpointError, match=r"seed.pt: its sampling seed 3 differs"):
        predict(root, [ckpts[0], tmp_path / "seed.pt"], progress=False)
    raw = torch.load(ckpts[1], weights_only=True)
    raw["npixel"] = 9
    torch.save(raw, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match=r"s.pt: its S \(pixels per parcel\) 9 differs"):
        predict(root, [ckpts[0], tmp_path / "s.pt"], progress=False)
    # --npixel gives every member the same S: then they can be ensembled.
    assert len(predict(root, [ckpts[0], tmp_path / "s.pt"], npixel=6, progress=False).ids) == 40


def test_predict_csv_streams_the_rows_of_predict(trained, tmp_path, monkeypatch):
    root, ckpts = trained
    n = predict_csv(root, ckpts, tmp_path / "s.csv", batch_size=7, progress=False)
    predict(root, ckpts, tmp_path / "p.csv", batch_size=7, progress=False)
    assert n == 40
    assert (tmp_path / "s.csv").read_text() == (tmp_path / "p.csv").read_text()
    # A failure after some batches were written leaves neither the CSV nor a temporary file.
    import psetae.predict as predict_module

    calls = []
    original = predict_module.PredictionBatch.probabilities.fget

    def failing(self):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk gone")
        return original(self)

    monkeypatch.setattr(predict_module.PredictionBatch, "probabilities", property(failing))
    with pytest.raises(RuntimeError, match="disk gone"):
        predict_csv(root, ckpts, tmp_path / "new" / "f.csv", batch_size=7, progress=False)
    assert list((tmp_path / "new").iterdir()) == []


def test_compile_runs_every_member_through_compile_model(trained, monkeypatch):
    import psetae.models as models

    compiled = []

    def recording_compile(model, **kw):
        compiled.append(type(model).__name__)
        return model  # torch.compile itself takes minutes on CPU

    monkeypatch.setattr(models, "compile_model", recording_compile)
    root, ckpts = trained
    a = predict(root, ckpts, progress=False, compile=True)
    assert compiled == ["PseTae", "PseTae"]
    b = predict(root, ckpts, progress=False)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
