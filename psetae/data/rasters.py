"""Your own parcels: a Sentinel-2 time series of GeoTIFFs and parcel polygons -> a pixel-set dataset.

The result is a dataset folder in the S2-Agri layout (see :mod:`psetae.data.format`) that
:class:`psetae.data.dataset.PixelSetDataset` reads like any other.

Inputs
------
Rasters: either one multi-band GeoTIFF per date (the date is read from the file name with a
regular expression, or given by a CSV ``file,date`` / JSON ``{file: date}`` table), or one
stacked GeoTIFF whose band descriptions hold a date and a band name (``20170103_B2``). All
dates must share one grid (CRS, transform, size) and the same bands.

Parcels: a GeoPackage, GeoJSON or Shapefile with an integer id column and, for training, a
label column (any codes, numbers or text); an optional name column names the classes.

Rules
-----
* **Border pixels**: a pixel belongs to a parcel when its centre lies inside the polygon
  (rasterio's default); ``all_touched=True`` takes every pixel the polygon touches instead.
  A pixel belongs to at most one parcel: where polygons overlap, the one later in the file
  wins (rasterio's burn order) and the report says which parcels overlap.
* **Nodata and clouds**: a pixel is missing on a date when any of its bands equals the
  raster's nodata value (or is NaN), or when the cloud-mask band (``cloud_band``) is not 0.
  Missing values are filled by linear interpolation in time between the pixel's previous and
  next valid dates (the nearest valid date at the ends of the series). A pixel with no valid
  date is dropped. The share of filled values is stored in ``META/import.json``.
* **Geometric features** (the reference's four): perimeter and area of the polygon (metres
  and square metres, in the raster's CRS, or in the local UTM zone if that CRS is geographic),
  perimeter / area, and the cover ratio: the parcel's pixels over the pixels of their bounding
  box.
* **Skipped parcels** (outside the rasters, no pixel inside, empty geometry, label missing,
  no valid pixel on any date) are listed with the reason in ``META/import_report.csv``, as
  are repaired geometries and overlaps (status ``kept``).

Speed and memory: the scene is read in square tiles. For each tile, every parcel id is burnt
once into an id image (``rasterio.features.rasterize``), each date's window is read once and
the pixels are grouped by id with numpy (argsort). A parcel is written as soon as the last
tile it touches is done, so memory is bounded by a tile and the parcels that straddle it, not
by the scene.

Class ids: labels are stored as 0..K-1 with ``META/<nomenclature>_codes.json`` mapping them
back to the file's codes. Two imports of different parcel files number their codes
independently unless the second reuses the first's mapping (``codes_from``); a checkpoint
stores the mapping of its training data (``label_codes``) and :func:`check_label_codes`
refuses a dataset that maps class ids to other codes.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from psetae.data.format import (
    DatasetFormatError,
    parse_date,
    read_json,
    write_json_atomic,
    write_normalisation,
)
from psetae.errors import OutputExistsError, PsetaeError
from psetae.io import replace_dir

__all__ = [
    "RasterImportError",
    "LabelCodesError",
    "read_label_codes",
    "check_label_codes",
    "DateLayer",
    "RasterSeries",
    "ImportResult",
    "open_series",
    "read_parcels",
    "import_rasters",
    "DATE_PATTERN",
    "REPORT_FILE",
]

PathLike = str | os.PathLike

#: Default regular expression of the date in a file name or band description (YYYYMMDD).
DATE_PATTERN = r"(\d{8})"
#: The report of skipped and repaired parcels, inside the dataset folder.
REPORT_FILE = "META/import_report.csv"
_RASTER_SUFFIXES = (".tif", ".tiff")


class RasterImportError(PsetaeError, ValueError):
    """The rasters or the parcel file cannot be imported; names the file and what is wrong."""

    def __init__(self, path: PathLike, message: str) -> None:
        self.path = Path(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")

    def __reduce__(self):
        return (type(self), (self.path, self.message))


# --------------------------------------------------------------------------- rasters


@dataclass(frozen=True)
class DateLayer:
    """Where one date's bands are: a file and the 1-based band indexes in it."""

    date: int
    path: Path
    bands: tuple[int, ...]
    cloud: int | None = None


@dataclass(frozen=True)
class RasterSeries:
    """A checked time series of rasters on one grid.

    Attributes
    ----------
    layers
        One :class:`DateLayer` per date, dates increasing.
    band_names
        The C channel names, in the order of the channel axis.
    crs, transform, width, height
        The common grid.
    nodata
        The nodata value (None if the files declare none).
    dtype
        The pixel data type (kept in the dataset).
    """

    layers: tuple[DateLayer, ...]
    band_names: tuple[str, ...]
    crs: object
    transform: object
    width: int
    height: int
    nodata: float | None
    dtype: str

    @property
    def dates(self) -> list[int]:
        """The T dates as YYYYMMDD integers."""
        return [layer.date for layer in self.layers]


def _open(path: Path):
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        return rasterio.open(path)
    except (RasterioIOError, OSError) as e:
        raise RasterImportError(path, f"cannot be read as a raster ({e})") from None


def _date_from(text: str, pattern: str, where: Path) -> int:
    m = re.search(pattern, text)
    if m is None:
        raise RasterImportError(where, f"no date matching {pattern!r} in {text!r}")
    value = m.group(1) if m.groups() else m.group(0)
    try:
        parse_date(value, where)
    except PsetaeError:
        raise RasterImportError(
            where, f"{value!r} (from {text!r}) is not a YYYYMMDD date"
        ) from None
    return int(value)


def _read_table(path: Path) -> list[tuple[Path, int]]:
    """``(file, date)`` rows of a CSV (columns ``file,date``) or JSON ``{file: date}`` table."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RasterImportError(path, f"cannot be read ({e})") from None
    if path.suffix.lower() == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise RasterImportError(path, f"not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise RasterImportError(path, 'expected a JSON object {"file": YYYYMMDD, ...}')
        rows = list(obj.items())
    else:
        reader = csv.DictReader(text.splitlines())
        if reader.fieldnames is None or not {"file", "date"} <= set(reader.fieldnames):
            raise RasterImportError(path, "expected a CSV with columns 'file' and 'date'")
        rows = [(r["file"], r["date"]) for r in reader]
    out = []
    for name, date in rows:
        parse_date(str(date).strip(), path)
        p = Path(name)
        out.append((p if p.is_absolute() else path.parent / p, int(str(date).strip())))
    if not out:
        raise RasterImportError(path, "lists no raster")
    return out


def _band_names(src, names: Sequence[str] | None, path: Path) -> list[str]:
    """The names of a file's bands: its descriptions, else ``names``, else ``1..n``."""
    desc = list(src.descriptions)
    if all(desc):
        return [str(d) for d in desc]
    if names is not None:
        if len(names) != src.count:
            raise RasterImportError(
                path,
                f"has {src.count} bands without descriptions but {len(names)} band names "
                "were given: name every band of the file, in order",
            )
        return list(names)
    return [str(k + 1) for k in range(src.count)]


def _select(
    available: list[str], bands: Sequence[str] | None, cloud_band: str | None, path: Path
) -> tuple[tuple[int, ...], int | None, tuple[str, ...]]:
    if len(set(available)) != len(available):
        raise RasterImportError(path, f"band names repeat: {available}")
    cloud = None
    if cloud_band is not None:
        if cloud_band not in available:
            raise RasterImportError(path, f"no cloud band {cloud_band!r}; bands are {available}")
        cloud = available.index(cloud_band) + 1
    wanted = list(bands) if bands is not None else [b for b in available if b != cloud_band]
    missing = [b for b in wanted if b not in available]
    if missing:
        raise RasterImportError(path, f"no band {missing}; bands are {available}")
    return tuple(available.index(b) + 1 for b in wanted), cloud, tuple(wanted)


def _stacked_layers(
    src, path: Path, bands: Sequence[str] | None, cloud_band: str | None, pattern: str
) -> tuple[list[DateLayer], tuple[str, ...]]:
    """Layers of one file whose band descriptions are ``<date>_<band>`` (or ``<band>_<date>``)."""
    if not all(src.descriptions):
        raise RasterImportError(
            path, "one stacked file needs band descriptions holding a date and a band name"
        )
    per_date: dict[int, list[tuple[str, int]]] = {}
    for k, d in enumerate(src.descriptions):
        date = _date_from(d, pattern, path)
        name = re.sub(pattern, "", d, count=1).strip("_- .:")
        per_date.setdefault(date, []).append((name, k + 1))
    layers, names = [], None
    for date in sorted(per_date):
        available = [n for n, _ in per_date[date]]
        index = [i for _, i in per_date[date]]
        sel, cloud, chosen = _select(available, bands, cloud_band, path)
        if names is not None and chosen != names:
            raise RasterImportError(path, f"date {date} has bands {chosen}, others {names}")
        names = chosen
        layers.append(
            DateLayer(date, path, tuple(index[s - 1] for s in sel), cloud and index[cloud - 1])
        )
    return layers, names


def open_series(
    source: PathLike | Sequence[PathLike],
    *,
    bands: Sequence[str] | None = None,
    cloud_band: str | None = None,
    date_pattern: str = DATE_PATTERN,
) -> RasterSeries:
    """Find, open and check a raster time series (reads headers only).

    Parameters
    ----------
    source
        A folder of GeoTIFFs (one per date, the date in the file name), a list of GeoTIFFs,
        a ``.csv`` / ``.json`` table of files and dates, or one stacked GeoTIFF whose band
        descriptions hold the dates.
    bands
        The channels to keep, in order, by name. Names are the band descriptions; for files
        without descriptions, ``bands`` names every band of the file in order. Default: every
        band except the cloud band, in file order.
    cloud_band
        The name of a cloud-mask band (not 0 = cloudy), or None.
    date_pattern
        Regular expression of the date (its first group if it has one), YYYYMMDD.

    Returns
    -------
    RasterSeries

    Raises
    ------
    RasterImportError
        No raster, an unreadable file, no date or a repeated date, a missing CRS, or dates
        whose grid, CRS, band count, band names or data type differ.
    """
    items: list[tuple[Path, int | None]]
    if isinstance(source, (str, os.PathLike)):
        src_path = Path(source)
        if src_path.is_dir():
            files = sorted(p for p in src_path.iterdir() if p.suffix.lower() in _RASTER_SUFFIXES)
            if not files:
                raise RasterImportError(src_path, "holds no .tif/.tiff raster")
            items = [(p, _date_from(p.name, date_pattern, p)) for p in files]
        elif src_path.suffix.lower() in (".csv", ".json"):
            items = list(_read_table(src_path))
        elif not src_path.exists():
            raise RasterImportError(src_path, "does not exist")
        else:
            items = [(src_path, None)]  # one stacked file
    else:
        items = [(Path(p), _date_from(Path(p).name, date_pattern, Path(p))) for p in source]
        if not items:
            raise ValueError("no raster given")

    layers: list[DateLayer] = []
    names: tuple[str, ...] | None = None
    grid = None
    for path, date in items:
        with _open(path) as src:
            if src.crs is None:
                raise RasterImportError(path, "has no CRS (georeference the raster first)")
            if src.transform.b != 0 or src.transform.d != 0:
                raise RasterImportError(path, "has a rotated grid; warp it north-up first")
            this = (src.crs, src.transform, src.width, src.height, src.dtypes[0], src.nodata)
            if grid is None:
                grid, first = this, path
            elif this[:4] != grid[:4]:
                raise RasterImportError(
                    path,
                    f"grid differs from {first.name}: CRS {this[0]} vs {grid[0]}, "
                    f"transform {tuple(this[1])[:6]} vs {tuple(grid[1])[:6]}, "
                    f"size {this[2]}x{this[3]} vs {grid[2]}x{grid[3]}",
                )
            elif this[4:] != grid[4:]:
                raise RasterImportError(
                    path, f"data type / nodata {this[4:]} differ from {first.name}'s {grid[4:]}"
                )
            if len(set(src.dtypes)) != 1:
                raise RasterImportError(path, f"bands have different data types {src.dtypes}")
            if date is None:
                new, chosen = _stacked_layers(src, path, bands, cloud_band, date_pattern)
            else:
                available = _band_names(src, bands, path)
                sel, cloud, chosen = _select(available, bands, cloud_band, path)
                new = [DateLayer(date, path, sel, cloud)]
            if names is not None and chosen != names:
                raise RasterImportError(
                    path,
                    f"has bands {list(chosen)} (count {len(chosen)}), {first.name} has "
                    f"{list(names)} (count {len(names)})",
                )
            names = chosen
            layers.extend(new)
    layers.sort(key=lambda la: la.date)
    dates = [la.date for la in layers]
    repeated = sorted({d for d in dates if dates.count(d) > 1})
    if repeated:
        raise RasterImportError(items[0][0], f"dates repeat: {repeated}")
    crs, transform, width, height, dtype, nodata = grid
    return RasterSeries(tuple(layers), names, crs, transform, width, height, nodata, dtype)


# --------------------------------------------------------------------------- parcels


@dataclass
class _Report:
    rows: list[tuple[int | str, str, str]] = field(default_factory=list)

    def add(self, pid: object, status: str, reason: str) -> None:
        self.rows.append((pid, status, reason))


def read_parcels(
    path: PathLike,
    id_column: str = "id",
    label_column: str | None = "label",
    name_column: str | None = None,
    layer: str | None = None,
):
    """Read and check a parcel file (GeoPackage, GeoJSON, Shapefile, anything pyogrio reads).

    Returns
    -------
    geopandas.GeoDataFrame
        The parcels, ids as int64 in ``id_column``.

    Raises
    ------
    RasterImportError
        Unreadable file, no CRS, a missing column, ids that are not integers or repeat.
    """
    import geopandas as gpd

    path = Path(path)
    if not path.exists():
        raise RasterImportError(path, "does not exist")
    try:
        gdf = gpd.read_file(path, layer=layer, engine="pyogrio")
    except Exception as e:  # pyogrio raises its own DataSourceError, DataLayerError, ...
        raise RasterImportError(path, f"cannot be read as a vector file ({e})") from None
    if gdf.crs is None:
        raise RasterImportError(path, "has no CRS (set it, e.g. with ogr2ogr -a_srs)")
    for col in (id_column, label_column, name_column):
        if col is not None and col not in gdf.columns:
            cols = [c for c in gdf.columns if c != gdf.geometry.name]
            raise RasterImportError(path, f"has no column {col!r}; columns are {cols}")
    ids = gdf[id_column]
    if ids.isna().any():
        raise RasterImportError(path, f"{int(ids.isna().sum())} parcels have no {id_column!r}")
    try:
        as_int = ids.astype("int64")
        integral = bool((as_int == ids.astype("float64")).all())
    except (TypeError, ValueError):
        integral = False
    if not integral:
        raise RasterImportError(path, f"column {id_column!r} holds ids that are not integers")
    dup = as_int[as_int.duplicated()].unique()
    if len(dup):
        raise RasterImportError(
            path, f"{len(dup)} ids repeat in {id_column!r}: {sorted(int(d) for d in dup)[:10]}"
        )
    gdf[id_column] = as_int
    return gdf


def _class_mapping(
    gdf, label_column: str, name_column: str | None, path: Path
) -> tuple[list[object], list[str] | None]:
    """Sorted distinct label codes (ints if they all are) and their names."""
    values = gdf[label_column].dropna()
    try:
        ints = values.astype("int64")
        codes: list[object] = sorted({int(v) for v in ints}) if (ints == values).all() else []
    except (TypeError, ValueError):
        codes = []
    if not codes:
        codes = sorted({str(v) for v in values})
    if name_column is None:
        return codes, None
    names = {}
    for code, name in zip(values, gdf.loc[values.index, name_column], strict=True):
        key = int(code) if isinstance(codes[0], int) else str(code)
        if key in names and names[key] != str(name):
            raise RasterImportError(path, f"label {key!r} has two names: {names[key]!r}, {name!r}")
        names[key] = str(name)
    return codes, [names[c] for c in codes]


# --------------------------------------------------------------------------- import


@dataclass
class ImportResult:
    """What :func:`import_rasters` did.

    Attributes
    ----------
    root
        The dataset folder.
    n_parcels
        Parcels written.
    report
        ``(id, status, reason)`` rows: every skipped parcel and every note (repaired
        geometry, overlap, partly outside).
    filled_share
        Share of the written pixel values that were filled (nodata or cloud).
    """

    root: Path
    n_parcels: int
    report: list[tuple[object, str, str]]
    filled_share: float

    @property
    def skipped(self) -> list[tuple[object, str, str]]:
        """The report's rows of skipped parcels."""
        return [r for r in self.report if r[1] == "skipped"]


def _fill_missing(cube: np.ndarray, valid: np.ndarray, days: np.ndarray) -> None:
    """Fill, in place, the missing values of pixels (T, C, P) where ``valid`` (T, P) is False.

    Linear interpolation in time between the previous and next valid dates of the pixel; before
    the first and after the last valid date the nearest valid value is repeated. Each pixel
    needs at least one valid date. Only the missing entries are computed.
    """
    n_t = len(days)
    t = np.arange(n_t)[:, None]  # (T, 1)
    prev = np.maximum.accumulate(np.where(valid, t, -1), axis=0)  # (T, P) last valid date <= t
    nxt = np.minimum.accumulate(np.where(valid, t, n_t)[::-1], axis=0)[::-1]  # first valid >= t
    tt, pp = np.nonzero(~valid)  # (M,) the missing entries
    p0, p1 = prev[tt, pp], nxt[tt, pp]
    p0 = np.where(p0 < 0, p1, p0)
    p1 = np.where(p1 >= n_t, p0, p1)
    d0, d1 = days[p0], days[p1]
    w = np.divide(days[tt] - d0, d1 - d0, out=np.zeros(len(tt)), where=d1 > d0)[:, None]
    a = cube[p0, :, pp].astype(np.float64)  # (M, C)
    b = cube[p1, :, pp].astype(np.float64)
    filled = a + (b - a) * w
    if np.issubdtype(cube.dtype, np.integer):
        filled = np.rint(filled)
    cube[tt, :, pp] = filled.astype(cube.dtype)


class _Moments:
    """Per-channel sums of the written pixels, for the normalisation (no second read)."""

    def __init__(self, n_c: int) -> None:
        self.s1, self.s2, self.n = np.zeros(n_c), np.zeros(n_c), 0

    def add(self, cube: np.ndarray, keep: np.ndarray) -> None:
        """Add the pixels ``keep`` (P,) of ``cube`` (T, C, P), one date at a time (small copies)."""
        for t in range(cube.shape[0]):
            x = cube[t][:, keep].astype(np.float64)  # (C, n)
            self.s1 += x.sum(axis=1)
            self.s2 += np.square(x).sum(axis=1)
        self.n += cube.shape[0] * int(keep.sum())

    def mean_std(self, where: Path) -> tuple[np.ndarray, np.ndarray]:
        mean = self.s1 / self.n
        std = np.sqrt(np.maximum(self.s2 / self.n - mean**2, 0.0))
        if np.any(std <= 0):
            raise RasterImportError(where, f"a band is constant over every parcel (std {std})")
        return mean, std


def import_rasters(
    rasters: PathLike | Sequence[PathLike],
    parcels: PathLike,
    out: PathLike,
    *,
    id_column: str = "id",
    label_column: str | None = "label",
    name_column: str | None = None,
    layer: str | None = None,
    bands: Sequence[str] | None = None,
    cloud_band: str | None = None,
    date_pattern: str = DATE_PATTERN,
    all_touched: bool = False,
    nomenclature: str = "label",
    codes_from: PathLike | None = None,
    tile: int = 256,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Import a raster time series and parcel polygons as a pixel-set dataset folder.

    See the module docstring for the rules (border pixels, nodata and clouds, features).

    Parameters
    ----------
    rasters
        See ``source`` of :func:`open_series`.
    parcels
        The parcel file.
    out
        The dataset folder to write (atomically: a temporary sibling, then renamed).
    id_column, label_column, name_column, layer
        Columns of the parcel file (``label_column`` None: no labels, for prediction only)
        and its layer.
    bands, cloud_band, date_pattern
        See :func:`open_series`.
    all_touched
        False: pixels whose centre is inside; True: every pixel the polygon touches.
    nomenclature
        Name of the labels in ``META/labels.json``. Labels are stored as 0..K-1; the codes
        are in ``META/<nomenclature>_codes.json`` and names, if any, in
        ``META/<nomenclature>_names.json``.
    codes_from
        A dataset folder written by this function (e.g. the training region): reuse its
        ``META/<nomenclature>_codes.json`` (and names) so that class k means the same code in
        both folders, whatever codes this parcel file has. A code that is not in that mapping
        is an error listing the codes (drop those parcels from the file first, or import
        without ``codes_from``). Without it, labels are 0..K-1 in the sorted order of the
        codes present in this file.
    tile
        Side of the square windows read at once (pixels); memory grows with its square.
    overwrite
        Replace ``out`` if it exists.
    progress
        Called as ``progress(tiles_done, tiles_total)``.

    Returns
    -------
    ImportResult

    Raises
    ------
    RasterImportError
        Bad rasters or parcels (see :func:`open_series`, :func:`read_parcels`), or no parcel
        left to write. Nothing is written then.
    FileExistsError
        ``out`` exists and ``overwrite`` is False.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: exists already (pass overwrite=True to replace it)")
    if int(tile) < 16:
        raise ValueError(f"tile must be at least 16 pixels, not {tile}")
    series = open_series(rasters, bands=bands, cloud_band=cloud_band, date_pattern=date_pattern)
    parcels = Path(parcels)
    mapping = None if codes_from is None else _fixed_mapping(codes_from, nomenclature)
    gdf = read_parcels(parcels, id_column, label_column, name_column, layer)
    report = _Report()
    geoms, ids, labels, codes, names = _prepare_parcels(
        gdf, parcels, series, id_column, label_column, name_column, report, mapping
    )
    if not len(ids):
        raise RasterImportError(parcels, f"no parcel left to import: {_reasons(report.rows)}")
    feats = _polygon_features(geoms, ids, series.crs)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / "DATA").mkdir(parents=True)
        (tmp / "META").mkdir()
        stats = _extract(series, geoms, ids, tmp / "DATA", all_touched, int(tile), progress)
        sizes, cover, filled, total, moments = stats
        kept = []
        for k, pid in enumerate(ids):
            if sizes[k] > 0:
                kept.append(k)
            elif cover[k] > 0:  # pixels inside, none valid on any date
                report.add(int(pid), "skipped", "every pixel is nodata or cloudy on every date")
            else:
                rule = "touched" if all_touched else "with its centre inside"
                report.add(int(pid), "skipped", f"no pixel {rule}")
        if not kept:
            raise RasterImportError(parcels, f"no parcel has a pixel: {_reasons(report.rows)}")
        for k in set(range(len(ids))) - set(kept):
            (tmp / "DATA" / f"{int(ids[k])}.npy").unlink(missing_ok=True)
        meta = tmp / "META"
        write_json_atomic(meta / "dates.json", {str(t): d for t, d in enumerate(series.dates)})
        write_json_atomic(meta / "sizes.json", {str(int(ids[k])): int(sizes[k]) for k in kept})
        write_json_atomic(
            meta / "geomfeat.json",
            {str(int(ids[k])): [*feats[int(ids[k])], float(cover[k])] for k in kept},
        )
        lab = {} if labels is None else {str(int(ids[k])): int(labels[k]) for k in kept}
        write_json_atomic(meta / "labels.json", {nomenclature: lab})
        if codes is not None:
            write_json_atomic(meta / f"{nomenclature}_codes.json", codes)
        if names is not None:
            write_json_atomic(meta / f"{nomenclature}_names.json", names)
        share = filled / total if total else 0.0
        write_json_atomic(meta / "import.json", _import_meta(series, parcels, all_touched, share))
        _write_report(tmp / REPORT_FILE, report.rows)
        write_normalisation(tmp, *moments.mean_std(parcels), per="channel")
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ImportResult(out, len(kept), report.rows, share)


def _reasons(rows: list[tuple[object, str, str]]) -> str:
    """``"3 outside the rasters, 1 label missing ..."``: the reasons for skipping, counted."""
    counts: dict[str, int] = {}
    for _, status, reason in rows:
        if status == "skipped":
            key = reason.split(" (")[0]
            counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {r}" for r, n in counts.items()) or "none skipped"


def _import_meta(series: RasterSeries, parcels: Path, all_touched: bool, share: float) -> dict:
    return {
        "source_rasters": sorted({str(la.path) for la in series.layers}),
        "source_parcels": str(parcels),
        "crs": str(series.crs),
        "bands": list(series.band_names),
        "dtype": series.dtype,
        "border_rule": "all_touched" if all_touched else "centre",
        "missing_rule": "linear interpolation in time; pixels never valid are dropped",
        "filled_share": share,
    }


def _write_report(path: Path, rows: list[tuple[object, str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "status", "reason"])
        w.writerows(rows)


def _prepare_parcels(gdf, path, series, id_column, label_column, name_column, report, mapping):
    """Checked geometries in the raster CRS, ids, labels and the ``{class: code}`` and
    ``{class: name}`` mappings (``mapping``: those of ``codes_from``); records what it skips."""
    import shapely

    gdf = gdf.to_crs(series.crs)
    geoms = gdf.geometry.values
    ids = gdf[id_column].to_numpy(np.int64)
    keep = np.ones(len(gdf), dtype=bool)
    empty = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    for pid in ids[empty]:
        report.add(int(pid), "skipped", "empty geometry")
    keep &= ~empty
    geoms = np.asarray(geoms, dtype=object)
    invalid = keep & ~shapely.is_valid(geoms)
    for k in np.flatnonzero(invalid):
        why = shapely.is_valid_reason(geoms[k])
        fixed = _polygonal(shapely.make_valid(geoms[k]))
        if fixed is None:
            report.add(int(ids[k]), "skipped", f"invalid geometry ({why}), no area once repaired")
            keep[k] = False
        else:
            report.add(int(ids[k]), "kept", f"invalid geometry ({why}) repaired with make_valid")
            geoms[k] = fixed
    poly = keep & np.isin(shapely.get_type_id(geoms), [3, 6])  # Polygon, MultiPolygon
    for k in np.flatnonzero(keep & ~poly):
        report.add(int(ids[k]), "skipped", f"not a polygon ({shapely.get_type_id(geoms[k])})")
    keep &= poly
    left, top = series.transform.c, series.transform.f
    right = left + series.transform.a * series.width
    bottom = top + series.transform.e * series.height
    extent = shapely.box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    inter = keep.copy()
    inter[keep] = shapely.intersects(geoms[keep], extent)
    for pid in ids[keep & ~inter]:
        report.add(int(pid), "skipped", "outside the rasters")
    partial = inter.copy()
    partial[inter] = ~shapely.within(geoms[inter], extent)
    for pid in ids[partial]:
        report.add(int(pid), "kept", "partly outside the rasters: only the pixels inside")
    keep &= inter
    labels = codes = names = None
    if label_column is not None and keep.any():
        missing = keep & gdf[label_column].isna().to_numpy()
        for pid in ids[missing]:
            report.add(int(pid), "skipped", f"label missing (column {label_column!r})")
        keep &= ~missing
        present, own_names = _class_mapping(gdf.loc[keep], label_column, name_column, path)
        if mapping is None:
            codes = dict(enumerate(present))
            names = None if own_names is None else dict(enumerate(own_names))
        else:
            codes, names, source = mapping
            unknown = [c for c in present if str(c) not in {str(v) for v in codes.values()}]
            if unknown:
                raise RasterImportError(
                    path, f"label codes {unknown} are not in {source} (codes_from): drop "
                    "those parcels from the file or import without codes_from"
                )  # fmt: skip
            if names is None and own_names is not None:
                by_code = dict(zip(map(str, present), own_names, strict=True))
                names = {k: by_code[str(c)] for k, c in codes.items() if str(c) in by_code}
        index = {str(c): k for k, c in codes.items()}
        as_key = int if isinstance(present[0], int) else str
        labels = np.array([index[str(as_key(v))] for v in gdf.loc[keep, label_column]], np.int64)
    elif mapping is not None:  # no labels: the mapping still translates predictions back
        codes, names = mapping[0], mapping[1]
    geoms, ids = geoms[keep], ids[keep]
    _report_overlaps(geoms, ids, report)
    return geoms, ids, labels, codes, names


def _fixed_mapping(root: PathLike, nomenclature: str):
    """``({class: code}, {class: name} or None, codes file)`` of the dataset ``codes_from``."""
    path = Path(root) / "META" / f"{nomenclature}_codes.json"
    codes = read_label_codes(root, nomenclature)
    if codes is None:
        raise RasterImportError(path, "codes_from: no such file (not an imported dataset?)")
    names_path = Path(root) / "META" / f"{nomenclature}_names.json"
    names = None
    if names_path.is_file():
        obj = read_json(names_path)
        if not isinstance(obj, dict):
            raise DatasetFormatError(names_path, "expected {class: name}")
        names = {int(k): str(v) for k, v in obj.items()}
    return {int(k): v for k, v in codes.items()}, names, path


class LabelCodesError(PsetaeError, ValueError):
    """A dataset's class ids stand for other label codes than a checkpoint's."""


def read_label_codes(root: PathLike, nomenclature: str) -> dict[str, object] | None:
    """The ``{class id: code}`` mapping of an imported dataset (``META/<nomenclature>_codes.json``),
    keys as strings; None when the folder has none (not imported, or imported without labels).

    Raises
    ------
    psetae.data.format.DatasetFormatError
        The file is not a ``{class id: code}`` object.
    """
    path = Path(root) / "META" / f"{nomenclature}_codes.json"
    if not path.is_file():
        return None
    obj = read_json(path)
    if not isinstance(obj, dict) or not all(str(k).lstrip("-").isdigit() for k in obj):
        raise DatasetFormatError(path, "expected {class id: code}")
    return {str(int(k)): v for k, v in obj.items()}


def check_label_codes(root: PathLike, meta: dict, checkpoint: PathLike) -> None:
    """Refuse a dataset whose class ids mean other codes than in the checkpoint's training data.

    ``meta`` is the checkpoint's content (``label_codes``, ``nomenclature``). Nothing is
    checked when either side has no mapping (a dataset imported without labels, or a
    checkpoint of data that was not imported).

    Raises
    ------
    LabelCodesError
        Some class id has another code in ``root`` than in the checkpoint; names both files.
    """
    stored = meta.get("label_codes")
    own = read_label_codes(root, meta["nomenclature"])
    if stored is None or own is None:
        return
    differ = [k for k in stored if k in own and str(stored[k]) != str(own[k])]
    if differ:
        path = Path(root) / "META" / f"{meta['nomenclature']}_codes.json"
        eg = ", ".join(
            f"class {k} is code {own[k]!r} here, {stored[k]!r} there" for k in differ[:3]
        )
        raise LabelCodesError(
            f"{path}: its class ids stand for other label codes than in the training data of "
            f"{checkpoint} ({eg}); re-import this folder with --codes-from <training dataset>"
        )


def _polygonal(geom):
    """The polygonal part of a repaired geometry (None if it has no area)."""
    import shapely

    parts = [g for g in shapely.get_parts(geom) if shapely.get_type_id(g) in (3, 6)]
    if not parts:
        return None
    merged = shapely.union_all(parts)
    return None if merged.is_empty or merged.area == 0 else merged


def _report_overlaps(geoms: np.ndarray, ids: np.ndarray, report: _Report) -> None:
    import shapely

    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms, predicate="overlaps")
    for i, j in zip(a, b, strict=True):
        if i < j:
            report.add(
                int(ids[i]), "kept", f"overlaps parcel {int(ids[j])}: shared pixels go to it"
            )


def _polygon_features(geoms: np.ndarray, ids: np.ndarray, crs) -> dict[int, tuple]:
    """Perimeter (m), area (m^2) and perimeter / area of each (repaired) polygon."""
    import geopandas as gpd

    metric = gpd.GeoSeries(geoms, crs=crs)
    if not metric.crs.is_projected:
        metric = metric.to_crs(metric.estimate_utm_crs())
    perim = metric.length.to_numpy()
    area = metric.area.to_numpy()
    ratio = np.divide(perim, area, out=np.zeros_like(perim), where=area > 0)
    return {
        int(i): (float(p), float(a), float(r))
        for i, p, a, r in zip(ids, perim, area, ratio, strict=True)
    }


def _extract(series, geoms, ids, data_dir, all_touched, tile, progress):
    """Write ``data_dir/<id>.npy`` for every parcel; returns sizes, cover ratios and fill counts."""
    import rasterio
    import shapely
    from rasterio.features import rasterize
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    n = len(ids)
    tr = series.transform
    # pixel bounding box of each parcel -> the last tile it touches (tiles go row-major)
    b = shapely.bounds(geoms)  # (N, 4) xmin, ymin, xmax, ymax
    cols = np.floor((b[:, [0, 2]].T - tr.c) / tr.a).astype(np.int64)  # (2, N)
    rows = np.floor((b[:, [3, 1]].T - tr.f) / tr.e).astype(np.int64)
    r_hi = np.clip(rows.max(0) + 1, 0, series.height - 1)
    c_hi = np.clip(cols.max(0) + 1, 0, series.width - 1)
    n_tc = -(-series.width // tile)
    last_tile = (r_hi // tile) * n_tc + c_hi // tile  # one pixel of margin for all_touched
    due: dict[int, list[int]] = {}
    for k, t in enumerate(last_tile.tolist()):
        due.setdefault(t, []).append(k)

    days = np.array([parse_date(d).toordinal() for d in series.dates], dtype=np.float64)
    n_t, n_c = len(series.layers), len(series.band_names)
    nodata = series.nodata
    tree = shapely.STRtree(geoms)
    pending: dict[int, list] = {}
    sizes = np.zeros(n, dtype=np.int64)
    bbox = np.full((n, 4), -1, dtype=np.int64)  # rmin, rmax, cmin, cmax of inside pixels
    inside = np.zeros(n, dtype=np.int64)
    filled = total = 0
    moments = _Moments(n_c)
    n_tr = -(-series.height // tile)
    with contextlib.ExitStack() as stack:
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=32))  # MB: blocks are read once
        paths = {la.path for la in series.layers}
        handles = {p: stack.enter_context(rasterio.open(p)) for p in paths}
        for tr_i in range(n_tr):
            for tc_i in range(n_tc):
                r0, c0 = tr_i * tile, tc_i * tile
                h, w = min(tile, series.height - r0), min(tile, series.width - c0)
                win = Window(c0, r0, w, h)
                wt = window_transform(win, tr)
                x0, y0 = wt.c, wt.f
                x1, y1 = x0 + wt.a * w, y0 + wt.e * h
                box = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
                hits = tree.query(box, predicate="intersects")
                if len(hits):
                    idimg = rasterize(
                        ((geoms[k], int(k) + 1) for k in np.sort(hits)),
                        out_shape=(h, w),
                        transform=wt,
                        fill=0,
                        all_touched=all_touched,
                        dtype="int32",
                    ).ravel()
                    sel = np.flatnonzero(idimg)
                else:
                    sel = np.empty(0, dtype=np.int64)
                if len(sel):
                    order = sel[np.argsort(idimg[sel], kind="stable")]  # grouped by parcel
                    owner = idimg[order] - 1
                    cube = np.empty((n_t, n_c, len(order)), dtype=series.dtype)  # (T, C, P)
                    valid = np.ones((n_t, len(order)), dtype=bool)  # (T, P)
                    for t, la in enumerate(series.layers):
                        src = handles[la.path]
                        block = src.read(la.bands, window=win).reshape(n_c, -1)[:, order]
                        cube[t] = block
                        if nodata is not None and not math.isnan(nodata):
                            valid[t] &= ~np.any(block == nodata, axis=0)
                        if np.issubdtype(block.dtype, np.floating):
                            valid[t] &= ~np.any(np.isnan(block), axis=0)
                        if la.cloud is not None:
                            cl = src.read(la.cloud, window=win).ravel()[order]
                            valid[t] &= cl == 0
                    rr = order // w + r0
                    cc = order % w + c0
                    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
                    ends = np.r_[starts[1:], len(order)]
                    ks = owner[starts]
                    np.add.at(inside, ks, ends - starts)
                    for k, a, e in zip(ks.tolist(), starts.tolist(), ends.tolist(), strict=True):
                        _grow_bbox(bbox, k, rr[a:e], cc[a:e])
                    ok = valid.any(axis=0)  # pixels valid on some date
                    bad = ok & ~valid.all(axis=0)
                    if bad.any():
                        sub = cube[:, :, bad]
                        _fill_missing(sub, valid[:, bad], days)
                        cube[:, :, bad] = sub
                        filled += int((~valid[:, bad]).sum()) * n_c
                    total += int(ok.sum()) * n_t * n_c
                    moments.add(cube, ok)  # exactly the pixels that will be written
                    flat = rr * series.width + cc
                    for k, a, e in zip(ks.tolist(), starts.tolist(), ends.tolist(), strict=True):
                        m = ok[a:e]
                        pending.setdefault(k, []).append((flat[a:e][m], cube[:, :, a:e][:, :, m]))
                for k in due.pop(tr_i * n_tc + tc_i, []):
                    sizes[k] = _write_parcel(data_dir, int(ids[k]), pending.pop(k, []), n_t, n_c,
                                             series.dtype)  # fmt: skip
                if progress is not None:
                    progress(tr_i * n_tc + tc_i + 1, n_tr * n_tc)
    box_px = (bbox[:, 1] - bbox[:, 0] + 1) * (bbox[:, 3] - bbox[:, 2] + 1)
    cover = np.where(inside > 0, inside / np.maximum(box_px, 1), 0.0)
    return sizes, cover, filled, total, moments


def _grow_bbox(bbox: np.ndarray, k: int, rr: np.ndarray, cc: np.ndarray) -> None:
    lo_r, hi_r, lo_c, hi_c = int(rr.min()), int(rr.max()), int(cc.min()), int(cc.max())
    if bbox[k, 0] < 0:
        bbox[k] = (lo_r, hi_r, lo_c, hi_c)
    else:
        bbox[k] = (min(bbox[k, 0], lo_r), max(bbox[k, 1], hi_r),
                   min(bbox[k, 2], lo_c), max(bbox[k, 3], hi_c))  # fmt: skip


def _write_parcel(data_dir: Path, pid: int, chunks: list, n_t: int, n_c: int, dtype) -> int:
    """Save one parcel's pixels in raster order (row by row); returns its pixel count."""
    if chunks:
        flat = np.concatenate([f for f, _ in chunks])
        arr = np.concatenate([x for _, x in chunks], axis=2)[:, :, np.argsort(flat, kind="stable")]
    else:
        arr = np.zeros((n_t, n_c, 0), dtype=dtype)
    np.save(data_dir / f"{pid}.npy", arr, allow_pickle=False)
    return int(arr.shape[2])
