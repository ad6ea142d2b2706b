"""k-fold and fixed splits."""

from __future__ import annotations

import json

import pytest

from psetae.train.splits import Split, kfold_splits, load_split, save_split, save_splits


def test_kfold_partitions_every_id_once_per_role():
    ids = list(range(100, 153))  # 53 parcels: folds of 11 or 10
    splits = kfold_splits(ids, folds=5, seed=1)
    assert len(splits) == 5
    tests = [i for s in splits for i in s.test]
    vals = [i for s in splits for i in s.val]
    assert sorted(tests) == ids and sorted(vals) == ids
    for i, s in enumerate(splits):
        assert sorted(s.train + s.val + s.test) == ids
        # The validation set of fold i is the test set of fold i + 1 (the paper's 60/20/20).
        assert s.val == splits[(i + 1) % 5].test
        assert len(s.test) in (10, 11) and len(s.train) in (31, 32, 33)


def test_kfold_is_seeded_and_order_independent():
    ids = list(range(40))
    a = kfold_splits(ids, 5, seed=3)
    b = kfold_splits(list(reversed(ids)), 5, seed=3)
    c = kfold_splits(ids, 5, seed=4)
    assert a == b
    assert a != c


@pytest.mark.parametrize(
    ("ids", "folds", "match"),
    [(range(10), 2, "at least 3"), (range(3), 5, "cannot cut"), ([1, 1, 2, 3], 3, "duplicates")],
)
def test_kfold_bad_input(ids, folds, match):
    with pytest.raises(ValueError, match=match):
        kfold_splits(list(ids), folds)


def test_split_round_trip(tmp_path):
    s = Split(train=[5, 1, 3], val=[2], test=[4])
    assert s.train == [1, 3, 5]
    save_split(s, tmp_path / "s.json")
    assert load_split(tmp_path / "s.json") == s
    save_splits([s, s], tmp_path / "all.json")
    assert json.loads((tmp_path / "all.json").read_text())[1]["test"] == [4]


def test_split_without_test_is_allowed(tmp_path):
    (tmp_path / "s.json").write_text('{"train": [1, 2], "val": [3]}')
    assert load_split(tmp_path / "s.json").test == []


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"train": [1], "val": [2], "tset": [3]}', "unknown keys"),
        ('{"train": [1]}', "missing key 'val'"),
        ('{"train": [1, "a"], "val": [2]}', "list of integer"),
        ('{"train": [1, 2], "val": [2]}', "both 'train' and 'val'"),
        ('{"train": [], "val": [2]}', "training set is empty"),
        ('{"train": [1, 1], "val": [2]}', "more than once"),
    ],
)
def test_bad_split_file_names_the_file(tmp_path, content, match):
    path = tmp_path / "split.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as e:
        load_split(path)
    assert "split.json" in str(e.value)


def test_restricted_to_names_unknown_ids():
    s = Split(train=[1, 2], val=[3], test=[99])
    with pytest.raises(ValueError, match=r"'test' ids are not parcels.*99"):
        s.restricted_to([1, 2, 3])
    s.restricted_to([1, 2, 3, 99])
