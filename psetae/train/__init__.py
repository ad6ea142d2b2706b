"""psetae.train: training one split, cross-validation, splits and checkpoints (layer 4).

- :func:`fit` trains on one split and keeps the epoch with the best validation mIoU
  (:class:`TrainConfig` holds the paper's protocol as defaults);
- :func:`cross_validate` runs the paper's k-fold protocol (60/20/20) or a fixed split;
- :func:`kfold_splits`, :func:`load_split`: the splits of parcel ids;
- :func:`save_checkpoint`, :func:`load_checkpoint`: one file per model, loadable with
  ``torch.load(weights_only=True)``;
- :func:`check_input`: a dataset the commands would refuse, refused before they write.

Any model of :data:`psetae.models.registry.MODELS` trains here (``TrainConfig.model_name``).
"""

from psetae.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from psetae.train.crossval import CrossValResult, cross_validate, make_datasets
from psetae.train.errors import TrainError
from psetae.train.fit import FitResult, TrainConfig, evaluate_model, fit
from psetae.train.inputs import InvalidInputError, check_input
from psetae.train.splits import Split, kfold_splits, load_split, save_split

__all__ = [
    "CheckpointError",
    "CrossValResult",
    "FitResult",
    "InvalidInputError",
    "Split",
    "TrainConfig",
    "TrainError",
    "check_input",
    "cross_validate",
    "evaluate_model",
    "fit",
    "kfold_splits",
    "load_checkpoint",
    "load_split",
    "make_datasets",
    "save_checkpoint",
    "save_split",
]
