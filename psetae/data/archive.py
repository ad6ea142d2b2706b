"""Safe extraction of downloaded archives (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz, .zip).

An archive is data from the network: a member named ``/etc/passwd`` or ``../../.bashrc``,
a link pointing outside the destination, or a few kilobytes that inflate to terabytes
could harm the user's disk. :func:`extract_archive` therefore checks *every* member first
and extracts nothing if a single one is unsafe. Refused: absolute paths (``/x``, ``C:x``,
``\\x``), ``..`` components, symbolic links that leave the destination once resolved as
the file system would (following chains of the archive's own links, so ``sub/up -> ..``
then ``sub/esc -> up/..`` is caught), hard links to anything but a regular file of the
archive, members placed under a link of the archive, device files, FIFOs and other special
members, encrypted zip members, and archives that declare more uncompressed bytes than
``max_total_bytes`` or compress a member more than ``max_ratio`` times (decompression
bombs). While extracting, tar members go through tarfile's ``"data"`` filter (a second
line of defence) and zip members are cut off, and removed, if they grow past their
declared size.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from psetae.errors import PsetaeError
from psetae.progress import progress_bar

__all__ = [
    "UnsafeArchiveError",
    "archive_kind",
    "check_archive",
    "extract_archive",
    "MAX_TOTAL_BYTES",
    "MAX_RATIO",
    "UNSUPPORTED_ARCHIVE_SUFFIXES",
]

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_ZIP_SUFFIXES = (".zip",)
#: Archive formats the standard library cannot read; downloaded files with these
#: suffixes are refused with an explanation rather than silently copied.
UNSUPPORTED_ARCHIVE_SUFFIXES = (".7z", ".rar")
#: Default limit of the total uncompressed size: the S2-Agri release is a few GB.
MAX_TOTAL_BYTES = 32 * 1024**3
#: Default limit of the compression ratio (int16 reflectance arrays compress ~2-5x).
MAX_RATIO = 100.0
# Members smaller than this are exempt from the ratio check (headers compress very well).
_RATIO_MIN_BYTES = 1 << 20
_MAX_LISTED = 20  # problems quoted in one error message; the rest are counted
_MAX_LINK_HOPS = 40  # like the kernel's limit on nested symbolic links


class UnsafeArchiveError(PsetaeError, ValueError):
    """An archive holds a member that could write or point outside the destination."""


@dataclass(frozen=True)
class _Member:
    """What the checks need to know about one archive member, whatever the format."""

    name: str  # the name as stored
    parts: tuple[str, ...]  # normalised path components inside the destination
    kind: str  # "file", "dir", "symlink", "hardlink" or "special"
    target: str = ""  # link target (symlink: relative to the link's folder; hardlink: to root)
    size: int = 0  # declared uncompressed size
    packed: int | None = None  # compressed size (zip only)


def archive_kind(path: str | os.PathLike[str]) -> str | None:
    """Say how an archive is read, from its file name.

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


def _is_absolute(name: str) -> bool:
    return name.startswith("/") or (len(name) >= 2 and name[1] == ":" and name[0].isalpha())


def _split_name(name: str) -> tuple[tuple[str, ...], str | None]:
    """Split a member name into components; return (parts, problem or None)."""
    if not name or "\x00" in name:
        return (), "empty name or NUL character"
    # Backslashes are separators on Windows: treat them as such so "..\\x" is caught too.
    unified = name.replace("\\", "/")
    if _is_absolute(unified):
        return (), "absolute path" + (" (drive letter)" if unified[1:2] == ":" else "")
    parts = tuple(p for p in unified.split("/") if p not in ("", "."))
    if ".." in parts:
        return (), "'..' component"
    return parts, None


def _resolve(parts: tuple[str, ...], links: dict[tuple[str, ...], str]) -> tuple[str, ...] | None:
    """Where ``parts`` lands once every link of the archive on the way is followed.

    Returns None if the path leaves the destination, is absolute, or loops.
    """
    done: list[str] = []
    todo = list(parts)
    hops = 0
    while todo:
        part = todo.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not done:
                return None  # above the destination
            done.pop()
            continue
        done.append(part)
        target = links.get(tuple(done))
        if target is not None:
            hops += 1
            target = target.replace("\\", "/")
            if hops > _MAX_LINK_HOPS or not target or _is_absolute(target):
                return None
            done.pop()  # a link's target is relative to the link's folder
            todo = target.split("/") + todo
    return tuple(done)


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


def _tar_kind(info: tarfile.TarInfo) -> str:
    if info.isreg():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    return "hardlink" if info.islnk() else "special"


def _collect(archive: Path) -> tuple[list[_Member], list[str]]:
    """Read an archive's member list; return the members and the problems found."""
    raw: list[tuple[str, str, str, int, int | None]] = []  # name, kind, target, size, packed
    problems: list[str] = []
    kind = archive_kind(archive)
    try:
        if kind == "tar":
            with tarfile.open(archive, "r:*") as tar:
                for info in tar.getmembers():
                    raw.append((info.name, _tar_kind(info), info.linkname, info.size, None))
        elif kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if info.flag_bits & 0x1:
                        problems.append(f"{info.filename!r}: encrypted member")
                        continue
                    member_kind = _zip_kind(info)
                    # A zip symlink stores its target as the member's content.
                    target = (
                        zf.read(info).decode("utf-8", "replace") if member_kind == "symlink" else ""
                    )
                    raw.append(
                        (info.filename, member_kind, target, info.file_size, info.compress_size)
                    )
        else:
            raise ValueError(
                f"{archive}: not a supported archive (expected one of "
                f"{', '.join(_TAR_SUFFIXES + _ZIP_SUFFIXES)})"
            )
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{archive}: cannot read the archive: {exc}") from exc
    members = []
    for name, member_kind, target, size, packed in raw:
        parts, problem = _split_name(name)
        if problem is not None:
            problems.append(f"{name!r}: {problem}")
        else:
            members.append(_Member(name, parts, member_kind, target, size, packed))
    return members, problems


def _check_members(members: list[_Member]) -> list[str]:
    """Return every path and link problem of a member list whose names are valid."""
    problems: list[str] = []
    links = {m.parts: m.target for m in members if m.kind == "symlink"}
    regular = {m.parts for m in members if m.kind == "file"}
    counts: dict[tuple[str, ...], int] = {}
    for m in members:
        counts[m.parts] = counts.get(m.parts, 0) + 1
    for m in members:
        label = repr(m.name)
        if m.kind == "special":
            problems.append(f"{label}: device file, FIFO or other special member")
        elif not m.parts and m.kind != "dir":
            problems.append(f"{label}: names the destination itself")
        elif any(m.parts[:i] in links for i in range(1, len(m.parts))):
            # Writing below a link of the archive would follow it wherever it points.
            problems.append(f"{label}: placed under a link of the archive")
        elif m.kind == "symlink":
            if counts[m.parts] > 1:
                problems.append(f"{label}: link also stored as another member")
            elif _is_absolute(m.target.replace("\\", "/")) or not m.target:
                problems.append(f"{label}: link to an absolute path {m.target!r}")
            elif _resolve(m.parts, links) is None:
                problems.append(
                    f"{label}: link to {m.target!r} points outside the destination "
                    "(or loops) once the archive's links are followed"
                )
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


def _check_sizes(
    archive: Path, members: list[_Member], max_total_bytes: int, max_ratio: float
) -> list[str]:
    """Decompression-bomb checks on the declared sizes, before anything is written."""
    problems = []
    total = sum(m.size for m in members if m.kind == "file")
    if total > max_total_bytes:
        problems.append(
            f"the members declare {total} bytes uncompressed, more than max_total_bytes="
            f"{max_total_bytes}"
        )
    for m in members:
        if m.packed is not None and m.size >= _RATIO_MIN_BYTES and m.size > max_ratio * m.packed:
            problems.append(
                f"{m.name!r}: {m.size} bytes compressed into {m.packed}, a ratio above "
                f"max_ratio={max_ratio:g}"
            )
    if archive_kind(archive) == "tar" and total >= _RATIO_MIN_BYTES:  # one compressed stream
        packed = archive.stat().st_size
        if total > max_ratio * packed:
            problems.append(
                f"{total} bytes compressed into {packed}, a ratio above max_ratio={max_ratio:g}"
            )
    return problems


def _raise_if(archive: Path, problems: list[str]) -> None:
    if not problems:
        return
    listed = "; ".join(problems[:_MAX_LISTED])
    more = len(problems) - _MAX_LISTED
    suffix = f"; ... and {more} more" if more > 0 else ""
    raise UnsafeArchiveError(
        f"{archive}: refusing to extract {len(problems)} unsafe member(s), nothing was "
        f"extracted: {listed}{suffix}"
    )


def check_archive(
    archive: str | os.PathLike[str],
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_ratio: float = MAX_RATIO,
) -> list[str]:
    """Check every member of an archive without extracting anything.

    Parameters
    ----------
    archive
        Path of a ``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz`` or ``.zip``.
    max_total_bytes
        Largest total uncompressed size accepted.
    max_ratio
        Largest compression ratio accepted, per zip member of at least 1 MiB and for the
        whole compressed stream of a tar.

    Returns
    -------
    list of str
        The member names, in archive order.

    Raises
    ------
    UnsafeArchiveError
        If any member is unsafe; the one-line message names every unsafe member.
    ValueError
        If the file is not a supported or readable archive.
    """
    path = Path(archive)
    members, problems = _collect(path)
    problems += _check_members(members)
    problems += _check_sizes(path, members, max_total_bytes, max_ratio)
    _raise_if(path, problems)
    return [m.name for m in members]


def _extract_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> None:
    """Extract one zip member (zipfile itself cannot create links), never past its size."""
    parts, _ = _split_name(info.filename)
    target = dest.joinpath(*parts)
    kind = _zip_kind(info)
    if kind == "dir":
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if kind == "symlink":
        os.symlink(zf.read(info).decode("utf-8"), target)
        return
    # O_NOFOLLOW: never write through a link, even one made by a previous member.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    written = 0
    with os.fdopen(os.open(target, flags, 0o644), "wb") as out, zf.open(info) as src:
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > info.file_size:
                break
            out.write(chunk)
    if written > info.file_size:
        target.unlink()
        raise UnsafeArchiveError(
            f"{zf.filename}: member {info.filename!r} inflates past its declared "
            f"{info.file_size} bytes; extraction stopped and the partial file removed"
        )


def extract_archive(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    progress: bool = False,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_ratio: float = MAX_RATIO,
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
    max_total_bytes, max_ratio
        Decompression-bomb limits (see :func:`check_archive`).

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    UnsafeArchiveError
        If any member is unsafe (then nothing is extracted), or if a member turns out
        unsafe while extracting (tarfile's filter, a zip member longer than declared):
        ``dest`` may then hold partial content and must be discarded by the caller.
    ValueError
        If the file is not a supported or readable archive.
    """
    path, out = Path(archive), Path(dest)
    names = check_archive(path, max_total_bytes, max_ratio)  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    with progress_bar(
        total=len(names), desc=f"extract {path.name}", unit="file", enabled=progress
    ) as bar:
        if archive_kind(path) == "tar":
            # The "data" filter (Python >= 3.10.12 / 3.11.4) re-checks each member.
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            with tarfile.open(path, "r:*") as tar:
                for info in tar.getmembers():
                    try:
                        tar.extract(info, out, **extra)
                    except getattr(tarfile, "FilterError", ()) as exc:
                        raise UnsafeArchiveError(
                            f"{path}: member {info.name!r} refused while extracting: {exc}"
                        ) from None
                    bar.update(1)
        else:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    _extract_zip_member(zf, info, out)
                    bar.update(1)
    return out
