"""Safe extraction of downloaded archives (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz, .zip).

An archive is data from the network: a member named ``/etc/passwd`` or ``../../.bashrc``,
or a link pointing outside the destination, could write anywhere on the user's disk.
:func:`extract_archive` therefore checks *every* member first and extracts nothing if a
single one is unsafe. Refused: absolute paths (``/x``, ``C:x``, ``\\x``), ``..`` components,
symbolic or hard links whose target is absolute or leaves the destination, members placed
under a link of the archive (writing through it), device files, FIFOs and other special
members, encrypted zip members. After extraction every symbolic link is resolved once more
and must still point inside the destination.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psetae.errors import PsetaeError
from psetae.progress import progress_bar

__all__ = [
    "UnsafeArchiveError",
    "archive_kind",
    "check_archive",
    "extract_archive",
    "UNSUPPORTED_ARCHIVE_SUFFIXES",
]

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_ZIP_SUFFIXES = (".zip",)
#: Archive formats the standard library cannot read; downloaded files with these
#: suffixes are refused with an explanation rather than silently copied.
UNSUPPORTED_ARCHIVE_SUFFIXES = (".7z", ".rar")

# Problems listed in one error message; the rest are counted.
_MAX_LISTED = 20


class UnsafeArchiveError(PsetaeError, ValueError):
    """An archive holds a member that could write or point outside the destination."""


@dataclass(frozen=True)
class _Member:
    """What the checks need to know about one archive member, whatever the format."""

    name: str  # the name as stored
    parts: tuple[str, ...]  # normalised path components inside the destination
    kind: str  # "file", "dir", "symlink", "hardlink" or "special"
    target: str = ""  # link target (symlink: relative to the link's folder; hardlink: to root)


def archive_kind(path: str | os.PathLike[str]) -> str | None:
    """Say how an archive is read, from its file name.

    Parameters
    ----------
    path
        File name or path.

    Returns
    -------
    str or None
        ``"tar"`` (plain or gzip/bzip2/xz compressed), ``"zip"``, or None when the name
        is not a supported archive.
    """
    name = Path(path).name.lower()
    if name.endswith(_TAR_SUFFIXES):
        return "tar"
    if name.endswith(_ZIP_SUFFIXES):
        return "zip"
    return None


def _split_name(name: str) -> tuple[tuple[str, ...], str | None]:
    """Split a member name into components; return (parts, problem or None)."""
    if not name or "\x00" in name:
        return (), "empty name or NUL character"
    # Backslashes are separators on Windows: treat them as such so "..\\x" is caught too.
    unified = name.replace("\\", "/")
    if unified.startswith("/"):
        return (), "absolute path"
    if len(unified) >= 2 and unified[1] == ":" and unified[0].isalpha():
        return (), "absolute path (drive letter)"
    parts = tuple(p for p in unified.split("/") if p not in ("", "."))
    if ".." in parts:
        return (), "'..' component"
    return parts, None


def _tar_members(tar: tarfile.TarFile) -> Iterable[tuple[tarfile.TarInfo, str, str]]:
    """Yield (info, kind, target) for every member of a tar archive."""
    for info in tar.getmembers():
        if info.isreg():
            yield info, "file", ""
        elif info.isdir():
            yield info, "dir", ""
        elif info.issym():
            yield info, "symlink", info.linkname
        elif info.islnk():
            yield info, "hardlink", info.linkname
        else:  # character/block devices, FIFOs, and anything exotic
            yield info, "special", ""


def _zip_kind(info: zipfile.ZipInfo) -> str:
    """Classify a zip member from its Unix file-type bits (when a Unix tool wrote them)."""
    if info.is_dir():
        return "dir"
    # Only Unix-made zips carry a mode; many store permission bits alone (type 0: a file).
    file_type = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0
    if file_type == stat.S_IFLNK:
        return "symlink"
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "special"
    return "file"


def _collect(archive: Path) -> tuple[list[_Member], list[str]]:
    """Read an archive's member list; return the members and the problems found."""
    kind = archive_kind(archive)
    members: list[_Member] = []
    problems: list[str] = []

    def add(name: str, member_kind: str, target: str = "") -> None:
        parts, problem = _split_name(name)
        if problem is not None:
            problems.append(f"{name!r}: {problem}")
            return
        members.append(_Member(name, parts, member_kind, target))

    try:
        if kind == "tar":
            with tarfile.open(archive, "r:*") as tar:
                for info, member_kind, target in _tar_members(tar):
                    add(info.name, member_kind, target)
        elif kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    member_kind = _zip_kind(info)
                    if info.flag_bits & 0x1:
                        problems.append(f"{info.filename!r}: encrypted member")
                        continue
                    # A zip symlink stores its target as the member's content.
                    target = (
                        zf.read(info).decode("utf-8", "replace") if member_kind == "symlink" else ""
                    )
                    add(info.filename, member_kind, target)
        else:
            raise ValueError(
                f"{archive}: not a supported archive (expected one of "
                f"{', '.join(_TAR_SUFFIXES + _ZIP_SUFFIXES)})"
            )
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{archive}: cannot read the archive: {exc}") from exc
    return members, problems


def _check_members(members: list[_Member]) -> list[str]:
    """Return every problem of a member list whose names are already valid."""
    problems: list[str] = []
    symlinks = {m.parts for m in members if m.kind == "symlink"}
    regular = {m.parts for m in members if m.kind == "file"}
    counts: dict[tuple[str, ...], int] = {}
    for m in members:
        counts[m.parts] = counts.get(m.parts, 0) + 1

    for m in members:
        label = repr(m.name)
        if m.kind == "special":
            problems.append(f"{label}: device file, FIFO or other special member")
            continue
        if not m.parts and m.kind != "dir":
            problems.append(f"{label}: names the destination itself")
            continue
        # Writing below a link of the archive would follow it wherever it points.
        if any(m.parts[:i] in symlinks for i in range(1, len(m.parts))):
            problems.append(f"{label}: placed under a link of the archive")
        if m.kind == "symlink":
            if counts[m.parts] > 1:
                problems.append(f"{label}: link also stored as another member")
            target = m.target.replace("\\", "/")
            if not target or target.startswith("/") or (len(target) >= 2 and target[1] == ":"):
                problems.append(f"{label}: link to an absolute path {m.target!r}")
                continue
            resolved = posixpath.normpath(posixpath.join(*m.parts[:-1], target))
            if resolved == ".." or resolved.startswith("../"):
                problems.append(f"{label}: link to {m.target!r} points outside the destination")
        elif m.kind == "hardlink":
            target_parts, problem = _split_name(m.target)
            if problem is not None:
                problems.append(f"{label}: hard link to {m.target!r} ({problem})")
            elif target_parts not in regular:
                problems.append(
                    f"{label}: hard link to {m.target!r}, which is not a regular file "
                    "of the archive"
                )
    return problems


def _raise_if(archive: Path, problems: list[str]) -> None:
    if not problems:
        return
    listed = "\n  ".join(problems[:_MAX_LISTED])
    more = len(problems) - _MAX_LISTED
    suffix = f"\n  ... and {more} more" if more > 0 else ""
    raise UnsafeArchiveError(
        f"{archive}: refusing to extract: {len(problems)} unsafe member(s); nothing was "
        f"extracted:\n  {listed}{suffix}"
    )


def check_archive(archive: str | os.PathLike[str]) -> list[str]:
    """Check every member of an archive without extracting anything.

    Parameters
    ----------
    archive
        Path of a ``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz`` or ``.zip``.

    Returns
    -------
    list of str
        The member names, in archive order.

    Raises
    ------
    UnsafeArchiveError
        If any member is unsafe; the message lists every unsafe member.
    ValueError
        If the file is not a supported or readable archive.
    """
    path = Path(archive)
    members, problems = _collect(path)
    problems += _check_members(members)
    _raise_if(path, problems)
    return [m.name for m in members]


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _check_links_after(archive: Path, dest: Path) -> None:
    """Resolve every extracted symbolic link: all must stay inside ``dest``."""
    root = dest.resolve()
    problems = []
    for folder, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            path = Path(folder, name)
            if path.is_symlink() and not _is_within(path.resolve(), root):
                problems.append(f"{path.relative_to(dest)}: link resolves outside the destination")
    if problems:
        raise UnsafeArchiveError(f"{archive}: " + "; ".join(problems))


def _extract_zip(zf: zipfile.ZipFile, dest: Path, bar: Any) -> None:
    """Extract zip members one by one (zipfile itself cannot create links)."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    for info in zf.infolist():
        parts, _ = _split_name(info.filename)
        target = dest.joinpath(*parts)
        kind = _zip_kind(info)
        if kind == "dir":
            target.mkdir(parents=True, exist_ok=True)
        elif kind == "symlink":
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(zf.read(info).decode("utf-8"), target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            # O_NOFOLLOW: never write through a link, even one made by a previous member.
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | nofollow, 0o644)
            with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                shutil.copyfileobj(src, out, 1 << 20)
        bar.update(1)


def extract_archive(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    progress: bool = False,
) -> Path:
    """Extract an archive into a folder after checking every member.

    Parameters
    ----------
    archive
        Path of a ``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz`` or ``.zip``.
    dest
        Destination folder; created if missing. Callers that need atomicity extract into
        a temporary folder and rename it (see :func:`psetae.data.download.download_s2agri`).
    progress
        Show a tqdm bar over the members.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    UnsafeArchiveError
        If any member is unsafe (then nothing is extracted), or if a link resolves
        outside ``dest`` after extraction (then ``dest`` may hold partial content and
        must be discarded by the caller).
    ValueError
        If the file is not a supported or readable archive.
    """
    path = Path(archive)
    out = Path(dest)
    names = check_archive(path)  # raises before anything touches the disk
    out.mkdir(parents=True, exist_ok=True)
    with progress_bar(
        total=len(names), desc=f"extract {path.name}", unit="file", enabled=progress
    ) as bar:
        if archive_kind(path) == "tar":
            with tarfile.open(path, "r:*") as tar:
                members = tar.getmembers()
                extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                for info in members:
                    # The "data" filter (Python >= 3.10.12 / 3.11.4) re-checks each member.
                    tar.extract(info, out, **extra)
                    bar.update(1)
        else:
            with zipfile.ZipFile(path) as zf:
                _extract_zip(zf, out, bar)
    _check_links_after(path, out)
    return out
