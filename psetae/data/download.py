"""Download the real S2-Agri pixel-set release from Zenodo: resumable, verified, safe.

``download_s2agri("data/s2agri")`` does, in order:

1. **Resolve** the files of Zenodo record 5815488 (DOI 10.5281/zenodo.5815488) through the
   records API (``GET https://zenodo.org/api/records/5815488``): name, size, checksum
   (``"md5:<hex>"``) and download link of each file. Zenodo has served several JSON shapes
   over the years; :func:`parse_record_files` reads all of those it knows and refuses the
   rest with a clear error.
2. **Download** each file into a hidden sibling folder ``.s2agri.download/`` as
   ``<name>.part``, with a progress bar. An interrupted transfer is resumed with an HTTP
   ``Range`` request, within the call (limited retries) or by a later call. A server that
   ignores ``Range`` (answers 200) makes the file restart cleanly from byte 0.
3. **Verify** size and checksum against what the API publishes; a mismatch deletes the file
   and raises :class:`ChecksumError` (file, expected and actual checksum).
4. **Extract** archives safely (:mod:`psetae.data.archive`: every member checked before
   anything is written) into a temporary sibling folder, write a completion marker in it
   and rename it to ``data/s2agri`` at the very end. An interrupted run therefore never
   leaves a folder that looks complete, and a later call with a complete destination
   returns at once without touching the network.

Only the standard library speaks HTTP here (``urllib.request``); tqdm draws the bars.
Two processes must not download into the same destination at the same time.
"""

from __future__ import annotations

import fnmatch
import hashlib
import http.client
import json
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psetae import __version__
from psetae.data.archive import UNSUPPORTED_ARCHIVE_SUFFIXES, archive_kind, extract_archive
from psetae.errors import PsetaeError
from psetae.io import cleanup_stale_temporaries, write_json_atomic
from psetae.progress import progress_bar

__all__ = [
    "S2AGRI_RECORD",
    "ZENODO_API",
    "MARKER_NAME",
    "DownloadError",
    "ChecksumError",
    "RecordFormatError",
    "RemoteFile",
    "fetch_record",
    "parse_record_files",
    "resolve_record_files",
    "file_checksum",
    "verify_file",
    "download_file",
    "find_dataset_root",
    "download_s2agri",
]

#: Zenodo record of the S2-Agri pixel-set release (DOI 10.5281/zenodo.5815488).
S2AGRI_RECORD = "5815488"
#: Zenodo's records API; the record id is appended.
ZENODO_API = "https://zenodo.org/api/records/"
#: Written last into a completed destination; its presence means "complete".
MARKER_NAME = ".psetae-download.json"

_USER_AGENT = f"psetae/{__version__} (+https://doi.org/10.5281/zenodo.5815488)"
# HTTP statuses worth retrying: the server may answer differently a moment later.
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class DownloadError(PsetaeError, RuntimeError):
    """A download could not be completed (HTTP error, network failure, bad destination)."""


class ChecksumError(DownloadError):
    """A downloaded file does not have the size or checksum the record publishes."""


class RecordFormatError(DownloadError):
    """The records API answered JSON of a shape this module does not understand."""


class _TransientError(Exception):
    """A failure that a new attempt (resuming the ``.part`` file) may overcome."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a Zenodo record.

    Attributes
    ----------
    key
        The file name in the record (also its local name).
    url
        Where to download it.
    size
        Size in bytes, or None if the API does not give it.
    checksum
        ``"<algorithm>:<hex digest>"``, e.g. ``"md5:9e107d9d372bb6826bd81d3542a419d6"``.
    """

    key: str
    url: str
    size: int | None
    checksum: str

    @property
    def algorithm(self) -> str:
        """The hash algorithm of :attr:`checksum` (``"md5"`` on Zenodo)."""
        return self.checksum.split(":", 1)[0]

    @property
    def digest(self) -> str:
        """The expected hex digest (lower case)."""
        return self.checksum.split(":", 1)[1]


# --------------------------------------------------------------------------- HTTP


def _check_url(url: str) -> str:
    """Refuse schemes other than http(s): urllib would also open file:// or ftp://."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DownloadError(f"{url}: only http and https URLs are downloaded, not {scheme!r}")
    return url


def _open(url: str, timeout: float, headers: Mapping[str, str] | None = None) -> Any:
    """Open a URL; HTTP errors become DownloadError (permanent) or _TransientError."""
    request = urllib.request.Request(
        _check_url(url), headers={"User-Agent": _USER_AGENT, **(headers or {})}
    )
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        message = f"{url}: HTTP {exc.code} {exc.reason}"
        if exc.code in _RETRY_STATUSES:
            raise _TransientError(message) from exc
        if exc.code == 416:  # Range Not Satisfiable: let the caller restart from zero
            raise _TransientError(message) from exc
        raise DownloadError(message) from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _TransientError(f"{url}: {reason}") from exc


def _with_retries(action: Any, what: str, retries: int, retry_wait: float) -> Any:
    """Call ``action()``; on a transient failure wait and try again, ``retries`` times."""
    attempt = 0
    while True:
        try:
            return action()
        except _TransientError as exc:
            attempt += 1
            if attempt > retries:
                raise DownloadError(f"{what}: giving up after {attempt} attempt(s): {exc}") from exc
            time.sleep(retry_wait * attempt)


# --------------------------------------------------------------------------- the record


def _record_id(record: str | int) -> str:
    """Accept ``5815488``, ``"5815488"`` or a DOI like ``"10.5281/zenodo.5815488"``."""
    match = re.fullmatch(r"(?:.*zenodo\.)?(\d+)", str(record).strip())
    if match is None:
        raise ValueError(f"not a Zenodo record id or DOI: {record!r}")
    return match.group(1)


def _record_url(api_url: str, record: str | int) -> str:
    return api_url.rstrip("/") + "/" + _record_id(record)


def fetch_record(
    record: str | int = S2AGRI_RECORD,
    api_url: str = ZENODO_API,
    *,
    timeout: float = 60.0,
    retries: int = 3,
    retry_wait: float = 2.0,
) -> dict[str, Any]:
    """Fetch a record's JSON from the records API.

    Parameters
    ----------
    record
        Record id (or its DOI ``10.5281/zenodo.<id>``).
    api_url
        Base URL of the records API; the id is appended.
    timeout
        Seconds to wait for the connection and for each read.
    retries
        New attempts after a network failure or a 408/429/5xx answer.
    retry_wait
        Seconds to wait before the first new attempt (then twice as long, etc.).

    Returns
    -------
    dict
        The decoded JSON.

    Raises
    ------
    DownloadError
        On an HTTP error (the message names the URL and the status) or when retries run out.
    RecordFormatError
        If the answer is not a JSON object.
    """
    url = _record_url(api_url, record)

    def get() -> bytes:
        with _open(url, timeout, {"Accept": "application/json"}) as response:
            try:
                return response.read()
            except (http.client.HTTPException, OSError) as exc:
                raise _TransientError(f"{url}: {exc}") from exc

    body = _with_retries(get, f"Zenodo record {url}", retries, retry_wait)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordFormatError(f"{url}: the answer is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise RecordFormatError(f"{url}: expected a JSON object, got {type(data).__name__}")
    return data


def _file_entries(data: Mapping[str, Any], source: str) -> list[Mapping[str, Any]]:
    """Find the list of file entries in any of the shapes Zenodo has used."""
    files = data.get("files", data if "entries" in data else None)
    if isinstance(files, Mapping):  # InvenioRDM: {"enabled": ..., "entries": [...] or {...}}
        if files.get("enabled") is False:
            raise RecordFormatError(f"{source}: the record has no files (files disabled)")
        files = files.get("entries")
        if isinstance(files, Mapping):
            files = list(files.values())
    if not isinstance(files, list):
        raise RecordFormatError(
            f"{source}: unexpected record JSON: no list of files under 'files' or "
            f"'files.entries' (top-level keys: {sorted(data)})"
        )
    if not files:
        raise RecordFormatError(f"{source}: the record lists no files")
    if not all(isinstance(entry, Mapping) for entry in files):
        raise RecordFormatError(f"{source}: unexpected record JSON: a file entry is not an object")
    return files


def _checksum_of(entry: Mapping[str, Any], key: str, source: str) -> str:
    raw = entry.get("checksum")
    if not isinstance(raw, str) or not raw:
        raise RecordFormatError(f"{source}: file {key!r} has no checksum: cannot verify it")
    algorithm, _, digest = raw.rpartition(":")
    algorithm = (algorithm or "md5").lower()  # the legacy deposit API gives a bare MD5
    digest = digest.lower()
    if algorithm not in hashlib.algorithms_guaranteed:
        raise RecordFormatError(f"{source}: file {key!r}: unknown checksum algorithm {raw!r}")
    if not re.fullmatch(r"[0-9a-f]+", digest):
        raise RecordFormatError(f"{source}: file {key!r}: malformed checksum {raw!r}")
    return f"{algorithm}:{digest}"


def _url_of(entry: Mapping[str, Any], key: str, source: str) -> str:
    links = entry.get("links")
    if isinstance(links, Mapping):
        # "content" (InvenioRDM) and "download" (deposit API) are the bytes; in the
        # records API's own list "self" is the download link too.
        for name in ("content", "download", "self"):
            url = links.get(name)
            if isinstance(url, str) and url:
                return url
    # InvenioRDM entries without links: the content URL is derived from the record URL.
    if source.startswith(("http://", "https://")):
        return f"{source}/files/{urllib.parse.quote(key)}/content"
    raise RecordFormatError(f"{source}: file {key!r} has no download link")


def parse_record_files(data: Mapping[str, Any], source: str = "record") -> list[RemoteFile]:
    """Read the files of a record from its JSON, whatever the Zenodo API version.

    Understood shapes: the records API (``files`` is a list of ``{"key", "size",
    "checksum": "md5:<hex>", "links": {"self": url}}``), its older form with ``bucket`` and
    ``type``, InvenioRDM (``files.entries`` as a list or mapping, link ``content``) and the
    deposit API (``filename``, ``filesize``, bare MD5 ``checksum``, link ``download``).

    Parameters
    ----------
    data
        The decoded JSON of ``GET {api_url}{record}``.
    source
        The URL it came from, used in error messages (and to build missing content links).

    Returns
    -------
    list of RemoteFile
        In record order.

    Raises
    ------
    RecordFormatError
        If the shape is unexpected, a file has no name, no link or no checksum, or a name
        could not be used safely as a local file name.
    """
    result = []
    for entry in _file_entries(data, source):
        key = entry.get("key", entry.get("filename"))
        if not isinstance(key, str) or not key:
            raise RecordFormatError(f"{source}: a file entry has no 'key' or 'filename'")
        # The name becomes a local path: refuse anything that is not a plain file name.
        if "/" in key or "\\" in key or key in (".", "..") or "\x00" in key:
            raise RecordFormatError(f"{source}: unsafe file name {key!r} in the record")
        size = entry.get("size", entry.get("filesize"))
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise RecordFormatError(f"{source}: file {key!r}: invalid size {size!r}")
        result.append(
            RemoteFile(
                key=key,
                url=_url_of(entry, key, source),
                size=size,
                checksum=_checksum_of(entry, key, source),
            )
        )
    return result


def resolve_record_files(
    record: str | int = S2AGRI_RECORD,
    api_url: str = ZENODO_API,
    *,
    timeout: float = 60.0,
    retries: int = 3,
    retry_wait: float = 2.0,
) -> list[RemoteFile]:
    """List the files of a Zenodo record: :func:`fetch_record` + :func:`parse_record_files`."""
    data = fetch_record(record, api_url, timeout=timeout, retries=retries, retry_wait=retry_wait)
    return parse_record_files(data, _record_url(api_url, record))


# --------------------------------------------------------------------------- one file


def file_checksum(path: str | os.PathLike[str], algorithm: str = "md5") -> str:
    """Hex digest of a file (``pooch.file_hash``, read in chunks)."""
    import pooch  # imported here: ~0.1 s that only a download needs

    return pooch.file_hash(str(path), alg=algorithm)


def verify_file(path: str | os.PathLike[str], remote: RemoteFile) -> None:
    """Check the size and checksum of a downloaded file.

    Raises
    ------
    ChecksumError
        Naming the file, the expected and the actual size or checksum. The file is kept:
        the caller decides (:func:`download_file` deletes it).
    """
    path = Path(path)
    actual_size = path.stat().st_size
    if remote.size is not None and actual_size != remote.size:
        raise ChecksumError(
            f"{path}: size mismatch for {remote.key}: expected {remote.size} bytes, "
            f"got {actual_size} bytes"
        )
    actual = file_checksum(path, remote.algorithm)
    if actual != remote.digest:
        raise ChecksumError(
            f"{path}: checksum mismatch for {remote.key}: expected "
            f"{remote.algorithm}:{remote.digest}, got {remote.algorithm}:{actual}"
        )


def _fetch_into(
    remote: RemoteFile, part: Path, timeout: float, chunk_size: int, progress: bool
) -> None:
    """One attempt: append the missing bytes to ``part`` (or restart it if needed)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = _open(remote.url, timeout, headers)
    except _TransientError as exc:
        if offset and isinstance(exc.__cause__, urllib.error.HTTPError):
            if exc.__cause__.code == 416:
                part.unlink(missing_ok=True)  # our bytes do not fit the file: start over
        raise
    with response:
        status = response.status
        if status == 206 and offset:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if match is None or int(match.group(1)) != offset:
                part.unlink(missing_ok=True)
                raise _TransientError(
                    f"{remote.url}: asked for bytes from {offset}, the server answered "
                    f"Content-Range {response.headers.get('Content-Range')!r}; restarting"
                )
            mode = "ab"
        elif status == 200:
            # A full answer (the server ignored Range, or nothing was downloaded yet).
            offset, mode = 0, "wb"
        else:
            raise DownloadError(f"{remote.url}: unexpected HTTP status {status}")
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        received = 0
        with (
            open(part, mode) as out,
            progress_bar(
                total=remote.size,
                initial=offset,
                desc=remote.key,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                enabled=progress,
            ) as bar,
        ):
            try:
                while chunk := response.read(chunk_size):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (http.client.HTTPException, OSError) as exc:
                raise _TransientError(f"{remote.url}: transfer interrupted: {exc}") from exc
            finally:
                out.flush()
                os.fsync(out.fileno())
    # urllib returns a short body without error when the server closes early: check.
    if expected is not None and received < expected:
        raise _TransientError(
            f"{remote.url}: connection closed after {received} of {expected} bytes"
        )
    if remote.size is not None and part.stat().st_size < remote.size:
        raise _TransientError(
            f"{remote.url}: transfer ended at {part.stat().st_size} of {remote.size} bytes"
        )


def download_file(
    remote: RemoteFile,
    path: str | os.PathLike[str],
    *,
    progress: bool = True,
    timeout: float = 60.0,
    retries: int = 3,
    retry_wait: float = 2.0,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download one file to ``path``, resuming ``path.part`` if present, and verify it.

    Parameters
    ----------
    remote
        What to download and what it must look like.
    path
        Final location; bytes go to ``<path>.part`` first, renamed only once verified.
    progress
        Show a tqdm bar.
    timeout
        Seconds to wait for the connection and for each read.
    retries
        New attempts (each resuming with a ``Range`` request) after a network failure.
    retry_wait
        Seconds before the first new attempt (then twice as long, etc.).
    chunk_size
        Bytes read at a time.

    Returns
    -------
    Path
        ``path``, verified.

    Raises
    ------
    ChecksumError
        If the size or checksum is wrong; the bad file is deleted.
    DownloadError
        On an HTTP error or when retries run out; a ``.part`` file is kept for resuming.
    """
    path = Path(path)
    part = path.with_name(path.name + ".part")
    if path.exists():  # verified by an earlier call; check again in case it was damaged
        try:
            verify_file(path, remote)
            return path
        except ChecksumError:
            path.unlink()

    def attempt() -> None:
        if part.exists() and remote.size is not None:
            if part.stat().st_size == remote.size:
                return  # complete already: only verification is left
            if part.stat().st_size > remote.size:
                part.unlink()
        _fetch_into(remote, part, timeout, chunk_size, progress)

    _with_retries(attempt, f"download of {remote.key} from {remote.url}", retries, retry_wait)
    try:
        verify_file(part, remote)
    except ChecksumError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, path)
    return path


# --------------------------------------------------------------------------- the dataset


def find_dataset_root(folder: str | os.PathLike[str], max_depth: int = 3) -> Path:
    """Find the pixel-set dataset inside an extracted folder.

    Parameters
    ----------
    folder
        Where archives were extracted.
    max_depth
        How many folder levels to look into.

    Returns
    -------
    Path
        The only folder (``folder`` itself or below) holding both ``DATA/`` and
        ``META/``; ``folder`` itself if there is none or more than one.
    """
    folder = Path(folder)
    found: list[Path] = []
    level = [folder]
    for _ in range(max_depth + 1):
        found += [p for p in level if (p / "DATA").is_dir() and (p / "META").is_dir()]
        level = sorted(c for p in level for c in p.iterdir() if c.is_dir() and not c.is_symlink())
    return found[0] if len(found) == 1 else folder


def _read_marker(dest: Path) -> dict[str, Any] | None:
    marker = dest / MARKER_NAME
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DownloadError(f"{marker}: unreadable completion marker: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("root"), str):
        raise DownloadError(f"{marker}: malformed completion marker")
    return data


def _select(remote_files: list[RemoteFile], files: Sequence[str] | None) -> list[RemoteFile]:
    if files is None:
        return remote_files
    if isinstance(files, str):
        files = [files]
    keys = [r.key for r in remote_files]
    for pattern in files:
        if not fnmatch.filter(keys, pattern):
            raise DownloadError(
                f"no file of the record matches {pattern!r}; the record holds: {', '.join(keys)}"
            )
    return [r for r in remote_files if any(fnmatch.fnmatchcase(r.key, p) for p in files)]


def _check_free_space(folder: Path, remote_files: list[RemoteFile], cache: Path) -> None:
    """Fail before downloading gigabytes onto a disk that cannot hold them."""
    needed = 0
    for r in remote_files:
        if r.size is None or (cache / r.key).exists():
            continue
        part = cache / (r.key + ".part")
        needed += r.size - (part.stat().st_size if part.exists() else 0)
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DownloadError(
            f"{folder}: not enough free space: the download needs {needed / 1e9:.2f} GB "
            f"(more once extracted), {free / 1e9:.2f} GB are free"
        )


def _install(selected: list[RemoteFile], local: list[Path], tmp: Path, progress: bool) -> None:
    """Extract archives and copy plain files into the temporary folder."""
    for remote, path in zip(selected, local, strict=True):
        if archive_kind(path) is not None:
            extract_archive(path, tmp, progress=progress)
        elif path.name.lower().endswith(UNSUPPORTED_ARCHIVE_SUFFIXES):
            raise DownloadError(
                f"{path}: downloaded and verified, but the standard library cannot extract "
                f"{path.suffix} archives. Extract it yourself (e.g. `7z x {path}`) and use the "
                "extracted folder; this destination was left incomplete."
            )
        else:
            shutil.copy2(path, tmp / remote.key)


def download_s2agri(
    dest: str | os.PathLike[str],
    record: str | int = S2AGRI_RECORD,
    api_url: str = ZENODO_API,
    files: Sequence[str] | None = None,
    progress: bool = True,
    *,
    timeout: float = 60.0,
    retries: int = 3,
    retry_wait: float = 2.0,
    keep_archives: bool = False,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download, verify and extract the S2-Agri pixel-set release (Zenodo record 5815488).

    Idempotent: if ``dest`` holds the completion marker of this record, return at once
    without any network access.

    Parameters
    ----------
    dest
        Destination folder. It must not exist, be empty, or be a completed download.
        Downloads go to the hidden sibling ``.<name>.download/`` (kept between calls so
        that an interrupted download resumes) and extraction to ``.<name>.tmp-*``,
        renamed to ``dest`` once everything is verified and extracted.
    record
        Zenodo record id or DOI.
    api_url
        Base URL of the records API (tests point it at a local server).
    files
        Names or glob patterns of the record's files to fetch (default: all of them).
    progress
        Show tqdm progress bars.
    timeout
        Seconds to wait for each connection and each read.
    retries
        New attempts per request after a network failure or a 408/429/5xx answer.
    retry_wait
        Seconds before the first new attempt (then twice as long, etc.).
    keep_archives
        Keep the downloaded archives in ``.<name>.download/`` after success.
    chunk_size
        Bytes read at a time.

    Returns
    -------
    Path
        The dataset root: the one folder of ``dest`` (``dest`` itself or below it) that
        holds ``DATA/`` and ``META/``, or ``dest`` if there is no such single folder.

    Raises
    ------
    DownloadError
        HTTP error (naming the URL and status), retries exhausted, ``dest`` not empty and
        not a completed download, not enough disk space, an archive format that cannot be
        extracted.
    ChecksumError
        A file does not match the published size or checksum (it is deleted).
    RecordFormatError
        Unexpected JSON from the records API.
    psetae.data.archive.UnsafeArchiveError
        An archive holds a member that would write or point outside the destination
        (nothing is extracted).
    """
    dest = Path(dest).expanduser().absolute()
    record_id = _record_id(record)
    marker = _read_marker(dest)
    if marker is not None:
        if str(marker.get("record")) != record_id:
            raise DownloadError(
                f"{dest}: holds a download of record {marker.get('record')}, not {record_id}"
            )
        return dest / marker["root"]
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DownloadError(
            f"{dest}: exists and is not empty, but has no completion marker {MARKER_NAME}: "
            "it is not a finished download. Remove it or choose another destination."
        )

    remote_files = _select(
        resolve_record_files(
            record_id, api_url, timeout=timeout, retries=retries, retry_wait=retry_wait
        ),
        files,
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    cache = dest.parent / f".{dest.name}.download"
    cache.mkdir(exist_ok=True)
    _check_free_space(dest.parent, remote_files, cache)
    local = [
        download_file(
            remote,
            cache / remote.key,
            progress=progress,
            timeout=timeout,
            retries=retries,
            retry_wait=retry_wait,
            chunk_size=chunk_size,
        )
        for remote in remote_files
    ]

    # Leftovers of an interrupted extraction are never mistaken for data: remove them.
    cleanup_stale_temporaries(dest.parent, dest.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        _install(remote_files, local, tmp, progress)
        root = find_dataset_root(tmp).relative_to(tmp).as_posix()
        write_json_atomic(
            tmp / MARKER_NAME,
            {
                "record": record_id,
                "api_url": api_url,
                "root": root,
                "files": [
                    {"key": r.key, "size": r.size, "checksum": r.checksum} for r in remote_files
                ],
            },
        )
        if dest.exists():
            dest.rmdir()  # empty, checked above
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not keep_archives:
        shutil.rmtree(cache, ignore_errors=True)
    return dest / root
