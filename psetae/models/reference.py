"""Load weights saved by the reference implementation (VSainteuf/pytorch-psetae).

The reference names its modules differently (``mlp1.0.lin``, ``attention_heads.fc1_k``,
``decoder.3``, ...). :func:`convert_reference_state_dict` renames its tensors to ours,
:func:`load_reference_weights` loads them into a :class:`~psetae.models.psetae.PseTae`, and
:func:`psetae_from_reference` builds the model from the weights, a file or a whole results
folder (``Fold_<k>/model.pth.tar``, and ``conf.json`` when the training script wrote one).

The rule: never a silently different model. What the shapes and the fixed positional table
determine is inferred; where two readings remain, a :class:`ReferenceWeightsError` names the
argument to pass; where a reference default is assumed that the weights cannot confirm (the
pooling ``mean_std`` against e.g. ``mean_max``, which has the same widths), a warning says so.

The temporal encoder's kind is told by its keys (:func:`temporal_encoder_kind`); each kind has
one key map and one config inference (``_TEMPORAL``). L-TAE weights are detected and refused
until the package has an L-TAE module.
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from psetae.data.format import dates_to_positions
from psetae.errors import PsetaeError
from psetae.models.pse import parse_pooling
from psetae.models.psetae import PseTae
from psetae.models.tae import positional_encoding

PE_KEY = "temporal_encoder.position_enc.weight"
# The reference training scripts' defaults for what the weights cannot show.
DEFAULT_POOLING = "mean_std"
DEFAULT_T = 1000.0
DEFAULT_DROPOUT = 0.2
# Both reference training scripts append the 4 geometric features or none (--geomfeat 1/0).
REFERENCE_EXTRA_SIZES = (0, 4)
FOLD_FILE = "model.pth.tar"

_PARAM = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
# In nn.Sequential MLPs the reference puts Linear at index 3i, BatchNorm at 3i + 1 and ReLU
# at 3i + 2; ours has one block per layer.
_SEQUENTIAL = {
    "spatial_encoder.mlp2": "spatial_encoder.mlp2",
    "temporal_encoder.mlp": "temporal_encoder.mlp3",
    "decoder": "decoder",
}
_TAE_FIXED = {
    "temporal_encoder.inlayernorm": "temporal_encoder.in_norm",
    "temporal_encoder.outlayernorm": "temporal_encoder.out_norm",
    "temporal_encoder.attention_heads.fc1_q": "temporal_encoder.query",
    "temporal_encoder.attention_heads.fc1_k": "temporal_encoder.key",
    "temporal_encoder.attention_heads.fc2.0": "temporal_encoder.query_head.0",
    "temporal_encoder.attention_heads.fc2.1": "temporal_encoder.query_head.1",
}


class ReferenceWeightsError(PsetaeError, ValueError):
    """Weights that do not come from the reference implementation, or do not fit the model."""


# ---------------------------------------------------------------------------- reading files


def _strip_module_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    # Models saved from nn.DataParallel prefix every key with "module.".
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def read_reference_state_dict(
    path_or_state_dict: str | os.PathLike | Mapping[str, Any],
) -> tuple[dict[str, torch.Tensor], str]:
    """The reference state dict from a file or a dict, and a name for error messages.

    Accepts the bare state dict and the reference training script's checkpoint
    ``{"state_dict": ..., "epoch": ..., "optimizer": ...}``. Files are read with
    ``torch.load(..., weights_only=True)`` only: tensors and plain containers, no code.

    Raises
    ------
    ReferenceWeightsError
        If the file holds other objects (refused for safety), is not a PyTorch file, or
        holds no state dict.
    """
    if isinstance(path_or_state_dict, Mapping):
        obj: Any = path_or_state_dict
        source = "state dict"
    else:
        source = os.fspath(path_or_state_dict)
        if not os.path.isfile(source):
            raise ReferenceWeightsError(f"{source}: no such file")
        try:
            obj = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors come in many types
            # torch's own message suggests weights_only=False: not advice to pass on.
            if "weights only" in str(exc).lower() or "unpickl" in type(exc).__name__.lower():
                raise ReferenceWeightsError(
                    f"{source}: refused for safety: it holds Python objects other than tensors "
                    "and plain containers, and reading them could run code; psetae reads "
                    "weights files with torch.load(weights_only=True) only"
                ) from None
            raise ReferenceWeightsError(
                f"{source}: not a PyTorch weights file ({type(exc).__name__})"
            ) from None
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ReferenceWeightsError(f"{source}: holds no state dict of tensors")
    return _strip_module_prefix(obj), source


def find_reference_folds(folder: str | os.PathLike) -> dict[int, Path]:
    """The weights files of a reference results folder: ``{k: folder/Fold_<k>/model.pth.tar}``.

    Raises
    ------
    ReferenceWeightsError
        If the folder holds no ``Fold_<k>/model.pth.tar``.
    """
    root = Path(folder)
    folds = {}
    for sub in root.iterdir():
        m = re.fullmatch(r"Fold_(\d+)", sub.name)
        if m and (sub / FOLD_FILE).is_file():
            folds[int(m[1])] = sub / FOLD_FILE
    if not folds:
        raise ReferenceWeightsError(f"{root}: no Fold_<k>/{FOLD_FILE} in this folder")
    return dict(sorted(folds.items()))


def _int_list(value: Any, key: str, source: str) -> list[int]:
    # The training script's argparse takes the widths as strings such as "[10,32,64]".
    if isinstance(value, str):
        value = [v for v in value.strip().strip("[]").split(",") if v.strip()]
    try:
        return [int(v) for v in value]
    except (TypeError, ValueError):
        raise ReferenceWeightsError(
            f"{source}: {key} = {value!r} is not a list of widths"
        ) from None


def read_reference_conf(path: str | os.PathLike) -> dict[str, Any]:
    """The hyper-parameters of a reference run (``conf.json``, the argparse names).

    Widths (``mlp1``... ``mlp4``) come back as lists of ints, also when stored as strings.

    Raises
    ------
    ReferenceWeightsError
        If the file is not a JSON object or a width is not a list of integers.
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            conf = json.load(f)
    except (OSError, ValueError) as exc:
        raise ReferenceWeightsError(f"{source}: not a readable JSON file ({exc})") from None
    if not isinstance(conf, dict):
        raise ReferenceWeightsError(f"{source}: expected a JSON object of hyper-parameters")
    for key in ("mlp1", "mlp2", "mlp3", "mlp4"):
        if key in conf:
            conf[key] = _int_list(conf[key], key, source)
    return conf


# ------------------------------------------------------------------- temporal encoder kinds


def temporal_encoder_kind(state_dict: Mapping[str, Any]) -> str:
    """``"tae"`` or ``"ltae"``, told by the attention keys of a reference state dict.

    The TAE computes its master query from the input (``attention_heads.fc1_q``); the
    L-TAE learns it (``attention_heads.Q``).

    Raises
    ------
    ReferenceWeightsError
        If neither kind's keys (or both) are present.
    """
    keys = set(_strip_module_prefix(state_dict))
    tae = "temporal_encoder.attention_heads.fc1_q.weight" in keys
    ltae = "temporal_encoder.attention_heads.Q" in keys
    if tae == ltae:
        raise ReferenceWeightsError(
            "keys of neither a reference TAE (temporal_encoder.attention_heads.fc1_q) nor an "
            "L-TAE (temporal_encoder.attention_heads.Q)"
        )
    return "tae" if tae else "ltae"


def _supported_kind(state_dict: Mapping[str, Any], source: str) -> str:
    try:
        kind = temporal_encoder_kind(state_dict)
    except ReferenceWeightsError as exc:
        raise ReferenceWeightsError(f"{source}: {exc}") from None
    if kind not in _TEMPORAL:
        raise ReferenceWeightsError(
            f"{source}: these are weights of a PSE + L-TAE (temporal_encoder.attention_heads.Q); "
            "L-TAE weights are not supported yet"
        )
    return kind


# ---------------------------------------------------------------------------------- key map


def _rename_sequential(key: str, n_decoder_linears: int) -> str | None:
    for old, new in _SEQUENTIAL.items():
        m = re.fullmatch(re.escape(old) + r"\.(\d+)\." + _PARAM, key)
        if m:
            layer, role = divmod(int(m[1]), 3)
            if old == "decoder" and layer == n_decoder_linears - 1 and role == 0:
                return f"decoder.{layer}.{m[2]}"  # the last, bare Linear
            if role == 0:
                return f"{new}.{layer}.linear.{m[2]}"
            if role == 1:
                return f"{new}.{layer}.norm.{m[2]}"
    return None


def _rename_pse_tae(key: str, n_decoder_linears: int) -> str | None:
    """Our name for a reference PSE-TAE key, or None if the key is not recognised."""
    m = re.fullmatch(r"spatial_encoder\.mlp1\.(\d+)\.(lin|bn)\." + _PARAM, key)
    if m:
        part = "linear" if m[2] == "lin" else "norm"
        return f"spatial_encoder.mlp1.{m[1]}.{part}.{m[3]}"
    for old, new in _TAE_FIXED.items():
        m = re.fullmatch(re.escape(old) + r"\." + _PARAM, key)
        if m:
            return f"{new}.{m[1]}"
    return _rename_sequential(key, n_decoder_linears)


def convert_reference_state_dict(
    state_dict: Mapping[str, torch.Tensor], source: str = "state dict", kind: str | None = None
) -> dict[str, torch.Tensor]:
    """Rename a reference PSE-TAE state dict to :class:`PseTae`'s key names.

    The reference's fixed positional table (``temporal_encoder.position_enc.weight``) is
    dropped: our model recomputes it from its ``positions`` (see :func:`load_reference_weights`).

    Parameters
    ----------
    state_dict
        The reference model's ``state_dict()`` (a ``module.`` prefix is removed).
    source
        Where the weights come from, for error messages.
    kind
        ``"tae"`` to rename without telling the temporal encoder from the keys (the L-TAE
        converter passes the keys the two encoders share); None: from the keys.

    Returns
    -------
    dict
        The same tensors under our names.

    Raises
    ------
    ReferenceWeightsError
        If the weights are an L-TAE's (not supported yet) or some keys are not those of a
        reference PSE-TAE (all listed in the message).
    """
    sd = _strip_module_prefix(state_dict)
    rename = _TEMPORAL[kind or _supported_kind(sd, source)][0]
    decoder_linears = {
        int(m[1]) // 3 for k in sd if (m := re.fullmatch(r"decoder\.(\d+)\.weight", k))
    }
    n_decoder = max(decoder_linears) + 1 if decoder_linears else 0
    out, unknown = {}, []
    for key, value in sd.items():
        if key == PE_KEY:
            continue
        new = rename(key, n_decoder)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        hint = ""
        if any("inconv" in k for k in unknown):
            hint = " (the reference's d_model option, an input projection of the TAE, is not supported)"
        raise ReferenceWeightsError(f"{source}: keys not of a reference PSE-TAE{hint}: {unknown}")
    return out


# ----------------------------------------------------------------------- positional table


def infer_positions(table: torch.Tensor, period: float = DEFAULT_T) -> list[float] | None:
    """The whole-day position of every row of a reference positional table, if any fits.

    The slowest complete sinusoid pair (columns ``2i``, ``2i + 1``) gives each row's angle,
    hence its position; the result is rounded to whole days and checked by recomputing the
    whole table (which also checks ``period``).

    Returns
    -------
    list of float or None
        The n positions, or None when no whole-day positions reproduce the table.
    """
    n, d = table.shape
    if d < 2:
        return None
    i = d // 2 - 1  # the last pair with both columns (d may be odd)
    t = table.double()
    angle = torch.atan2(t[:, 2 * i], t[:, 2 * i + 1])  # (n,)
    positions = torch.round(angle * float(period) ** (2.0 * i / d))
    if not torch.allclose(positional_encoding(positions, d, period), table.float(), atol=1e-4):
        return None
    return [float(p) for p in positions]


def _is_order(found: list[float] | None) -> bool:
    """A table of rows 0, 1, ..., n - 1: the reference's table without dates."""
    return found is not None and found == [float(i) for i in range(len(found))]


def _positions_config(
    table: torch.Tensor | None,
    positions: Sequence[float] | str | None,
    T: float,
    source: str,
) -> tuple[list[float] | None, int]:
    """``(positions, len_max_seq)`` from the table and what was given.

    ``positions`` is ``"order"`` (the reference's ``--positions order``: no dates, the
    table has rows 0..len_max_seq and a sequence takes rows 1..T), ``"bespoke"`` (dates,
    whichever the table encodes), days, or None (read them from the table where it leaves
    one reading only).
    """
    if table is None:
        raise ReferenceWeightsError(f"{source}: no {PE_KEY} (the fixed positional table)")
    n = int(table.shape[0])
    found = infer_positions(table, T)
    seen = (
        f"rows for positions 0..{n - 1} (no dates, or daily dates)"
        if _is_order(found)
        else f"the positions {found}"
        if found is not None
        else f"no whole-day positions for T={T:g} (pass T= if the period is not {T:g})"
    )
    if positions == "bespoke" and found is not None:
        return found, n
    if isinstance(positions, str) and positions != "bespoke":
        if positions != "order":
            raise ReferenceWeightsError(
                f"positions={positions!r}: expected 'order', 'bespoke', days or dates"
            )
        if not _is_order(found):
            raise ReferenceWeightsError(
                f"{source}: positions='order' (no dates) disagrees with the weights: their "
                f"positional table ({PE_KEY}) encodes {seen}"
            )
        return None, n - 1
    if positions is not None and positions != "bespoke":
        given = [float(p) for p in positions]
        expected = positional_encoding(torch.tensor(given), table.shape[1], T)
        if len(given) != n or not torch.allclose(expected, table.float(), atol=1e-4):
            raise ReferenceWeightsError(
                f"{source}: the given positions {given} ({len(given)} dates) disagree with the "
                f"weights: their positional table ({PE_KEY}, {n} rows) encodes {seen}"
            )
        return given, n
    if found is None:
        raise ReferenceWeightsError(
            f"{source}: cannot read the positions from the positional table ({PE_KEY}): "
            f"{seen}; pass positions= (days) or dates=, and T="
        )
    if _is_order(found) and positions is None:
        raise ReferenceWeightsError(
            f"{source}: the positional table ({PE_KEY}) has rows for positions 0..{n - 1}: "
            f"either no dates (len_max_seq={n - 1}, a sequence takes positions 1..T) or "
            f"{n} daily dates (positions 0..{n - 1}); pass positions='order' or "
            "positions=<days> (or dates=)"
        )
    return found, n


# ------------------------------------------------------------------------ config inference


def _layer_weights(
    sd: Mapping[str, torch.Tensor], prefix: str, suffix: str = "weight"
) -> list[torch.Tensor]:
    """The 2-D (Linear) weights ``<prefix>.<i>.<suffix>`` in index order (BatchNorm's are 1-D)."""
    pattern = re.escape(prefix) + r"\.(\d+)\." + re.escape(suffix)
    found = {int(m[1]): v for k, v in sd.items() if (m := re.fullmatch(pattern, k))}
    return [found[i] for i in sorted(found) if found[i].dim() == 2]


def _widths(ws: list[torch.Tensor]) -> list[int]:
    return [int(ws[0].shape[1])] + [int(w.shape[0]) for w in ws]


def _warn(message: str) -> None:
    """Warn, pointing at the first caller outside this module."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def _pooling_and_extra(
    mlp1_out: int,
    mlp2_in: int,
    pooling: str | None,
    extra_size: int | None,
    source: str,
) -> tuple[str, int]:
    """The pooling and the number E of extra features, from ``mlp2[0] = P * D + E``."""
    D, W = mlp1_out, mlp2_in
    if pooling is not None:
        try:
            n_parts = len(parse_pooling(pooling))
        except ValueError as exc:
            raise ReferenceWeightsError(str(exc)) from None
        E = W - n_parts * D
        if E < 0 or (extra_size is not None and E != extra_size):
            raise ReferenceWeightsError(
                f"{source}: pooling={pooling!r} ({n_parts} x {D} features) and "
                f"extra_size={extra_size} do not fit the weights' mlp2[0] = {W}"
            )
        return pooling, E
    sizes = REFERENCE_EXTRA_SIZES if extra_size is None else (extra_size,)
    readings = [(p, e) for e in sizes for p in range(1, 5) if p * D + e == W]
    if len(readings) != 1:
        options = ", ".join(f"{p} pooled x {D} + {e} extra" for p, e in readings) or "none"
        raise ReferenceWeightsError(
            f"{source}: mlp2[0] = {W} with mlp1[-1] = {D} leaves the pooling and the extra "
            f"features undetermined (readings: {options}); pass pooling= and extra_size="
        )
    n_parts, E = readings[0]
    if n_parts != len(parse_pooling(DEFAULT_POOLING)):
        raise ReferenceWeightsError(
            f"{source}: the weights pool {n_parts} statistics per pixel set (mlp2[0] = {W} = "
            f"{n_parts} x {D} + {E}), not the default {DEFAULT_POOLING!r}; pass pooling= "
            "(e.g. 'mean_std_max'): the weights do not tell which statistics, nor their order"
        )
    _warn(
        f"{source}: assuming the reference's default pooling {DEFAULT_POOLING!r}: the weights "
        f"only show 2 pooled statistics per pixel set, and e.g. 'mean_max' has the same widths "
        "but gives other predictions; pass pooling= to confirm"
    )
    return DEFAULT_POOLING, E


def _pse_config(
    sd: Mapping[str, torch.Tensor],
    d: int,
    pooling: str | None,
    extra_size: int | None,
    source: str,
) -> dict[str, Any]:
    """The PSE's arguments; ``d`` is the TAE's input width (MLP2's output)."""
    lin1 = _layer_weights(sd, "spatial_encoder.mlp1", "lin.weight")
    if not lin1:
        raise ReferenceWeightsError(f"{source}: no spatial_encoder.mlp1 weights")
    mlp1 = _widths(lin1)
    lin2 = _layer_weights(sd, "spatial_encoder.mlp2")
    # No Linear in MLP2 (one width): the pooled vector itself is the PSE's output.
    mlp2 = _widths(lin2) if lin2 else [d]
    if mlp2[-1] != d:
        raise ReferenceWeightsError(
            f"{source}: inconsistent shapes: mlp2 {mlp2} ends with {mlp2[-1]}, the TAE's input "
            f"LayerNorm has {d} channels"
        )
    pooling, E = _pooling_and_extra(mlp1[-1], mlp2[0], pooling, extra_size, source)
    return {"input_dim": mlp1[0], "mlp1": mlp1, "pooling": pooling, "mlp2": mlp2, "extra_size": E}


def _tae_config(sd: Mapping[str, torch.Tensor], source: str) -> dict[str, Any]:
    """The TAE's widths: ``n_head``, ``d_k``, ``mlp3`` (and d, its input width)."""
    norm = sd.get("temporal_encoder.inlayernorm.weight")
    key_w = sd.get("temporal_encoder.attention_heads.fc1_k.weight")
    fc2 = sd.get("temporal_encoder.attention_heads.fc2.0.weight")
    if norm is None or key_w is None or fc2 is None:
        raise ReferenceWeightsError(
            f"{source}: no temporal_encoder.inlayernorm, attention_heads.fc1_k or fc2 weights"
        )
    if any(k.startswith("temporal_encoder.inconv.") for k in sd):
        raise ReferenceWeightsError(
            f"{source}: the TAE has an input projection (temporal_encoder.inconv, the "
            "reference's d_model option): not supported"
        )
    d = int(norm.shape[0])
    lin3 = _layer_weights(sd, "temporal_encoder.mlp")
    # The reference wants mlp3[0] = n_head * d and mlp3[-1] = d: no layer means one head.
    mlp3 = _widths(lin3) if lin3 else [d]
    n_head, rest = divmod(mlp3[0], d)
    d_k, rest_k = divmod(int(key_w.shape[0]), max(n_head, 1))
    if rest or rest_k or n_head < 1:
        raise ReferenceWeightsError(
            f"{source}: inconsistent shapes: mlp3 {mlp3} is not n_head x {d} wide, or the keys "
            f"({tuple(key_w.shape)}) are not n_head x d_k"
        )
    if int(fc2.shape[0]) != n_head * d_k:
        raise ReferenceWeightsError(
            f"{source}: attention_heads.fc2 has {fc2.shape[0]} channels, not n_head x d_k = "
            f"{n_head * d_k}: weights of an early version of the reference (its master query "
            "was computed differently), not supported"
        )
    return {"d": d, "n_head": n_head, "d_k": d_k, "mlp3": mlp3}


# Per temporal encoder kind: (key map, width inference). L-TAE: one more entry.
_TEMPORAL = {"tae": (_rename_pse_tae, _tae_config)}


def _conf_arguments(conf: Mapping[str, Any], source: str) -> dict[str, Any]:
    """What a reference ``conf.json`` says, under our argument names."""
    if conf.get("gru") or conf.get("tcnn"):
        raise ReferenceWeightsError(f"{source}: a PSE + GRU / TempCNN run, not supported")
    # The L-TAE repository's script trains an L-TAE unless --tae (or --gru, --tcnn) is set.
    out: dict[str, Any] = {"kind": "tae" if conf["tae"] else "ltae"} if "tae" in conf else {}
    for key in ("pooling", "T", "dropout"):
        if key in conf:
            out[key] = conf[key]
    if "geomfeat" in conf:
        out["extra_size"] = 4 if conf["geomfeat"] else 0
    if conf.get("positions") in ("order", "bespoke"):
        out["positions_mode"] = conf["positions"]
    elif "positions" in conf:
        raise ReferenceWeightsError(f"{source}: positions = {conf['positions']!r}")
    for key in ("input_dim", "mlp1", "mlp2", "n_head", "d_k", "mlp3", "mlp4", "num_classes"):
        if key in conf:
            out[key] = conf[key]
    if "lms" in conf:
        out["len_max_seq"] = int(conf["lms"])
    return out


def _merge(given: dict[str, Any], conf: dict[str, Any], source: str) -> dict[str, Any]:
    """The caller's arguments, completed by conf.json; a disagreement is an error."""
    out = dict(conf)
    for key, value in given.items():
        if value is None:
            continue
        if key in conf and conf[key] != value:
            raise ReferenceWeightsError(
                f"{source}: {key}={value!r} was given but the run's conf.json has {conf[key]!r}"
            )
        out[key] = value
    return out


def reference_config(
    state_dict: Mapping[str, torch.Tensor],
    *,
    pooling: str | None = None,
    extra_size: int | None = None,
    positions: Sequence[float] | str | None = None,
    dates: Sequence[int] | None = None,
    T: float | None = None,
    dropout: float | None = None,
    conf: Mapping[str, Any] | None = None,
    source: str = "state dict",
) -> dict[str, Any]:
    """:class:`PseTae` keyword arguments for a reference state dict.

    The widths, ``n_head``, ``d_k``, ``len_max_seq`` and the positions come from the
    shapes and the fixed positional table. What they leave open is taken from the
    arguments, then from ``conf`` (a run's ``conf.json``, see :func:`read_reference_conf`);
    an argument that disagrees with ``conf`` or with the weights is an error.

    Parameters
    ----------
    state_dict
        The reference's state dict (reference key names).
    pooling
        The PSE's pooling. Without it (and ``conf``), the reference default ``"mean_std"`` is
        assumed with a warning when the weights pool two statistics; any other count is an
        error (the weights show how many statistics, not which).
    extra_size
        Number E of extra (geometric) features; default: what the widths give with E = 0 or
        4 (the reference scripts' choices).
    positions
        ``"order"`` (trained without dates, the reference's ``--positions order``: a sequence
        takes positions 1..T), ``"bespoke"`` (trained with dates: those the table encodes),
        the days of the dates, or None: read from the table, an error when it leaves two
        readings (rows 0..n-1: no dates, or n daily dates). Given days are checked against
        the table (an error names both).
    dates
        YYYYMMDD dates instead of ``positions`` (days since the first).
    T
        Period of the positional encoding (default 1000, checked against the table).
    dropout
        Dropout rate (default 0.2; not visible in the weights, no effect on predictions).
    conf
        A run's hyper-parameters (the reference argparse names).
    source
        Where the weights come from, for messages.

    Returns
    -------
    dict
        Keyword arguments of :class:`PseTae` (JSON-serialisable).

    Raises
    ------
    ReferenceWeightsError
        Naming the argument to pass when the weights admit two readings, or what disagrees.

    Warns
    -----
    UserWarning
        When the default pooling is assumed.
    """
    sd = _strip_module_prefix(state_dict)
    kind = _supported_kind(sd, source)
    if positions is not None and dates is not None:
        raise ReferenceWeightsError("pass positions= or dates=, not both")
    if dates is not None:
        positions = [float(p) for p in dates_to_positions(dates)]
    elif positions is not None and not isinstance(positions, str):
        positions = [float(p) for p in positions]
    given = {"pooling": pooling, "extra_size": extra_size, "T": T, "dropout": dropout}
    hints = _merge(given, _conf_arguments(conf, source) if conf is not None else {}, source)
    if hints.get("kind", kind) != kind:
        raise ReferenceWeightsError(
            f"{source}: conf.json describes a {hints['kind'].upper()} run, the weights are a "
            f"{kind.upper()}'s"
        )
    mode = hints.get("positions_mode")
    if mode is not None and positions is not None:
        raise ReferenceWeightsError(
            f"{source}: the run's conf.json has positions {mode!r}: do not pass positions= "
            "or dates="
        )
    positions = mode if positions is None else positions

    temporal = _TEMPORAL[kind][1](sd, source)
    d = temporal.pop("d")
    config = _pse_config(sd, d, hints.get("pooling"), hints.get("extra_size"), source)
    config.update(temporal)
    lin4 = _layer_weights(sd, "decoder")
    if not lin4:
        raise ReferenceWeightsError(f"{source}: no decoder weights")
    config["mlp4"] = _widths(lin4)
    if config["mlp4"][0] != config["mlp3"][-1]:
        raise ReferenceWeightsError(
            f"{source}: inconsistent shapes: mlp3 {config['mlp3']} then mlp4 {config['mlp4']}"
        )
    T = float(hints.get("T", DEFAULT_T))
    table = sd.get(PE_KEY)
    config["positions"], config["len_max_seq"] = _positions_config(table, positions, T, source)
    config["T"] = T
    config["dropout"] = float(hints.get("dropout", DEFAULT_DROPOUT))

    # What conf.json says must be what the weights show.
    checks = {k: config[k] for k in ("input_dim", "mlp1", "mlp2", "n_head", "d_k", "mlp3", "mlp4")}
    checks["num_classes"] = config["mlp4"][-1]
    if config["positions"] is None:
        checks["len_max_seq"] = config["len_max_seq"]
    for key, value in checks.items():
        if key in hints and hints[key] != value:
            raise ReferenceWeightsError(
                f"{source}: conf.json has {key} = {hints[key]!r}, the weights {value!r}"
            )
    order = ("input_dim", "mlp1", "pooling", "mlp2", "extra_size", "n_head", "d_k", "mlp3",
             "dropout", "T", "len_max_seq", "positions", "mlp4")  # fmt: skip
    return {k: config[k] for k in order}


# ------------------------------------------------------------------------------- loading


def _check_positional_table(model: PseTae, table: torch.Tensor, source: str) -> None:
    """Raise if the reference's positional table is not the one ``model`` computes."""
    tae = model.temporal_encoder
    if tae.positions is not None:
        expected = positional_encoding(tae.positions, tae.d, tae.period)
    else:  # the reference's table without dates: rows for positions 0, 1, ..., len_max_seq
        expected = positional_encoding(torch.arange(tae.len_max_seq + 1), tae.d, tae.period)
    if table.shape != expected.shape or not torch.allclose(table.float(), expected, atol=1e-4):
        raise ReferenceWeightsError(
            f"{source}: the positional encoding ({PE_KEY}, shape {tuple(table.shape)}) does not "
            f"match the model's positions={model.config.positions} and T={tae.period}; "
            "build the model with the dates the weights were trained with "
            "(psetae_from_reference infers them)"
        )


def load_reference_weights(
    model: PseTae,
    path_or_state_dict: str | os.PathLike | Mapping[str, Any],
    check_positions: bool = True,
) -> PseTae:
    """Load weights saved by the reference implementation into ``model``.

    Parameters
    ----------
    model
        A :class:`PseTae` with the reference model's configuration.
    path_or_state_dict
        A file saved with ``torch.save`` (bare state dict or the training script's
        ``{"state_dict": ...}`` checkpoint), or the state dict itself.
    check_positions
        Check that the reference's positional table matches the model's positions.

    Returns
    -------
    PseTae
        ``model``, with the weights loaded (its train/eval mode unchanged).

    Raises
    ------
    ReferenceWeightsError
        Naming the source and the missing, unexpected or mis-shaped keys.
    """
    ref, source = read_reference_state_dict(path_or_state_dict)
    ours = convert_reference_state_dict(ref, source)
    check = check_positions and PE_KEY in ref
    table = (lambda: _check_positional_table(model, ref[PE_KEY], source)) if check else None
    return load_converted(model, ours, source, table)


def load_converted(
    model: nn.Module,
    ours: Mapping[str, torch.Tensor],
    source: str,
    check: Callable[[], None] | None = None,
) -> nn.Module:
    """Load weights already renamed to ``model``'s keys, after checking every key and shape
    (and running ``check``, e.g. of the positional table); shared by the TAE and L-TAE
    converters.

    Raises
    ------
    ReferenceWeightsError
        Naming the source and the missing, unexpected or mis-shaped keys.
    """
    target = model.state_dict()
    missing = sorted(set(target) - set(ours))
    unexpected = sorted(set(ours) - set(target))
    shapes = [
        f"{k}: file {tuple(ours[k].shape)} vs model {tuple(target[k].shape)}"
        for k in sorted(set(ours) & set(target))
        if ours[k].shape != target[k].shape
    ]
    if missing or unexpected or shapes:
        raise ReferenceWeightsError(
            f"{source}: the weights do not fit the model "
            f"(missing {missing}; unexpected {unexpected}; wrong shapes {shapes})"
        )
    if check is not None:
        check()
    model.load_state_dict(ours)
    return model


def _conf_for(path: Path) -> dict[str, Any] | None:
    """The conf.json of the run a weights file or results folder belongs to, if any."""
    if path.is_dir():
        conf = path / "conf.json"
    elif re.fullmatch(r"Fold_\d+", path.parent.name):  # results/Fold_<k>/model.pth.tar
        conf = path.parent.parent / "conf.json"
    else:
        return None
    return read_reference_conf(conf) if conf.is_file() else None


def _model_from_state_dict(
    ref: dict[str, torch.Tensor],
    source: str,
    conf: Mapping[str, Any] | None,
    options: dict[str, Any],
) -> PseTae:
    if temporal_encoder_kind(ref) == "ltae":
        from psetae.models.reference_ltae import psltae_from_reference

        ltae_options = {k: options[k] for k in ("positions", "T", "dropout") if options[k]}
        if options["pooling"]:
            ltae_options["pooling"] = options["pooling"]
        return psltae_from_reference(ref, **ltae_options).eval()
    config = reference_config(ref, conf=conf, source=source, **options)
    model = PseTae(**config)
    return load_reference_weights(model, ref).eval()


def psetae_from_reference(
    path_or_state_dict: str | os.PathLike | Mapping[str, Any],
    *,
    fold: int | None = None,
    pooling: str | None = None,
    extra_size: int | None = None,
    positions: Sequence[float] | str | None = None,
    dates: Sequence[int] | None = None,
    T: float | None = None,
    dropout: float | None = None,
) -> PseTae | list[PseTae]:
    """Build :class:`PseTae` models from reference weights, in eval mode.

    Parameters
    ----------
    path_or_state_dict
        A state dict; a file saved with ``torch.save`` (bare state dict or the training
        script's ``{"state_dict": ...}``), read with ``weights_only=True``; or a reference
        results folder holding ``Fold_<k>/model.pth.tar`` (such as the authors' published
        5-fold weights). A ``conf.json`` at the folder's root (the L-TAE repository's
        training script writes one) supplies the hyper-parameters, also for a
        ``Fold_<k>/model.pth.tar`` file given alone.
    fold
        For a results folder: the fold k to load; None loads all of them.
    pooling, extra_size, positions, dates, T, dropout
        What the weights cannot tell; see :func:`reference_config`.

    Returns
    -------
    PseTae or list of PseTae
        One model for a state dict, a file or ``fold=k``; for a folder without ``fold``, the
        models of all folds in fold order: an ensemble, whose prediction is the mean of the
        members' log-probabilities (as in :mod:`psetae.predict`).

    Raises
    ------
    ReferenceWeightsError
        Unsafe or unreadable files, a missing fold, or weights that leave an argument open
        (the message names it) or disagree with the arguments or conf.json.
    """
    options = {"pooling": pooling, "extra_size": extra_size, "positions": positions,
               "dates": dates, "T": T, "dropout": dropout}  # fmt: skip
    if isinstance(path_or_state_dict, Mapping):
        ref, source = read_reference_state_dict(path_or_state_dict)
        return _model_from_state_dict(ref, source, None, options)
    path = Path(path_or_state_dict)
    conf = _conf_for(path)
    if not path.is_dir():
        if fold is not None:
            raise ReferenceWeightsError(f"{path}: fold={fold} needs a results folder, not a file")
        ref, source = read_reference_state_dict(path)
        return _model_from_state_dict(ref, source, conf, options)
    folds = find_reference_folds(path)
    if fold is not None:
        if fold not in folds:
            raise ReferenceWeightsError(f"{path}: no Fold_{fold}; the folds are {list(folds)}")
        folds = {fold: folds[fold]}
    models = []
    for file in folds.values():
        ref, source = read_reference_state_dict(file)
        models.append(_model_from_state_dict(ref, source, conf, options))
        if models[0].num_classes != models[-1].num_classes:
            raise ReferenceWeightsError(
                f"{source}: {models[-1].num_classes} classes, Fold_{next(iter(folds))} has "
                f"{models[0].num_classes}: not one ensemble"
            )
    return models[0] if fold is not None else models


__all__ = [
    "ReferenceWeightsError",
    "convert_reference_state_dict",
    "find_reference_folds",
    "infer_positions",
    "load_converted",
    "load_reference_weights",
    "psetae_from_reference",
    "read_reference_conf",
    "read_reference_state_dict",
    "reference_config",
    "temporal_encoder_kind",
]
