"""A synthetic Sentinel-2 scene on disk: a GeoTIFF time series and the parcel polygons.

The raster mode of the simulator. Fields are the Voronoi cells of random points, shrunk by a
few metres (field margins and tracks between them), in a real projected CRS (UTM 31N by
default). Each field gets a class and pixel spectra from :func:`psetae.data.simulate.simulate_arrays`
(its phenology, spectra and within-field variability); the background is bare soil. Some dates
have round clouds, bright in every band and flagged in a ``CLOUD`` band (1 cloudy, 0 clear).

Each seed gets its own place on the map by default (see :func:`default_origin`), so scenes of
the same size with different seeds are separate regions. ``nodata_share`` writes the nodata
value :data:`NODATA` (declared in the GeoTIFF tags) on random pixels of each date, as a tile
edge or a failed acquisition would, to exercise the importer's nodata rule.

Written files (seeded: same arguments, same pixels and polygons)::

    out/rasters/S2_<YYYYMMDD>.tif   int16 reflectance x 10000, bands B2 ... B12 then CLOUD
    out/dates.csv                   file,date
    out/parcels.gpkg                id, code (label_44class), name, geometry

so that ``import_rasters(out / "rasters", out / "parcels.gpkg", ..., label_column="code",
name_column="name", cloud_band="CLOUD")`` turns it into a pixel-set dataset.
"""

from __future__ import annotations

import csv
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psetae.data.simulate import (
    BANDS,
    CLASS_SPECS,
    DEFAULT_DATES,
    SimulationConfig,
    simulate_arrays,
)
from psetae.errors import OutputExistsError
from psetae.io import replace_dir

__all__ = ["SceneFiles", "simulate_scene", "default_origin", "CLOUD_BAND", "SCENE_CRS", "NODATA"]

PathLike = str | os.PathLike

#: Name of the cloud-mask band written after the spectral bands.
CLOUD_BAND = "CLOUD"
#: Default CRS: WGS 84 / UTM zone 31N, the zone of S2-Agri's tile T31TFM.
SCENE_CRS = "EPSG:32631"
#: Nodata value of the bands when ``nodata_share`` > 0 (outside the reflectance range 0..10000).
NODATA = -9999
#: Upper-left corner of the scene of seed 0 (metres, UTM 31N).
_ORIGIN0 = (600_000.0, 4_800_000.0)
_SLOTS = 16  # scenes per row of the seeds' grid
# Bare soil and cloud reflectance x 10000 in the order of BANDS (a model, not measurements).
_SOIL = np.array([800, 1100, 1600, 1900, 2050, 2150, 2250, 2320, 3200, 2800], dtype=np.float64)
_CLOUD = np.array([5000, 4800, 4700, 4700, 4700, 4700, 4700, 4600, 3300, 2200], dtype=np.float64)


@dataclass(frozen=True)
class SceneFiles:
    """Paths of a written scene."""

    root: Path
    rasters: Path
    dates_csv: Path
    parcels: Path


def _fields(rng: np.random.Generator, n: int, width: float, height: float, margin: float):
    """Voronoi cells of ``n`` random points in [0, width] x [0, height], shrunk by ``margin``."""
    import shapely

    pts = shapely.multipoints(rng.uniform((0, 0), (width, height), (n, 2)))
    extent = shapely.box(0, 0, width, height)
    cells = shapely.get_parts(shapely.voronoi_polygons(pts, extend_to=extent))
    cells = shapely.buffer(shapely.intersection(cells, extent), -margin, join_style="mitre")
    cells = cells[~shapely.is_empty(cells) & (shapely.area(cells) > 0)]
    order = np.lexsort((shapely.bounds(cells)[:, 0], -shapely.bounds(cells)[:, 3]))
    return cells[order]  # top to bottom, then left to right


def default_origin(seed: int, width: int, height: int, pixel_size: float) -> tuple[float, float]:
    """The upper-left corner (x, y) of the scene of ``seed`` when no origin is given.

    The scenes of one size tile a 16 x 16 grid, side by side, from (600 000, 4 800 000)
    eastwards then southwards: seed s sits in column s mod 16 and row (s // 16) mod 16, so
    256 consecutive seeds never overlap (seed 0 keeps the historical origin).
    """
    col, row = seed % _SLOTS, (seed // _SLOTS) % _SLOTS
    return (_ORIGIN0[0] + col * width * pixel_size, _ORIGIN0[1] - row * height * pixel_size)


def simulate_scene(
    out: PathLike,
    *,
    width: int = 256,
    height: int = 256,
    n_fields: int = 200,
    seed: int = 0,
    dates: tuple[int, ...] = DEFAULT_DATES,
    cloudy_dates: int = 3,
    crs: str = SCENE_CRS,
    origin: tuple[float, float] | None = None,
    pixel_size: float = 10.0,
    nodata_share: float = 0.0,
    overwrite: bool = False,
) -> SceneFiles:
    """Write a synthetic scene: one GeoTIFF per date and the parcel polygons (GeoPackage).

    Parameters
    ----------
    out
        The folder to create (written atomically: a temporary sibling, then renamed).
    width, height
        Scene size in pixels.
    n_fields
        Number of random seed points of the fields (about as many fields).
    seed
        Seed of every random draw.
    dates
        Acquisition dates, YYYYMMDD, increasing.
    cloudy_dates
        How many dates get clouds.
    crs, origin, pixel_size
        The projected CRS, the upper-left corner (x, y; default :func:`default_origin` of the
        seed) and the pixel size (m).
    nodata_share
        Share of the pixels of each date whose bands are all :data:`NODATA` (drawn
        independently per date; 0: none, and the files declare no nodata value). The cloud
        band is left as it is.
    overwrite
        Replace ``out`` if it exists.

    Returns
    -------
    SceneFiles

    Raises
    ------
    FileExistsError
        ``out`` exists and ``overwrite`` is False.
    ValueError
        Sizes that are not positive, too many cloudy dates or ``nodata_share`` not in [0, 1).
    """
    import geopandas as gpd
    import rasterio
    import shapely
    from affine import Affine
    from rasterio.features import rasterize

    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: exists already (pass overwrite=True to replace it)")
    if min(width, height, n_fields) < 1 or pixel_size <= 0:
        raise ValueError("width, height, n_fields and pixel_size must be positive")
    if not 0 <= cloudy_dates <= len(dates):
        raise ValueError(f"cloudy_dates must be in [0, {len(dates)}], not {cloudy_dates}")
    if not 0.0 <= nodata_share < 1.0:
        raise ValueError(f"nodata_share must be in [0, 1), not {nodata_share}")
    if origin is None:
        origin = default_origin(seed, width, height, pixel_size)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    # a stream of its own: the scene's other pixels do not change with nodata_share
    holes = np.random.default_rng(np.random.SeedSequence([seed, 11]))
    transform = Affine(pixel_size, 0.0, origin[0], 0.0, -pixel_size, origin[1])
    # fields in pixel units, then placed on the map (y grows downwards in pixel units)
    cells = _fields(rng, n_fields, width, height, margin=0.4)
    geoms = shapely.transform(cells, lambda p: np.c_[origin[0] + p[:, 0] * pixel_size,
                                                     origin[1] - p[:, 1] * pixel_size])  # fmt: skip
    n = len(geoms)
    sim = simulate_arrays(
        SimulationConfig(
            n_parcels=n, seed=seed, dates=tuple(dates), size_median=16.0, min_pixels=6.0,
            max_pixels=48.0, empty_fraction=0.0, cloudy_date_share=0.0, random_cloud_prob=0.0,
        )
    )  # fmt: skip
    names = {s.id: s.name for s in CLASS_SPECS}
    ids = np.sort(rng.choice(10 * n, size=n, replace=False)) + 1
    # one pool of simulated pixels per field; each scene pixel draws one pool pixel for the season
    pools = [sim.pixels[int(i)] for i in sim.ids]  # (T, C, n_k) int16
    counts = np.array([p.shape[2] for p in pools])
    offsets = np.r_[0, np.cumsum(counts)[:-1]]
    pool = np.concatenate(pools, axis=2)  # (T, C, sum n_k)
    owner = rasterize(
        ((g, k + 1) for k, g in enumerate(geoms)), out_shape=(height, width),
        transform=transform, fill=0, dtype="int32",
    ).ravel()  # fmt: skip
    in_field = owner > 0
    in_field[in_field] = counts[owner[in_field] - 1] > 0  # a field without pool pixels: soil
    k_pix = owner[in_field] - 1
    draw = offsets[k_pix] + (rng.uniform(size=len(k_pix)) * counts[k_pix]).astype(np.int64)
    soil = _SOIL[:, None] * rng.normal(1.0, 0.05, (1, height * width))  # (C, H*W)
    cloud_t = set(rng.choice(len(dates), size=cloudy_dates, replace=False).tolist())
    yy, xx = np.mgrid[0:height, 0:width]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / "rasters").mkdir(parents=True)
        profile = {
            "driver": "GTiff", "width": width, "height": height, "count": len(BANDS) + 1,
            "dtype": "int16", "crs": crs, "transform": transform, "tiled": True,
            "blockxsize": 256, "blockysize": 256,
        }  # fmt: skip
        if nodata_share > 0:
            profile["nodata"] = NODATA
        rows = []
        for t, date in enumerate(dates):
            img = soil.copy()
            img[:, in_field] = pool[t][:, draw]
            cloud = np.zeros((height, width), dtype=bool)
            if t in cloud_t:
                for _ in range(int(rng.integers(2, 5))):
                    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
                    r = rng.uniform(0.08, 0.2) * min(width, height)
                    cloud |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
                img[:, cloud.ravel()] = _CLOUD[:, None]
            name = f"S2_{date}.tif"
            with rasterio.open(tmp / "rasters" / name, "w", **profile) as dst:
                data = np.clip(np.rint(img), 0, 10000).astype(np.int16).reshape(-1, height, width)
                if nodata_share > 0:
                    data[:, holes.uniform(size=(height, width)) < nodata_share] = NODATA
                dst.write(data, list(range(1, len(BANDS) + 1)))
                dst.write(cloud.astype(np.int16), len(BANDS) + 1)
                dst.descriptions = (*BANDS, CLOUD_BAND)
            rows.append((f"rasters/{name}", date))
        with open(tmp / "dates.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["file", "date"])
            w.writerows(rows)
        codes = sim.label_44class.astype(np.int64)
        gdf = gpd.GeoDataFrame(
            {"id": ids, "code": codes, "name": [names[int(c)] for c in codes]},
            geometry=geoms,
            crs=crs,
        )
        gdf.to_file(tmp / "parcels.gpkg", layer="parcels", driver="GPKG", engine="pyogrio")
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SceneFiles(out, out / "rasters", out / "dates.csv", out / "parcels.gpkg")
