"""Tests of psetae/data/validate.py: every kind of bad input is reported, all at once."""

from __future__ import annotations

import json

import numpy as np
import pytest

from psetae.data.format import DatasetFormatError, write_normalisation
from psetae.data.packed import pack_dataset
from psetae.data.validate import main, validate_dataset


def _edit_json(root, name, edit):
    path = root / "META" / name
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj))


def _errors_about(report, fragment):
    return [e for e in report.errors if fragment in e]


def test_valid_dataset_reports_only_the_empty_parcel(tiny_root):
    report = validate_dataset(tiny_root)
    assert report.ok and report.errors == []
    assert report.n_parcels == 6
    assert len(report.warnings) == 1
    assert "1 empty parcel(s)" in report.warnings[0] and "ids 11" in report.warnings[0]
    assert str(report).startswith(f"{tiny_root}: OK, 6 parcels, 0 error(s), 1 warning(s)")
    report.raise_if_errors()  # nothing to raise


@pytest.mark.parametrize("name", ["labels.json", "dates.json", "sizes.json"])
def test_missing_meta_file(tiny_root, name):
    (tiny_root / "META" / name).unlink()
    report = validate_dataset(tiny_root)
    assert any(e.startswith(f"{tiny_root / 'META' / name}: file is missing") for e in report.errors)
    assert not report.ok
    if name == "sizes.json":  # the message says how to make one
        (error,) = _errors_about(report, "sizes.json")
        assert f"`psetae sizes {tiny_root}` (psetae.data.format.write_sizes)" in error


def test_missing_geomfeat_is_a_warning(tmp_path, tiny):
    root = tiny.make(tmp_path / "ds", geomfeat=None)
    report = validate_dataset(root)
    assert report.ok
    assert any("geomfeat.json: file is missing" in w for w in report.warnings)


def test_malformed_json(tiny_root):
    (tiny_root / "META" / "sizes.json").write_text("[1, 2")
    report = validate_dataset(tiny_root)
    assert _errors_about(report, "sizes.json: not valid JSON")


def test_missing_folders(tiny_root, tmp_path):
    assert validate_dataset(tmp_path / "nothing").errors == [
        f"{tmp_path / 'nothing'}: dataset folder does not exist"
    ]
    for p in (tiny_root / "DATA").iterdir():
        p.unlink()
    (tiny_root / "DATA").rmdir()
    report = validate_dataset(tiny_root)
    assert f"{tiny_root / 'DATA'}: folder is missing" in report.errors


def test_ids_without_label_and_labels_without_data(tiny_root):
    _edit_json(tiny_root, "labels.json", lambda o: o["label_44class"].pop("13"))
    _edit_json(tiny_root, "labels.json", lambda o: o["label_19class"].update({"77": 1}))
    report = validate_dataset(tiny_root)
    assert _errors_about(report, "labels.json: no 'label_44class' label for DATA ids 13")
    assert _errors_about(
        report, "labels.json: 'label_19class' label for ids without a DATA file: 77"
    )
    only = validate_dataset(tiny_root, nomenclature="label_19class")
    assert len(only.errors) == 1


def test_sizes_and_geomfeat_disagree_with_data(tiny_root):
    _edit_json(tiny_root, "sizes.json", lambda o: o.update({"12": 99, "55": 3}))
    _edit_json(tiny_root, "geomfeat.json", lambda o: o.pop("20"))
    report = validate_dataset(tiny_root)
    assert _errors_about(report, "12.npy: 100 pixels but sizes.json says 99")
    assert _errors_about(report, "sizes.json: size for ids without a DATA file: 55")
    assert _errors_about(report, "geomfeat.json: no geometric features for DATA ids 20")


def test_wrong_rank(tiny_root):
    np.save(tiny_root / "DATA" / "10.npy", np.zeros((4, 15), np.int16))
    report = validate_dataset(tiny_root)
    assert _errors_about(report, "10.npy: array has rank 2 (shape (4, 15)), expected (T, C, n)")


def test_inconsistent_t_and_c(tiny_root):
    np.save(tiny_root / "DATA" / "10.npy", np.zeros((5, 3, 5), np.int16))
    np.save(tiny_root / "DATA" / "13.npy", np.zeros((4, 2, 64), np.int16))
    report = validate_dataset(tiny_root)
    assert _errors_about(report, "10.npy: T=5 but dates.json has 4 dates")
    assert _errors_about(report, "DATA: C differs from the common C=3 for ids 13")


def test_non_finite_values(tmp_path, tiny):
    arrays = tiny.arrays(dtype=np.float32)
    arrays[12][0, 1, 5] = np.nan
    arrays[20][3, 2, 0] = np.inf
    arrays[20][2, 2, 0] = -np.inf
    root = tiny.make(tmp_path / "ds", pixels=arrays)
    report = validate_dataset(root)
    data = root / "DATA"
    files = f"{data / '12.npy'}, {data / '20.npy'}"
    assert _errors_about(
        report, f"DATA: 2 parcel(s) with NaN or infinite pixel values: {files}; fix them"
    )
    assert _errors_about(report, "--drop-nonfinite")
    dropping = validate_dataset(root, drop_nonfinite=True)
    assert dropping.ok and any(f"{files} (they will be dropped)" in w for w in dropping.warnings)


def test_unreadable_array(tiny_root):
    (tiny_root / "DATA" / "14.npy").write_bytes(b"not an array")
    np.save(
        tiny_root / "DATA" / "10.npy", np.array([[[{"x": 1}]]], dtype=object), allow_pickle=True
    )
    report = validate_dataset(tiny_root)
    assert _errors_about(report, "14.npy: not a readable .npy array")
    assert _errors_about(report, "10.npy: dtype object")


@pytest.mark.parametrize(
    ("dates", "message"),
    [
        (
            {"0": 20170105, "1": 2017011, "2": 20170204, "3": 20170301},
            "index 1: date 2017011 is not YYYYMMDD",
        ),
        (
            {"0": 20170105, "1": 20171315, "2": 20170204, "3": 20170301},
            "index 1: date 20171315 is not a valid",
        ),
        (
            {"0": 20170105, "1": "2017-01-15", "2": 20170204, "3": 20170301},
            "index 1: date '2017-01-15' is not YYYYMMDD",
        ),
        (
            {"0": 20170105, "1": 20170204, "2": 20170115, "3": 20170301},
            "dates are not increasing: index 1",
        ),
        ({"0": 20170105, "1": 20170105, "2": 20170204, "3": 20170301}, "dates are not increasing"),
        (
            {"0": 20170105, "1": 20170115, "2": 20170204, "5": 20170301},
            "keys must be 0, 1, ..., T-1",
        ),
    ],
)
def test_bad_dates(tiny_root, dates, message):
    (tiny_root / "META" / "dates.json").write_text(json.dumps(dates))
    report = validate_dataset(tiny_root)
    assert _errors_about(report, f"dates.json: {message}"), report.errors


def test_unknown_nomenclature(tiny_root):
    report = validate_dataset(tiny_root, nomenclature="label_20class")
    assert _errors_about(report, "labels.json: unknown nomenclature 'label_20class'")


def test_labels_outside_the_classes(tiny_root):
    report = validate_dataset(tiny_root, nomenclature="label_44class", classes=[1, 3])
    (error,) = report.errors
    assert (
        "2 'label_44class' labels outside the chosen classes (classes [4, 99]; ids 12, 20)" in error
    )
    assert validate_dataset(tiny_root, nomenclature="label_44class", classes=[1, 3, 4, 99]).ok
    with pytest.raises(ValueError, match="nomenclature"):
        validate_dataset(tiny_root, classes=[1])


def test_labels_that_are_not_integers(tiny_root):
    _edit_json(tiny_root, "labels.json", lambda o: o["label_44class"].update({"10": "wheat"}))
    report = validate_dataset(tiny_root)
    assert _errors_about(report, "'label_44class' labels that are not integers for ids 10")


def test_every_problem_at_once(tiny_root):
    (tiny_root / "META" / "sizes.json").unlink()
    (tiny_root / "META" / "dates.json").write_text(
        json.dumps({"0": 20170105, "1": 20170101, "2": 20170204, "3": 2017})
    )
    _edit_json(tiny_root, "labels.json", lambda o: o["label_44class"].pop("13"))
    np.save(tiny_root / "DATA" / "10.npy", np.zeros((4, 3), np.int16))
    np.save(tiny_root / "DATA" / "12.npy", np.zeros((5, 3, 100), np.int16))
    report = validate_dataset(tiny_root, nomenclature="label_44class", classes=[1, 3, 4])
    fragments = [
        "sizes.json: file is missing",
        "dates.json: index 3: date 2017 is not YYYYMMDD",
        "dates.json: dates are not increasing",
        "no 'label_44class' label for DATA ids 13",
        "10.npy: array has rank 2",
        "12.npy: T=5 but dates.json has 4 dates",
        "labels outside the chosen classes (classes [99]",
    ]
    for fragment in fragments:
        assert _errors_about(report, fragment), fragment
    assert len(report.errors) == len(fragments)
    with pytest.raises(DatasetFormatError, match="invalid dataset") as e:
        report.raise_if_errors()
    assert all(f in str(e.value) for f in fragments)


def test_normalisation_files(tmp_path, tiny):
    root = tiny.make(tmp_path / "ds")
    write_normalisation(root, np.ones(5), np.ones(5))  # the writer itself would refuse it
    report = validate_dataset(root)
    assert _errors_about(
        report, "normalisation.json: normalisation of shape (5,) does not fit T=4, C=3"
    )
    assert _errors_about(report, "normalisation.pkl: normalisation of shape (5,)")
    (root / "normalisation.pkl").write_bytes(b"cos\nsystem\n(S'echo hi'\ntR.")
    assert _errors_about(
        validate_dataset(root),
        "normalisation.pkl: refusing to unpickle: forbidden global os.system",
    )
    good = tiny.make(tmp_path / "ok", normalisation=(np.ones((4, 3)), np.ones((4, 3))))
    assert validate_dataset(good).ok


def test_packed_form_is_checked(tiny_root, tmp_path):
    pack_dataset(tiny_root)
    assert validate_dataset(tiny_root).ok
    _edit_json(tiny_root, "sizes.json", lambda o: o.update({"12": 99}))
    np.save(tiny_root / "DATA" / "12.npy", np.zeros((4, 3, 99), np.int16))
    (error,) = validate_dataset(tiny_root).errors
    assert "PACKED: packed form is stale" in error
    out = tmp_path / "standalone"
    pack_dataset(tiny_root, out=out)
    report = validate_dataset(out)
    assert report.ok and report.n_parcels == 6


def test_stray_files_are_a_warning(tiny_root):
    (tiny_root / "DATA" / "notes.txt").write_text("hello")
    report = validate_dataset(tiny_root)
    assert report.ok and any("notes.txt" in w for w in report.warnings)


def test_command_line(tiny_root, capsys):
    assert main([str(tiny_root)]) == 0
    assert "OK, 6 parcels" in capsys.readouterr().out
    assert main([str(tiny_root), "--nomenclature", "label_44class", "--classes", "1,3"]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and "error: " in out and "outside the chosen classes" in out


def test_sizes_json_is_made_from_data(tiny_root, tiny):
    from psetae.data.format import write_sizes

    (tiny_root / "META" / "sizes.json").unlink()
    assert write_sizes(tiny_root) == tiny.sizes
    assert json.loads((tiny_root / "META" / "sizes.json").read_text()) == {
        str(k): v for k, v in tiny.sizes.items()
    }
    assert validate_dataset(tiny_root).ok


def test_string_and_object_arrays_are_named(tiny_root):
    np.save(tiny_root / "DATA" / "12.npy", np.full((4, 3, 100), "x"))
    np.save(tiny_root / "DATA" / "13.npy", np.full((4, 3, 64), None, dtype=object))
    report = validate_dataset(tiny_root)
    assert _errors_about(report, "12.npy: dtype <U1 is not numeric")
    assert _errors_about(report, "13.npy: dtype object (pickled Python objects) is not numeric")


def test_negative_labels_are_called_negative(tiny_root):
    _edit_json(tiny_root, "labels.json", lambda o: o["label_44class"].update({"13": -1}))
    report = validate_dataset(tiny_root)
    assert _errors_about(report, "'label_44class' labels that are negative for ids 13")


def test_a_dataset_without_parcels_is_an_error(tmp_path, tiny):
    root = tiny.make(tmp_path / "empty", pixels={}, labels={"label_44class": {}}, geomfeat={})
    report = validate_dataset(root)
    assert _errors_about(report, "no parcels: the dataset is empty")
    assert "INVALID, 0 parcels" in str(report)


def test_a_hostile_reference_named_pickle_is_refused(tiny_root):
    (tiny_root / "S2-2017-T31TFM-meanstd.pkl").write_bytes(b"cos\nsystem\n(S'echo hi'\ntR.")
    report = validate_dataset(tiny_root)
    assert _errors_about(report, "S2-2017-T31TFM-meanstd.pkl: refusing to unpickle")


def test_dates_as_a_json_list_agree_with_the_reader(tiny_root, tiny):
    from psetae.data.format import read_dates

    (tiny_root / "META" / "dates.json").write_text(json.dumps(tiny.dates))
    np.testing.assert_array_equal(read_dates(tiny_root), tiny.dates)
    assert validate_dataset(tiny_root).ok
    (tiny_root / "META" / "dates.json").write_text(json.dumps([20170105, 20170101, 1, 2]))
    with pytest.raises(DatasetFormatError) as e:
        read_dates(tiny_root)
    assert [m.split(": ", 1)[1] for m in validate_dataset(tiny_root).errors] == str(e.value).split(
        ": ", 1
    )[1].split("; ")


def test_check_dataset_raises_one_line_listing_every_problem(tiny_root):
    from psetae.data.validate import check_dataset

    assert check_dataset(tiny_root).ok
    _edit_json(tiny_root, "labels.json", lambda o: o["label_44class"].update({"13": -1}))
    (tiny_root / "S2-2017-T31TFM-meanstd.pkl").write_bytes(b"cos\nsystem\n(S'echo hi'\ntR.")
    with pytest.raises(DatasetFormatError, match="invalid dataset, 2 problem") as e:
        check_dataset(tiny_root)
    assert "\n" not in str(e.value) and "meanstd.pkl" in str(e.value) and "negative" in str(e.value)


def test_a_chosen_normalisation_file_is_checked_too(tiny_root, tmp_path):
    from psetae.data.validate import check_dataset

    hostile = tmp_path / "mine.pkl"
    hostile.write_bytes(b"cos\nsystem\n(S'echo hi'\ntR.")
    with pytest.raises(DatasetFormatError, match="mine.pkl: refusing to unpickle"):
        check_dataset(tiny_root, normalisation=hostile)
    with pytest.raises(DatasetFormatError, match="nope.json: normalisation file not found"):
        check_dataset(tiny_root, normalisation=tmp_path / "nope.json")
    (tmp_path / "ok.json").write_text(json.dumps({"mean": [1, 2, 3], "std": [1, 1, 1]}))
    assert check_dataset(tiny_root, normalisation=tmp_path / "ok.json").ok
