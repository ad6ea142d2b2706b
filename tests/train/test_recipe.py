"""The training recipe's options (TrainConfig: init, lr_schedule, focal_gradient, eval_draws,
drop_nonfinite) and the run preparation that fixes the classes over the whole dataset."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

from psetae.data.dataset import collate_pixel_sets
from psetae.train.crossval import prepare_run
from psetae.train.fit import TrainConfig, epoch_lr, evaluate_model, fit, init_model
from tests.train.test_fit import crop_root, datasets, tiny_config  # noqa: F401 (fixture)

# The module, not the function that psetae.train exports under the same name.
fit_module = importlib.import_module("psetae.train.fit")


def _bn_weights(model):
    return torch.cat(
        [m.weight.detach() for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    )


def test_the_reference_initialisation_is_the_default_and_pytorchs_an_option(crop_root):  # noqa: F811
    train, _ = datasets(crop_root, tiny_config())
    ref = init_model(train, tiny_config())
    plain = init_model(train, tiny_config(init="pytorch"))
    assert TrainConfig().init == "reference"
    w = _bn_weights(ref)
    assert abs(float(w.mean())) < 0.3 and 0.7 < float(w.std()) < 1.3  # normal(0, 1)
    assert torch.equal(_bn_weights(plain), torch.ones_like(_bn_weights(plain)))
    with pytest.raises(ValueError, match="init must be one of"):
        TrainConfig(init="xavier")


def test_cosine_schedule_values_and_what_fit_uses(crop_root, tmp_path):  # noqa: F811
    config = tiny_config(epochs=4, lr=0.01, lr_schedule="cosine")
    expected = [0.01 * 0.5 * (1 + math.cos(math.pi * (e - 1) / 4)) for e in range(1, 5)]
    assert [epoch_lr(config, e) for e in range(1, 5)] == pytest.approx(expected)
    assert expected[0] == 0.01 and expected[2] == pytest.approx(0.005)
    assert {epoch_lr(tiny_config(lr=0.01), e) for e in range(1, 5)} == {0.01}
    result = fit(*datasets(crop_root, config), config, tmp_path / "run")
    assert [r["lr"] for r in result.history] == pytest.approx(expected)


def test_the_reference_focal_gradient_reaches_the_loss(crop_root, tmp_path, monkeypatch):  # noqa: F811
    seen = []
    real = fit_module.FocalLoss

    def spy(*args, **kwargs):
        seen.append(kwargs.get("reference_gradient"))
        return real(*args, **kwargs)

    monkeypatch.setattr(fit_module, "FocalLoss", spy)
    config = tiny_config(epochs=1, focal_gradient="reference")
    fit(*datasets(crop_root, config), config, tmp_path / "run")
    assert True in seen
    seen.clear()
    config = tiny_config(epochs=1)
    fit(*datasets(crop_root, config), config, tmp_path / "run2")
    assert seen and True not in seen


def test_eval_draws_average_the_probabilities_of_several_draws(crop_root):  # noqa: F811
    config = tiny_config(npixel=3, eval_draws=3)  # parcels have up to 11 pixels: draws differ
    train, val = datasets(crop_root, config)
    model = init_model(train, config).eval()
    views = fit_module.evaluation_draws(val, 3)
    assert len({v.seed for v in views}) == 3
    probs = []
    for view in views:
        batch = collate_pixel_sets([view[i] for i in range(len(view))])
        with torch.no_grad():
            probs.append(torch.softmax(fit_module._forward(model, batch), dim=1))
    mean = torch.stack(probs).mean(0)
    labels = torch.tensor(val.labels)
    expected_oa = float((mean.argmax(1) == labels).float().mean())
    got = evaluate_model(model, val, config)
    assert got["oa"] == pytest.approx(expected_oa)
    expected_loss = float(fit_module.FocalLoss(gamma=config.gamma)(torch.log(mean), labels))
    assert got["loss"] == pytest.approx(expected_loss, rel=1e-5)
    single = evaluate_model(model, val, tiny_config(npixel=3))
    first_oa = float((probs[0].argmax(1) == labels).float().mean())
    assert single["oa"] == pytest.approx(first_oa)
    assert not torch.allclose(probs[0], probs[1])  # the draws really differ


def test_prepare_run_fixes_every_stored_class_over_the_whole_dataset(tiny_root, tmp_path):
    config = TrainConfig(nomenclature="label_19class", classes="auto", npixel=4)
    config, splits = prepare_run(tiny_root, tmp_path / "out", 3, config, notify=None)
    assert config.classes == [0, 1, 2, 5]
    assert not (tmp_path / "out").exists()
    assert len(splits) == 3


def test_nonfinite_parcels_are_dropped_when_asked(tiny, tmp_path):
    arrays = tiny.arrays(dtype=np.float32)
    arrays[12][0, 0, 0] = np.nan
    root = tiny.make(tmp_path / "nan", pixels=arrays)
    config = TrainConfig(nomenclature="label_19class", classes=None, npixel=4)
    with pytest.raises(ValueError, match="--drop-nonfinite"):
        prepare_run(root, tmp_path / "out", 3, config, notify=None)
    config = TrainConfig(nomenclature="label_19class", classes=None, npixel=4, drop_nonfinite=True)
    _, splits = prepare_run(root, tmp_path / "out", 3, config, notify=None)
    assert 12 not in {i for s in splits for i in s.train + s.val + s.test}
