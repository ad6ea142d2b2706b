"""psetae.data: the S2-Agri pixel-set format (layer 1).

Reading (:class:`PixelSetDataset`, :func:`collate_pixel_sets`), writing (:func:`write_dataset`),
packing (:func:`pack_dataset`), validation (:func:`validate_dataset`; :func:`check_dataset`
before writing), the simulator
(:func:`simulate_s2agri`), the downloader (:func:`download_s2agri`) and
:func:`prepare_dataset`, which gives the book its data folder.
"""

from __future__ import annotations

from psetae.data.classes import S2AGRI_CLASS_NAMES, S2AGRI_CLASSES
from psetae.data.dataset import PixelSetDataset, collate_pixel_sets
from psetae.data.download import download_s2agri
from psetae.data.format import (
    DatasetFormatError,
    compute_normalisation,
    dates_to_positions,
    load_normalisation,
    read_dates,
    read_labels,
    write_dataset,
    write_sizes,
)
from psetae.data.packed import pack_dataset
from psetae.data.prepare import prepare_dataset
from psetae.data.safe_pickle import UnsafePickleError, safe_load_pickle
from psetae.data.sampling import sample_pixels
from psetae.data.simulate import SimulationConfig, simulate_s2agri
from psetae.data.validate import ValidationReport, check_dataset, validate_dataset

__all__ = [
    "PixelSetDataset",
    "collate_pixel_sets",
    "sample_pixels",
    "write_dataset",
    "read_dates",
    "read_labels",
    "dates_to_positions",
    "compute_normalisation",
    "load_normalisation",
    "safe_load_pickle",
    "UnsafePickleError",
    "DatasetFormatError",
    "pack_dataset",
    "validate_dataset",
    "check_dataset",
    "write_sizes",
    "ValidationReport",
    "simulate_s2agri",
    "SimulationConfig",
    "download_s2agri",
    "prepare_dataset",
    "S2AGRI_CLASSES",
    "S2AGRI_CLASS_NAMES",
]
