"""The command line: ``python -m psetae <command> ...`` or the ``psetae`` console script.

Commands::

    simulate   write a simulated S2-Agri dataset folder (offline)
    download   download the real S2-Agri pixel-set release from Zenodo
    validate   check a dataset folder and list every problem
    pack       write the packed (memory-mapped) form of a dataset folder
    train      train with the paper's k-fold protocol, or on a fixed split
    evaluate   test checkpoint(s) on a labelled folder
    predict    predict a folder's parcels and write a CSV
    import-rasters  GeoTIFF time series + parcel polygons -> a pixel-set dataset folder
    simulate-scene  write a synthetic GeoTIFF scene and its parcels (offline)
    map        join predictions to the parcels and write a GeoPackage / GeoJSON map

Errors the user can fix (a bad path, a malformed file, a wrong argument: the
:class:`~psetae.errors.PsetaeError` family) print one line, ``psetae <command>: error: ...``,
on stderr and exit with status 2; no traceback. Any other exception is a bug in psetae and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from psetae.errors import PsetaeError

__all__ = ["main", "build_parser", "CliError"]

EXIT_USAGE = 2


class CliError(PsetaeError):
    """A problem with the command's arguments; printed as one line, exit status 2."""


# --------------------------------------------------------------------------- argument types


def _number(kind: type, minimum: float, inclusive: bool):
    """An argparse type: ``kind`` (int or float) at least (or above) ``minimum``."""
    noun = "an integer" if kind is int else "a number"
    bound = f"{'>=' if inclusive else '>'} {minimum:g}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not (value >= minimum if inclusive else value > minimum):  # also refuses nan
            raise argparse.ArgumentTypeError(f"expected {noun} {bound}, got {value}")
        return value

    return parse


_positive_int = _number(int, 1, inclusive=True)
_non_negative_int = _number(int, 0, inclusive=True)
_positive_float = _number(float, 0, inclusive=False)
_non_negative_float = _number(float, 0, inclusive=True)


def _fraction(text: str) -> float:
    """An argparse type: a number in [0, 1)."""
    value = _non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction below 1, got {text!r}")
    return value


def _existing_dir(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such folder")
    return path


def _classes(text: str) -> list[int] | str | None:
    if text in ("auto", "all"):
        return "auto" if text == "auto" else None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto', 'all' or comma-separated class ids like 1,3,4; got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("no class id given")
    return values


def _model_overrides(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('expected a JSON object like {"mlp3": [512, 64, 64]}')
    return value


# --------------------------------------------------------------------------- parser


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' line breaks; shows defaults that say something."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and action.nargs != 0  # a switch: its default says nothing
            and default is not None
            and default is not False
            and default != argparse.SUPPRESS
            and default != {}
            and "%(default)" not in text
        ):
            shown = " ".join(map(str, default)) if isinstance(default, tuple) else "%(default)s"
            text += f" (default: {shown})"
        return text


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The ``psetae`` argument parser with all its subcommands."""
    parser = _Parser(
        prog="psetae",
        description="PSE-TAE: Pixel-Set Encoders and Temporal Self-Attention for satellite "
        "image time series classification (Sainte Fare Garnot et al., CVPR 2020).",
        epilog="Run 'psetae <command> --help' for the options of a command.",
        formatter_class=_Formatter,
    )
    from psetae import __version__

    parser.add_argument("--version", action="version", version=f"psetae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True

    def command(name: str, help: str, description: str, epilog: str = "") -> Any:
        return sub.add_parser(
            name, help=help, description=description, epilog=epilog, formatter_class=_Formatter
        )

    # simulate
    p = command(
        "simulate",
        "write a simulated S2-Agri dataset folder",
        "Write a simulated dataset in the S2-Agri pixel-set format: realistic crop "
        "phenology, clouds and parcel sizes, 24 dates, 10 bands, the paper's classes. "
        "Offline and deterministic (same preset and seed, same files).",
        "example: psetae simulate --preset book --out data/s2agri-sim",
    )
    p.add_argument("--out", required=True, type=Path, help="folder to create")
    p.add_argument(
        "--preset",
        default="book",
        choices=["book", "test", "large"],
        help="size: book (8000 parcels, what the book uses), test (400, for tests), large (40000)",
    )
    p.add_argument("--parcels", type=_positive_int, default=None, help="replace the preset's")
    p.add_argument("--seed", type=int, default=None, help="replace the preset's")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(handler=_cmd_simulate)

    # download
    p = command(
        "download",
        "download the real S2-Agri pixel-set release (Zenodo)",
        "Download, verify (checksums) and extract the S2-Agri pixel-set release, Zenodo "
        "record 5815488 (DOI 10.5281/zenodo.5815488). Interrupted downloads resume; a "
        "completed folder is recognised and not downloaded again.",
        "example: psetae download --out data/s2agri",
    )
    p.add_argument("--out", required=True, type=Path, help="destination folder")
    p.add_argument("--record", default="5815488", help="Zenodo record id or DOI")
    p.add_argument(
        "--api-url", default="https://zenodo.org/api/records/", help="Zenodo records API"
    )
    p.add_argument("--files", nargs="+", default=None, help="only these files (glob patterns)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=_cmd_download)

    # validate
    p = command(
        "validate",
        "check a dataset folder",
        "Check a dataset folder in the pixel-set format and print every problem found "
        "(exit status 1 if there is an error, 0 otherwise).",
    )
    p.add_argument("path", type=Path, help="dataset folder")
    p.add_argument("--nomenclature", default=None, help="check only this nomenclature")
    p.add_argument(
        "--classes", type=_classes, default=None, help="comma-separated class ids allowed"
    )
    p.set_defaults(handler=_cmd_validate)

    # sizes
    p = command(
        "sizes",
        "write META/sizes.json from the arrays of DATA/",
        "Count the pixels of every parcel from the headers of DATA/<id>.npy (no pixel is "
        "read) and write META/sizes.json atomically.",
        "example:\n  psetae sizes data/my-region",
    )
    p.add_argument("root", type=_existing_dir, help="dataset folder")
    p.set_defaults(handler=_cmd_sizes)

    # pack
    p = command(
        "pack",
        "write the packed form of a dataset folder",
        "Write all parcels into one memory-mapped array with an offset index (PATH/PACKED, "
        "or a new folder with --out); datasets read it instead of one file per parcel.",
    )
    p.add_argument("path", type=_existing_dir, help="dataset folder")
    p.add_argument("--out", type=Path, default=None, help="write a new packed folder here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing packed form")
    p.set_defaults(handler=_cmd_pack)

    # train
    p = command(
        "train",
        "train PSE-TAE (k-fold cross-validation or a fixed split)",
        "Train with the paper's protocol: k shuffled folds, each 60% train / 20% "
        "validation / 20% test, Adam, focal loss, the epoch with the best validation mIoU "
        "kept. Writes per-fold checkpoints and histories, and results.json with per-fold "
        "and summed confusion matrices. Re-running the same command resumes.",
        "examples:\n"
        "  psetae train data/s2agri-sim --out runs/cv --epochs 20\n"
        "  psetae train data/mine --out runs/simple --val-fraction 0.2 --test-data data/other\n"
        "  psetae train data/s2agri --out runs/fixed --split split.json\n"
        'split.json: {"train": [ids], "val": [ids], "test": [ids]} (test optional)',
    )
    p.add_argument("root", type=_existing_dir, help="labelled dataset folder")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--folds", type=_positive_int, default=5, help="k of the k-fold split")
    g.add_argument("--split", type=Path, default=None, help="a fixed split (JSON of ids)")
    g.add_argument(
        "--val-fraction",
        type=_fraction,
        default=None,
        help="one shuffled split: this share of the parcels for validation (e.g. 0.2)",
    )
    p.add_argument(
        "--test-fraction",
        type=_fraction,
        default=0.0,
        help="with --val-fraction: this share of the parcels for the test (default 0)",
    )
    p.add_argument(
        "--test-data",
        type=_existing_dir,
        default=None,
        help="a separate labelled folder to test the trained model(s) on, after training",
    )
    _add_train_config_options(p)
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help=_THREADS_HELP,
    )
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming")
    _add_distributed_options(p)
    p.set_defaults(handler=_cmd_train)

    # baseline
    p = command(
        "baseline",
        "train the random-forest baseline on the same splits as train",
        "A scikit-learn random forest on per-date statistics of each pixel set (mean and "
        "standard deviation of every band on every date, plus the geometric features), on "
        "exactly the splits, classes and metrics of `psetae train` with the same options. "
        "The forests (fold_<k>/forest.npz, arrays only, no pickle) are evaluated and used to "
        "predict with `psetae evaluate` and `psetae predict`, like checkpoints.",
        "examples:\n"
        "  psetae baseline data/s2agri-sim --out runs/forest\n"
        "  psetae evaluate data/other-region --checkpoint runs/forest",
    )
    p.add_argument("root", type=_existing_dir, help="labelled dataset folder")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--folds", type=_positive_int, default=5, help="k of the k-fold split")
    g.add_argument("--split", type=Path, default=None, help="a fixed split (JSON of ids)")
    g.add_argument("--val-fraction", type=_fraction, default=None, help="as for train")
    p.add_argument("--test-fraction", type=_fraction, default=0.0, help="as for train")
    p.add_argument("--trees", type=_positive_int, default=100, help="trees in the forest")
    p.add_argument("--nomenclature", default="auto", help="as for train")
    p.add_argument("--classes", type=_classes, default="auto", help="as for train")
    p.add_argument("--seed", type=int, default=0, help="seeds the splits and the forest")
    p.add_argument("--no-extra-features", dest="extra_features", action="store_false",
                   help="leave the geometric features out")  # fmt: skip
    p.add_argument("--drop-nonfinite", action="store_true", help="as for train")
    p.set_defaults(handler=_cmd_baseline)

    # evaluate
    p = command(
        "evaluate",
        "test checkpoint(s) on a labelled folder",
        "Test a checkpoint, or the ensemble of several (e.g. the folds of a "
        "cross-validation), on a labelled folder, e.g. another region or year. The folder "
        "is prepared with the training normalisation stored in the checkpoint.",
        "example: psetae evaluate data/other-year --checkpoint runs/cv",
    )
    p.add_argument("root", type=_existing_dir, help="labelled dataset folder")
    _add_checkpoint_options(p)
    p.add_argument("--out", type=Path, default=None, help="also write the metrics as JSON")
    _add_run_options(p)
    p.set_defaults(handler=_cmd_evaluate)

    # predict
    p = command(
        "predict",
        "predict the parcels of a folder, write a CSV",
        "Predict every parcel of a folder (labels not needed) with a checkpoint or an "
        "ensemble (mean of log-probabilities). The CSV has columns id, class_id, "
        "class_name and prob_<class_id> for every class.",
        "example: psetae predict data/new --checkpoint runs/cv --out predictions.csv",
    )
    p.add_argument("root", type=_existing_dir, help="dataset folder")
    _add_checkpoint_options(p)
    p.add_argument("--out", type=Path, required=True, help="CSV file to write")
    _add_run_options(p)
    p.set_defaults(handler=_cmd_predict)
    _add_raster_commands(command)
    return parser


_THREADS_HELP = (
    "CPU threads for torch (default: the cores this process may use, divided among the "
    "processes torchrun started on this machine); 1 is often fastest for this small model "
    "on a busy or small machine"
)
_COMPILE_HELP = (
    "run the model through torch.compile (minutes of compiling first; pays on long GPU "
    "runs only, no gain measured on CPU)"
)


def _train_config_defaults() -> tuple[Any, dict[str, str]]:
    """TrainConfig's defaults and the help of each field (from its docstring)."""
    from psetae.train.fit import TrainConfig

    return TrainConfig(), _field_help(TrainConfig)


def _field_help(cls: type) -> dict[str, str]:
    """The first sentence of each parameter of a numpy-style ``Parameters`` section."""
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    start = lines.index("Parameters") + 2 if "Parameters" in lines else len(lines)
    helps: dict[str, list[str]] = {}
    names: list[str] = []
    for line in lines[start:]:
        if line and not line.startswith(" "):
            names = [n.strip() for n in line.split(",")]
            for n in names:
                helps[n] = []
        elif line.strip():
            for n in names:
                helps[n].append(line.strip())
    out = {}
    for name, words in helps.items():
        text = re.sub(r":\w+:`~?([^`]+)`", r"\1", " ".join(words))
        text = re.sub(r'``"([^`"]*)"``', r"'\1'", text)  # ``"auto"`` -> 'auto'
        text = re.sub(r"``([^`]*)``", r"'\1'", text)
        out[name] = re.split(r"\.\s+(?=[A-Z])", text)[0].rstrip(".")
    return out


def _option(field: str) -> str:
    return "--" + field.replace("_", "-")


def _add_train_config_options(p: argparse.ArgumentParser) -> None:
    """One option per field of TrainConfig: its default, and its docstring as help."""
    from psetae.models.registry import MODELS

    defaults, helps = _train_config_defaults()
    kinds: dict[str, dict[str, Any]] = {
        "epochs": {"type": _positive_int},
        "batch_size": {"type": _positive_int},
        "lr": {"type": _positive_float},
        "weight_decay": {"type": _non_negative_float},
        "gamma": {"type": _non_negative_float},
        "npixel": {"type": _positive_int},
        "jitter": {"type": _non_negative_float, "nargs": 2, "metavar": ("SIGMA", "CLIP")},
        "seed": {"type": int},
        "device": {},
        "num_workers": {"type": _non_negative_int},
        "model_name": {"choices": sorted(MODELS), "flag": "--model"},
        "model": {"type": _model_overrides, "flag": "--model-config", "metavar": "JSON"},
        "nomenclature": {},
        "classes": {"type": _classes, "extra": "; on the command line 'auto', 'all' or 1,3,4"},
        "normalisation": {},
        "init": {"choices": ["reference", "pytorch"]},
        "lr_schedule": {"choices": ["constant", "cosine"]},
        "focal_gradient": {"choices": ["exact", "reference"]},
        "eval_draws": {"type": _positive_int},
    }
    for f in dataclasses.fields(defaults):
        default = getattr(defaults, f.name)
        text = helps.get(f.name, "")
        if isinstance(default, bool):  # on by default: a --no- switch; off: a plain switch
            on = _option(f"no_{f.name}") if default else _option(f.name)
            p.add_argument(
                on,
                dest=f.name,
                action="store_false" if default else "store_true",
                help=(f"turn off: {text[0].lower() + text[1:]}" if default else text) or None,
            )
            continue
        kind = dict(kinds[f.name])
        flag = kind.pop("flag", _option(f.name))
        text += kind.pop("extra", "")
        p.add_argument(flag, dest=f.name, default=default, help=text, **kind)
        if f.name == "jitter":
            p.add_argument(
                "--no-jitter", dest="jitter", action="store_const", const=None, help="no jitter"
            )


def _train_config(args: argparse.Namespace) -> Any:
    """The TrainConfig of the parsed options (each field has its option)."""
    from psetae.train.fit import TrainConfig

    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    return TrainConfig(**{name: getattr(args, name) for name in fields})


def _add_run_options(p: argparse.ArgumentParser) -> None:
    defaults, helps = _train_config_defaults()
    p.add_argument("--device", default=defaults.device, help=helps["device"])
    p.add_argument(
        "--num-workers",
        type=_non_negative_int,
        default=defaults.num_workers,
        help=helps["num_workers"],
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=_positive_int, default=None, help=_THREADS_HELP)
    p.add_argument("--compile", action="store_true", help=_COMPILE_HELP)


def _add_distributed_options(p: argparse.ArgumentParser) -> None:
    """Options of a training launched by torchrun (they do nothing in one process)."""
    p.add_argument("--compile", action="store_true", help=_COMPILE_HELP)
    p.add_argument(
        "--no-sync-batchnorm",
        dest="sync_batchnorm",
        action="store_false",
        help="under torchrun on GPUs, keep each process's BatchNorm statistics local instead "
        "of those of the global batch (SyncBatchNorm)",
    )
    p.add_argument(
        "--dist-timeout",
        type=_positive_float,
        default=600.0,
        help="seconds a process waits for the others before the job fails",
    )


def _add_checkpoint_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        nargs="+",
        required=True,
        type=Path,
        help="checkpoint file(s), a training folder (its best.pt) or a cross-validation "
        "folder (all its folds: an ensemble)",
    )
    defaults, helps = _train_config_defaults()
    p.add_argument(
        "--batch-size", type=_positive_int, default=defaults.batch_size, help=helps["batch_size"]
    )
    p.add_argument("--npixel", type=_positive_int, default=None, help="default: the training S")


# --------------------------------------------------------------------------- handlers


def _cmd_simulate(args: argparse.Namespace) -> int:
    from psetae.data.simulate import simulate_s2agri

    try:
        root = simulate_s2agri(
            args.out,
            n_parcels=args.parcels,
            seed=args.seed,
            preset=args.preset,
            exist_ok=True,  # same parameters: nothing to do; other parameters: a clear error
            overwrite=args.overwrite,
        )
    except FileExistsError as e:  # an --out that holds something else: the user's to fix
        raise CliError(str(e)) from None
    print(f"simulated dataset: {root}")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from psetae.data.download import download_s2agri

    root = download_s2agri(
        args.out,
        record=args.record,
        api_url=args.api_url,
        files=args.files,
        progress=not args.no_progress,
    )
    print(f"S2-Agri is in {root}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from psetae.data.validate import validate_dataset

    if not args.path.is_dir():
        raise CliError(f"{args.path}: no such folder")
    if args.classes is not None and args.nomenclature is None:
        raise CliError("--classes needs --nomenclature")
    classes = args.classes if isinstance(args.classes, list) else None
    report = validate_dataset(args.path, nomenclature=args.nomenclature, classes=classes)
    print(report)
    return 0 if report.ok else 1


def _cmd_sizes(args: argparse.Namespace) -> int:
    from psetae.data.format import write_sizes

    sizes = write_sizes(args.root)
    print(
        f"{len(sizes)} parcels, {sum(sizes.values())} pixels: {args.root / 'META' / 'sizes.json'}"
    )
    return 0


def _cmd_pack(args: argparse.Namespace) -> int:
    from psetae.data.packed import pack_dataset

    folder = pack_dataset(args.path, out=args.out, overwrite=args.overwrite)
    print(f"packed form written to {folder}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from psetae.train.crossval import cross_validate

    if args.split is not None and not args.split.is_file():
        raise CliError(f"{args.split}: no such split file")
    if args.folds < 3 and args.split is None:
        raise CliError(f"--folds must be at least 3 (test, validation, train), got {args.folds}")
    if args.test_fraction and args.val_fraction is None:
        raise CliError("--test-fraction needs --val-fraction")
    config = _train_config(args)
    split = args.split
    if args.val_fraction is not None:
        split = (args.val_fraction, args.test_fraction)
    if args.test_data is not None:
        from psetae.train.inputs import check_input

        check_input(args.test_data, None if config.nomenclature == "auto" else config.nomenclature)
    result = cross_validate(
        args.root,
        args.out,
        folds=args.folds,
        config=config,
        split=split,
        resume=not args.fresh,
        compile=args.compile,
        sync_batchnorm=args.sync_batchnorm,
        dist_timeout_s=args.dist_timeout,
    )
    from psetae.train import distributed

    distributed.teardown()  # leave torchrun's process group (nothing to do alone)
    if not distributed.from_env().is_main:
        return 0  # rank 0 reports for the job
    for f in result.folds:
        test = f["test"]
        tail = f"test OA {test['oa']:.4f} mIoU {test['miou']:.4f}" if test else "no test set"
        val = f["val_miou"]
        val_text = f"{val:.4f}" if val is not None else "n/a"
        print(f"fold {f['fold']}: best epoch {f['best_epoch']}, val mIoU {val_text}, {tail}")
    if result.overall is not None:
        o = result.overall
        print(f"overall (summed confusion matrix): OA {o['oa']:.4f}  mIoU {o['miou']:.4f}")
    if args.test_data is not None:
        from psetae.io import write_json_atomic
        from psetae.predict import evaluate

        ev = evaluate(result.checkpoints, args.test_data, progress=config.progress)
        path = Path(args.out) / "test_data.json"
        write_json_atomic(path, ev)
        print(
            f"{args.test_data} (the folds as an ensemble): OA {ev['oa']:.4f}  mIoU {ev['miou']:.4f}"
        )
        print(f"test data metrics: {path}")
    print(f"results: {result.results_path}")
    return 0


def _cmd_baseline(args: argparse.Namespace) -> int:
    from psetae.train.fit import TrainConfig
    from psetae.train.forest import cross_validate_forest

    if args.test_fraction and args.val_fraction is None:
        raise CliError("--test-fraction needs --val-fraction")
    split = args.split
    if args.val_fraction is not None:
        split = (args.val_fraction, args.test_fraction)
    config = TrainConfig(
        nomenclature=args.nomenclature,
        classes=args.classes,
        seed=args.seed,
        extra_features=args.extra_features,
        drop_nonfinite=args.drop_nonfinite,
    )
    results = cross_validate_forest(
        args.root, args.out, folds=args.folds, config=config, split=split, n_trees=args.trees
    )
    for f in results["folds"]:
        test = f["test"]
        tail = f"test OA {test['oa']:.4f} mIoU {test['miou']:.4f}" if test else "no test set"
        print(f"fold {f['fold']}: val mIoU {f['val_miou']:.4f}, {tail}")
    if results["overall"] is not None:
        o = results["overall"]
        print(f"overall (summed confusion matrix): OA {o['oa']:.4f}  mIoU {o['miou']:.4f}")
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0


def _forest_prediction(args: argparse.Namespace, forests: list[Path], labelled: bool) -> Any:
    """The forests' prediction on ``args.root``, as psetae.predict's Prediction."""
    from psetae.predict import Prediction
    from psetae.train.forest import forest_predict
    from psetae.train.inputs import check_input

    check_input(args.root, labels_required=labelled)
    out = forest_predict(args.root, forests, labelled)
    probs = out["probabilities"]
    return Prediction(
        ids=out["ids"],
        predicted=probs.argmax(axis=1).astype(np.int64),
        probabilities=probs,
        class_ids=out["class_ids"],
        class_names=out["class_names"],
        labels=out["labels"],
    )


def _inference_options(args: argparse.Namespace) -> dict:
    """The options that evaluate and predict share."""
    return {
        "batch_size": args.batch_size,
        "device": args.device,
        "num_workers": args.num_workers,
        "npixel": args.npixel,
        "progress": not args.no_progress,
        "compile": args.compile,
    }


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from psetae.io import write_json_atomic
    from psetae.predict import evaluate
    from psetae.train.forest import find_forests

    forests = find_forests(args.checkpoint)
    if forests is not None:  # the random-forest baseline
        from psetae.metrics import confusion_matrix, summarize

        pred = _forest_prediction(args, forests, labelled=True)
        cm = confusion_matrix(pred.labels, pred.predicted, len(pred.class_ids))
        out = {**summarize(cm, pred.class_names), "root": str(args.root),
               "checkpoints": [str(p) for p in forests], "n_skipped": 0}  # fmt: skip
    else:
        out = evaluate(
            args.checkpoint,
            args.root,
            **_inference_options(args),
        )
    print(f"{out['n']} parcels ({out['n_skipped']} of other classes skipped)")
    print(f"OA {out['oa']:.4f}  mIoU {out['miou']:.4f}  macro F1 {out['macro_f1']:.4f}")
    width = max(len(n) for n in out["class_names"])
    print(f"{'class':<{width}}  {'IoU':>6}  {'F1':>6}  support")
    for name, iou, f1, n in zip(
        out["class_names"],
        out["per_class"]["iou"],
        out["per_class"]["f1"],
        out["per_class"]["support"],
        strict=True,
    ):
        if iou is None:
            continue
        print(f"{name:<{width}}  {iou:6.3f}  {f1:6.3f}  {n}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out, out)
        print(f"metrics written to {args.out}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from psetae.predict import predict_csv
    from psetae.train.forest import find_forests

    forests = find_forests(args.checkpoint)
    if forests is not None:  # the random-forest baseline
        from psetae.predict import write_predictions_csv

        pred = _forest_prediction(args, forests, labelled=False)
        write_predictions_csv(pred, args.out)
        n = len(pred.ids)
    else:
        # Streamed: batches are predicted and written one after the other.
        n = predict_csv(args.root, args.checkpoint, args.out, **_inference_options(args))
    print(f"{n} parcels predicted, written to {args.out}")
    return 0


# --------------------------------------------------------------------------- rasters and maps


def _add_raster_commands(command: Any) -> None:
    """Parsers of import-rasters, simulate-scene and map."""
    p = command(
        "import-rasters",
        "turn a GeoTIFF time series and parcel polygons into a dataset folder",
        "Import one GeoTIFF per date (date in the file name, or a CSV/JSON table of file "
        "and date) or one stacked GeoTIFF with dated band descriptions, and a parcel file "
        "(GeoPackage, GeoJSON, Shapefile), as a pixel-set dataset in the S2-Agri layout. "
        "Pixels whose centre is inside a polygon belong to it (--all-touched: every pixel "
        "it touches); nodata or cloudy values are interpolated in time. Skipped parcels "
        "are printed and listed in META/import_report.csv.",
        "example: psetae import-rasters scene/rasters --parcels scene/parcels.gpkg "
        "--label-column code --name-column name --cloud-band CLOUD --out data/scene",
    )
    p.add_argument("rasters", type=Path, help="folder, stacked .tif, or .csv/.json table")
    p.add_argument("--parcels", type=Path, required=True, help="parcel polygons")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    p.add_argument("--id-column", default="id", help="parcel id column")
    p.add_argument("--label-column", default="label", help="label column ('' for none)")
    p.add_argument("--name-column", default=None, help="class name column")
    p.add_argument("--layer", default=None, help="layer of the parcel file")
    p.add_argument("--bands", default=None, help="comma-separated band names, in order")
    p.add_argument("--cloud-band", default=None, help="name of a cloud-mask band (0 = clear)")
    p.add_argument("--date-pattern", default=None, help="regex of the YYYYMMDD date")
    p.add_argument("--all-touched", action="store_true", help="every pixel a polygon touches")
    p.add_argument("--nomenclature", default="label", help="name of the labels")
    p.add_argument(
        "--codes-from",
        type=_existing_dir,
        default=None,
        metavar="DATASET",
        help="reuse this imported dataset's label codes (class k = same code)",
    )
    p.add_argument("--tile", type=_positive_int, default=256, help="window side (pixels)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(handler=_cmd_import_rasters)

    p = command(
        "simulate-scene",
        "write a synthetic GeoTIFF time series and its parcel polygons",
        "Write a small synthetic Sentinel-2 region (UTM 31N): one GeoTIFF per date with "
        "the simulator's crop spectra, clouds on some dates (CLOUD band), and the parcels "
        "as a GeoPackage. Offline and deterministic. Each seed has its own place on the map "
        "(seed s: column s mod 16, row s // 16 of a grid of scenes) unless --origin is given.",
        "example: psetae simulate-scene --out scene",
    )
    p.add_argument("--out", type=Path, required=True, help="folder to create")
    p.add_argument("--size", type=_positive_int, default=256, help="width and height (pixels)")
    p.add_argument("--fields", type=_positive_int, default=200, help="number of fields")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument(
        "--origin",
        type=float,
        nargs=2,
        metavar=("X", "Y"),
        default=None,
        help="upper-left corner in metres (default: a place of the seed's own)",
    )
    p.add_argument(
        "--nodata-share",
        type=_fraction,
        default=0.0,
        help="share of pixels per date written as nodata (-9999)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(handler=_cmd_simulate_scene)

    p = command(
        "map",
        "join predictions to the parcels, write a GeoPackage or GeoJSON",
        "Join the CSV of 'psetae predict' to the parcel polygons: per parcel the predicted "
        "class id and name, its probability, and the declared label when a label column "
        "is given. The format follows the extension (.gpkg, .geojson).",
        "example: psetae map predictions.csv --parcels scene/parcels.gpkg --dataset "
        "data/scene --label-column code --out map.gpkg",
    )
    p.add_argument("predictions", type=Path, help="CSV written by psetae predict")
    p.add_argument("--parcels", type=Path, required=True, help="parcel polygons")
    p.add_argument("--out", type=Path, required=True, help=".gpkg or .geojson to write")
    p.add_argument("--id-column", default="id", help="parcel id column")
    p.add_argument("--label-column", default=None, help="declared label column")
    p.add_argument("--dataset", type=_existing_dir, default=None, help="the imported dataset")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="the checkpoint that predicted: its label codes translate class ids "
        "and must agree with --dataset's",
    )
    p.add_argument("--nomenclature", default="label", help="name of the labels")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(handler=_cmd_map)


def _cmd_import_rasters(args: argparse.Namespace) -> int:
    from psetae.data.rasters import DATE_PATTERN, REPORT_FILE, import_rasters

    bands = [b.strip() for b in args.bands.split(",")] if args.bands else None
    result = import_rasters(
        args.rasters,
        args.parcels,
        args.out,
        id_column=args.id_column,
        label_column=args.label_column or None,
        name_column=args.name_column,
        layer=args.layer,
        bands=bands,
        cloud_band=args.cloud_band,
        date_pattern=args.date_pattern or DATE_PATTERN,
        all_touched=args.all_touched,
        nomenclature=args.nomenclature,
        codes_from=args.codes_from,
        tile=args.tile,
        overwrite=args.overwrite,
    )
    for pid, status, reason in result.report[:20]:
        print(f"  parcel {pid}: {status}: {reason}")
    if len(result.report) > 20:
        print(f"  ... and {len(result.report) - 20} more")
    print(
        f"{result.n_parcels} parcels written to {result.root} ({len(result.skipped)} skipped, "
        f"{100 * result.filled_share:.2f}% of values filled); report: "
        f"{result.root / REPORT_FILE}"
    )
    return 0


def _cmd_simulate_scene(args: argparse.Namespace) -> int:
    from psetae.data.scene import simulate_scene

    files = simulate_scene(
        args.out,
        width=args.size,
        height=args.size,
        n_fields=args.fields,
        seed=args.seed,
        origin=None if args.origin is None else tuple(args.origin),
        nodata_share=args.nodata_share,
        overwrite=args.overwrite,
    )
    print(f"scene written: rasters {files.rasters}, parcels {files.parcels}")
    return 0


def _cmd_map(args: argparse.Namespace) -> int:
    from psetae.maps import write_prediction_map

    out = write_prediction_map(
        args.predictions,
        args.parcels,
        args.out,
        id_column=args.id_column,
        label_column=args.label_column,
        dataset=args.dataset,
        nomenclature=args.nomenclature,
        checkpoint=args.checkpoint,
        overwrite=args.overwrite,
    )
    print(f"map written: {out}")
    return 0


# --------------------------------------------------------------------------- entry point


def _one_line(exc: PsetaeError) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = text.splitlines()
    more = f" (and {len(lines) - 1} more lines)" if len(lines) > 1 else ""
    return lines[0] + more


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 invalid dataset, 2 error).

    Parameters
    ----------
    argv
        The arguments (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed usage and one error line
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    if hasattr(args, "threads"):  # train, evaluate, predict
        import torch

        from psetae.device import default_num_threads

        # Under torchrun the ranks of one machine share its cores instead of each taking all.
        torch.set_num_threads(args.threads or default_num_threads())
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print(f"psetae {args.command}: interrupted", file=sys.stderr)
        return 130
    except PsetaeError as e:  # the input is wrong; any other exception is a bug: traceback
        print(f"psetae {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
