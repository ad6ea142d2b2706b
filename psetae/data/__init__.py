"""psetae.data: the S2-Agri pixel-set format (layer 1).

Reading (:class:`PixelSetDataset`, :func:`collate_pixel_sets`), writing
(:func:`write_dataset`), packing (:func:`pack_dataset`), validation
(:func:`validate_dataset`), and, loaded on first use, the simulator
(``simulate_s2agri``) and the downloader (``download_s2agri``).
"""

from __future__ import annotations

import importlib
import importlib.util

from psetae.data.format import (
    DatasetFormatError,
    compute_normalisation,
    dates_to_positions,
    load_normalisation,
    read_dates,
    read_labels,
    write_dataset,
)

__all__ = [
    "DatasetFormatError",
    "compute_normalisation",
    "dates_to_positions",
    "load_normalisation",
    "read_dates",
    "read_labels",
    "write_dataset",
    "safe_load_pickle",
    "PixelSetDataset",
    "collate_pixel_sets",
    "sample_pixels",
    "pack_dataset",
    "validate_dataset",
    "ValidationReport",
    "S2AGRI_CLASSES",
    "S2AGRI_CLASS_NAMES",
    "simulate_s2agri",
    "download_s2agri",
]

# Everything else is imported on first use: it keeps `import psetae.data` light, and the
# simulator and downloader are written in parallel and may not exist yet.
_LAZY = {
    "safe_load_pickle": "psetae.data.safe_pickle",
    "PixelSetDataset": "psetae.data.dataset",
    "collate_pixel_sets": "psetae.data.dataset",
    "sample_pixels": "psetae.data.sampling",
    "pack_dataset": "psetae.data.packed",
    "validate_dataset": "psetae.data.validate",
    "ValidationReport": "psetae.data.validate",
    "S2AGRI_CLASSES": "psetae.data.classes",
    "S2AGRI_CLASS_NAMES": "psetae.data.classes",
    "simulate_s2agri": "psetae.data.simulate",
    "download_s2agri": "psetae.data.download",
}

# Advertise the simulator and downloader only once their modules exist.
__all__ = [n for n in __all__ if n not in _LAZY or importlib.util.find_spec(_LAZY[n]) is not None]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'psetae.data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
