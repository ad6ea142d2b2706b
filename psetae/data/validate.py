"""Check a dataset folder and list every problem at once, before anything is written.

:func:`validate_dataset` does not stop at the first problem: it collects errors (the
reader would refuse the dataset, or would silently misuse it) and warnings (allowed, but
worth knowing, such as empty parcels) into a :class:`ValidationReport`.
:func:`check_dataset` is the pre-flight check every writing command calls: the same
checks, raising one :class:`DatasetFormatError` that lists every error.

It is fast: arrays are opened memory-mapped, so only their headers are read, except for
float arrays, which are scanned for NaN and infinite values in bounded chunks. Every file
the reader may load is checked, including any ``*.pkl`` normalisation at the root (the
reference names them e.g. ``S2-2017-T31TFM-meanstd.pkl``), through the restricted unpickler.

Command line: ``python -m psetae.data.validate ROOT [--nomenclature N] [--classes 1,3,...]``
prints the report and exits with status 1 if there is an error.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from psetae.data.format import (
    META_FILES,
    NORMALISATION_JSON,
    DatasetFormatError,
    count_nonfinite_in_file,
    load_normalisation,
    parse_dates_json,
    read_json,
    read_npy_header,
    sizes_missing_hint,
)
from psetae.data.packed import PACKED_DIR, PackedStore, has_packed

__all__ = ["ValidationReport", "validate_dataset", "check_dataset", "main"]

_MAX_IDS = 10  # ids quoted per message


@dataclass
class ValidationReport:
    """What :func:`validate_dataset` found.

    Attributes
    ----------
    root
        The dataset folder.
    errors
        Problems that make the dataset unusable or wrong, one message each, naming the file.
    warnings
        Allowed oddities (empty parcels, missing optional files, stray files).
    n_parcels
        Number of ``DATA/<id>.npy`` files.
    """

    root: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_parcels: int = 0

    @property
    def ok(self) -> bool:
        """True if there is no error (warnings allowed)."""
        return not self.errors

    def error(self, path: Path | str, message: str) -> None:
        """Record an error about ``path``."""
        self.errors.append(f"{path}: {message}")

    def warn(self, path: Path | str, message: str) -> None:
        """Record a warning about ``path``."""
        self.warnings.append(f"{path}: {message}")

    def raise_if_errors(self) -> None:
        """Raise a :class:`DatasetFormatError` listing every error (in one line), if any."""
        if self.errors:
            raise DatasetFormatError(
                self.root,
                f"invalid dataset, {len(self.errors)} problem(s): " + "; ".join(self.errors),
            )

    def __str__(self) -> str:
        status = "OK" if self.ok else "INVALID"
        lines = [
            f"{self.root}: {status}, {self.n_parcels} parcels, "
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        ]
        lines += [f"  error: {m}" for m in self.errors]
        lines += [f"  warning: {m}" for m in self.warnings]
        return "\n".join(lines)


def _ids_text(ids: Sequence[int]) -> str:
    ids = sorted(ids)
    more = f" and {len(ids) - _MAX_IDS} more" if len(ids) > _MAX_IDS else ""
    return ", ".join(str(i) for i in ids[:_MAX_IDS]) + more


def _load_json(report: ValidationReport, path: Path) -> object | None:
    try:
        return read_json(path)
    except DatasetFormatError as e:
        report.error(e.path, e.message)
        return None


def _id_keys(report: ValidationReport, path: Path, obj: dict) -> dict[int, object]:
    out, bad = {}, []
    for k, v in obj.items():
        try:
            out[int(k)] = v
        except (TypeError, ValueError):
            bad.append(k)
    if bad:
        report.error(path, f"ids that are not integers: {bad[:_MAX_IDS]}")
    return out


def _check_dates(report: ValidationReport, path: Path, obj: object) -> int | None:
    """Number of dates T, or None if dates.json is unusable (the reader's own parser)."""
    dates, problems = parse_dates_json(obj, path)
    for problem in problems:
        report.error(path, problem)
    if dates is not None:
        return len(dates)
    # Bad dates: T is still the number of entries, so the arrays can be checked against it.
    return len(obj) if isinstance(obj, (dict, list)) and obj else None


def validate_dataset(
    root: str | os.PathLike,
    nomenclature: str | None = None,
    classes: Sequence[int] | None = None,
    *,
    drop_nonfinite: bool = False,
    packed: bool = True,
    normalisation: str | os.PathLike | None = None,
) -> ValidationReport:
    """Check the dataset folder ``root`` and return every problem found.

    Checked: the ``META`` files exist and parse; ``dates.json`` holds YYYYMMDD dates in
    increasing order; ids in ``DATA`` without a label, without a size or without geometric
    features, and the reverse; every array has rank 3, T equal to the number of dates, the
    same C as the others, the number of pixels of ``sizes.json`` and finite values; labels
    are integers >= 0; there is at least one parcel; the nomenclature exists; the labels
    are among ``classes``; every normalisation file (``normalisation.json`` and every
    ``*.pkl`` of the root) loads safely and fits (T, C); a packed form matches
    ``sizes.json`` and ``DATA/``. Empty parcels and a missing ``geomfeat.json`` are warnings.

    Parameters
    ----------
    root
        The dataset folder.
    nomenclature
        Check only this nomenclature of ``labels.json`` (default: all of them).
    classes
        Class ids the labels of ``nomenclature`` must belong to (needs ``nomenclature``).
    drop_nonfinite
        Parcels with NaN or infinite pixels are a warning (the reader will drop them, see
        ``PixelSetDataset(drop_nonfinite=True)``) instead of an error.
    packed
        Check an existing ``PACKED/`` form too (``pack_dataset`` does not: it replaces it).
    normalisation
        A normalisation file chosen by the user (.json, .npz or .pkl), checked like those
        of the dataset.

    Returns
    -------
    ValidationReport
    """
    root = Path(root)
    report = ValidationReport(root=root)
    if not root.is_dir():
        report.error(root, "dataset folder does not exist")
        return report
    if classes is not None and nomenclature is None:
        raise ValueError("classes needs a nomenclature")
    meta = root / "META"

    # META files.
    if not meta.is_dir():
        report.error(meta, "folder is missing")
    objs: dict[str, object | None] = {}
    for name in META_FILES:
        objs[name] = None
        if name == "sizes.json" and meta.is_dir() and not (meta / name).exists():
            report.error(meta / name, sizes_missing_hint(root))
        elif meta.is_dir():
            objs[name] = _load_json(report, meta / name)
    geom_path = meta / "geomfeat.json"
    geom = _load_json(report, geom_path) if geom_path.is_file() else None
    if not geom_path.is_file() and meta.is_dir():
        report.warn(geom_path, "file is missing (use extra_features=False)")

    n_dates = None
    if objs["dates.json"] is not None:
        n_dates = _check_dates(report, meta / "dates.json", objs["dates.json"])

    # DATA ids.
    data = root / "DATA"
    data_ids: set[int] = set()
    packed_only = False
    if data.is_dir():
        stray = []
        for name in os.listdir(data):
            stem, ext = os.path.splitext(name)
            if ext == ".npy" and stem.lstrip("-").isdigit():
                data_ids.add(int(stem))
            else:
                stray.append(name)
        if stray:
            report.warn(
                data, f"files that are not <id>.npy are ignored: {sorted(stray)[:_MAX_IDS]}"
            )
    elif has_packed(root):
        packed_only = True  # a standalone packed dataset: parcels come from PACKED/
    else:
        report.error(data, "folder is missing")

    # sizes.json.
    sizes: dict[int, object] = {}
    sizes_path = meta / "sizes.json"
    if isinstance(objs["sizes.json"], dict):
        sizes = _id_keys(report, sizes_path, objs["sizes.json"])
        bad = [
            i for i, v in sizes.items() if isinstance(v, bool) or not isinstance(v, int) or v < 0
        ]
        if bad:
            report.error(sizes_path, f"sizes that are not integers >= 0 for ids {_ids_text(bad)}")
    elif objs["sizes.json"] is not None:
        report.error(sizes_path, "expected a JSON object {id: n_pixels}")
    if packed_only:
        data_ids = set(sizes)
    report.n_parcels = len(data_ids)
    if not data_ids and (data.is_dir() or packed_only):
        report.error(root, "no parcels: the dataset is empty")
    if not packed_only and objs["sizes.json"] is not None:
        _cross(report, sizes_path, "size", set(sizes), data_ids)

    # labels.json.
    labels_path = meta / "labels.json"
    labels = objs["labels.json"]
    if isinstance(labels, dict):
        if nomenclature is not None and nomenclature not in labels:
            report.error(
                labels_path, f"unknown nomenclature {nomenclature!r}; it has {sorted(labels)}"
            )
        names = [nomenclature] if nomenclature in labels else []
        if nomenclature is None:
            names = list(labels)
            if not names:
                report.error(labels_path, "no nomenclature")
        for name in names:
            _check_labels(report, labels_path, name, labels[name], data_ids, classes)
    elif labels is not None:
        report.error(labels_path, "expected a JSON object {nomenclature: {id: class}}")

    # geomfeat.json.
    if isinstance(geom, dict):
        feats = _id_keys(report, geom_path, geom)
        _cross(report, geom_path, "geometric features", set(feats), data_ids)
        lengths: dict[int, list[int]] = {}
        bad = []
        for i, f in feats.items():
            try:
                a = np.asarray(f, dtype=np.float64)
            except (TypeError, ValueError):
                bad.append(i)
                continue
            if a.ndim != 1 or not np.all(np.isfinite(a)):
                bad.append(i)
            else:
                lengths.setdefault(len(a), []).append(i)
        if bad:
            report.error(
                geom_path, f"features that are not finite number lists: ids {_ids_text(bad)}"
            )
        if len(lengths) > 1:
            report.error(
                geom_path,
                f"features of different lengths: { {k: len(v) for k, v in lengths.items()} }",
            )
    elif geom is not None:
        report.error(geom_path, "expected a JSON object {id: [features]}")

    # Arrays.
    n_channels = None
    if not packed_only:
        n_channels = _check_arrays(report, data, sorted(data_ids), n_dates, sizes, drop_nonfinite)
    if packed and has_packed(root):
        n_channels = _check_packed(report, root, sizes, sizes_path, n_dates) or n_channels

    # Normalisation files.
    # Every normalisation the reader may pick: the JSON and any pickle (reference names too).
    chosen = [] if normalisation is None else [Path(normalisation)]
    for path in dict.fromkeys([root / NORMALISATION_JSON, *sorted(root.glob("*.pkl")), *chosen]):
        if path in chosen and not path.is_file():
            report.error(path, "normalisation file not found")
        if not path.is_file():
            continue
        try:
            mean, _ = load_normalisation(path)
        except DatasetFormatError as e:
            report.error(e.path, e.message)
            continue
        fits = mean.ndim == 0 or mean.shape == (1,)
        fits = fits or (n_channels is not None and mean.shape == (n_channels,))
        fits = fits or (n_channels is not None and mean.shape == (n_dates, n_channels))
        if not fits:
            report.error(
                path,
                f"normalisation of shape {mean.shape} does not fit T={n_dates}, C={n_channels}",
            )
    return report


def check_dataset(
    root: str | os.PathLike,
    nomenclature: str | None = None,
    classes: Sequence[int] | None = None,
    *,
    drop_nonfinite: bool = False,
    packed: bool = True,
    normalisation: str | os.PathLike | None = None,
) -> ValidationReport:
    """The pre-flight check of every command that writes: refuse a dataset the reader would
    choke on, before anything is written.

    Parameters
    ----------
    root, nomenclature, classes, drop_nonfinite, packed, normalisation
        As for :func:`validate_dataset`.

    Returns
    -------
    ValidationReport
        The report, free of errors (it may hold warnings, e.g. empty parcels).

    Raises
    ------
    DatasetFormatError
        One line naming every problem: the dataset folder, its files and what is wrong.
    """
    report = validate_dataset(
        root,
        nomenclature=nomenclature,
        classes=classes,
        drop_nonfinite=drop_nonfinite,
        packed=packed,
        normalisation=normalisation,
    )
    report.raise_if_errors()
    return report


def _cross(
    report: ValidationReport, path: Path, what: str, listed: set[int], data_ids: set[int]
) -> None:
    """Report ids of DATA missing from ``path`` and ids of ``path`` missing from DATA."""
    no_entry = data_ids - listed
    no_data = listed - data_ids
    if no_entry:
        report.error(path, f"no {what} for DATA ids {_ids_text(no_entry)}")
    if no_data:
        report.error(path, f"{what} for ids without a DATA file: {_ids_text(no_data)}")


def _check_labels(
    report: ValidationReport,
    path: Path,
    name: str,
    mapping: object,
    data_ids: set[int],
    classes: Sequence[int] | None,
) -> None:
    if not isinstance(mapping, dict):
        report.error(path, f"nomenclature {name!r} is not an object {{id: class}}")
        return
    entries = _id_keys(report, path, mapping)
    _cross(report, path, f"{name!r} label", set(entries), data_ids)
    bad = [i for i, v in entries.items() if isinstance(v, bool) or not isinstance(v, int)]
    if bad:
        report.error(path, f"{name!r} labels that are not integers for ids {_ids_text(bad)}")
    negative = [i for i, v in entries.items() if i not in bad and v < 0]
    if negative:
        report.error(
            path,
            f"{name!r} labels that are negative for ids {_ids_text(negative)}; "
            "labels are class ids >= 0",
        )
        bad += negative
    if classes is not None:
        allowed = {int(c) for c in classes}
        outside = {i: v for i, v in entries.items() if i not in bad and v not in allowed}
        if outside:
            found = sorted(set(outside.values()))
            report.error(
                path,
                f"{len(outside)} {name!r} labels outside the chosen classes "
                f"(classes {found[:_MAX_IDS]}; ids {_ids_text(list(outside))}); "
                "the reader drops these parcels",
            )


def _check_arrays(
    report: ValidationReport,
    data: Path,
    ids: list[int],
    n_dates: int | None,
    sizes: dict[int, object],
    drop_nonfinite: bool,
) -> int | None:
    """Check every DATA array; return the common C (the most frequent one)."""
    shapes: dict[int, tuple[int, ...]] = {}
    empty, nonfinite = [], []
    folder = str(data)
    for pid in ids:
        path = os.path.join(folder, f"{pid}.npy")  # a str: Path objects cost in this loop
        try:
            shape, dtype = read_npy_header(path)
        except DatasetFormatError as e:
            report.error(path, e.message)
            continue
        if dtype.hasobject:
            report.error(path, "dtype object (pickled Python objects) is not numeric")
            continue
        if len(shape) != 3:
            report.error(path, f"array has rank {len(shape)} (shape {shape}), expected (T, C, n)")
            continue
        shapes[pid] = shape
        if n_dates is not None and shape[0] != n_dates:
            report.error(path, f"T={shape[0]} but dates.json has {n_dates} dates")
        if pid in sizes and isinstance(sizes[pid], int) and sizes[pid] != shape[2]:
            report.error(path, f"{shape[2]} pixels but sizes.json says {sizes[pid]}")
        if shape[2] == 0:
            empty.append(pid)
        if dtype.kind not in "iufb":
            report.error(path, f"dtype {dtype} is not numeric")
        elif dtype.kind == "f":  # only float arrays are read, in bounded chunks
            try:
                if count_nonfinite_in_file(path):
                    nonfinite.append(pid)
            except DatasetFormatError as e:
                report.error(path, e.message)
    if empty:
        report.warn(data, f"{len(empty)} empty parcel(s) (0 pixels): ids {_ids_text(empty)}")
    if nonfinite:
        files = ", ".join(str(data / f"{pid}.npy") for pid in sorted(nonfinite)[:_MAX_IDS])
        more = f" and {len(nonfinite) - _MAX_IDS} more" if len(nonfinite) > _MAX_IDS else ""
        message = f"{len(nonfinite)} parcel(s) with NaN or infinite pixel values: {files}{more}"
        if drop_nonfinite:
            report.warn(data, message + " (they will be dropped)")
        else:
            report.error(
                data,
                message + "; fix them, or drop those parcels with --drop-nonfinite "
                "(drop_nonfinite=True in Python)",
            )
    if not shapes:
        return None
    channels = [s[1] for s in shapes.values()]
    common = max(set(channels), key=channels.count)
    odd = [pid for pid, s in shapes.items() if s[1] != common]
    if odd:
        report.error(data, f"C differs from the common C={common} for ids {_ids_text(odd)}")
    return common


def _check_packed(
    report: ValidationReport, root: Path, sizes: dict, sizes_path: Path, n_dates: int | None
) -> int | None:
    try:
        store = PackedStore(root / PACKED_DIR)
        store.check_sizes({i: v for i, v in sizes.items() if isinstance(v, int)}, sizes_path)
        pixels = store.pixels
    except DatasetFormatError as e:
        report.error(e.path, e.message)
        return None
    if n_dates is not None and pixels.shape[1] != n_dates:
        report.error(store.folder, f"T={pixels.shape[1]} but dates.json has {n_dates} dates")
    if pixels.dtype.kind == "f":
        step = 1 << 20  # rows per chunk, so a large pack is scanned with bounded memory
        for start in range(0, len(pixels), step):
            if not np.all(np.isfinite(pixels[start : start + step])):
                report.error(store.folder / "pixels.npy", "non-finite values")
                break
    return int(pixels.shape[2])


def main(argv: list[str] | None = None) -> int:
    """Command line: validate a dataset folder and print the report."""
    parser = argparse.ArgumentParser(
        prog="python -m psetae.data.validate", description="Check a pixel-set dataset folder."
    )
    parser.add_argument("root", help="dataset folder")
    parser.add_argument("--nomenclature", default=None, help="e.g. label_44class")
    parser.add_argument("--classes", default=None, help="comma-separated class ids, e.g. 1,3,4")
    args = parser.parse_args(argv)
    classes = None if args.classes is None else [int(c) for c in args.classes.split(",") if c]
    report = validate_dataset(args.root, nomenclature=args.nomenclature, classes=classes)
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
