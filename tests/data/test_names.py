"""Class names from the dataset (psetae/data/names.py): classes.json, the S2-Agri table, codes."""

from __future__ import annotations

import json

import pytest

from psetae.data.format import DatasetFormatError
from psetae.data.names import class_names, default_classes


def test_classes_json_names_the_classes(tmp_path):
    (tmp_path / "META").mkdir()
    (tmp_path / "META" / "classes.json").write_text(json.dumps({"3": "Maize", "1": "Wheat"}))
    # Its names win, also over the S2-Agri table of label_44class.
    assert class_names(tmp_path, "label_44class", [1, 3]) == ["Wheat", "Maize"]
    with pytest.raises(DatasetFormatError, match=r"classes\.json: no name for class codes \[7\]"):
        class_names(tmp_path, "crop", [1, 7])


@pytest.mark.parametrize(
    ("content", "match"),
    [('["Wheat"]', "expected a JSON object"), ('{"one": "Wheat"}', "'one' is not an integer")],
)
def test_a_malformed_classes_json_is_refused(tmp_path, content, match):
    (tmp_path / "META").mkdir()
    (tmp_path / "META" / "classes.json").write_text(content)
    with pytest.raises(DatasetFormatError, match=match):
        class_names(tmp_path, "crop", [1])


def test_without_classes_json_s2agri_names_or_the_codes(tmp_path):
    # label_44class: the paper's table (1 is Meadow, 39 Wood); a code outside it stays a code.
    assert class_names(tmp_path, "label_44class", [1, 39, 2]) == ["Meadow", "Wood", "2"]
    # Another nomenclature is not S2-Agri's: the codes, even where the table has a name.
    assert class_names(tmp_path, "label_19class", [1, 39]) == ["1", "39"]


def test_default_classes():
    assert default_classes("label_44class")[:3] == [1, 3, 4]
    assert len(default_classes("label_44class")) == 20
    assert default_classes("crop") is None


def test_the_raster_importers_names_file_of_the_nomenclature_comes_first(tmp_path):
    (tmp_path / "META").mkdir()
    (tmp_path / "META" / "classes.json").write_text(json.dumps({"0": "by hand", "1": "x"}))
    (tmp_path / "META" / "label_names.json").write_text(json.dumps({"0": "Wheat", "1": "Maize"}))
    assert class_names(tmp_path, "label", [1, 0]) == ["Maize", "Wheat"]
    assert class_names(tmp_path, "other", [0]) == ["by hand"]  # not that nomenclature's file
