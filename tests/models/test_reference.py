"""Tests of psetae/models/reference.py against the reference implementation's fixture."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
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
from psetae.models.reference import PE_KEY, infer_positions, temporal_encoder_kind

from .ref_state import batch, randomised_model, reference_state_dict, reference_table


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
    model = psetae_from_reference(reference["state_dict"], pooling="mean_std")
    free = PseTae(model.config, positions=None)
    free.load_state_dict(model.state_dict())
    positions = torch.tensor(reference["meta"]["positions"], dtype=torch.float32).expand(8, 24)
    assert_reproduces_fixture(free.eval(), reference, positions)


def test_fixture_parameter_count(reference):
    model = fixture_model(reference)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n == reference["meta"]["n_trainable_params"]


def test_config_inferred_from_shapes(reference):
    config = reference_config(reference["state_dict"], pooling="mean_std")
    meta = reference["meta"]["model"]
    for key in ("input_dim", "mlp1", "pooling", "mlp2", "extra_size", "n_head", "d_k", "mlp3"):
        assert config[key] == meta[key], key
    assert config["mlp4"] == meta["mlp4"]
    assert config["len_max_seq"] == meta["len_max_seq"]
    assert config["positions"] == reference["meta"]["positions"]


def test_psetae_from_reference_reproduces_fixture(reference):
    # The fixture pools mean_std, the reference's default: assumed, with a warning.
    with pytest.warns(UserWarning, match="assuming the reference's default pooling 'mean_std'"):
        model = psetae_from_reference(reference["state_dict"])
    assert_reproduces_fixture(model, reference)


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
    assert_reproduces_fixture(psetae_from_reference(path, pooling="mean_std"), reference)
    model = PseTae(positions=reference["meta"]["positions"])
    assert_reproduces_fixture(load_reference_weights(model, str(path)).eval(), reference)


class NotWeights:
    """A custom class: unpickling it needs code, which weights_only refuses."""


def test_file_with_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": NotWeights()}, path)
    with pytest.raises(ReferenceWeightsError, match=r"evil\.pth: refused for safety"):
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


@pytest.mark.parametrize("d", [128, 127, 16])
def test_positions_read_from_tables(d):
    days = [0.0, 3.0, 50.0, 365.0]
    assert infer_positions(reference_table(days, d, 1000), 1000) == days
    assert infer_positions(reference_table(range(25), d, 1000), 1000) == list(range(25))
    # Another period does not reproduce the table: no positions rather than wrong ones.
    assert infer_positions(reference_table(days, d, 500), 1000) is None


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


# -- Configurations other than the default: reference-named state dicts built from our models.

DATES = [0.0, 7.0, 15.0, 30.0, 45.0, 61.0]
SMALL = dict(
    input_dim=3, mlp1=[3, 8, 8], pooling="mean_std", mlp2=[20, 16], extra_size=4, n_head=2,
    d_k=4, mlp3=[32, 16], mlp4=[16, 8, 5], len_max_seq=6, positions=DATES,
)  # fmt: skip


def small(**changes) -> dict:
    return {**SMALL, **changes}


def logits(model: PseTae, inputs: dict, positions=None) -> torch.Tensor:
    with torch.no_grad():
        return model(inputs["pixels"], inputs["mask"], inputs["extra"], positions)


def assert_same_model(original: PseTae, converted: PseTae, T: int | None = None) -> None:
    """Equal eval outputs to 1e-5 on random inputs (T dates, the model's by default)."""
    inputs = batch(original, T=T)
    torch.testing.assert_close(
        logits(converted, inputs), logits(original, inputs), atol=1e-5, rtol=0
    )


def convert(original: PseTae, **options):
    return psetae_from_reference(reference_state_dict(original), **options)


def test_daily_dates_are_not_read_as_no_dates():
    # Dates 0..T-1 give the same table as no dates (rows 0..len_max_seq): two readings.
    daily = randomised_model(**small(positions=[0, 1, 2, 3, 4, 5]))
    with pytest.raises(ReferenceWeightsError, match=r"positions='order' or positions=<days>"):
        convert(daily, pooling="mean_std")
    assert_same_model(daily, convert(daily, pooling="mean_std", positions=[0, 1, 2, 3, 4, 5]))
    dates = [20170101, 20170102, 20170103, 20170104, 20170105, 20170106]
    assert_same_model(daily, convert(daily, pooling="mean_std", dates=dates))
    no_dates = randomised_model(**small(positions=None, len_max_seq=5))
    converted = convert(no_dates, pooling="mean_std", positions="order")
    assert converted.config.positions is None and converted.config.len_max_seq == 5
    assert_same_model(no_dates, converted)


def test_given_positions_are_checked_against_the_table():
    model = randomised_model(**small())
    sd = reference_state_dict(model)
    with pytest.raises(
        ReferenceWeightsError, match=r"positions \[0\.0, 1\.0.*encodes the positions \[0\.0, 7\.0"
    ):
        psetae_from_reference(sd, pooling="mean_std", positions=[0, 1, 2, 3, 4, 5])
    with pytest.raises(ReferenceWeightsError, match=r"positions='order' \(no dates\) disagrees"):
        psetae_from_reference(sd, pooling="mean_std", positions="order")


def test_period_other_than_the_default_must_be_given():
    model = randomised_model(**small(T=500))
    with pytest.raises(ReferenceWeightsError, match=r"T="):
        convert(model, pooling="mean_std")
    assert_same_model(model, convert(model, pooling="mean_std", T=500))


def test_default_pooling_is_assumed_with_a_warning():
    # mean_max has the widths of mean_std: the weights cannot tell them apart.
    model = randomised_model(**small(pooling="mean_max"))
    with pytest.warns(UserWarning, match=r"default pooling 'mean_std'.*pass pooling="):
        convert(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same_model(model, convert(model, pooling="mean_max"))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        # Three statistics and 4 extra features: mlp2[0] = 3 x 8 + 4.
        (dict(pooling="mean_std_max", mlp2=[28, 16]), r"pool 3 statistics.*pass pooling="),
        # No extra features, four statistics: mlp2[0] = 32, read as 4 x 8 + 0 (not 2 x 8 + 16).
        (dict(pooling="min_max_std_mean", mlp2=[32, 16], extra_size=0), r"pool 4 statistics"),
    ],
)
def test_other_pooling_must_be_given(changes, match):
    model = randomised_model(**small(**changes))
    with pytest.raises(ReferenceWeightsError, match=match):
        convert(model)
    assert_same_model(model, convert(model, pooling=changes["pooling"]))


def test_widths_with_two_readings_of_pooling_and_extra_features():
    # mlp2[0] = 8 is 2 x 4 + 0 or 1 x 4 + 4: pooling and extra_size must be given.
    model = randomised_model(**small(mlp1=[3, 4], mlp2=[8, 16], extra_size=0))
    with pytest.raises(ReferenceWeightsError, match=r"pass pooling= and extra_size="):
        convert(model)
    assert_same_model(model, convert(model, pooling="mean_std"))
    assert_same_model(model, convert(model, extra_size=0, pooling="mean_std"))


def test_odd_width():
    model = randomised_model(**small(mlp2=[20, 15], mlp3=[30, 15], mlp4=[15, 5]))
    assert_same_model(model, convert(model, pooling="mean_std"))


@pytest.mark.parametrize(
    "changes",
    [
        dict(mlp2=[20], mlp3=[40, 20], mlp4=[20, 5]),  # no MLP2: the pooled vector
        dict(mlp3=[32, 16, 16]),  # a two-layer MLP3
        dict(n_head=1, mlp3=[16], mlp4=[16, 5]),  # no MLP3 (one head)
        dict(mlp4=[16, 5]),  # the decoder a single Linear
    ],
    ids=["empty-mlp2", "two-layer-mlp3", "empty-mlp3", "linear-decoder"],
)
def test_shallow_and_deep_mlps(changes):
    model = randomised_model(**small(**changes))
    converted = convert(model, pooling="mean_std")
    for key, value in changes.items():
        assert converted.config.to_dict()[key] == value, key
    assert_same_model(model, converted)


def test_shorter_sequences_take_the_first_dates():
    model = randomised_model(**small())
    converted = convert(model, pooling="mean_std")
    inputs = batch(model, T=4)
    first = torch.tensor(DATES[:4]).expand(5, 4)  # what the reference does with 4 dates
    torch.testing.assert_close(
        logits(converted, inputs), logits(model, inputs, first), atol=1e-5, rtol=0
    )


def test_models_come_back_in_eval_mode(reference, tmp_path):
    model = psetae_from_reference(reference["state_dict"], pooling="mean_std")
    assert not any(m.training for m in model.modules())
    write_folds(tmp_path, [randomised_model(**small())])
    assert not any(
        m.training for m in psetae_from_reference(tmp_path, pooling="mean_std")[0].modules()
    )


def test_ltae_weights_are_detected_and_loaded_by_the_one_entry_point(reference, tmp_path):
    from psetae.models.ltae import PseLTae

    ltae = np.load(Path(__file__).resolve().parents[1] / "data" / "psetae_ltae_reference.npz")
    sd = {k.removeprefix("state_dict/"): torch.from_numpy(ltae[k])
          for k in ltae.files if k.startswith("state_dict/")}  # fmt: skip
    assert temporal_encoder_kind(sd) == "ltae"
    assert temporal_encoder_kind(reference["state_dict"]) == "tae"
    model = psetae_from_reference(sd, pooling="mean_std")
    assert isinstance(model, PseLTae) and not model.training
    inputs = [torch.from_numpy(ltae[k]) for k in ("pixels", "mask", "extra")]
    with torch.no_grad():
        logits = model(*inputs)
    assert (logits - torch.from_numpy(ltae["logits"])).abs().max() < 1e-5
    # A results folder of L-TAE folds comes back as an ensemble too.
    for k in (1, 2):
        (tmp_path / f"Fold_{k}").mkdir()
        torch.save({"state_dict": sd}, tmp_path / f"Fold_{k}" / "model.pth.tar")
    folds = psetae_from_reference(tmp_path, pooling="mean_std")
    assert len(folds) == 2 and all(isinstance(m, PseLTae) for m in folds)


# -- Results folders: Fold_<k>/model.pth.tar, and conf.json when the script wrote one.


def write_folds(root, models, wrap=True) -> None:
    for k, model in enumerate(models, start=1):
        (root / f"Fold_{k}").mkdir(parents=True)
        sd = reference_state_dict(model)
        torch.save(
            {"epoch": 3, "state_dict": sd} if wrap else sd, root / f"Fold_{k}" / "model.pth.tar"
        )


def three_folds(**changes) -> list[PseTae]:
    return [randomised_model(seed=k, **small(**changes)) for k in range(3)]


def test_results_folder_without_conf(tmp_path):
    models = three_folds()
    write_folds(tmp_path, models)
    ensemble = psetae_from_reference(tmp_path, pooling="mean_std")
    assert isinstance(ensemble, list) and len(ensemble) == 3
    for original, converted in zip(models, ensemble, strict=True):
        assert_same_model(original, converted)
    assert_same_model(models[1], psetae_from_reference(tmp_path, fold=2, pooling="mean_std"))
    with pytest.raises(ReferenceWeightsError, match=r"no Fold_4; the folds are \[1, 2, 3\]"):
        psetae_from_reference(tmp_path, fold=4, pooling="mean_std")
    with pytest.raises(ReferenceWeightsError, match=r"no Fold_<k>/model\.pth\.tar"):
        psetae_from_reference(tmp_path / "Fold_1", pooling="mean_std")


def reference_conf(**changes) -> dict:
    """A conf.json as the L-TAE repository's train.py writes it, for a --tae run."""
    conf = {
        "dataset_folder": "/data/S2-Agri", "res_dir": "./results", "kfold": 3, "epochs": 100,
        "npixel": 64, "input_dim": 3, "mlp1": "[3,8,8]", "pooling": "mean_max",
        "mlp2": "[20,16]", "geomfeat": 1, "n_head": 2, "d_k": 4, "mlp3": "[32,16]", "T": 1000,
        "positions": "order", "lms": 6, "dropout": 0.3, "d_model": None, "num_classes": 5,
        "mlp4": "[16, 8, 5]", "tae": True, "gru": False, "tcnn": False,
    }  # fmt: skip
    return {**conf, **changes}


def test_results_folder_with_conf(tmp_path):
    # Pooling mean_max and no dates: each would otherwise be an error or a warning.
    models = three_folds(pooling="mean_max", positions=None, len_max_seq=6, dropout=0.3)
    write_folds(tmp_path, models, wrap=False)
    (tmp_path / "conf.json").write_text(json.dumps(reference_conf()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ensemble = psetae_from_reference(tmp_path)
        one = psetae_from_reference(tmp_path / "Fold_3" / "model.pth.tar")
    for original, converted in zip(models, ensemble, strict=True):
        assert converted.config == original.config
        assert_same_model(original, converted)
    assert_same_model(models[2], one)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (dict(mlp2="[20,32]"), r"conf\.json has mlp2 = \[20, 32\], the weights \[20, 16\]"),
        (dict(pooling="mean_std_max"), r"pooling='mean_std_max'.* do not fit"),
        (dict(lms=24), r"conf\.json has len_max_seq = 24, the weights 6"),
        (dict(tae=False), r"conf\.json describes a LTAE run"),
    ],
)
def test_conf_that_disagrees_with_the_weights(tmp_path, changes, match):
    write_folds(tmp_path, three_folds(pooling="mean_max", positions=None, len_max_seq=6))
    (tmp_path / "conf.json").write_text(json.dumps(reference_conf(**changes)))
    with pytest.raises(ReferenceWeightsError, match=match):
        psetae_from_reference(tmp_path)


def test_conf_with_dates_reads_a_table_of_daily_dates(tmp_path):
    models = three_folds(pooling="mean_max", positions=[0, 1, 2, 3, 4, 5])
    write_folds(tmp_path, models)
    (tmp_path / "conf.json").write_text(json.dumps(reference_conf(positions="bespoke")))
    for original, converted in zip(models, psetae_from_reference(tmp_path), strict=True):
        assert_same_model(original, converted)


def test_arguments_that_disagree_with_conf(tmp_path):
    write_folds(tmp_path, three_folds(pooling="mean_max", positions=None, len_max_seq=6))
    (tmp_path / "conf.json").write_text(json.dumps(reference_conf()))
    with pytest.raises(
        ReferenceWeightsError,
        match=r"pooling='mean_std' was given but the run's conf\.json has 'mean_max'",
    ):
        psetae_from_reference(tmp_path, pooling="mean_std")


class Payload:
    """Unpickling this calls Path.touch: what a hostile weights file could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_hostile_file_is_refused_and_nothing_runs(tmp_path, writer):
    marker = tmp_path / "payload-ran"
    folder = tmp_path / "results"
    (folder / "Fold_1").mkdir(parents=True)
    path = folder / "Fold_1" / "model.pth.tar"
    obj = {"state_dict": {"x": torch.zeros(1)}, "payload": Payload(marker)}
    if writer == "pickle":
        path.write_bytes(pickle.dumps(obj, protocol=2))
    else:
        torch.save(obj, path)
    for target in (path, folder):
        with pytest.raises(ReferenceWeightsError, match="refused for safety") as info:
            psetae_from_reference(target)
        assert str(path) in str(info.value)
        assert "weights_only=False" not in str(info.value)
        assert "weights_only` set to `False" not in str(info.value)
    assert not marker.exists()
