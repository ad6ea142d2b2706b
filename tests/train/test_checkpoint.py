"""Checkpoint files: atomic, weights_only-loadable, clear errors; RNG state round trip."""

from __future__ import annotations

import collections
import random

import numpy as np
import pytest
import torch

from psetae.train.checkpoint import (
    CheckpointError,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)


def _content():
    return {
        "model_config": {"mlp1": (10, 32, 64), "pooling": "mean_std"},
        "state_dict": collections.OrderedDict(w=torch.arange(6.0).reshape(2, 3)),
        "normalisation": {"mean": np.array([1.0, 2.0]), "std": np.array([0.5, 0.25])},
        "extra_stats": None,
        "class_ids": [1, 3, 4],
        "class_names": ["Meadow", "Winter Durum Wheat", "Spring Cereal"],
        "nomenclature": "label_44class",
        "npixel": np.int64(64),
        "epoch": 3,
        "history": [{"epoch": 1, "val_miou": float("nan")}],
    }


def test_round_trip_with_weights_only(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", _content())
    # Independent of our loader: plain torch with the restricted unpickler.
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "psetae-checkpoint" and raw["version"] == 1
    ck = load_checkpoint(path)
    assert torch.equal(ck["state_dict"]["w"], torch.arange(6.0).reshape(2, 3))
    assert torch.equal(ck["normalisation"]["std"], torch.tensor([0.5, 0.25], dtype=torch.float64))
    assert ck["model_config"]["mlp1"] == (10, 32, 64)
    assert ck["npixel"] == 64 and isinstance(ck["npixel"], int)
    assert ck["class_names"][2] == "Spring Cereal"
    # No temporary file left behind.
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_unstorable_object_is_refused(tmp_path):
    content = _content()
    content["extra_stats"] = object()
    with pytest.raises(TypeError, match="cannot store"):
        save_checkpoint(tmp_path / "c.pt", content)
    assert not any(tmp_path.iterdir())


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")


def test_garbage_file(tmp_path):
    (tmp_path / "c.pt").write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match=r"c\.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "c.pt")


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_arbitrary_pickle_is_not_executed(tmp_path, capsys):
    torch.save({"format": "psetae-checkpoint", "x": _Evil()}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "c.pt")
    assert "unpickled!" not in capsys.readouterr().out


def test_other_torch_file_and_missing_keys(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="not a psetae checkpoint"):
        load_checkpoint(tmp_path / "a.pt")
    content = _content()
    del content["class_ids"]
    save_checkpoint(tmp_path / "b.pt", content)
    with pytest.raises(CheckpointError, match="missing class_ids"):
        load_checkpoint(tmp_path / "b.pt")
    save_checkpoint(tmp_path / "c.pt", _content())
    with pytest.raises(CheckpointError, match="missing optimizer, rng"):
        load_checkpoint(tmp_path / "c.pt", require_resume=True)


def test_newer_version_is_refused(tmp_path):
    save_checkpoint(tmp_path / "c.pt", _content())
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    raw["version"] = 99
    torch.save(raw, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "c.pt")


def test_rng_state_round_trip_through_a_file(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    save_checkpoint(tmp_path / "r.pt", {**_content(), "rng": get_rng_state()})
    expected = (torch.rand(3), np.random.standard_normal(3), random.random())
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    got = (torch.rand(3), np.random.standard_normal(3), random.random())
    assert torch.equal(expected[0], got[0])
    np.testing.assert_array_equal(expected[1], got[1])
    assert expected[2] == got[2]
