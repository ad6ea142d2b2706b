"""Writing files atomically: readers never see a half-written file, and a failure leaves no trace."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one step.

    The temporary file is flushed and synced before ``os.replace``, gets the permissions an
    ordinary new file would get (``mkstemp`` alone makes it private), and is deleted if the
    ``with`` block raises, so ``path`` is either untouched or complete.

    Parameters
    ----------
    path
        Destination file; its folder must exist.
    mode
        ``"wb"`` or ``"w"`` (then pass e.g. ``encoding="utf-8"``, ``newline=""``).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_dir(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move the complete folder ``new`` to ``target``, replacing any folder there.

    Two renames in the same parent folder: at every moment ``target`` is either the old
    complete folder or the new complete one (for an instant, neither), never a mix.
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.rename(new, target)
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)
