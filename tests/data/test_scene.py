"""The synthetic raster scene: deterministic, georeferenced, clouds flagged, fields labelled."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.features import geometry_mask

from psetae.data.rasters import import_rasters
from psetae.data.scene import CLOUD_BAND, NODATA, SCENE_CRS, simulate_scene
from psetae.data.simulate import BANDS, CLASS_SPECS


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return simulate_scene(tmp_path_factory.mktemp("scene") / "s", width=64, height=48,
                          n_fields=20, seed=5, dates=(20170110, 20170301, 20170601, 20170801),
                          cloudy_dates=2)  # fmt: skip


def _stack(folder):
    out = []
    for f in sorted(folder.iterdir()):
        with rasterio.open(f) as src:
            out.append(src.read())
    return np.stack(out)  # (T, C + 1, H, W)


def test_files_georeference_and_bands(scene):
    files = sorted(scene.rasters.iterdir())
    assert [f.name for f in files] == [f"S2_{d}.tif" for d in (20170110, 20170301, 20170601,
                                                              20170801)]  # fmt: skip
    with rasterio.open(files[0]) as src:
        assert src.crs.to_string() == SCENE_CRS
        assert (src.width, src.height) == (64, 48)
        assert src.descriptions == (*BANDS, CLOUD_BAND)
        assert src.transform.a == 10.0 and src.transform.e == -10.0
    parcels = gpd.read_file(scene.parcels)
    assert parcels.crs.to_string() == SCENE_CRS
    assert parcels["id"].is_unique and len(parcels) >= 15
    names = {s.id: s.name for s in CLASS_SPECS}
    assert all(names[c] == n for c, n in zip(parcels["code"], parcels["name"], strict=True))
    assert (scene.root / "dates.csv").read_text().splitlines()[
        1
    ] == "rasters/S2_20170110.tif,20170110"


def test_same_seed_same_scene_other_seed_other(scene, tmp_path):
    again = simulate_scene(tmp_path / "a", width=64, height=48, n_fields=20, seed=5,
                           dates=(20170110, 20170301, 20170601, 20170801), cloudy_dates=2)  # fmt: skip
    other = simulate_scene(tmp_path / "b", width=64, height=48, n_fields=20, seed=6,
                           dates=(20170110, 20170301, 20170601, 20170801), cloudy_dates=2)  # fmt: skip
    np.testing.assert_array_equal(_stack(scene.rasters), _stack(again.rasters))
    assert gpd.read_file(scene.parcels).geom_equals(gpd.read_file(again.parcels)).all()
    assert not np.array_equal(_stack(scene.rasters), _stack(other.rasters))
    a, b = gpd.read_file(scene.parcels), gpd.read_file(other.parcels)
    assert len(a) != len(b) or not a.geom_equals(b).all()


def test_clouds_are_flagged_on_the_cloudy_dates(scene):
    x = _stack(scene.rasters)
    cloud = x[:, -1].astype(bool)  # (T, H, W)
    assert (cloud.reshape(4, -1).any(1)).sum() == 2
    # under the flag every pixel is bright in the blue band, elsewhere fields and soil are dark
    assert x[:, 0][cloud].min() >= 4000 and x[:, 0][~cloud].max() < 2500


def test_fields_are_vegetation_and_margins_soil(scene):
    x = _stack(scene.rasters).astype(float)
    parcels = gpd.read_file(scene.parcels)
    with rasterio.open(next(scene.rasters.iterdir())) as src:
        tr = src.transform
    inside = geometry_mask(parcels.geometry, (48, 64), tr, invert=True)
    t = 3  # 1 August: summer crops green, winter cereals harvested
    clear = ~x[t, -1].astype(bool)
    soil = x[t, :10, ~inside & clear]  # (P, C)
    np.testing.assert_allclose(np.median(soil[:, 6]), 2250, rtol=0.1)  # B8 of bare soil
    assert np.std(x[t, 6, inside & clear]) > np.std(soil[:, 6])  # fields differ from each other


def test_existing_folder_refused(scene):
    with pytest.raises(FileExistsError):
        simulate_scene(scene.root)


def test_default_origin_differs_by_seed_and_origin_is_kept(tmp_path):
    kw = {
        "width": 32,
        "height": 24,
        "n_fields": 6,
        "dates": (20170110, 20170301),
        "cloudy_dates": 1,
    }
    bounds = []
    for seed in (0, 1, 16):
        s = simulate_scene(tmp_path / f"s{seed}", seed=seed, **kw)
        with rasterio.open(sorted(s.rasters.iterdir())[0]) as src:
            bounds.append(src.bounds)
        assert gpd.read_file(s.parcels).total_bounds[0] >= src.bounds.left  # parcels follow
    assert bounds[0].left == 600_000.0 and bounds[0].top == 4_800_000.0  # seed 0 as before
    for i in range(3):
        for j in range(i + 1, 3):
            a, b = bounds[i], bounds[j]
            apart = a.right <= b.left or b.right <= a.left or a.top <= b.bottom or b.top <= a.bottom
            assert apart, f"scenes {i} and {j} overlap: {a}, {b}"
    s = simulate_scene(tmp_path / "o", seed=1, origin=(500_000.0, 4_900_000.0), **kw)
    with rasterio.open(sorted(s.rasters.iterdir())[0]) as src:
        assert (src.bounds.left, src.bounds.top) == (500_000.0, 4_900_000.0)


def test_nodata_share_writes_tagged_nodata_and_keeps_the_rest(scene, tmp_path):
    kw = {"width": 64, "height": 48, "n_fields": 20, "seed": 5, "cloudy_dates": 2,
          "dates": (20170110, 20170301, 20170601, 20170801)}  # fmt: skip
    holes = simulate_scene(tmp_path / "h", nodata_share=0.1, **kw)
    with rasterio.open(sorted(holes.rasters.iterdir())[0]) as src:
        assert src.nodata == NODATA
    with rasterio.open(sorted(scene.rasters.iterdir())[0]) as src:
        assert src.nodata is None
    a, b = _stack(scene.rasters), _stack(holes.rasters)
    hole = (b[:, : len(BANDS)] == NODATA).all(axis=1)  # (T, H, W) every band at once
    assert ((b[:, : len(BANDS)] == NODATA) == hole[:, None]).all()
    assert 0.05 < hole.mean() < 0.15 and hole.any(axis=(1, 2)).all()
    np.testing.assert_array_equal(np.where(hole[:, None], 0, b[:, : len(BANDS)]),
                                  np.where(hole[:, None], 0, a[:, : len(BANDS)]))  # fmt: skip
    np.testing.assert_array_equal(a[:, len(BANDS)], b[:, len(BANDS)])  # same clouds


def test_import_interpolates_the_nodata_pixels(tmp_path):
    from psetae.data.format import load_parcel, read_json

    dates = (20170110, 20170301, 20170601, 20170801, 20170915)
    s = simulate_scene(tmp_path / "s", width=48, height=40, n_fields=12, seed=3, dates=dates,
                       cloudy_dates=1, nodata_share=0.2)  # fmt: skip
    import_rasters(s.rasters, s.parcels, tmp_path / "ds", label_column="code",
                   cloud_band=CLOUD_BAND)  # fmt: skip
    raw = _stack(s.rasters).astype(np.float64)  # (T, C + 1, H, W)
    with rasterio.open(sorted(s.rasters.iterdir())[0]) as src:
        transform = src.transform
    valid = (raw[:, : len(BANDS)] != NODATA).all(axis=1) & (raw[:, len(BANDS)] == 0)  # (T, H, W)
    days = np.array([np.datetime64(f"{d // 10000}-{d // 100 % 100:02d}-{d % 100:02d}")
                     for d in dates]).astype(np.int64)  # fmt: skip
    checked = 0
    for _, row in gpd.read_file(s.parcels).iterrows():
        inside = geometry_mask([row.geometry], raw.shape[2:], transform, invert=True)
        pix = raw[:, : len(BANDS), inside]  # (T, C, n) raster order
        ok = valid[:, inside]  # (T, n)
        keep = ok.any(axis=0)
        expected = np.empty_like(pix[:, :, keep])
        for j, p in enumerate(np.flatnonzero(keep)):
            for c in range(len(BANDS)):
                expected[:, c, j] = np.interp(days, days[ok[:, p]], pix[ok[:, p], c, p])
        got = load_parcel(tmp_path / "ds", int(row["id"]))
        np.testing.assert_array_equal(got, np.rint(expected))
        checked += int((~ok[:, keep]).sum())
    assert checked > 100  # many filled values were compared
    share = read_json(tmp_path / "ds" / "META" / "import.json")["filled_share"]
    assert share > 0.2


def test_cli_origin_and_nodata_share(tmp_path):
    from psetae.cli import main

    args = ["simulate-scene", "--out", str(tmp_path / "s"), "--size", "32", "--fields", "6",
            "--origin", "500000", "4900000", "--nodata-share", "0.1"]  # fmt: skip
    assert main(args) == 0
    with rasterio.open(sorted((tmp_path / "s" / "rasters").iterdir())[0]) as src:
        assert (src.bounds.left, src.bounds.top, src.nodata) == (500_000.0, 4_900_000.0, NODATA)
    assert main([*args[:-1], "1.5", "--overwrite"]) == 2
