"""The model registry and the config dataclasses (psetae/models/registry.py, config.py)."""

import json

import pytest
import torch

from psetae.models import MODELS, ConfigError, PseTae, PseTaeConfig, build_model, model_name
from psetae.models.registry import model_config


def test_build_model_by_name_equals_the_class_with_the_same_seed():
    torch.manual_seed(0)
    a = build_model("psetae", {"mlp3": [512, 64, 64], "mlp4": [64, 32, 5]})
    torch.manual_seed(0)
    b = PseTae(PseTaeConfig(mlp3=[512, 64, 64], mlp4=[64, 32, 5]))
    assert a.config == b.config
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_every_registered_model_round_trips_its_name_and_config():
    for name in MODELS:
        model = build_model(name)
        assert model_name(model) == name
        config = json.loads(json.dumps(model.config.to_dict()))
        assert build_model(name, config).config == model.config


def test_unknown_names_and_keys_are_refused():
    with pytest.raises(ConfigError, match="unknown model 'tea'"):
        build_model("tea")
    with pytest.raises(ConfigError, match="unknown PseTaeConfig keys \\['width'\\]"):
        model_config("psetae", {"width": 3})


def test_for_data_recomputes_the_implied_widths_and_keeps_the_choices():
    cfg = PseTaeConfig(mlp1=[10, 16, 8], pooling="mean_std_max", n_head=2, mlp3=[999, 32])
    fitted = cfg.for_data(num_channels=3, extra_size=0, sequence_length=7, num_classes=4)
    assert fitted.mlp1 == [3, 16, 8]
    assert fitted.mlp2 == [3 * 8 + 0, 128]
    assert fitted.mlp3 == [2 * 128, 32]
    assert fitted.mlp4 == [32, 64, 32, 4]
    assert (fitted.input_dim, fitted.extra_size, fitted.len_max_seq) == (3, 0, 7)
    assert cfg.mlp1 == [10, 16, 8]  # the original is untouched
    build_model("psetae", fitted)  # the widths fit together


def test_the_model_keeps_a_private_copy_of_its_config():
    cfg = PseTaeConfig()
    model = PseTae(cfg)
    cfg.mlp1.append(7)
    model.config.mlp1.append(7)
    assert model.config.mlp1 == [10, 32, 64]
