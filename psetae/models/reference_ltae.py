"""Load weights saved by the reference L-TAE (VSainteuf/lightweight-temporal-attention-pytorch).

Its PSE and decoder are named as in the PSE-TAE reference, whose converter
(:func:`psetae.models.reference.convert_reference_state_dict`) renames them; this module adds
the L-TAE's own tensors (book/contract.md, "The lightweight TAE"):

=========================================  =============================================
reference (under ``temporal_encoder.``)    ours (under ``temporal_encoder.``)
=========================================  =============================================
``inlayernorm.*``, ``outlayernorm.*``      ``in_norm.*``, ``out_norm.*``
``inconv.0.weight`` (d_model, d_in, 1)     ``in_proj.weight`` (d_model, d_in)
``inconv.1.*`` (d_model, T)                ``proj_norm.*`` (T, d_model), transposed
``attention_heads.Q`` (n_head, d_k)        ``query``
``attention_heads.fc1_k.*``                ``key.*``
``mlp.<3i>``, ``mlp.<3i+1>``               ``mlp3.<i>.linear``, ``mlp3.<i>.norm``
``position_enc.weight`` (T, d_model)       not stored: recomputed from the days
=========================================  =============================================
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

# A module import, resolved when called: reference.py may import this module in turn.
import psetae.models.reference as reference
from psetae.models.ltae import PseLTae, PseLTaeConfig
from psetae.models.pse import parse_pooling
from psetae.models.tae import positional_encoding

__all__ = [
    "convert_ltae_state_dict",
    "is_ltae_state_dict",
    "load_ltae_reference_weights",
    "ltae_reference_config",
    "psltae_from_reference",
]

_TE = "temporal_encoder."
Q_KEY = _TE + "attention_heads.Q"
PE_KEY = _TE + "position_enc.weight"


def is_ltae_state_dict(state_dict: Mapping[str, Any]) -> bool:
    """Whether a reference state dict is an L-TAE's (learned queries) rather than a TAE's.

    The L-TAE stores its master queries as one parameter ``attention_heads.Q``; the TAE
    computes them (``attention_heads.fc1_q``, ``fc2``). A ``module.`` prefix is ignored, and
    the training script's checkpoint ``{"state_dict": ..., "epoch": ...}`` is looked into.
    """
    inner = state_dict.get("state_dict")
    if isinstance(inner, Mapping):
        state_dict = inner
    return any(str(k).removeprefix("module.") == Q_KEY for k in state_dict)


def convert_ltae_state_dict(
    state_dict: Mapping[str, torch.Tensor], source: str = "state dict"
) -> dict[str, torch.Tensor]:
    """Rename a reference PSE + L-TAE state dict to :class:`~psetae.models.ltae.PseLTae`'s keys.

    Raises
    ------
    ReferenceWeightsError
        If some keys are not those of a reference PSE + L-TAE (all listed).
    """
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    ours: dict[str, torch.Tensor] = {}
    shared = {}  # PSE, decoder and the keys the TAE also has: the PSE-TAE converter's job
    for key, value in sd.items():
        if key == Q_KEY:
            ours[_TE + "query"] = value
        elif m := re.fullmatch(r"temporal_encoder\.inconv\.0\.(weight|bias)", key):
            # Conv1d with kernel 1 on (B, d_in, T) = Linear on (B, T, d_in).
            ours[_TE + f"in_proj.{m[1]}"] = value.squeeze(-1) if m[1] == "weight" else value
        elif m := re.fullmatch(r"temporal_encoder\.inconv\.1\.(weight|bias)", key):
            ours[_TE + f"proj_norm.{m[1]}"] = value.t().contiguous()  # (d, T) -> (T, d)
        else:
            shared[key] = value
    ours.update(reference.convert_reference_state_dict(shared, source, kind="tae"))
    return ours


def _linear_widths(sd: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    """``[in, out1, out2, ...]`` of the Linear layers numbered under ``prefix``."""
    pattern = re.escape(prefix) + r"\.(\d+)\.(?:lin\.)?weight"
    found = {
        int(m[1]): v for k, v in sd.items() if (m := re.fullmatch(pattern, k)) and v.dim() == 2
    }
    if not found:
        raise reference.ReferenceWeightsError(f"no {prefix}.<i>.weight Linear weights")
    ws = [found[i] for i in sorted(found)]
    return [int(ws[0].shape[1])] + [int(w.shape[0]) for w in ws]


def ltae_reference_config(
    state_dict: Mapping[str, torch.Tensor],
    positions: Sequence[float] | None = None,
    pooling: str = "mean_std",
    T: float = 1000.0,
    dropout: float = 0.2,
) -> PseLTaeConfig:
    """The :class:`PseLTaeConfig` that reference L-TAE weights determine.

    Widths, ``extra_size``, ``n_head``, ``d_k``, ``d_model``, ``len_max_seq`` and (from the
    positional table) the days come from the tensors; what they cannot tell (the pooling, the
    period ``T``, the dropout rate) is given. ``input_norm`` is ``"joint"``, the reference's.

    Raises
    ------
    ReferenceWeightsError
        If a key is missing or the shapes do not fit together.
    """
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if Q_KEY not in sd:
        raise reference.ReferenceWeightsError(f"no {Q_KEY}: not a reference L-TAE")
    mlp1 = _linear_widths(sd, "spatial_encoder.mlp1")
    mlp2 = _linear_widths(sd, "spatial_encoder.mlp2")
    mlp3 = _linear_widths(sd, _TE + "mlp")
    mlp4 = _linear_widths(sd, "decoder")
    n_head, d_k = (int(s) for s in sd[Q_KEY].shape)
    conv = sd.get(_TE + "inconv.0.weight")
    d_model = None if conv is None else int(conv.shape[0])
    width = mlp2[-1] if d_model is None else d_model
    extra_size = mlp2[0] - len(parse_pooling(pooling)) * mlp1[-1]
    if extra_size < 0 or width % n_head or mlp3[0] != width:
        raise reference.ReferenceWeightsError(
            f"inconsistent shapes: mlp1 {mlp1}, mlp2 {mlp2}, mlp3 {mlp3}, d_model {d_model}, "
            f"n_head {n_head}, pooling {pooling!r}"
        )
    norm = sd.get(_TE + "inconv.1.weight")  # (d_model, T): the number of dates
    if positions is not None:
        positions, len_max_seq = [float(p) for p in positions], len(positions)
    elif PE_KEY in sd:
        # The table repeats one (n, d_model / n_head) encoding per head.
        found = reference.infer_positions(sd[PE_KEY][:, : width // n_head], T)
        if found is None:
            raise reference.ReferenceWeightsError(
                f"{PE_KEY}: no whole-day positions reproduce the table with period T={T}; "
                "pass positions= (and T=)"
            )
        if found == [float(i) for i in range(len(found))]:
            # Rows 0..n-1 are the table of no dates (1..n-1 used) or of n daily dates.
            raise reference.ReferenceWeightsError(
                f"{PE_KEY}: rows 0..{len(found) - 1} may mean 'no dates' or "
                f"{len(found)} daily dates; pass positions="
            )
        positions, len_max_seq = found, len(found)
    elif norm is not None:
        len_max_seq = int(norm.shape[1])
    else:
        raise reference.ReferenceWeightsError(f"no {PE_KEY}; pass positions=")
    if norm is not None and int(norm.shape[1]) != len_max_seq:
        raise reference.ReferenceWeightsError(
            f"{_TE}inconv.1 is for {int(norm.shape[1])} dates, the positions for {len_max_seq}"
        )
    return PseLTaeConfig(
        input_dim=mlp1[0], extra_size=extra_size, len_max_seq=len_max_seq, positions=positions,
        mlp1=mlp1, pooling=pooling, mlp2=mlp2, mlp4=mlp4, n_head=n_head, d_k=d_k,
        d_model=d_model, mlp3=mlp3, dropout=float(dropout), T=float(T), input_norm="joint",
    )  # fmt: skip


def _check_positional_table(model: PseLTae, table: torch.Tensor, source: str) -> None:
    """Raise if the reference's positional table is not the one ``model`` computes."""
    c = model.config
    days = c.positions if c.positions is not None else range(c.len_max_seq + 1)
    d_h = model.temporal_encoder.d_model // c.n_head
    expected = positional_encoding(torch.as_tensor(days), d_h, c.T).repeat(1, c.n_head)
    if table.shape != expected.shape or not torch.allclose(table.float(), expected, atol=1e-4):
        raise reference.ReferenceWeightsError(
            f"{source}: the positional encoding ({PE_KEY}, shape {tuple(table.shape)}) does not "
            f"match the model's positions={c.positions} and T={c.T}"
        )


def load_ltae_reference_weights(
    model: PseLTae,
    path_or_state_dict: str | os.PathLike | Mapping[str, Any],
    check_positions: bool = True,
) -> PseLTae:
    """Load reference PSE + L-TAE weights (a file or a state dict) into ``model``.

    Files are read with ``torch.load(..., weights_only=True)``.

    Raises
    ------
    ReferenceWeightsError
        Naming the source and the missing, unexpected or mis-shaped keys.
    """
    ref, source = reference.read_reference_state_dict(path_or_state_dict)
    ours = convert_ltae_state_dict(ref, source)
    check = check_positions and PE_KEY in ref
    table = (lambda: _check_positional_table(model, ref[PE_KEY], source)) if check else None
    return reference.load_converted(model, ours, source, table)


def psltae_from_reference(
    path_or_state_dict: str | os.PathLike | Mapping[str, Any],
    positions: Sequence[float] | None = None,
    pooling: str = "mean_std",
    T: float = 1000.0,
    dropout: float = 0.2,
) -> PseLTae:
    """A :class:`PseLTae` with reference weights, its config inferred from them.

    Parameters
    ----------
    path_or_state_dict
        A file saved with ``torch.save`` (bare state dict or ``{"state_dict": ...}``), or the
        state dict itself.
    positions
        Days of the dates the weights were trained with; inferred from the positional
        table when None.
    pooling, T, dropout
        What the tensors cannot tell.

    Returns
    -------
    PseLTae
        In training mode (call ``.eval()`` to predict).
    """
    ref, source = reference.read_reference_state_dict(path_or_state_dict)
    try:
        config = ltae_reference_config(ref, positions, pooling, T, dropout)
    except reference.ReferenceWeightsError as exc:
        raise reference.ReferenceWeightsError(f"{source}: {exc}") from exc
    return load_ltae_reference_weights(PseLTae(config), ref)
