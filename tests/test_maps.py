"""Predictions back as a map, and the round trip scene -> import -> dataset -> map (+ CLI)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest

from psetae.cli import main
from psetae.data.dataset import PixelSetDataset
from psetae.data.format import read_labels, read_sizes
from psetae.data.rasters import import_rasters
from psetae.data.scene import simulate_scene
from psetae.maps import MapError, read_predictions, write_prediction_map
from psetae.predict import Prediction, write_predictions_csv


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("rt")
    scene = simulate_scene(root / "scene", width=96, height=64, n_fields=30, seed=2)
    import_rasters(scene.rasters, scene.parcels, root / "ds", label_column="code",
                   name_column="name", cloud_band="CLOUD")  # fmt: skip
    return root, scene


def _predictions(root, ds, wrong_every=3):
    """A CSV written by psetae.predict's own writer: the true class, except every third parcel."""
    labels = read_labels(ds, "label")
    ids = np.array(sorted(labels))
    k = int(max(labels.values())) + 1
    true = np.array([labels[i] for i in ids])
    pred = np.where(np.arange(len(ids)) % wrong_every == 0, (true + 1) % k, true)
    probs = np.full((len(ids), k), 0.1 / (k - 1))
    probs[np.arange(len(ids)), pred] = 0.9
    p = Prediction(ids, pred, probs, list(range(k)), [f"class {c}" for c in range(k)])
    return write_predictions_csv(p, root / "pred.csv"), ids, true, pred


def test_round_trip_dataset_is_readable(imported):
    root, scene = imported
    ds = PixelSetDataset(root / "ds", nomenclature="label", normalisation=root / "ds" /
                         "normalisation.json", extra_features=True)  # fmt: skip
    parcels = gpd.read_file(scene.parcels)
    assert len(ds) == len(read_sizes(root / "ds")) == len(parcels)  # no field lost
    item = ds[0]
    assert item["pixels"].shape[:2] == (24, 10) and item["extra"].shape == (24, 4)
    assert np.isfinite(item["pixels"].numpy()).all()


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_map_has_one_row_per_parcel_with_the_right_values(imported, suffix):
    root, scene = imported
    csv_path, ids, true, pred = _predictions(root, root / "ds")
    out = write_prediction_map(csv_path, scene.parcels, root / f"map{suffix}", label_column="code",
                               dataset=root / "ds", overwrite=True)  # fmt: skip
    m = gpd.read_file(out).set_index("id")
    parcels = gpd.read_file(scene.parcels).set_index("id")
    assert sorted(m.index) == sorted(parcels.index)
    assert m.crs == parcels.crs and m.geometry.geom_equals(parcels.geometry.loc[m.index]).all()
    codes = sorted(parcels["code"].unique())  # class k is the k-th smallest code
    for i, t, p in zip(ids, true, pred, strict=True):
        assert m.loc[i, "pred_class"] == p and m.loc[i, "pred_name"] == f"class {p}"
        assert m.loc[i, "pred_code"] == codes[p] and m.loc[i, "true_code"] == codes[t]
        assert bool(m.loc[i, "correct"]) == (p == t)
        assert m.loc[i, "probability"] == pytest.approx(0.9)


def test_parcels_without_prediction_keep_empty_values(imported, tmp_path):
    root, scene = imported
    csv_path, ids, _, _ = _predictions(root, root / "ds")
    pred = read_predictions(csv_path).iloc[1:]  # the first parcel not predicted
    m = gpd.read_file(write_prediction_map(pred, scene.parcels, tmp_path / "m.gpkg"))
    row = m.set_index("id").loc[ids[0]]
    assert np.isnan(row["pred_class"]) and len(m) == len(ids)


def test_bad_map_inputs(imported, tmp_path):
    root, scene = imported
    csv_path, ids, _, _ = _predictions(root, root / "ds")
    with pytest.raises(MapError, match="must be a .gpkg"):
        write_prediction_map(csv_path, scene.parcels, tmp_path / "m.shp")
    pred = read_predictions(csv_path)
    pred.loc[0, "id"] = 10**9
    with pytest.raises(MapError, match="predicted ids are not parcels: \\[1000000000\\]"):
        write_prediction_map(pred, scene.parcels, tmp_path / "m.gpkg")
    (tmp_path / "bad.csv").write_text("id,klass\n1,2\n")
    with pytest.raises(MapError, match="expected columns id, class_id"):
        read_predictions(tmp_path / "bad.csv")
    with pytest.raises(MapError, match="no column 'crop'"):
        write_prediction_map(csv_path, scene.parcels, tmp_path / "m.gpkg", label_column="crop")
    assert not list(tmp_path.glob("*.gpkg"))


def test_cli_round_trip(tmp_path, capsys):
    assert (
        main(["simulate-scene", "--out", str(tmp_path / "s"), "--size", "64", "--fields", "12"])
        == 0
    )
    args = ["import-rasters", str(tmp_path / "s" / "dates.csv"), "--parcels",
            str(tmp_path / "s" / "parcels.gpkg"), "--label-column", "code", "--name-column",
            "name", "--cloud-band", "CLOUD", "--out", str(tmp_path / "ds")]  # fmt: skip
    assert main(args) == 0
    assert "parcels written to" in capsys.readouterr().out
    assert main(args) == 2  # exists already: one line, exit 2
    assert "exists already" in capsys.readouterr().err
    assert main([*args[:-1], str(tmp_path / "ds2"), "--codes-from", str(tmp_path / "ds")]) == 0
    codes = "META/label_codes.json"
    assert (tmp_path / "ds2" / codes).read_text() == (tmp_path / "ds" / codes).read_text()
    csv_path, ids, _, _ = _predictions(tmp_path, tmp_path / "ds")
    assert main(["map", str(csv_path), "--parcels", str(tmp_path / "s" / "parcels.gpkg"),
                 "--dataset", str(tmp_path / "ds"), "--label-column", "code", "--out",
                 str(tmp_path / "map.geojson")]) == 0  # fmt: skip
    assert len(gpd.read_file(tmp_path / "map.geojson")) == len(ids)
    assert main(["import-rasters", str(tmp_path / "nowhere"), "--parcels",
                 str(tmp_path / "s" / "parcels.gpkg"), "--out", str(tmp_path / "x")]) == 2  # fmt: skip
    assert "does not exist" in capsys.readouterr().err


def test_plot_prediction_map_outlines_the_wrong_parcels(imported):
    import matplotlib

    matplotlib.use("Agg")
    from psetae.maps import join_predictions
    from psetae.plots.maps import plot_prediction_map

    root, scene = imported
    csv_path, ids, true, pred = _predictions(root, root / "ds")
    gdf = join_predictions(csv_path, scene.parcels, label_column="code", dataset=root / "ds")
    fig = plot_prediction_map(gdf)
    right = fig.axes[1]
    n_wrong = int((true != pred).sum())
    assert len(right.collections) == 2  # the parcels, then the red outlines of the wrong ones
    assert len(right.collections[1].get_paths()) == n_wrong > 0
    oa = (true == pred).mean()
    assert fig._suptitle.get_text().endswith(f"overall accuracy {oa:.2f}")
    with pytest.raises(KeyError, match="no column 'nope'"):
        plot_prediction_map(gdf, true_column="nope")


def _train_checkpoint(ds_root, out):
    """A one-epoch model on an imported dataset (10 bands, its K classes)."""
    from psetae.train.fit import TrainConfig, fit
    from tests.tiny import TINY_MODEL

    k = int(max(read_labels(ds_root, "label").values())) + 1
    model = {**TINY_MODEL, "mlp1": [10, 8, 8], "mlp4": [16, 8, k]}
    cfg = TrainConfig(epochs=1, batch_size=8, npixel=6, seed=0, device="cpu", progress=False,
                      model=model, nomenclature="label", classes=None)  # fmt: skip
    train = PixelSetDataset(ds_root, "label", npixel=6, seed=0)
    return fit(train, train, cfg, out).best_path


def test_other_code_set_is_refused_and_codes_from_makes_labels_agree(imported, tmp_path):
    from psetae.data.rasters import LabelCodesError, RasterImportError
    from psetae.maps import join_predictions
    from psetae.predict import evaluate, predict

    root, scene = imported
    parcels = gpd.read_file(scene.parcels)
    first = sorted(parcels["code"].unique())[0]
    region_b = parcels[parcels["code"] != first]  # one code fewer: labels shift by one
    region_b.to_file(tmp_path / "b.gpkg", engine="pyogrio")
    kw = {"label_column": "code", "name_column": "name", "cloud_band": "CLOUD"}
    import_rasters(scene.rasters, tmp_path / "b.gpkg", tmp_path / "b", **kw)
    ckpt = _train_checkpoint(root / "ds", tmp_path / "run")
    with pytest.raises(LabelCodesError, match=r"label_codes\.json.*other label codes.*best"):
        evaluate(ckpt, tmp_path / "b")
    with pytest.raises(LabelCodesError):
        predict(tmp_path / "b", ckpt)
    csv_path, *_ = _predictions(tmp_path, root / "ds")
    with pytest.raises(LabelCodesError):
        join_predictions(csv_path, scene.parcels, dataset=tmp_path / "b", checkpoint=ckpt)
    # the same file imported with the training dataset's codes: same class ids, accepted
    import_rasters(scene.rasters, tmp_path / "b.gpkg", tmp_path / "b2", codes_from=root / "ds",
                   **kw)  # fmt: skip
    a, b = read_labels(root / "ds", "label"), read_labels(tmp_path / "b2", "label")
    assert set(b) == set(region_b["id"]) and all(b[i] == a[i] for i in b)
    assert evaluate(ckpt, tmp_path / "b2")["n_skipped"] == 0
    # the checkpoint's codes translate predictions without any dataset
    m = join_predictions(csv_path, scene.parcels, label_column="code", checkpoint=ckpt)
    assert (m["pred_code"] == m["true_code"]).sum() == (m["correct"]).sum() > 0
    # a code the mapping lacks is an error, before anything is written
    extra = parcels.copy()
    extra.loc[0, "code"] = 999
    extra.to_file(tmp_path / "c.gpkg", engine="pyogrio")
    with pytest.raises(RasterImportError, match=r"\[999\] are not in .*label_codes\.json"):
        import_rasters(scene.rasters, tmp_path / "c.gpkg", tmp_path / "c", codes_from=root / "ds",
                       **kw)  # fmt: skip
    assert not (tmp_path / "c").exists()
