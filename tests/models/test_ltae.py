"""Tests of psetae/models/ltae.py (PSE + L-TAE) and psetae/models/reference_ltae.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from psetae.models import (
    PseLTae,
    PseLTaeConfig,
    ReferenceWeightsError,
    is_ltae_state_dict,
    psltae_from_reference,
)
from psetae.models.reference_ltae import convert_ltae_state_dict, ltae_reference_config

from .naive_psetae import _d, linear_bn, load_fixture, naive_pe, random_batch, randomise_batchnorm

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "psetae_ltae_reference.npz"


@pytest.fixture(scope="module")
def ltae_fixture():
    with np.load(FIXTURE, allow_pickle=False) as z:
        out = {k: torch.from_numpy(z[k]) for k in z.files if k != "meta"}
        meta = json.loads(str(z["meta"]))
    sd = {k[len("state_dict/") :]: v for k, v in out.items() if k.startswith("state_dict/")}
    return {"meta": meta, "state_dict": sd, **out}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def outputs(model, fx, positions=None):
    """Eval-mode spatial, temporal, logits and attention (reference layout (H, B, T))."""
    model.eval()
    with torch.no_grad():
        spatial = model.spatial_encoder(fx["pixels"], fx["mask"], fx["extra"])
        temporal, attention = model.temporal_encoder(spatial, positions, True)
        logits = model.decoder(temporal)
    return {"spatial": spatial, "temporal": temporal, "logits": logits,
            "attention": attention.transpose(0, 1)}  # fmt: skip


def assert_reproduces(model, fx, positions=None):
    for key, value in outputs(model, fx, positions).items():
        assert value.shape == fx[key].shape, key
        assert (value - fx[key]).abs().max() < 1e-5, key  # observed: at most 2e-6


def test_reference_fixture_reproduced_with_days_read_from_the_weights(ltae_fixture):
    model = psltae_from_reference(ltae_fixture["state_dict"])
    assert model.config.positions == [float(p) for p in ltae_fixture["meta"]["positions"]]
    assert_reproduces(model, ltae_fixture)
    # The full model's forward gives the same logits and attention (B, n_head, T).
    logits, attention = model(*(ltae_fixture[k] for k in ("pixels", "mask", "extra")),
                              return_attention=True)  # fmt: skip
    assert (logits - ltae_fixture["logits"]).abs().max() < 1e-5
    assert (attention.transpose(0, 1) - ltae_fixture["attention"]).abs().max() < 1e-5


def test_reference_fixture_reproduced_with_the_days_of_the_meta_per_parcel(ltae_fixture, tmp_path):
    days = ltae_fixture["meta"]["positions"]
    model = psltae_from_reference(ltae_fixture["state_dict"], positions=days)
    assert_reproduces(model, ltae_fixture)
    # A model without fixed days, given each parcel's days in the batch.
    path = tmp_path / "ltae.pth.tar"
    torch.save({"state_dict": ltae_fixture["state_dict"], "epoch": 3}, path)
    free = PseLTae(model.config.replace(positions=None))
    free.load_state_dict(model.state_dict())
    batch_days = torch.tensor(days, dtype=torch.float32).expand(8, 24)
    assert_reproduces(free, ltae_fixture, batch_days)
    assert_reproduces(psltae_from_reference(path), ltae_fixture)  # from a checkpoint file


def test_config_read_from_the_weights(ltae_fixture):
    cfg = ltae_reference_config(ltae_fixture["state_dict"])
    meta = ltae_fixture["meta"]["model"]
    for key in ("input_dim", "mlp1", "mlp2", "extra_size", "n_head", "d_k", "d_model", "mlp3",
                "len_max_seq", "mlp4"):  # fmt: skip
        assert getattr(cfg, key) == meta[key], key
    assert cfg.input_norm == "joint" and cfg == PseLTaeConfig(positions=cfg.positions)


def test_tae_and_ltae_weights_are_told_apart(ltae_fixture):
    ltae, tae = ltae_fixture["state_dict"], load_fixture()["state_dict"]
    assert is_ltae_state_dict(ltae) and not is_ltae_state_dict(tae)
    assert is_ltae_state_dict({f"module.{k}": v for k, v in ltae.items()})
    assert is_ltae_state_dict({"state_dict": ltae, "epoch": 3})
    assert not is_ltae_state_dict({"state_dict": tae, "epoch": 3})
    with pytest.raises(ReferenceWeightsError, match="not a reference L-TAE"):
        psltae_from_reference(tae)


def test_converter_refuses_foreign_keys_and_other_days(ltae_fixture):
    sd = dict(ltae_fixture["state_dict"])
    with pytest.raises(ReferenceWeightsError, match="temporal_encoder.extra_gate.weight"):
        convert_ltae_state_dict({**sd, "temporal_encoder.extra_gate.weight": torch.zeros(2)})
    shifted = [float(p) + 1 for p in ltae_fixture["meta"]["positions"]]
    with pytest.raises(ReferenceWeightsError, match="positional encoding"):
        psltae_from_reference(sd, positions=shifted)
    with pytest.raises(ReferenceWeightsError, match="inconv.1 is for 24 dates"):
        psltae_from_reference(sd, positions=shifted[:20])


def test_default_parameter_count_by_hand():
    d_in, d, H, dk, T = 128, 256, 16, 8, 24
    pse = (10 * 32 + 32 + 2 * 32) + (32 * 64 + 64 + 2 * 64) + (132 * 128 + 128 + 2 * 128)
    ltae = (
        2 * d_in  # input LayerNorm
        + d_in * d + d  # projection (the reference's 1x1 convolution)
        + 2 * d * T  # joint LayerNorm over (T, d_model)
        + H * dk  # learned master queries
        + d * H * dk + H * dk  # keys
        + d * 128 + 128 + 2 * 128  # MLP3: Linear + BatchNorm
        + 2 * 128  # output LayerNorm
    )  # fmt: skip
    decoder = (128 * 64 + 64 + 2 * 64) + (64 * 32 + 32 + 2 * 32) + (32 * 20 + 20)
    model = PseLTae()
    assert (n_params(model.spatial_encoder), n_params(model.temporal_encoder),
            n_params(model.decoder)) == (pse, ltae, decoder) == (19936, 112000, 11188)  # fmt: skip
    assert n_params(model) == pse + ltae + decoder == 143124
    # Per-date input norm: 2 * d_model instead of 2 * d_model * T.
    assert n_params(PseLTae(input_norm="per_date")) == 143124 - 2 * d * T + 2 * d


def naive_ltae(enc, x, positions):
    """L-TAE by the SPEC's formulas, one parcel and head at a time, float64 (eval mode)."""
    x = _d(x)
    B, T, _ = x.shape
    H, dk, d = enc.n_head, enc.d_k, enc.d_model

    def layer_norm(v, ln, axes):
        mu, var = v.mean(axes, keepdims=True), v.var(axes, keepdims=True)
        return (v - mu) / np.sqrt(var + ln.eps) * _d(ln.weight) + _d(ln.bias)

    x = layer_norm(x, enc.in_norm, -1)
    if enc.in_proj is not None:
        x = x @ _d(enc.in_proj.weight).T + _d(enc.in_proj.bias)
        x = layer_norm(x, enc.proj_norm, (-2, -1) if enc.input_norm == "joint" else -1)
    pe = naive_pe(positions, d // H, enc.days.period)  # (B, T, d/H)
    x = x + np.concatenate([pe] * H, axis=-1)
    Q, Wk, bk = _d(enc.query), _d(enc.key.weight), _d(enc.key.bias)
    out, att = np.zeros((B, d)), np.zeros((B, H, T))
    g = d // H
    for b in range(B):
        k = x[b] @ Wk.T + bk  # (T, H*dk)
        for h in range(H):
            s = np.array([Q[h] @ k[t, h * dk : (h + 1) * dk] for t in range(T)]) / math.sqrt(dk)
            a = np.exp(s - s.max())
            att[b, h] = a / a.sum()
            out[b, h * g : (h + 1) * g] = (att[b, h][:, None] * x[b, :, h * g : (h + 1) * g]).sum(0)
    for block in enc.mlp3:
        out = linear_bn(out, block, relu=True)
    return layer_norm(out, enc.out_norm, -1), att


@pytest.mark.parametrize(
    "changes",
    [dict(input_norm="per_date"), dict(d_model=None), dict(input_norm="joint")],
)
def test_small_configurations_match_a_naive_computation(changes):
    base = dict(n_head=4, d_k=3, d_model=16, mlp2=[132, 16], mlp3=[16, 12])
    cfg = PseLTaeConfig(**{**base, **changes}).for_data(
        num_channels=5, extra_size=0, sequence_length=6, num_classes=3
    )
    model = PseLTae(cfg).eval()
    randomise_batchnorm(model)
    with torch.no_grad():  # non-trivial LayerNorm affines
        for ln in (m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)):
            ln.weight.copy_(torch.rand_like(ln.weight) + 0.5)
            ln.bias.copy_(torch.randn_like(ln.bias) * 0.3)
    x = torch.randn(3, 6, 16)
    positions = torch.tensor([[0, 5, 9, 30, 31, 60]] * 2 + [[0, 1, 2, 3, 4, 5]]).float()
    with torch.no_grad():
        out, att = model.temporal_encoder(x, positions, True)
    expected, expected_att = naive_ltae(model.temporal_encoder, x, positions.numpy())
    np.testing.assert_allclose(out.double().numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(att.double().numpy(), expected_att, atol=1e-6)


def test_joint_norm_takes_its_number_of_dates_only_and_per_date_any():
    pixels, mask, extra = random_batch(B=2, T=9, S=4)
    with pytest.raises(ValueError, match="built for 24 dates.*input_norm='per_date'"):
        PseLTae()(pixels, mask, extra)
    model = PseLTae(input_norm="per_date").eval()
    for T in (9, 40):
        pixels, mask, extra = random_batch(B=2, T=T, S=4)
        assert model(pixels, mask, extra).shape == (2, 20)


def test_per_date_norm_treats_the_dates_as_a_set_of_days():
    # No joint affine: permuting the dates together with their days changes nothing.
    model = PseLTae(input_norm="per_date").eval()
    randomise_batchnorm(model)
    pixels, mask, extra = random_batch(B=2, T=12, S=4)
    positions = torch.cumsum(torch.randint(1, 20, (2, 12)), 1).float()
    perm = torch.randperm(12)
    with torch.no_grad():
        a = model(pixels, mask, extra, positions)
        b = model(pixels[:, perm], mask[:, perm], extra[:, perm], positions[:, perm])
        c = model(pixels[:, perm], mask[:, perm], extra[:, perm], positions)
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-4


def test_bad_widths_are_refused():
    from psetae.models import ConfigError

    with pytest.raises(ConfigError, match="multiple of n_head"):
        PseLTae(n_head=5)
    with pytest.raises(ConfigError, match="input_norm"):
        PseLTae(input_norm="batch")
    with pytest.raises(ConfigError, match="mlp3\\[0\\] = 256 must equal d_model = 128"):
        PseLTae(d_model=128)
