"""`psetae baseline`: the random forest on the same splits and metrics as `psetae train`, and the
evaluate / predict path of its forest files."""

from __future__ import annotations

import csv
import json

import pytest

from psetae.cli import main
from psetae.data.simulate import simulate_s2agri


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("forest") / "a"
    simulate_s2agri(root, n_parcels=90, preset="test", seed=3)
    return root


def test_baseline_and_train_share_splits_and_metrics(sim, tmp_path, capsys):
    common = ["--folds", "3", "--nomenclature", "label_44class", "--classes", "all"]
    assert (
        main(["baseline", str(sim), "--out", str(tmp_path / "rf"), "--trees", "10", *common]) == 0
    )
    assert main(["train", str(sim), "--out", str(tmp_path / "nn"), "--epochs", "1",
                 "--no-progress", "--npixel", "8", *common]) == 0  # fmt: skip
    rf = json.loads((tmp_path / "rf" / "results.json").read_text())
    nn = json.loads((tmp_path / "nn" / "results.json").read_text())
    splits = (tmp_path / "rf" / "splits.json").read_text()
    assert splits == (tmp_path / "nn" / "splits.json").read_text()
    assert rf["model"] == "random_forest" and len(rf["folds"]) == 3
    for a, b in zip(rf["folds"], nn["folds"], strict=True):
        assert set(a["test"]) == set(b["test"])  # the same metrics
        assert a["test"]["class_names"] == b["test"]["class_names"]
        assert (a["n_train"], a["n_test"]) == (b["n_train"], b["n_test"])
    # The forests are evaluated like checkpoints: on the fold-1 test parcels the ensemble of
    # folds has seen most of them, so it must do at least as well as chance.
    capsys.readouterr()
    out = tmp_path / "m.json"
    assert (
        main(["evaluate", str(sim), "--checkpoint", str(tmp_path / "rf"), "--out", str(out)]) == 0
    )
    metrics = json.loads(out.read_text())
    assert set(metrics) >= set(rf["folds"][0]["test"])
    assert metrics["oa"] > 0.5
    pred = tmp_path / "p.csv"
    assert main(["predict", str(sim), "--checkpoint", str(tmp_path / "rf" / "fold_1"),
                 "--out", str(pred)]) == 0  # fmt: skip
    rows = list(csv.DictReader(pred.open()))
    assert len(rows) == metrics["n"] and {"id", "class_id", "class_name"} <= set(rows[0])


def test_baseline_refuses_bad_input_before_writing(tmp_path, tiny, capsys):
    import numpy as np

    arrays = tiny.arrays(dtype=np.float32)
    arrays[12][0, 0, 0] = np.nan
    root = tiny.make(tmp_path / "nan", pixels=arrays)
    out = tmp_path / "rf"
    assert main(["baseline", str(root), "--out", str(out), "--nomenclature", "label_19class"]) == 2
    assert "NaN or infinite" in capsys.readouterr().err
    assert not out.exists()
