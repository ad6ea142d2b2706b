"""Tests of psetae/data/dataset.py: PixelSetDataset and collate_pixel_sets."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from psetae.data.dataset import PixelSetDataset, collate_pixel_sets
from psetae.data.format import DatasetFormatError

IDS = [10, 11, 12, 13, 14, 20]  # the tiny dataset's ids, sorted


def _eval(root, **kwargs):
    kwargs.setdefault("train", False)
    return PixelSetDataset(root, **kwargs)


def test_item_follows_the_batch_contract(tiny_root):
    ds = _eval(tiny_root, npixel=8)
    item = ds[2]
    assert item["pixels"].shape == (4, 3, 8) and item["pixels"].dtype == torch.float32
    assert item["mask"].shape == (4, 8) and item["mask"].dtype == torch.float32
    assert item["extra"].shape == (4, 4) and item["extra"].dtype == torch.float32
    assert item["positions"].shape == (4,) and item["positions"].dtype == torch.float32
    assert item["label"].shape == () and item["label"].dtype == torch.int64
    assert item["id"].shape == () and item["id"].dtype == torch.int64
    assert int(item["id"]) == 12
    batch = collate_pixel_sets([ds[i] for i in range(len(ds))])
    assert batch["pixels"].shape == (6, 4, 3, 8)
    assert batch["mask"].shape == (6, 4, 8)
    assert batch["extra"].shape == (6, 4, 4)
    assert batch["positions"].shape == (6, 4)
    assert batch["label"].tolist() == [1, 3, 4, 1, 3, 99]
    assert batch["id"].tolist() == IDS


def test_attributes(tiny_root, tiny):
    ds = _eval(tiny_root)
    assert ds.ids.tolist() == IDS
    assert ds.sequence_length == 4 and ds.num_channels == 3 and ds.extra_size == 4
    np.testing.assert_array_equal(ds.dates, tiny.dates)
    np.testing.assert_array_equal(ds.positions, tiny.positions)
    assert ds.num_classes == 100  # classes=None keeps labels as stored: max + 1
    np.testing.assert_array_equal(ds.class_ids, np.arange(100))
    assert len(ds) == 6 and not ds.packed


def test_positions_by_order(tiny_root):
    ds = _eval(tiny_root, positions="order")
    np.testing.assert_array_equal(ds[0]["positions"].numpy(), [1, 2, 3, 4])
    np.testing.assert_array_equal(_eval(tiny_root)[0]["positions"].numpy(), [0, 10, 30, 55])


def test_class_selection_and_remapping(tiny_root):
    ds = _eval(tiny_root, classes=[3, 1])
    assert ds.ids.tolist() == [10, 11, 13, 14]  # 12 (class 4) and 20 (class 99) dropped
    assert ds.labels.tolist() == [1, 0, 1, 0]  # 3 -> 0, 1 -> 1
    assert ds.num_classes == 2 and ds.class_ids.tolist() == [3, 1]
    assert [int(ds[i]["label"]) for i in range(4)] == [1, 0, 1, 0]
    np.testing.assert_array_equal(ds.class_counts(), [2, 2])
    other = _eval(tiny_root, nomenclature="label_19class", classes=[2, 5])
    assert other.ids.tolist() == [11, 12, 20] and other.labels.tolist() == [0, 0, 1]


def test_labels_required(tiny_root):
    labels = json.loads((tiny_root / "META" / "labels.json").read_text())
    del labels["label_44class"]["13"]
    (tiny_root / "META" / "labels.json").write_text(json.dumps(labels))
    with pytest.raises(
        DatasetFormatError, match="labels.json: no 'label_44class' label for ids \\[13\\]: training"
    ):
        _eval(tiny_root)
    ds = _eval(tiny_root, labels_required=False)
    assert ds.labels.tolist() == [1, 3, 4, -1, 3, 99] and not ds.has_labels
    assert "label" not in ds[0]
    with pytest.raises(DatasetFormatError, match="unknown nomenclature 'nope'"):
        _eval(tiny_root, nomenclature="nope")
    unlabeled = _eval(tiny_root, nomenclature="nope", labels_required=False)
    assert unlabeled.labels.tolist() == [-1] * 6 and unlabeled.num_classes == 0


@pytest.mark.parametrize("per", ["scalar", "channel", "date_channel"])
def test_normalisation_is_applied(tiny_root, tiny, per, tmp_path):
    shape = {"scalar": (), "channel": (3,), "date_channel": (4, 3)}[per]
    rng = np.random.default_rng(5)
    mean = rng.uniform(1000, 5000, size=shape)
    std = rng.uniform(500, 2000, size=shape)
    (tmp_path / "n.pkl").write_bytes(pickle.dumps((mean, std), protocol=2))
    raw = tiny.arrays()[10].astype(np.float64)  # (4, 3, 5): fewer than S, kept in order
    m = mean if per != "channel" else mean[:, None]
    s = std if per != "channel" else std[:, None]
    if per == "date_channel":
        m, s = mean[:, :, None], std[:, :, None]
    want = (raw - m) / s
    for source in ((mean, std), tmp_path / "n.pkl"):
        x = _eval(tiny_root, npixel=8, normalisation=source)[0]["pixels"].numpy()
        np.testing.assert_allclose(x[:, :, :5], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            x[:, :, 5:], np.repeat(want[:, :, :1], 3, axis=2), rtol=1e-5, atol=1e-5
        )


def test_normalisation_of_the_wrong_shape_names_the_file(tiny_root, tmp_path):
    path = tmp_path / "n.json"
    path.write_text(json.dumps({"mean": [1.0, 2.0], "std": [1.0, 1.0]}))
    with pytest.raises(DatasetFormatError, match="n.json: normalisation of shape \\(2,\\)"):
        _eval(tiny_root, normalisation=path)


def test_without_normalisation_pixels_are_the_stored_values(tiny_root, tiny):
    ds = _eval(tiny_root, npixel=64)
    x = ds[IDS.index(13)]["pixels"].numpy()  # exactly 64 pixels: all, in order
    np.testing.assert_array_equal(x, tiny.arrays()[13].astype(np.float32))
    np.testing.assert_array_equal(ds[IDS.index(13)]["mask"].numpy(), np.ones((4, 64)))


def test_masks_and_padding(tiny_root, tiny):
    ds = _eval(tiny_root, npixel=8)
    empty = ds[IDS.index(11)]
    assert not empty["pixels"].any()
    np.testing.assert_array_equal(empty["mask"].numpy(), np.tile([1, 0, 0, 0, 0, 0, 0, 0], (4, 1)))
    single = ds[IDS.index(14)]
    np.testing.assert_array_equal(single["mask"][0].numpy(), [1, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(single["pixels"].numpy(), np.repeat(tiny.arrays()[14], 8, axis=2))
    big = ds[IDS.index(12)]  # 100 pixels: 8 distinct columns of the parcel
    raw = tiny.arrays()[12].astype(np.float32)
    cols = [
        int(np.flatnonzero((raw == big["pixels"][:, :, k].numpy()[:, :, None]).all(axis=(0, 1)))[0])
        for k in range(8)
    ]
    assert len(set(cols)) == 8
    np.testing.assert_array_equal(big["mask"].numpy(), np.ones((4, 8)))


def test_extra_features_are_z_scored_over_the_set(tiny_root, tiny):
    ds = _eval(tiny_root, classes=[3, 1])
    feats = np.array([tiny.geomfeat[i] for i in [10, 11, 13, 14]])
    mean = feats.sum(axis=0) / 4
    std = np.sqrt(((feats - mean) ** 2).sum(axis=0) / (4 - 1))  # sample std, as the reference
    np.testing.assert_allclose(ds.extra_stats[0], mean, rtol=1e-6)
    np.testing.assert_allclose(ds.extra_stats[1], std, rtol=1e-6)
    for k, pid in enumerate([10, 11, 13, 14]):
        e = ds[k]["extra"].numpy()
        want = (np.array(tiny.geomfeat[pid]) - mean) / std
        np.testing.assert_allclose(e, np.tile(want, (4, 1)), rtol=1e-5, atol=1e-6)
    # Evaluation on other parcels reuses the training statistics.
    stats = ds.extra_stats
    other = _eval(tiny_root, ids=[12, 20], extra_stats=stats)
    want = (np.array(tiny.geomfeat[20]) - stats[0]) / stats[1]
    np.testing.assert_allclose(other[1]["extra"][0].numpy(), want, rtol=1e-5)
    assert "extra" not in _eval(tiny_root, extra_features=False)[0]
    with pytest.raises(ValueError, match="extra_stats"):
        _eval(tiny_root, extra_stats=(np.zeros(3), np.ones(3)))
    with pytest.raises(ValueError, match="std > 0"):
        _eval(tiny_root, extra_stats=(np.zeros(4), np.zeros(4)))


def test_constant_feature_becomes_zero(tmp_path, tiny):
    geom = {pid: [1.0, 7.0, float(pid), 0.5] for pid in tiny.sizes}
    ds = _eval(tiny.make(tmp_path / "ds", geomfeat=geom))
    e = np.stack([ds[i]["extra"][0].numpy() for i in range(len(ds))])
    np.testing.assert_array_equal(e[:, [0, 1, 3]], 0.0)


def test_missing_geomfeat(tmp_path, tiny):
    root = tiny.make(tmp_path / "ds", geomfeat=None)
    with pytest.raises(DatasetFormatError, match="geomfeat.json: file is missing"):
        _eval(root)
    assert _eval(root, extra_features=False).extra_size == 0


def test_ids_select_and_order(tiny_root):
    ds = _eval(tiny_root, ids=[20, 10])
    assert ds.ids.tolist() == [20, 10] and ds.labels.tolist() == [99, 1]
    assert int(ds[0]["id"]) == 20
    with pytest.raises(DatasetFormatError, match="sizes.json: unknown parcel ids \\[7\\]"):
        _eval(tiny_root, ids=[7, 10])


def test_subset(tiny_root):
    ds = PixelSetDataset(tiny_root, train=True)
    sub = ds.subset([5, 0], train=False)
    assert sub.ids.tolist() == [20, 10] and sub.labels.tolist() == [99, 1]
    assert not sub.train and ds.train
    np.testing.assert_array_equal(sub.extra_stats[0], ds.extra_stats[0])
    full = _eval(tiny_root)
    for k, i in enumerate([5, 0]):
        a, b = sub[k], full[i]
        for key in a:
            assert torch.equal(a[key], b[key]), key
    with pytest.raises(IndexError):
        ds.subset([6])


def test_evaluation_is_deterministic(tiny_root):
    a = _eval(tiny_root, npixel=16, seed=3)
    b = _eval(tiny_root, npixel=16, seed=3)
    order_a = [a[i] for i in range(6)]
    order_b = [b[i] for i in reversed(range(6))][::-1]  # other access order, same result
    for x, y in zip(order_a, order_b, strict=True):
        for key in x:
            assert torch.equal(x[key], y[key])
    assert torch.equal(a[2]["pixels"], a[2]["pixels"])  # same parcel, same pixels every time
    c = _eval(tiny_root, npixel=16, seed=4)
    assert not torch.equal(a[2]["pixels"], c[2]["pixels"])  # the seed decides the subset


def test_training_draws_change_per_access_and_are_reproducible(tiny_root):
    a = PixelSetDataset(tiny_root, npixel=16, seed=1, jitter=None)
    b = PixelSetDataset(tiny_root, npixel=16, seed=1, jitter=None)
    first, second = a[2]["pixels"], a[2]["pixels"]
    assert not torch.equal(first, second)
    assert torch.equal(first, b[2]["pixels"]) and torch.equal(second, b[2]["pixels"])


def test_jitter_only_in_training(tiny_root, tiny):
    norm = (np.zeros(3), np.full(3, 10000.0))
    raw = tiny.arrays()[10].astype(np.float32) / 10000.0
    ev = _eval(tiny_root, npixel=8, normalisation=norm)[0]["pixels"].numpy()[:, :, :5]
    np.testing.assert_allclose(ev, raw, rtol=1e-6)
    tr = PixelSetDataset(tiny_root, npixel=8, normalisation=norm, jitter=(0.01, 0.05))
    x = tr[0]["pixels"].numpy()[:, :, :5]  # 5 pixels < S: same pixels, plus noise
    noise = x - raw
    assert np.abs(noise).max() <= 0.05 + 1e-6 and np.abs(noise).max() > 0
    no_jitter = PixelSetDataset(tiny_root, npixel=8, normalisation=norm, jitter=None)
    np.testing.assert_allclose(no_jitter[0]["pixels"].numpy()[:, :, :5], raw, rtol=1e-6)


def test_dataloader_workers_draw_different_pixels_reproducibly(tiny_root):
    ds = PixelSetDataset(tiny_root, ids=[12] * 4, npixel=8, jitter=None, seed=0)

    def run():
        loader = DataLoader(
            ds,
            batch_size=1,
            num_workers=2,
            collate_fn=collate_pixel_sets,
            generator=torch.Generator().manual_seed(7),
        )
        return [b["pixels"][0] for b in loader]

    first, again = run(), run()
    # Items 0 and 1 are the first draws of worker 0 and worker 1: their streams differ.
    assert not torch.equal(first[0], first[1])
    for x, y in zip(first, again, strict=True):
        assert torch.equal(x, y)


def test_corrupt_parcel_names_the_file_at_access(tiny_root):
    ds = _eval(tiny_root)
    np.save(tiny_root / "DATA" / "12.npy", np.zeros((4, 2, 100), np.int16))
    with pytest.raises(DatasetFormatError, match="DATA/12.npy: shape \\(4, 2, 100\\)"):
        ds[2]


def test_raw_pixels(tiny_root, tiny):
    ds = _eval(tiny_root)
    np.testing.assert_array_equal(ds.raw_pixels(IDS.index(20)), tiny.arrays()[20])


def test_bad_arguments(tiny_root, tmp_path):
    with pytest.raises(DatasetFormatError, match="does not exist"):
        PixelSetDataset(tmp_path / "nothing")
    with pytest.raises(ValueError, match="npixel"):
        PixelSetDataset(tiny_root, npixel=0)
    with pytest.raises(ValueError, match="positions"):
        PixelSetDataset(tiny_root, positions="weeks")
    with pytest.raises(ValueError, match="duplicates"):
        PixelSetDataset(tiny_root, classes=[1, 1])


def test_collate_errors():
    with pytest.raises(ValueError, match="empty"):
        collate_pixel_sets([])
    a = {"pixels": torch.zeros(2), "id": torch.tensor(1)}
    with pytest.raises(ValueError, match="different keys"):
        collate_pixel_sets([a, {"pixels": torch.zeros(2)}])


def test_paper_classes_map_in_order(tmp_path, tiny):
    from psetae.data.classes import S2AGRI_CLASS_NAMES, S2AGRI_CLASSES, s2agri_class_name

    assert len(S2AGRI_CLASSES) == len(S2AGRI_CLASS_NAMES) == 20
    assert s2agri_class_name(1) == "Meadow" and s2agri_class_name(39) == "Wood"
    assert s2agri_class_name(14) == "Winter Rapeseed"
    with pytest.raises(KeyError):
        s2agri_class_name(2)
    labels = {"label_44class": {10: 39, 11: 2, 12: 1, 13: 14, 14: 34, 20: 44}}
    ds = _eval(tiny.make(tmp_path / "ds", labels=labels), classes=S2AGRI_CLASSES)
    assert ds.ids.tolist() == [10, 12, 13, 14]
    assert ds.labels.tolist() == [19, 0, 9, 17]  # Wood, Meadow, Winter Rapeseed, Grapevine


def test_sample_std_of_geometric_features_by_hand(tmp_path, tiny):
    # Two parcels, feature values 1 and 3: mean 2, sample std sqrt(2) (population std: 1).
    geom = {pid: [1.0, 5.0, 0.0, 2.0] for pid in tiny.sizes}
    geom[10], geom[12] = [3.0, 5.0, 0.0, 4.0], [1.0, 5.0, 0.0, 2.0]
    ds = _eval(tiny.make(tmp_path / "ds", geomfeat=geom), ids=[10, 12])
    np.testing.assert_allclose(ds.extra_stats[1], [2**0.5, 1.0, 1.0, 2**0.5], rtol=1e-6)
    np.testing.assert_allclose(ds[0]["extra"][0].numpy(), [1 / 2**0.5, 0, 0, 1 / 2**0.5], rtol=1e-5)


def test_a_negative_label_is_called_negative(tiny_root):
    path = tiny_root / "META" / "labels.json"
    labels = json.loads(path.read_text())
    labels["label_44class"]["13"] = -1
    path.write_text(json.dumps(labels))
    with pytest.raises(DatasetFormatError, match=r"the label of ids \[13\] is negative \(-1\)"):
        _eval(tiny_root)


def test_a_string_array_is_refused_naming_its_file(tiny_root):
    np.save(tiny_root / "DATA" / "12.npy", np.full((4, 3, 100), "x"))
    ds = _eval(tiny_root, use_packed=False)
    with pytest.raises(DatasetFormatError, match="12.npy: dtype <U1 is not numeric"):
        ds[int(np.flatnonzero(ds.ids == 12)[0])]


def test_nonfinite_pixels_raise_or_are_dropped_with_a_warning(tmp_path, tiny):
    arrays = tiny.arrays(np.float32)
    arrays[12][1, 2, :] = np.nan  # every pixel, so any sample of 64 of 100 holds one
    arrays[20][0, 0, 0] = np.inf
    root = tiny.make(tmp_path / "ds", pixels=arrays)
    ds = _eval(root)
    with pytest.raises(DatasetFormatError, match="12.npy: NaN or infinite pixel values"):
        for i in range(len(ds)):
            ds[i]
    with pytest.warns(UserWarning, match=r"dropped 2 parcel\(s\).*ids \[12, 20\]"):
        kept = _eval(root, drop_nonfinite=True)
    assert kept.ids.tolist() == [10, 11, 13, 14]
    assert all(np.isfinite(kept[i]["pixels"].numpy()).all() for i in range(len(kept)))


def test_nonfinite_parcels_are_dropped_from_the_packed_form_too(tmp_path, tiny):
    from psetae.data.packed import pack_dataset

    arrays = tiny.arrays(np.float32)
    arrays[13][2, 0, 63] = -np.inf
    root = tiny.make(tmp_path / "ds", pixels=arrays)
    pack_dataset(root)
    with pytest.warns(UserWarning, match=r"dropped 1 parcel\(s\).*ids \[13\]"):
        kept = _eval(root, drop_nonfinite=True, use_packed=True)
    assert kept.packed and 13 not in kept.ids.tolist() and len(kept) == 5
