"""Choosing the device to run on: a CUDA GPU when there is one (Colab), else Apple MPS, else CPU."""

from __future__ import annotations

import torch


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """Return the device to compute on.

    Parameters
    ----------
    device
        ``None`` or ``"auto"`` picks CUDA if available, then Apple MPS, then the CPU.
        Anything else (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) is used as given.

    Raises
    ------
    ValueError
        If a device is forced that this machine does not have.
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but CUDA is not available here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device {str(device)!r} was asked for, but Apple MPS is not available here"
        )
    return dev
