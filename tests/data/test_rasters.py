"""Import of rasters and polygons: pixel sets against independent counts, rules, bad input."""

from __future__ import annotations

import csv
import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.features import geometry_mask
from shapely import affinity
from shapely.geometry import Polygon, box

from psetae.data.dataset import PixelSetDataset
from psetae.data.format import load_parcel, read_geomfeat, read_labels, read_sizes
from psetae.data.rasters import RasterImportError, import_rasters, open_series

CRS = "EPSG:32631"
X0, Y0, PX = 500_000.0, 4_800_000.0, 10.0
TR = Affine(PX, 0, X0, 0, -PX, Y0)
H = W = 48
DATES = (20170103, 20170113, 20170202)


def pix(col: float, row: float) -> tuple[float, float]:
    """Map coordinates of a point given in pixel units (col, row)."""
    return X0 + col * PX, Y0 - row * PX


def poly(*pts: tuple[float, float]) -> Polygon:
    return Polygon([pix(c, r) for c, r in pts])


def position_image(t: int) -> np.ndarray:
    """(2, H, W) int32: band 1 = the pixel's flat index, band 2 = the date index."""
    flat = np.arange(H * W, dtype=np.int32).reshape(H, W)
    return np.stack([flat, np.full((H, W), t, dtype=np.int32)])


def write_tif(path, data, transform=TR, crs=CRS, descriptions=None, nodata=None):
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
        count=data.shape[0], dtype=data.dtype, crs=crs, transform=transform, nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(data)
        if descriptions:
            dst.descriptions = tuple(descriptions)
    return path


def write_series(folder, images=None, **kw):
    folder.mkdir(parents=True, exist_ok=True)
    for t, d in enumerate(DATES):
        data = position_image(t) if images is None else images[t]
        write_tif(folder / f"S2_{d}_L2A.tif", data, **kw)
    return folder


def write_parcels(path, geoms, ids=None, labels=None, crs=CRS, **cols):
    ids = list(range(1, len(geoms) + 1)) if ids is None else ids
    labels = [10 * (i % 3) for i in ids] if labels is None else labels
    gdf = gpd.GeoDataFrame({"id": ids, "label": labels, **cols}, geometry=list(geoms), crs=crs)
    gdf.to_file(path, engine="pyogrio")
    return path


def some_parcels() -> list[Polygon]:
    """Non-overlapping rotated quadrilaterals, several straddling the 16-pixel tiles."""
    rng = np.random.default_rng(3)
    out = []
    for r in range(4):
        for c in range(4):
            cx, cy = 6 + 12 * c + rng.uniform(-1, 1), 6 + 12 * r + rng.uniform(-1, 1)
            g = affinity.rotate(box(cx - 4.3, cy - 2.7, cx + 4.1, cy + 3.2), rng.uniform(0, 90))
            out.append(Polygon([pix(x, y) for x, y in g.exterior.coords]))
    return out


def independent_set(geom, all_touched=False) -> np.ndarray:
    inside = geometry_mask([geom], (H, W), TR, invert=True, all_touched=all_touched)
    return np.flatnonzero(inside.ravel())


@pytest.fixture
def series(tmp_path):
    return write_series(tmp_path / "rasters")


@pytest.mark.parametrize("all_touched", [False, True])
def test_pixel_sets_equal_geometry_mask(tmp_path, series, all_touched):
    geoms = some_parcels()
    parcels = write_parcels(tmp_path / "p.gpkg", geoms)
    res = import_rasters(series, parcels, tmp_path / "ds", tile=16, all_touched=all_touched)
    assert res.n_parcels == len(geoms)
    sizes = read_sizes(tmp_path / "ds")
    for pid, g in enumerate(geoms, start=1):
        expected = independent_set(g, all_touched)
        assert sizes[pid] == len(expected) > 0
        x = load_parcel(tmp_path / "ds", pid)  # (T, C, n)
        assert x.shape == (3, 2, len(expected))
        for t in range(3):
            np.testing.assert_array_equal(x[t, 0], expected)  # the very pixels, in raster order
            assert np.all(x[t, 1] == t)


def test_shift_by_one_pixel_shifts_the_set(tmp_path, series):
    g = poly((10.3, 10.2), (20.6, 11.1), (19.2, 17.8), (9.7, 16.4))
    moved = affinity.translate(g, xoff=PX)  # one column to the right
    down = affinity.translate(g, yoff=-PX)  # one row down
    sets = []
    for k, geom in enumerate([g, moved, down]):  # one import each: they overlap
        write_parcels(tmp_path / f"p{k}.gpkg", [geom])
        import_rasters(series, tmp_path / f"p{k}.gpkg", tmp_path / f"ds{k}")
        sets.append(load_parcel(tmp_path / f"ds{k}", 1)[0, 0])
    a, b, c = sets
    np.testing.assert_array_equal(a, independent_set(g))
    assert len(a) > 20
    np.testing.assert_array_equal(b, a + 1)
    np.testing.assert_array_equal(c, a + W)


def test_reprojected_parcels_give_the_same_sets(tmp_path, series):
    geoms = some_parcels()
    write_parcels(tmp_path / "utm.gpkg", geoms)
    gpd.read_file(tmp_path / "utm.gpkg").to_crs("EPSG:4326").to_file(tmp_path / "wgs.geojson")
    import_rasters(series, tmp_path / "utm.gpkg", tmp_path / "a")
    import_rasters(series, tmp_path / "wgs.geojson", tmp_path / "b")
    assert read_sizes(tmp_path / "a") == read_sizes(tmp_path / "b")
    for pid in read_sizes(tmp_path / "a"):
        np.testing.assert_array_equal(
            load_parcel(tmp_path / "a", pid), load_parcel(tmp_path / "b", pid)
        )


def test_geometric_features_by_hand(tmp_path, series):
    rect = poly((2, 2), (5, 2), (5, 4), (2, 4))  # 30 m x 20 m, 3 x 2 pixels
    # legs 40 m, hypotenuse a quarter pixel below the diagonal: centres (i, j) with j > i in a
    # 4 x 4 square, 6 of them, in a 3 x 3 box
    tri = poly((10, 14.25), (14, 14.25), (10, 10.25))
    write_parcels(tmp_path / "p.gpkg", [rect, tri])
    import_rasters(series, tmp_path / "p.gpkg", tmp_path / "ds")
    f = read_geomfeat(tmp_path / "ds")
    np.testing.assert_allclose(f[1], [100.0, 600.0, 100 / 600, 1.0])
    p = 80 + 40 * np.sqrt(2)
    np.testing.assert_allclose(f[2], [p, 800.0, p / 800, 6 / 9])
    assert read_sizes(tmp_path / "ds") == {1: 6, 2: 6}


def _series_with(tmp_path, values, nodata=None, cloud=None):
    """Three dates of a 48x48 int16 raster, ``values[t]`` everywhere except as patched."""
    imgs = []
    for t in range(3):
        img = np.full((2, H, W), values[t], dtype=np.int16)
        if cloud is not None:
            img = np.concatenate([img, cloud[t][None].astype(np.int16)])
        imgs.append(img)
    return imgs


def test_nodata_is_interpolated_in_time(tmp_path):
    imgs = _series_with(tmp_path, [100, 999, 400])
    imgs[1][:, 0:2, :] = -1  # rows 0-1 nodata on date 1
    for t in range(3):
        imgs[t][:, 4, :] = -1  # row 4 nodata on every date
    write_series(tmp_path / "r", imgs, nodata=-1)
    write_parcels(
        tmp_path / "p.gpkg",
        [poly((0, 0), (3, 0), (3, 2), (0, 2)), poly((0, 3), (3, 3), (3, 5), (0, 5)),
         poly((0, 4), (3, 4), (3, 5), (0, 5))],
    )  # fmt: skip
    res = import_rasters(tmp_path / "r", tmp_path / "p.gpkg", tmp_path / "ds")
    x = load_parcel(tmp_path / "ds", 1)
    # dates 3 Jan, 13 Jan, 2 Feb: day 10 of 30 -> 100 + 300 / 3
    np.testing.assert_array_equal(x[:, 0, 0], [100, 200, 400])
    assert load_parcel(tmp_path / "ds", 2).shape[2] == 3  # row 3 only, row 4 dropped
    assert (3, "skipped", "every pixel is nodata or cloudy on every date") in res.report
    assert res.filled_share == pytest.approx(2 * 6 / ((6 + 3) * 3 * 2))


def test_cloud_band_masks_values(tmp_path):
    cloud = np.zeros((3, H, W), dtype=bool)
    cloud[0, :, 0] = True  # column 0 cloudy on the first date: nearest valid value (date 1)
    imgs = _series_with(tmp_path, [100, 200, 400], cloud=cloud)
    imgs[0][:2, :, 0] = 9000
    write_series(tmp_path / "r", imgs, descriptions=["B2", "B3", "CLM"])
    write_parcels(tmp_path / "p.gpkg", [poly((0, 0), (2, 0), (2, 1), (0, 1))])
    import_rasters(tmp_path / "r", tmp_path / "p.gpkg", tmp_path / "ds", cloud_band="CLM")
    x = load_parcel(tmp_path / "ds", 1)
    assert x.shape == (3, 2, 2)  # the cloud band is not a channel
    np.testing.assert_array_equal(x[:, 0, 0], [200, 200, 400])
    np.testing.assert_array_equal(x[:, 1, 1], [100, 200, 400])


def test_date_tables_and_stacked_file_give_the_same_dataset(tmp_path, series):
    write_parcels(tmp_path / "p.gpkg", some_parcels())
    import_rasters(series, tmp_path / "p.gpkg", tmp_path / "ref")
    files = sorted(series.iterdir())
    renamed = []
    for k, f in enumerate(files):  # names without dates: the table gives them
        renamed.append(f.rename(f.with_name(f"img{k}.tif")))
    pairs = list(zip(renamed, DATES, strict=True))
    with open(tmp_path / "dates.csv", "w", newline="") as f:
        csv.writer(f).writerows([["file", "date"], *[[f"rasters/{p.name}", d] for p, d in pairs]])
    (tmp_path / "dates.json").write_text(json.dumps({str(p): d for p, d in pairs}))
    stack = np.concatenate([position_image(t)[::-1] for t in range(3)])  # bands reversed
    names = [f"{d}_{b}" for d in DATES for b in ("DATE", "POS")]
    write_tif(tmp_path / "stack.tif", stack, descriptions=names)
    import_rasters(tmp_path / "dates.csv", tmp_path / "p.gpkg", tmp_path / "csv")
    import_rasters(tmp_path / "dates.json", tmp_path / "p.gpkg", tmp_path / "json")
    import_rasters(tmp_path / "stack.tif", tmp_path / "p.gpkg", tmp_path / "stack",
                   bands=["POS", "DATE"])  # fmt: skip
    for other in ("csv", "json", "stack"):
        for pid in read_sizes(tmp_path / "ref"):
            np.testing.assert_array_equal(
                load_parcel(tmp_path / other, pid), load_parcel(tmp_path / "ref", pid)
            )


def test_band_order_from_descriptions(tmp_path):
    write_series(tmp_path / "r", descriptions=["POS", "DATE"])
    assert open_series(tmp_path / "r").band_names == ("POS", "DATE")
    write_parcels(tmp_path / "p.gpkg", [poly((0, 0), (2, 0), (2, 1), (0, 1))])
    import_rasters(tmp_path / "r", tmp_path / "p.gpkg", tmp_path / "ds", bands=["DATE", "POS"])
    np.testing.assert_array_equal(load_parcel(tmp_path / "ds", 1)[2], [[2, 2], [0, 1]])


def test_labels_mapped_to_contiguous_classes_with_names(tmp_path, series):
    g = some_parcels()[:4]
    write_parcels(tmp_path / "p.gpkg", g, labels=["wheat", "maize", "wheat", "beet"],
                  crop=["Wheat", "Maize", "Wheat", "Beet"])  # fmt: skip
    import_rasters(series, tmp_path / "p.gpkg", tmp_path / "ds", name_column="crop")
    assert read_labels(tmp_path / "ds", "label") == {1: 2, 2: 1, 3: 2, 4: 0}
    meta = tmp_path / "ds" / "META"
    assert json.loads((meta / "label_codes.json").read_text()) == {
        "0": "beet", "1": "maize", "2": "wheat"}  # fmt: skip
    assert json.loads((meta / "label_names.json").read_text())["2"] == "Wheat"
    ds = PixelSetDataset(tmp_path / "ds", nomenclature="label", extra_features=True)
    assert len(ds) == 4 and ds[0]["pixels"].shape[:2] == (3, 2)


# --------------------------------------------------------------------------- bad input


def test_skipped_parcels_are_reported_with_reasons(tmp_path, series):
    good = poly((2, 2), (6, 2), (6, 6), (2, 6))
    outside = poly((60, 60), (70, 60), (70, 70), (60, 70))
    sliver = poly((10.6, 10.6), (10.9, 10.6), (10.9, 10.9), (10.6, 10.9))  # holds no centre
    bowtie = poly((20, 20), (26, 26), (26, 20), (20, 26))  # self-intersecting: repaired
    write_parcels(tmp_path / "p.gpkg", [good, outside, sliver, bowtie, good.buffer(-5)],
                  labels=[1, 2, 3, None, 1], ids=[1, 2, 3, 4, 5])  # fmt: skip
    # parcel 4 has no label: skipped; a bowtie with a label is repaired (below)
    res = import_rasters(series, tmp_path / "p.gpkg", tmp_path / "ds")
    reasons = {r[0]: r[2] for r in res.skipped}
    assert reasons[2] == "outside the rasters"
    assert reasons[3] == "no pixel with its centre inside"
    assert reasons[4].startswith("label missing")
    assert set(read_sizes(tmp_path / "ds")) == {1, 5}
    with open(tmp_path / "ds" / "META" / "import_report.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["id"], r["status"]) for r in rows} >= {("2", "skipped"), ("3", "skipped")}

    write_parcels(tmp_path / "q.gpkg", [good, bowtie])
    res = import_rasters(series, tmp_path / "q.gpkg", tmp_path / "ds2")
    assert any(r[0] == 2 and r[1] == "kept" and "make_valid" in r[2] for r in res.report)
    repaired = shapely.make_valid(bowtie)  # two triangles; the bowtie's own area is 0
    assert read_sizes(tmp_path / "ds2")[2] == len(independent_set(repaired))
    assert read_geomfeat(tmp_path / "ds2")[2][1] == pytest.approx(repaired.area) == 1800.0


def test_partly_outside_and_overlaps_are_noted(tmp_path, series):
    a = poly((44, 2), (52, 2), (52, 6), (44, 6))  # half outside
    b = poly((2, 2), (8, 2), (8, 6), (2, 6))
    c = poly((6, 2), (12, 2), (12, 6), (6, 6))  # overlaps b on columns 6-7
    write_parcels(tmp_path / "p.gpkg", [a, b, c])
    res = import_rasters(series, tmp_path / "p.gpkg", tmp_path / "ds")
    notes = {(r[0], r[2].split(":")[0]) for r in res.report if r[1] == "kept"}
    assert (1, "partly outside the rasters") in notes and (2, "overlaps parcel 3") in notes
    assert read_sizes(tmp_path / "ds") == {1: 16, 2: 16, 3: 24}


def _expect_error(tmp_path, rasters, parcels, match, **kw):
    with pytest.raises(RasterImportError, match=match):
        import_rasters(rasters, parcels, tmp_path / "out", **kw)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]


def test_bad_parcel_files(tmp_path, series):
    g = some_parcels()[:3]
    write_parcels(tmp_path / "dup.gpkg", g, ids=[1, 2, 1])
    _expect_error(tmp_path, series, tmp_path / "dup.gpkg", "ids repeat")
    write_parcels(tmp_path / "nocrs.shp", g, crs=None)  # a Shapefile without its .prj
    _expect_error(tmp_path, series, tmp_path / "nocrs.shp", "has no CRS")
    write_parcels(tmp_path / "p.gpkg", g)
    _expect_error(tmp_path, series, tmp_path / "p.gpkg", "no column 'crop'", label_column="crop")
    (tmp_path / "junk.gpkg").write_bytes(b"not a geopackage")
    _expect_error(tmp_path, series, tmp_path / "junk.gpkg", "cannot be read as a vector file")
    write_parcels(tmp_path / "far.gpkg", [affinity.translate(x, 1e5) for x in g])
    _expect_error(tmp_path, series, tmp_path / "far.gpkg", "no parcel left.*3 outside the rasters")


def test_bad_rasters(tmp_path):
    write_parcels(tmp_path / "p.gpkg", some_parcels()[:3])
    p = tmp_path / "p.gpkg"
    cases = {
        "grid": dict(transform=Affine(PX, 0, X0 + 5, 0, -PX, Y0)),
        "crs": dict(crs="EPSG:32632"),
        "nocrs": dict(crs=None),
    }
    for name, kw in cases.items():
        folder = write_series(tmp_path / name)
        write_tif(folder / f"S2_{DATES[1]}_L2A.tif", position_image(1), **kw)
        match = "has no CRS" if name == "nocrs" else "grid differs"
        _expect_error(tmp_path, folder, p, match)
    folder = write_series(tmp_path / "bands")
    write_tif(folder / f"S2_{DATES[2]}_L2A.tif", position_image(2)[:1])
    _expect_error(tmp_path, folder, p, r"count 1")
    folder = write_series(tmp_path / "junk")
    (folder / "S2_20170301.tif").write_bytes(b"II*\x00garbage")
    _expect_error(tmp_path, folder, p, "cannot be read as a raster")
    folder = write_series(tmp_path / "nodate")
    write_tif(folder / "extra.tif", position_image(0))
    _expect_error(tmp_path, folder, p, "no date matching")
    _expect_error(tmp_path, tmp_path / "missing", p, "does not exist")
    folder = write_series(tmp_path / "cloud")
    _expect_error(tmp_path, folder, p, "no cloud band 'CLM'", cloud_band="CLM")


def test_existing_output_is_kept(tmp_path, series):
    write_parcels(tmp_path / "p.gpkg", some_parcels()[:2])
    (tmp_path / "ds").mkdir()
    with pytest.raises(FileExistsError):
        import_rasters(series, tmp_path / "p.gpkg", tmp_path / "ds")
    import_rasters(series, tmp_path / "p.gpkg", tmp_path / "ds", overwrite=True)
    assert set(read_sizes(tmp_path / "ds")) == {1, 2}
