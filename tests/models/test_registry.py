"""The model registry and the config dataclasses (psetae/models/registry.py, config.py),
and what every registered model does with a batch."""

import json

import pytest
import torch

from psetae.losses import focal_loss
from psetae.models import (
    MODELS,
    ConfigError,
    PseClassifier,
    PseGruConfig,
    PseLTaeConfig,
    PseTae,
    PseTaeConfig,
    build_model,
    model_name,
)
from psetae.models.registry import model_config

from .naive_psetae import random_batch, randomise_batchnorm


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


# ---------------------------------------------------------------------------------------------
# What every registered model does with the batch contract (pixels, mask, extra, positions).

NAMES = ["psetae", "psltae", "psegru", "psetempcnn", "psetransformer"]
ATTENTION = {"psetae": 4, "psltae": 16}  # name -> heads


def days(B, T, seed):
    """Increasing days per parcel, starting at 0, as the datasets give them."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.randint(3, 25, (B, T), generator=g).float()
    return torch.cumsum(steps, dim=1) - steps[:, :1]


def test_all_five_models_are_registered_with_their_config_class():
    assert sorted(MODELS) == sorted(NAMES)
    for name, cls in MODELS.items():
        assert issubclass(cls, PseClassifier) and cls.config_class.__name__.endswith("Config")
        assert type(build_model(name).config) is cls.config_class


def test_a_config_of_another_model_is_refused():
    with pytest.raises(
        ConfigError, match="model 'psegru' takes a PseGruConfig, got a PseLTaeConfig"
    ):
        build_model("psegru", PseLTaeConfig())
    with pytest.raises(ConfigError, match="takes a PseGruConfig"):
        MODELS["psegru"](PseLTaeConfig())
    assert model_config("psegru", PseGruConfig(hidden_size=8)).hidden_size == 8


@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes_with_and_without_extra_features(name):
    model = build_model(name).eval()
    pixels, mask, extra = random_batch(B=3, T=24, S=8)
    with torch.no_grad():
        assert model(pixels, mask, extra).shape == (3, 20)
    # for_data fits every width to another dataset: 3 bands, no extra features, 7 dates, 5 classes.
    cfg = model.config.for_data(num_channels=3, extra_size=0, sequence_length=7, num_classes=5)
    assert cfg.mlp4[0] == cfg.temporal_width and cfg.mlp1[0] == 3 and cfg.extra_size == 0
    small = build_model(name, cfg).eval()
    pixels, mask, _ = random_batch(B=2, T=7, C=3, S=5, E=0)
    with torch.no_grad():
        assert small(pixels, mask).shape == (2, 5)
        assert small(pixels, mask, positions=days(2, 7, 0)).shape == (2, 5)
    with pytest.raises(ValueError, match="extra"):
        small(pixels, mask, torch.zeros(2, 7, 4))


@pytest.mark.parametrize("name", NAMES)
def test_per_parcel_positions_change_the_output(name):
    model = build_model(name).eval()
    randomise_batchnorm(model)
    pixels, mask, extra = random_batch(B=4, T=24, S=8)
    with torch.no_grad():
        default = model(pixels, mask, extra)
        numbered = model(pixels, mask, extra, torch.arange(1.0, 25.0).expand(4, 24))
        a = model(pixels, mask, extra, days(4, 24, 1))
        b = model(pixels, mask, extra, days(4, 24, 2))
    torch.testing.assert_close(numbered, default)  # no positions = days 1..T
    assert (a - b).abs().amax(dim=1).min() > 1e-4  # every parcel sees its own days
    with pytest.raises(ValueError, match="positions must be"):
        model(pixels, mask, extra, days(4, 23, 1))


@pytest.mark.parametrize("name", NAMES)
def test_masked_padding_does_not_change_the_output(name):
    model = build_model(name).eval()
    randomise_batchnorm(model)
    pixels, mask, extra = random_batch(B=4, T=24, S=8)
    noise = torch.randn_like(pixels) * 100 * (1 - mask[:, :, None, :])  # only on padded pixels
    assert noise.abs().sum() > 0
    positions = days(4, 24, 3)
    with torch.no_grad():
        torch.testing.assert_close(
            model(pixels + noise, mask, extra, positions), model(pixels, mask, extra, positions)
        )


@pytest.mark.parametrize("name", NAMES)
def test_train_mode_gradients_are_finite_and_reach_every_layer(name):
    model = build_model(name).train()
    pixels, mask, extra = random_batch(B=6, T=24, S=8)
    loss = focal_loss(model(pixels, mask, extra, days(6, 24, 4)), torch.arange(6))
    loss.backward()
    for part in ("spatial_encoder", "temporal_encoder", "decoder"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(part)]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), part
        assert max(float(g.abs().max()) for g in grads) > 1e-3, part


@pytest.mark.parametrize("name", NAMES)
def test_json_config_rebuilds_the_same_function(name):
    cfg = model_config(name).for_data(
        num_channels=4, extra_size=2, sequence_length=9, num_classes=6
    )
    model = build_model(name, cfg.replace(positions=[float(3 * i) for i in range(9)])).eval()
    randomise_batchnorm(model)
    clone = build_model(name, json.loads(json.dumps(model.config.to_dict())))
    assert clone.config == model.config and clone.num_classes == 6
    clone.load_state_dict(model.state_dict())
    clone.eval()
    pixels, mask, extra = random_batch(B=2, T=9, C=4, S=8, E=2)
    with torch.no_grad():
        torch.testing.assert_close(clone(pixels, mask, extra), model(pixels, mask, extra))


@pytest.mark.parametrize("name", NAMES)
def test_return_attention_gives_weights_or_a_clear_error(name):
    model = build_model(name).eval()
    pixels, mask, extra = random_batch(B=2, T=24, S=8)
    if name in ATTENTION:
        logits, attention = model(pixels, mask, extra, return_attention=True)
        assert attention.shape == (2, ATTENTION[name], 24)
        torch.testing.assert_close(attention.sum(-1), torch.ones(2, ATTENTION[name]))
        torch.testing.assert_close(logits, model(pixels, mask, extra))
    else:
        with pytest.raises(ConfigError, match="has no attention weights"):
            model(pixels, mask, extra, return_attention=True)
