"""Tests of psetae/models/psetae.py: the PSE-TAE classifier."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from psetae.losses import focal_loss
from psetae.models import PseTae

from .naive_psetae import naive_pse, naive_tae, random_batch, randomise_batchnorm


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_default_parameter_counts():
    model = PseTae()
    assert n_params(model) == 164116
    assert n_params(model.spatial_encoder) == 19936
    assert n_params(model.temporal_encoder) == 132992
    assert n_params(model.decoder) == 11188
    assert model.num_classes == 20


SMALL = dict(
    input_dim=3,
    mlp1=(3, 8, 6),
    pooling="max_min",
    mlp2=(12, 16),
    extra_size=0,
    n_head=2,
    d_k=4,
    mlp3=(32, 10),
    len_max_seq=11,
    mlp4=(10, 7, 5),
)


def test_non_default_configuration_matches_naive_computation():
    model = PseTae(**SMALL)
    randomise_batchnorm(model)
    model.eval()
    pixels, mask, _ = random_batch(B=2, T=11, C=3, S=6, E=0)
    with torch.no_grad():
        logits = model(pixels, mask)
    spatial = naive_pse(model.spatial_encoder, pixels, mask)
    temporal, _ = naive_tae(
        model.temporal_encoder,
        torch.from_numpy(spatial).float(),
        np.arange(1, 12)[None].repeat(2, 0),
    )
    # decoder by hand: Linear -> BatchNorm -> ReLU, then a bare Linear
    block, last = model.decoder[0], model.decoder[1]
    h = (
        temporal @ block.linear.weight.double().detach().numpy().T
        + block.linear.bias.double().detach().numpy()
    )
    bn = block.norm
    h = (h - bn.running_mean.double().numpy()) / np.sqrt(bn.running_var.double().numpy() + bn.eps)
    h = np.maximum(h * bn.weight.double().detach().numpy() + bn.bias.double().detach().numpy(), 0)
    expected = h @ last.weight.double().detach().numpy().T + last.bias.double().detach().numpy()
    assert logits.shape == (2, 5)
    np.testing.assert_allclose(logits.double().numpy(), expected, atol=1e-4, rtol=1e-4)


def test_return_attention():
    model = PseTae().eval()
    pixels, mask, extra = random_batch(B=2, T=24, S=8)
    logits, att = model(pixels, mask, extra, return_attention=True)
    assert logits.shape == (2, 20) and att.shape == (2, 4, 24)
    torch.testing.assert_close(att.sum(-1), torch.ones(2, 4))
    torch.testing.assert_close(logits, model(pixels, mask, extra))


def test_per_parcel_positions_equal_fixed_positions():
    days = [float(5 * i * i) for i in range(24)]
    model = PseTae(positions=days)
    randomise_batchnorm(model)
    model.eval()
    free = PseTae()
    free.load_state_dict(model.state_dict())
    free.eval()
    pixels, mask, extra = random_batch(B=3, T=24, S=8)
    positions = torch.tensor(days).expand(3, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(pixels, mask, extra), free(pixels, mask, extra, positions))


def test_batch_of_one_and_one_pixel_parcels():
    model = PseTae().eval()
    pixels, mask, extra = random_batch(B=1, T=24, S=1)
    with torch.no_grad():
        assert model(pixels, mask, extra).shape == (1, 20)


def test_train_mode_every_parameter_gets_a_gradient():
    model = PseTae().train()
    pixels, mask, extra = random_batch(B=6, T=24, S=8)
    positions = torch.cumsum(torch.randint(1, 20, (6, 24)), dim=1).float()
    loss = focal_loss(model(pixels, mask, extra, positions), torch.arange(6))
    loss.backward()
    # Some biases have a zero gradient, up to rounding, by the maths of the model: a bias
    # followed by a training-mode BatchNorm cancels in the batch mean (each Linear's of an
    # MLP block; the query's: mean over time, then BatchNorm; the output LayerNorm's, which
    # reaches the decoder's first BatchNorm through a Linear), and the keys' bias adds the
    # same constant q.b to a head's scores at every date, which the softmax ignores.
    before_bn = {f"{name}.linear.bias" for name, m in model.named_modules() if hasattr(m, "norm")}
    assert len(before_bn) == 2 + 1 + 2 + 2  # MLP1, MLP2, MLP3, MLP4 hidden layers
    before_bn |= {"temporal_encoder.query.bias", "temporal_encoder.key.bias"}
    before_bn.add("temporal_encoder.out_norm.bias")
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name in before_bn:
            assert p.grad.abs().max() < 1e-4, name  # observed: at most ~3e-6
        else:
            assert p.grad.abs().max() > 1e-3, name  # observed: at least ~2e-2


def test_config_round_trip_through_json():
    model = PseTae(**SMALL, positions=[float(i * 3) for i in range(11)])
    config = json.loads(json.dumps(model.config.to_dict()))
    clone = PseTae.from_config(config)
    assert clone.config == model.config
    clone.load_state_dict(model.state_dict())
    model.eval(), clone.eval()
    pixels, mask, _ = random_batch(B=2, T=11, C=3, S=6, E=0)
    with torch.no_grad():
        torch.testing.assert_close(clone(pixels, mask), model(pixels, mask))
    assert PseTae.from_config({}).config == PseTae().config


def test_config_is_a_copy():
    model = PseTae()
    model.config.mlp1.append(7)
    assert model.config.mlp1 == [10, 32, 64]


def test_from_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="with_extra"):
        PseTae.from_config({"with_extra": True})


def test_decoder_width_mismatch_raises():
    with pytest.raises(ValueError, match="mlp4"):
        PseTae(mlp4=(64, 20))


def test_psetae_is_built_from_its_own_config_class_only():
    from psetae.models import ConfigError, PseClassifier, PseLTaeConfig, PseTaeConfig

    assert isinstance(PseTae(), PseClassifier) and PseTae.config_class is PseTaeConfig
    with pytest.raises(ConfigError, match="PseTae takes a PseTaeConfig, got a PseLTaeConfig"):
        PseTae(PseLTaeConfig())
