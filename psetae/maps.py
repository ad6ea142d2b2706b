"""Predictions back on the map: the CSV of ``psetae predict`` joined to the parcel polygons.

The map has one row per parcel of the parcel file, with ``pred_class`` (the class id of the
predictions, 0..K-1 for an imported dataset), ``pred_name``, ``probability`` (of the predicted
class) and, when a dataset folder written by :func:`psetae.data.rasters.import_rasters` is given,
``pred_code`` (the parcel file's own label code; or with the checkpoint, which stores the code
mapping of its training data and refuses a dataset whose mapping differs). With a label column, ``true_code`` (and, with
the dataset's codes, ``correct``) is added. Parcels without a prediction keep empty values.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from psetae.data.format import DatasetFormatError
from psetae.data.rasters import check_label_codes, read_label_codes
from psetae.errors import OutputExistsError, PsetaeError

__all__ = ["MapError", "read_predictions", "join_predictions", "write_prediction_map"]

PathLike = str | os.PathLike
_DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}


class MapError(PsetaeError, ValueError):
    """The predictions or the parcels cannot be joined into a map; names the file."""


def read_predictions(path: PathLike):
    """Read the CSV of ``psetae predict`` (``id, class_id, class_name, prob_<c>...``).

    Returns
    -------
    pandas.DataFrame
        Columns ``id``, ``pred_class``, ``pred_name``, ``probability``.

    Raises
    ------
    MapError
        Unreadable file, missing columns or repeated ids.
    """
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise MapError(f"{path}: cannot be read as a predictions CSV ({e})") from None
    need = {"id", "class_id", "class_name"}
    probs = [c for c in df.columns if c.startswith("prob_")]
    if not need <= set(df.columns) or not probs:
        raise MapError(
            f"{path}: expected columns id, class_id, class_name, prob_<class>...; "
            f"has {list(df.columns)}"
        )
    if df["id"].duplicated().any():
        raise MapError(f"{path}: ids repeat: {df['id'][df['id'].duplicated()].tolist()[:10]}")
    cols = {f"prob_{int(c)}": k for k, c in enumerate(df["class_id"].unique())}
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise MapError(f"{path}: predicted classes have no probability column: {missing}")
    p = df[probs].to_numpy(np.float64)
    column = {c: k for k, c in enumerate(probs)}
    picked = p[np.arange(len(df)), [column[f"prob_{int(c)}"] for c in df["class_id"]]]
    return pd.DataFrame(
        {
            "id": df["id"].astype(np.int64),
            "pred_class": df["class_id"].astype(np.int64),
            "pred_name": df["class_name"].astype(str),
            "probability": picked,
        }
    )


def _class_codes(
    dataset: PathLike | None, checkpoint: PathLike | None, nomenclature: str
) -> dict[int, object] | None:
    """``{class id: code}`` to translate predictions: the dataset's, checked against the
    checkpoint's (refused if they differ), or the checkpoint's alone."""
    stored = None
    if checkpoint is not None:
        from psetae.train.checkpoint import load_checkpoint

        meta = load_checkpoint(checkpoint)
        nomenclature = meta.get("nomenclature", nomenclature)
        stored = meta.get("label_codes")
        if dataset is not None:
            check_label_codes(dataset, meta, checkpoint)
    if dataset is not None:
        codes = read_label_codes(dataset, nomenclature)
        if codes is None:
            path = Path(dataset) / "META" / f"{nomenclature}_codes.json"
            raise DatasetFormatError(path, "no such file: no codes to translate class ids")
    elif stored is not None:
        codes = stored
    elif checkpoint is not None:
        raise MapError(f"{checkpoint}: stores no label codes (not trained on an imported dataset)")
    else:
        return None
    return {int(k): v for k, v in codes.items()}


def join_predictions(
    predictions,
    parcels,
    *,
    id_column: str = "id",
    label_column: str | None = None,
    dataset: PathLike | None = None,
    nomenclature: str = "label",
    checkpoint: PathLike | None = None,
):
    """Join predictions to parcel polygons.

    Parameters
    ----------
    predictions
        A predictions CSV path or the DataFrame of :func:`read_predictions`.
    parcels
        A parcel file path or a GeoDataFrame.
    id_column
        The parcel id column.
    label_column
        The parcel file's label column (the declared crop), or None.
    dataset
        The imported dataset folder, to translate class ids back to the file's codes.
    nomenclature
        The labels' name in that dataset.
    checkpoint
        The checkpoint that made the predictions: its code mapping (stored at training)
        translates class ids when ``dataset`` is None, and must agree with the dataset's.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per parcel, in the parcel file's order.

    Raises
    ------
    MapError
        Predicted ids that are not in the parcel file, or a missing column.
    psetae.data.rasters.LabelCodesError
        The dataset's class ids mean other codes than the checkpoint's.
    """
    import geopandas as gpd
    import pandas as pd

    where = "parcels"
    if not isinstance(parcels, gpd.GeoDataFrame):
        where = str(parcels)
        try:
            parcels = gpd.read_file(parcels, engine="pyogrio")
        except Exception as e:  # pyogrio's own error types
            raise MapError(f"{where}: cannot be read as a vector file ({e})") from None
    pred = predictions if isinstance(predictions, pd.DataFrame) else read_predictions(predictions)
    for col in (id_column, label_column):
        if col is not None and col not in parcels.columns:
            raise MapError(f"{where}: has no column {col!r}; columns are {list(parcels.columns)}")
    unknown = sorted(set(pred["id"].tolist()) - set(parcels[id_column].astype(np.int64).tolist()))
    if unknown:
        raise MapError(f"{where}: {len(unknown)} predicted ids are not parcels: {unknown[:10]}")
    keep = [id_column, *([label_column] if label_column else []), parcels.geometry.name]
    base = parcels[keep].rename(columns={id_column: "id"})
    base["id"] = base["id"].astype(np.int64)
    out = base.merge(pred, on="id", how="left", validate="one_to_one")
    if label_column is not None:
        out = out.rename(columns={label_column: "true_code"})
    codes = _class_codes(dataset, checkpoint, nomenclature)
    if codes is not None:
        out["pred_code"] = [codes.get(int(c)) if pd.notna(c) else None for c in out["pred_class"]]
        if label_column is not None:
            known = out["pred_code"].notna() & out["true_code"].notna()
            same = out["pred_code"].astype(str) == out["true_code"].astype(str)
            out["correct"] = pd.array(np.where(known, same, pd.NA), dtype="boolean")
    cols = [c for c in out.columns if c != out.geometry.name] + [out.geometry.name]
    return gpd.GeoDataFrame(out[cols], geometry=parcels.geometry.name, crs=parcels.crs)


def write_prediction_map(
    predictions,
    parcels,
    out: PathLike,
    *,
    id_column: str = "id",
    label_column: str | None = None,
    dataset: PathLike | None = None,
    nomenclature: str = "label",
    checkpoint: PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the map of :func:`join_predictions` as a GeoPackage or GeoJSON (by extension).

    The file is written under a temporary name in the same folder, then renamed.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    MapError
        An extension other than .gpkg, .geojson or .json, or see :func:`join_predictions`.
    FileExistsError
        ``out`` exists and ``overwrite`` is False.
    """
    out = Path(out)
    driver = _DRIVERS.get(out.suffix.lower())
    if driver is None:
        raise MapError(f"{out}: the map must be a .gpkg, .geojson or .json file")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: exists already (pass overwrite=True to replace it)")
    gdf = join_predictions(
        predictions,
        parcels,
        id_column=id_column,
        label_column=label_column,
        dataset=dataset,
        nomenclature=nomenclature,
        checkpoint=checkpoint,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.stem}.tmp-{os.getpid()}{out.suffix}"
    try:
        gdf.to_file(tmp, driver=driver, engine="pyogrio", layer="predictions"
                    if driver == "GPKG" else None)  # fmt: skip
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
