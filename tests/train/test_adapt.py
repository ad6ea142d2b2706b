"""Defaults that fit the data (psetae/train/adapt.py) and the fraction split."""

import numpy as np
import pytest

from psetae.data.format import DatasetFormatError
from psetae.data.packed import pack_dataset
from psetae.train.adapt import adapt_to_data, resolve_nomenclature
from psetae.train.fit import TrainConfig
from psetae.train.splits import fraction_split


def test_auto_nomenclature_takes_the_only_one_or_label_44class(tiny, tmp_path):
    one = tiny.make(tmp_path / "one", labels={"crop": {pid: 1 for pid in tiny.sizes}})
    assert resolve_nomenclature(one, "auto") == "crop"
    assert resolve_nomenclature(tiny.make(tmp_path / "two"), "auto") == "label_44class"
    other = tiny.make(
        tmp_path / "other",
        labels={"a": dict.fromkeys(tiny.sizes, 1), "b": dict.fromkeys(tiny.sizes, 2)},
    )
    with pytest.raises(DatasetFormatError, match="several nomenclatures \\['a', 'b'\\]"):
        resolve_nomenclature(other, "auto")
    with pytest.raises(DatasetFormatError, match="no nomenclature 'label_44class'"):
        resolve_nomenclature(one, "label_44class")


def test_a_single_nomenclature_is_used_with_a_notice(tiny, tmp_path):
    root = tiny.make(tmp_path / "one", labels={"crop": dict.fromkeys(tiny.sizes, 1)})
    config, notices = adapt_to_data(root, TrainConfig(nomenclature="auto"))
    assert config.nomenclature == "crop"
    assert any("nomenclature: using 'crop'" in n for n in notices)


def test_npixel_is_capped_at_the_largest_parcel(tiny, tmp_path):
    small = {pid: np.ones((tiny.t, tiny.c, min(n, 3)), np.int16) for pid, n in tiny.sizes.items()}
    root = tiny.make(tmp_path / "small", pixels=small)
    config, notices = adapt_to_data(root, TrainConfig(npixel=64))
    assert config.npixel == 3
    assert any("npixel: 64 -> 3" in n for n in notices)
    # among the chosen parcels only
    config, _ = adapt_to_data(root, TrainConfig(npixel=64), ids=[14])
    assert config.npixel == 1
    # nothing said when nothing changes
    config, notices = adapt_to_data(tiny.make(tmp_path / "big"), TrainConfig(npixel=64))
    assert config.npixel == 64 and not any(n.startswith("npixel:") for n in notices)


def test_constant_geometric_features_are_turned_off(tiny, tmp_path):
    same = {pid: [1.0, 2.0, 3.0, 4.0] for pid in tiny.sizes}
    root = tiny.make(tmp_path / "same", geomfeat=same)
    config, notices = adapt_to_data(root, TrainConfig())
    assert config.extra_features is False
    assert any("extra features: off" in n for n in notices)
    config, notices = adapt_to_data(tiny.make(tmp_path / "varied"), TrainConfig())
    assert config.extra_features is True and not any(
        n.startswith("extra features:") for n in notices
    )


def test_unpacked_data_gets_a_notice_and_packed_data_none(tiny_root):
    _, notices = adapt_to_data(tiny_root, TrainConfig())
    assert any("psetae pack" in n for n in notices)
    pack_dataset(tiny_root)
    _, notices = adapt_to_data(tiny_root, TrainConfig())
    assert not any("psetae pack" in n for n in notices)


def test_the_config_passed_in_is_not_changed(tiny, tmp_path):
    root = tiny.make(tmp_path / "one", labels={"crop": dict.fromkeys(tiny.sizes, 1)})
    original = TrainConfig(nomenclature="auto")
    adapt_to_data(root, original)
    assert original.nomenclature == "auto"


def test_fraction_split_sizes_disjoint_and_seeded():
    ids = list(range(100, 200))
    s = fraction_split(ids, 0.2, 0.1, seed=3)
    assert (len(s.train), len(s.val), len(s.test)) == (70, 20, 10)
    assert sorted(s.train + s.val + s.test) == ids
    assert fraction_split(list(reversed(ids)), 0.2, 0.1, seed=3) == s
    assert fraction_split(ids, 0.2, 0.1, seed=4) != s
    assert fraction_split(ids, 0.25).test == []


@pytest.mark.parametrize(
    ("val", "test", "match"),
    [(0.0, 0.1, "cannot cut"), (0.6, 0.4, "leaves no parcel"), (1.2, 0, "val_fraction")],
)
def test_fraction_split_refuses_impossible_fractions(val, test, match):
    with pytest.raises(ValueError, match=match):
        fraction_split(list(range(10)), val, test)
