"""Tests of psetae/models/reference.py against the reference implementation's fixture."""

from __future__ import annotations

import pytest
import torch

from psetae.models import (
    PseTae,
    ReferenceWeightsError,
    convert_reference_state_dict,
    load_reference_weights,
    psetae_from_reference,
    reference_config,
)
from psetae.models.reference import PE_KEY, infer_positions
from psetae.models.tae import positional_encoding


def fixture_model(reference) -> PseTae:
    meta = reference["meta"]["model"]
    config = {k: v for k, v in meta.items() if k not in ("with_extra", "positions")}
    model = PseTae(**config, positions=reference["meta"]["positions"])
    return load_reference_weights(model, reference["state_dict"]).eval()


def assert_reproduces_fixture(model: PseTae, reference, positions=None) -> None:
    pixels, mask, extra = reference["pixels"], reference["mask"], reference["extra"]
    with torch.no_grad():
        spatial = model.spatial_encoder(pixels, mask, extra)
        temporal = model.temporal_encoder(spatial, positions)
        logits = model.decoder(temporal)
        full = model(pixels, mask, extra, positions)
    torch.testing.assert_close(spatial, reference["spatial"], atol=1e-5, rtol=0)
    torch.testing.assert_close(temporal, reference["temporal"], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, reference["logits"], atol=1e-5, rtol=0)
    torch.testing.assert_close(full, reference["logits"], atol=1e-5, rtol=0)


def test_fixture_reproduced_with_the_converter(reference):
    assert_reproduces_fixture(fixture_model(reference), reference)


def test_fixture_reproduced_with_per_parcel_positions(reference):
    model = psetae_from_reference(reference["state_dict"]).eval()
    free = PseTae(model.config, positions=None)
    free.load_state_dict(model.state_dict())
    positions = torch.tensor(reference["meta"]["positions"], dtype=torch.float32).expand(8, 24)
    assert_reproduces_fixture(free.eval(), reference, positions)


def test_fixture_parameter_count(reference):
    model = fixture_model(reference)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n == reference["meta"]["n_trainable_params"]


def test_config_inferred_from_shapes(reference):
    config = reference_config(reference["state_dict"])
    meta = reference["meta"]["model"]
    for key in ("input_dim", "mlp1", "pooling", "mlp2", "extra_size", "n_head", "d_k", "mlp3"):
        assert config[key] == meta[key], key
    assert config["mlp4"] == meta["mlp4"]
    assert config["len_max_seq"] == meta["len_max_seq"]
    assert config["positions"] == reference["meta"]["positions"]


def test_psetae_from_reference_reproduces_fixture(reference):
    assert_reproduces_fixture(psetae_from_reference(reference["state_dict"]).eval(), reference)


@pytest.mark.parametrize("wrap", ["bare", "checkpoint", "data_parallel"])
def test_load_from_files(reference, tmp_path, wrap):
    sd = dict(reference["state_dict"])
    if wrap == "checkpoint":
        obj = {"epoch": 7, "state_dict": sd, "optimizer": {"state": {}, "param_groups": []}}
    elif wrap == "data_parallel":
        obj = {f"module.{k}": v for k, v in sd.items()}
    else:
        obj = sd
    path = tmp_path / "model.pth.tar"
    torch.save(obj, path)
    assert_reproduces_fixture(psetae_from_reference(path).eval(), reference)
    model = PseTae(positions=reference["meta"]["positions"])
    assert_reproduces_fixture(load_reference_weights(model, str(path)).eval(), reference)


class NotWeights:
    """A custom class: unpickling it needs code, which weights_only refuses."""


def test_file_with_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": NotWeights()}, path)
    with pytest.raises(ReferenceWeightsError, match="evil.pth"):
        psetae_from_reference(path)


def test_unknown_keys_are_named(reference, tmp_path):
    sd = dict(reference["state_dict"])
    sd["temporal_encoder.something_new.weight"] = torch.zeros(3)
    path = tmp_path / "odd.pth"
    torch.save(sd, path)
    with pytest.raises(ReferenceWeightsError, match=r"odd\.pth.*something_new"):
        load_reference_weights(PseTae(positions=reference["meta"]["positions"]), path)


def test_wrong_shapes_and_missing_keys_are_named(reference):
    model = PseTae(positions=reference["meta"]["positions"], mlp4=(128, 64, 32, 10))
    with pytest.raises(ReferenceWeightsError, match=r"decoder\.2\.weight"):
        load_reference_weights(model, reference["state_dict"])
    sd = {k: v for k, v in reference["state_dict"].items() if "fc1_k" not in k}
    with pytest.raises(ReferenceWeightsError, match=r"missing \['temporal_encoder\.key\.bias'"):
        load_reference_weights(PseTae(positions=reference["meta"]["positions"]), sd)


def test_positions_mismatch_is_detected(reference):
    # The fixture was made with dates; a model without them would silently differ.
    with pytest.raises(ReferenceWeightsError, match="positional encoding"):
        load_reference_weights(PseTae(), reference["state_dict"])
    model = load_reference_weights(PseTae(), reference["state_dict"], check_positions=False)
    assert isinstance(model, PseTae)


def test_default_positions_table_is_recognised():
    # Without dates, the reference's table has rows for positions 0, 1, ..., len_max_seq.
    table = positional_encoding(torch.arange(25), 128, 1000)
    assert infer_positions(table) == (None, 24)
    days = [0.0, 3.0, 50.0, 365.0]
    assert infer_positions(positional_encoding(torch.tensor(days), 128, 1000)) == (days, 4)


def test_converted_names(reference):
    ours = convert_reference_state_dict(reference["state_dict"])
    assert PE_KEY not in ours
    assert set(ours) == set(PseTae().state_dict())
    torch.testing.assert_close(
        ours["temporal_encoder.mlp3.1.norm.running_var"],
        reference["state_dict"]["temporal_encoder.mlp.4.running_var"],
    )
    torch.testing.assert_close(
        ours["decoder.2.weight"], reference["state_dict"]["decoder.6.weight"]
    )
