"""Training, checkpoints and inference take any registered model (the registry, issue 11)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from psetae.cli import _train_config, build_parser, main
from psetae.models.registry import MODELS
from psetae.predict import load_model, predict
from psetae.train.checkpoint import load_checkpoint
from psetae.train.errors import TrainError
from psetae.train.fit import TrainConfig, fit
from tests.test_predict import _manual_log_probs
from tests.train.test_fit import datasets, tiny_config, write_tiny
from tests.train.toymodel import TOY_OVERRIDES, PseMean


@pytest.fixture(scope="module")
def crop_root(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("any") / "ds")


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(MODELS, "psemean", PseMean)


def test_fit_checkpoint_and_predict_with_another_model(crop_root, tmp_path, toy_registered):
    config = tiny_config(model_name="psemean", model=TOY_OVERRIDES)
    result = fit(*datasets(crop_root, config), config, tmp_path / "run")
    assert type(result.model) is PseMean
    ckpt = load_checkpoint(result.best_path)
    assert ckpt["model_name"] == "psemean"
    assert ckpt["model_config"] == result.model.config.to_dict()
    assert "n_head" not in ckpt["model_config"]  # the toy's own config class, not PSE-TAE's
    model, _ = load_model(result.best_path, "cpu")
    assert type(model) is PseMean
    for k, v in result.model.state_dict().items():
        assert torch.equal(v, model.state_dict()[k])
    # predict() with it gives the log-probabilities of a hand-made pass of the same model.
    pred = predict(crop_root, result.best_path, progress=False, device="cpu")
    ds, logp = _manual_log_probs(result.best_path, crop_root)
    np.testing.assert_array_equal(pred.ids, np.asarray(ds.ids))
    np.testing.assert_allclose(np.log(pred.probabilities), logp, atol=1e-9)


def test_resuming_with_another_model_is_refused(crop_root, tmp_path, toy_registered):
    first = tiny_config(epochs=1)
    fit(*datasets(crop_root, first), first, tmp_path / "run")
    other = tiny_config(epochs=2, model_name="psemean", model=TOY_OVERRIDES)
    with pytest.raises(TrainError, match="cannot resume.*'model_name'"):
        fit(*datasets(crop_root, other), other, tmp_path / "run")


def test_a_checkpoint_without_a_model_name_loads_as_psetae(crop_root, tmp_path):
    config = tiny_config(epochs=1)
    result = fit(*datasets(crop_root, config), config, tmp_path / "run")
    raw = torch.load(result.best_path, weights_only=True)
    raw["version"] = 1
    del raw["model_name"]
    torch.save(raw, tmp_path / "old.pt")
    model, _ = load_model(tmp_path / "old.pt", "cpu")
    for k, v in result.model.state_dict().items():
        assert torch.equal(v, model.state_dict()[k])


def test_class_names_come_from_the_datasets_classes_json(crop_root, tmp_path):
    root = tmp_path / "named"
    shutil.copytree(crop_root, root)
    names = {"0": "Wheat", "1": "Maize", "2": "Rapeseed"}
    (root / "META" / "classes.json").write_text(json.dumps(names))
    config = tiny_config(epochs=1)
    result = fit(*datasets(root, config), config, tmp_path / "run")
    assert load_checkpoint(result.best_path)["class_names"] == ["Wheat", "Maize", "Rapeseed"]


# ------------------------------------------------------------------ the command line


def test_the_cli_defaults_are_train_configs(tmp_path):
    args = build_parser().parse_args(["train", str(tmp_path), "--out", str(tmp_path / "o")])
    assert _train_config(args) == TrainConfig()


def test_every_train_config_field_has_an_option(tmp_path):
    argv = ["train", str(tmp_path), "--out", str(tmp_path / "o"), "--epochs", "7", "--no-amp"]
    argv += ["--no-jitter", "--model-config", '{"n_head": 2}', "--classes", "all"]
    argv += ["--no-progress", "--no-extra-features", "--lr", "0.5", "--num-workers", "1"]
    config = _train_config(build_parser().parse_args(argv))
    expected = TrainConfig(
        epochs=7,
        amp=False,
        jitter=None,
        model={"n_head": 2},
        classes=None,
        progress=False,
        extra_features=False,
        lr=0.5,
        num_workers=1,
    )
    assert config == expected


def test_cli_trains_another_model_by_name(crop_root, tmp_path, toy_registered, capsys):
    ids = sorted(int(p.stem) for p in (crop_root / "DATA").glob("*.npy"))
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ids[:32], "val": ids[32:40], "test": ids[40:]}))
    code = main(
        ["train", str(crop_root), "--out", str(tmp_path / "run"), "--split", str(split)]
        + ["--model", "psemean", "--model-config", json.dumps(TOY_OVERRIDES)]
        + ["--nomenclature", "crop", "--classes", "all", "--epochs", "1", "--npixel", "4"]
        + ["--batch-size", "8", "--device", "cpu", "--no-progress"]
    )
    assert code == 0, capsys.readouterr().err
    ckpt = load_checkpoint(tmp_path / "run" / "fold_1" / "best.pt")
    assert ckpt["model_name"] == "psemean" and ckpt["model_config"]["mlp1"] == [3, 8, 8]
