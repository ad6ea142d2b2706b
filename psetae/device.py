"""Choosing the device to run on (a CUDA GPU when there is one, else Apple MPS, else CPU) and
the number of CPU threads."""

from __future__ import annotations

import os
from collections.abc import Mapping

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


def default_num_threads(environ: Mapping[str, str] | None = None) -> int:
    """Torch CPU threads for this process: its cores, shared among the ranks of this machine.

    The cores are those the process may run on (``os.sched_getaffinity``, which honours
    ``taskset`` and container CPU sets, where available; else ``os.cpu_count()``). torchrun
    sets ``LOCAL_WORLD_SIZE`` to the number of ranks it started on this machine: each gets an
    equal share, at least 1, so that the ranks together do not start more threads than there
    are cores (more threads than cores make every parallel region wait for a thread that the
    scheduler has taken away; ``benchmarks/bench_models.py --competitor torch``).

    Parameters
    ----------
    environ
        The environment to read ``LOCAL_WORLD_SIZE`` from (default ``os.environ``).

    Raises
    ------
    ValueError
        If ``LOCAL_WORLD_SIZE`` is set but is not a positive integer.
    """
    environ = os.environ if environ is None else environ
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        cores = os.cpu_count() or 1
    text = environ.get("LOCAL_WORLD_SIZE", "1")
    try:
        ranks = int(text)
    except ValueError:
        ranks = 0
    if ranks < 1:
        raise ValueError(f"LOCAL_WORLD_SIZE must be a positive integer, got {text!r}")
    return max(1, cores // ranks)
