"""The synthetic raster scene: deterministic, georeferenced, clouds flagged, fields labelled."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.features import geometry_mask

from psetae.data.scene import CLOUD_BAND, SCENE_CRS, simulate_scene
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
