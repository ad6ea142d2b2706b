"""Checkpoint files: atomic, weights_only-loadable, clear errors, safe refusals."""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest
import torch

from psetae.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


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
    assert raw["format"] == "psetae-checkpoint" and raw["version"] == 2
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
    with pytest.raises(CheckpointError, match="missing optimizer$"):
        load_checkpoint(tmp_path / "c.pt", require_resume=True)


def test_newer_version_is_refused(tmp_path):
    save_checkpoint(tmp_path / "c.pt", _content())
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    raw["version"] = 99
    torch.save(raw, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "c.pt")


def test_a_version_1_checkpoint_without_a_model_name_loads_as_psetae(tmp_path):
    save_checkpoint(tmp_path / "c.pt", _content())
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    raw["version"] = 1
    raw.pop("model_name", None)
    torch.save(raw, tmp_path / "c.pt")
    assert load_checkpoint(tmp_path / "c.pt")["model_name"] == "psetae"
    save_checkpoint(tmp_path / "d.pt", {**_content(), "model_name": "psegru"})
    assert load_checkpoint(tmp_path / "d.pt")["model_name"] == "psegru"


def test_a_checkpoint_that_would_run_code_is_refused_and_says_why(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"format": "psetae-checkpoint", "x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "evil.pt")
    message = str(info.value)
    assert not marker.exists()  # nothing ran
    assert f"{os.system.__module__}.system" in message  # names the refused global (posix.system)
    assert "for safety" in message
    assert "weights_only" not in message and "will likely succeed" not in message
    assert len(message.splitlines()) == 1
