"""Training on several processes with PyTorch's own stack: ``torch.distributed``, started by
``torchrun``, the model wrapped in ``DistributedDataParallel``.

``torchrun --nproc_per_node=N -m psetae train ...`` starts N copies of the command and tells
each its place through environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``); :func:`setup` reads them and joins
the process group. Without them everything here is a no-op for one process, so the same
training code runs alone or distributed.

What each rank does, and why:

- the backend is ``nccl`` on GPUs and ``gloo`` on CPUs;
- every collective has a timeout, so a rank that dies stops the others with an error instead
  of a hang;
- the global batch is split across ranks (``--batch-size`` keeps its meaning);
- validation and test parcels are sharded without padding (``rank::world_size``) and the
  confusion matrices and loss sums are added over ranks, so the metrics are exactly those of
  one process, also when the parcels do not divide evenly;
- only rank 0 writes files.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from psetae.errors import PsetaeError

__all__ = [
    "DistributedError",
    "Distributed",
    "from_env",
    "setup",
    "teardown",
]

#: Seconds a collective waits for the other ranks before the job fails.
DEFAULT_TIMEOUT_S = 600.0


class DistributedError(PsetaeError):
    """A distributed run that cannot start or go on (bad world size, batch, lost rank)."""


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in the job: ``world_size == 1`` when it runs alone."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the one process that writes files and prints (rank 0)."""
        return self.rank == 0

    def batch_size(self, global_batch: int) -> int:
        """This rank's share of a global batch (the ranks differ by at most one parcel).

        Raises
        ------
        DistributedError
            If the global batch is smaller than the number of ranks.
        """
        if global_batch < self.world_size:
            raise DistributedError(
                f"--batch-size {global_batch} is smaller than the {self.world_size} processes; "
                "the batch size is the global batch, split across processes"
            )
        base, extra = divmod(global_batch, self.world_size)
        return base + (1 if self.rank < extra else 0)

    def shard(self, n: int) -> np.ndarray:
        """This rank's indices among ``n`` items: ``rank, rank + world_size, ...`` (no padding)."""
        return np.arange(self.rank, n, self.world_size)

    def device(self, requested: torch.device) -> torch.device:
        """The device of this rank: ``cuda:LOCAL_RANK`` on GPUs, else ``requested``."""
        if requested.type == "cuda" and self.enabled:
            return torch.device("cuda", self.local_rank)
        return requested

    def sum(self, array: np.ndarray, device: torch.device | None = None) -> np.ndarray:
        """The element-wise sum of ``array`` over all ranks (a copy when alone)."""
        if not self.enabled:
            return np.array(array, copy=True)
        dtype = torch.float64 if np.asarray(array).dtype.kind == "f" else torch.int64
        t = torch.as_tensor(np.asarray(array), dtype=dtype)
        if dist.get_backend() == "nccl":
            t = t.to(device or torch.device("cuda", self.local_rank))
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu().numpy().astype(np.asarray(array).dtype)

    def barrier(self) -> None:
        """Wait until every rank gets here (no-op when alone)."""
        if self.enabled:
            dist.barrier()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}={value!r} is not an integer") from None


def from_env() -> Distributed:
    """This process's place as ``torchrun`` describes it (alone if nothing is set)."""
    ctx = Distributed(
        rank=_env_int("RANK", 0),
        world_size=_env_int("WORLD_SIZE", 1),
        local_rank=_env_int("LOCAL_RANK", 0),
        local_world_size=_env_int("LOCAL_WORLD_SIZE", 1),
    )
    if not 0 <= ctx.rank < ctx.world_size or not 0 <= ctx.local_rank < ctx.local_world_size:
        raise DistributedError(f"inconsistent torchrun environment: {ctx}")
    return ctx


def setup(device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> Distributed:
    """Join the process group that ``torchrun`` describes (nothing to do when alone).

    Parameters
    ----------
    device
        The device asked for: ``nccl`` is used for CUDA, ``gloo`` otherwise.
    timeout_s
        How long a collective waits for the other ranks before the job fails.
    """
    ctx = from_env()
    if ctx.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group(
            backend=backend, timeout=datetime.timedelta(seconds=float(timeout_s))
        )
    return ctx


def teardown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
