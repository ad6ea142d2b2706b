"""Writing files atomically: readers never see a half-written file, and a failure leaves no trace."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import sys
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


def write_json_atomic(path: str | os.PathLike, obj: object) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)


_RENAME_EXCHANGE = 2  # linux/fs.h: swap two paths in one step
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` atomically (Linux ``renameat2``); False if unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:  # glibc older than 2.28, or another libc
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # file system cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def replace_dir(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move the complete folder ``new`` to ``target``, replacing any folder there.

    On Linux the two folders are exchanged in one ``renameat2(RENAME_EXCHANGE)`` call, so
    ``target`` is at every moment the old complete folder or the new one. Elsewhere (or on a
    file system that cannot exchange) the old folder is first renamed to a hidden
    ``.<target>.old-*``; if the process dies before the new one takes its place,
    :func:`cleanup_stale_temporaries` (which every writer calls first) puts it back.
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now holds the old content
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def cleanup_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Undo what killed writers left in ``folder``; call it before writing there.

    A ``.<name>.old-*`` folder whose ``<name>`` is missing is a swap of :func:`replace_dir`
    cut between its two renames: it is renamed back to ``<name>``. Other ``.<name>.old-*``
    and ``.<name>.tmp-*`` folders and ``.<name>.*.tmp`` files (of :func:`atomic_write`) are
    deleted. Two processes must not write the same ``name`` at the same time.

    Parameters
    ----------
    folder
        The folder that holds the outputs.
    name
        Clean only the leftovers of this output (default: of every output in ``folder``).

    Returns
    -------
    list of Path
        The outputs restored from a ``.old-*`` folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    prefix = "." if name is None else f".{name}."
    restored = []
    for entry in sorted(folder.iterdir()):
        hidden = entry.name
        if not hidden.startswith(prefix):
            continue
        stem, sep, _ = hidden[1:].rpartition(".old-")
        if sep and entry.is_dir() and not entry.is_symlink():
            if (name is None or stem == name) and not (folder / stem).exists():
                os.rename(entry, folder / stem)
                restored.append(folder / stem)
            else:
                shutil.rmtree(entry, ignore_errors=True)
        elif ".tmp-" in hidden and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        elif hidden.endswith(".tmp") and entry.is_file():
            entry.unlink(missing_ok=True)
    return restored
