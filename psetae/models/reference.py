"""Load weights saved by the reference implementation (VSainteuf/pytorch-psetae).

The reference names its modules differently (``mlp1.0.lin``, ``attention_heads.fc1_k``,
``decoder.3``, ...). :func:`convert_reference_state_dict` renames its tensors to ours,
:func:`load_reference_weights` loads them into a :class:`~psetae.models.psetae.PseTae`, and
:func:`psetae_from_reference` builds the model from the shapes of the weights.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from psetae.errors import PsetaeError
from psetae.models.pse import parse_pooling
from psetae.models.psetae import PseTae
from psetae.models.tae import positional_encoding

PE_KEY = "temporal_encoder.position_enc.weight"

# Reference key prefix -> ours. In nn.Sequential MLPs the reference puts Linear at index
# 3i, BatchNorm at 3i + 1 and ReLU at 3i + 2; ours has one block per layer.
_SEQUENTIAL = {
    "spatial_encoder.mlp2": "spatial_encoder.mlp2",
    "temporal_encoder.mlp": "temporal_encoder.mlp3",
    "decoder": "decoder",
}
_FIXED = {
    "temporal_encoder.inlayernorm": "temporal_encoder.in_norm",
    "temporal_encoder.outlayernorm": "temporal_encoder.out_norm",
    "temporal_encoder.attention_heads.fc1_q": "temporal_encoder.query",
    "temporal_encoder.attention_heads.fc1_k": "temporal_encoder.key",
    "temporal_encoder.attention_heads.fc2.0": "temporal_encoder.query_head.0",
    "temporal_encoder.attention_heads.fc2.1": "temporal_encoder.query_head.1",
}
_PARAM = r"(weight|bias|running_mean|running_var|num_batches_tracked)"


class ReferenceWeightsError(PsetaeError, ValueError):
    """Weights that do not come from the reference implementation, or do not fit the model."""


def _strip_module_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    # Models saved from nn.DataParallel prefix every key with "module.".
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _rename(key: str, n_decoder_linears: int) -> str | None:
    """Our name for a reference key, or None if the key is not recognised."""
    m = re.fullmatch(r"spatial_encoder\.mlp1\.(\d+)\.(lin|bn)\." + _PARAM, key)
    if m:
        part = "linear" if m[2] == "lin" else "norm"
        return f"spatial_encoder.mlp1.{m[1]}.{part}.{m[3]}"
    for old, new in _FIXED.items():
        m = re.fullmatch(re.escape(old) + r"\." + _PARAM, key)
        if m:
            return f"{new}.{m[1]}"
    for old, new in _SEQUENTIAL.items():
        m = re.fullmatch(re.escape(old) + r"\.(\d+)\." + _PARAM, key)
        if m:
            index, param = int(m[1]), m[2]
            layer, role = divmod(index, 3)
            if old == "decoder" and layer == n_decoder_linears - 1 and role == 0:
                return f"decoder.{layer}.{param}"  # the last, bare Linear
            if role == 0:
                return f"{new}.{layer}.linear.{param}"
            if role == 1:
                return f"{new}.{layer}.norm.{param}"
    return None


def convert_reference_state_dict(
    state_dict: Mapping[str, torch.Tensor], source: str = "state dict"
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

    Returns
    -------
    dict
        The same tensors under our names.

    Raises
    ------
    ReferenceWeightsError
        If some keys are not those of a reference PSE-TAE (all listed in the message).
    """
    sd = _strip_module_prefix(state_dict)
    decoder_linears = {
        int(m[1]) // 3 for k in sd if (m := re.fullmatch(r"decoder\.(\d+)\.weight", k))
    }
    n_decoder = max(decoder_linears) + 1 if decoder_linears else 0
    out, unknown = {}, []
    for key, value in sd.items():
        if key == PE_KEY:
            continue
        new = _rename(key, n_decoder)
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


def read_reference_state_dict(
    path_or_state_dict: str | os.PathLike | Mapping[str, Any],
) -> tuple[dict[str, torch.Tensor], str]:
    """The reference state dict from a file or a dict, and a name for error messages.

    Accepts the bare state dict and the reference training script's checkpoint
    ``{"state_dict": ..., "epoch": ..., "optimizer": ...}``. Files are read with
    ``torch.load(..., weights_only=True)``: tensors and plain containers only, no code.

    Raises
    ------
    ReferenceWeightsError
        If the file cannot be read safely or holds no state dict.
    """
    if isinstance(path_or_state_dict, Mapping):
        obj: Any = path_or_state_dict
        source = "state dict"
    else:
        source = os.fspath(path_or_state_dict)
        try:
            obj = torch.load(source, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:  # unpickling errors come in many types
            raise ReferenceWeightsError(
                f"{source}: not a weights-only PyTorch file ({type(exc).__name__}: {exc})"
            ) from exc
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ReferenceWeightsError(f"{source}: holds no state dict of tensors")
    return _strip_module_prefix(obj), source


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
        ``model``, with the weights loaded.

    Raises
    ------
    ReferenceWeightsError
        Naming the source and the missing, unexpected or mis-shaped keys.
    """
    ref, source = read_reference_state_dict(path_or_state_dict)
    ours = convert_reference_state_dict(ref, source)
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
    if check_positions and PE_KEY in ref:
        _check_positional_table(model, ref[PE_KEY], source)
    model.load_state_dict(ours)
    return model


def infer_positions(table: torch.Tensor, period: float = 1000.0) -> tuple[list[float] | None, int]:
    """Positions (and len_max_seq) behind a reference positional table.

    The slowest sinusoid pair gives each row's angle, hence its position; the result is
    rounded to whole days and checked by recomputing the table.

    Returns
    -------
    tuple
        ``(None, n - 1)`` for the reference's table without dates (positions 0..n-1),
        else ``(positions, n)``.

    Raises
    ------
    ReferenceWeightsError
        If no whole-day positions reproduce the table.
    """
    n, d = table.shape
    t = table.double()
    inv_freq = float(period) ** (-2.0 * ((d - 1) // 2) / d)
    angle = torch.atan2(t[:, 2 * ((d - 1) // 2)], t[:, 2 * ((d - 1) // 2) + 1])  # (n,)
    positions = torch.round(angle / inv_freq)
    if not torch.allclose(positional_encoding(positions, d, period), table.float(), atol=1e-4):
        raise ReferenceWeightsError(
            f"{PE_KEY}: cannot infer whole-day positions with period T={period}; "
            "pass positions= (and T=) explicitly"
        )
    if torch.equal(positions, torch.arange(n, dtype=positions.dtype)):
        return None, n - 1
    return [float(p) for p in positions], n


def reference_config(
    state_dict: Mapping[str, torch.Tensor],
    pooling: str = "mean_std",
    T: float = 1000.0,
    positions: Sequence[float] | None = None,
    dropout: float = 0.2,
) -> dict[str, Any]:
    """A :class:`PseTae` config inferred from the shapes of a reference state dict.

    Widths, ``extra_size``, ``n_head``, ``d_k``, ``len_max_seq`` and the positions come
    from the shapes and the positional table; what shapes cannot tell (the pooling, the
    period ``T``, the dropout rate) is given.

    Raises
    ------
    ReferenceWeightsError
        If an expected key is missing or the shapes are inconsistent.
    """
    sd = _strip_module_prefix(state_dict)

    def weights(prefix: str, pattern: str) -> list[torch.Tensor]:
        found = {int(m[1]): v for k, v in sd.items() if (m := re.fullmatch(prefix + pattern, k))}
        if not found:
            raise ReferenceWeightsError(f"no {prefix}... weights")
        return [found[i] for i in sorted(found)]

    def widths(ws: list[torch.Tensor]) -> list[int]:
        return [int(ws[0].shape[1])] + [int(w.shape[0]) for w in ws]

    mlp1 = widths(weights(r"spatial_encoder\.mlp1\.", r"(\d+)\.lin\.weight"))
    mlp2 = widths(
        [w for w in weights(r"spatial_encoder\.mlp2\.", r"(\d+)\.weight") if w.dim() == 2]
    )
    mlp3 = widths(
        [w for w in weights(r"temporal_encoder\.mlp\.", r"(\d+)\.weight") if w.dim() == 2]
    )
    # Every Linear of the decoder: 2-D weights (BatchNorm weights are 1-D).
    mlp4 = widths([w for w in weights(r"decoder\.", r"(\d+)\.weight") if w.dim() == 2])
    d = mlp2[-1]
    extra_size = mlp2[0] - len(parse_pooling(pooling)) * mlp1[-1]
    key_w = sd.get("temporal_encoder.attention_heads.fc1_k.weight")
    if key_w is None or extra_size < 0 or mlp3[0] % d:
        raise ReferenceWeightsError(
            f"inconsistent shapes (mlp1 {mlp1}, mlp2 {mlp2}, mlp3 {mlp3}, "
            f"pooling {pooling!r}) or no attention keys"
        )
    n_head = mlp3[0] // d
    d_k = int(key_w.shape[0]) // n_head
    if positions is not None:
        positions, len_max_seq = [float(p) for p in positions], len(positions)
    elif PE_KEY in sd:
        positions, len_max_seq = infer_positions(sd[PE_KEY], T)
    else:
        raise ReferenceWeightsError(f"no {PE_KEY}; pass positions=")
    return {
        "input_dim": mlp1[0], "mlp1": mlp1, "pooling": pooling, "mlp2": mlp2,
        "extra_size": extra_size, "n_head": n_head, "d_k": d_k, "mlp3": mlp3,
        "dropout": float(dropout), "T": float(T), "len_max_seq": len_max_seq,
        "positions": positions, "mlp4": mlp4,
    }  # fmt: skip


def psetae_from_reference(
    path_or_state_dict: str | os.PathLike | Mapping[str, Any],
    pooling: str = "mean_std",
    T: float = 1000.0,
    positions: Sequence[float] | None = None,
    dropout: float = 0.2,
) -> PseTae:
    """Build a :class:`PseTae` from reference weights, its config inferred from their shapes.

    Parameters
    ----------
    path_or_state_dict
        As for :func:`load_reference_weights`.
    pooling, T, positions, dropout
        What the shapes cannot tell; ``positions`` is inferred from the positional table
        when not given.

    Returns
    -------
    PseTae
        The model with the weights loaded, in training mode (call ``.eval()`` to predict).
    """
    ref, source = read_reference_state_dict(path_or_state_dict)
    try:
        config = reference_config(ref, pooling, T, positions, dropout)
    except ReferenceWeightsError as exc:
        raise ReferenceWeightsError(f"{source}: {exc}") from exc
    model = PseTae.from_config(config)
    return load_reference_weights(model, ref)


__all__ = [
    "ReferenceWeightsError",
    "convert_reference_state_dict",
    "infer_positions",
    "load_reference_weights",
    "psetae_from_reference",
    "read_reference_state_dict",
    "reference_config",
]
