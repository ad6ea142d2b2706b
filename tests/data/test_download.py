"""Tests of psetae/data/download.py against a fake Zenodo on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import threading
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from psetae.data import download as dl
from psetae.data.archive import UnsafeArchiveError
from psetae.data.download import (
    MARKER_NAME,
    ChecksumError,
    DownloadError,
    RecordFormatError,
    RemoteFile,
    download_s2agri,
    parse_record_files,
)

RECORD = "5815488"

# ------------------------------------------------------------------------- fake Zenodo


@dataclass
class Route:
    """What the fake server answers for one path."""

    body: bytes
    content_type: str = "application/octet-stream"
    honour_range: bool = True
    cut_after: int | None = None  # send only this many bytes, then close ...
    cuts: int = 0  # ... on this many requests
    fail_status: int | None = None  # answer this status ...
    fails: int = 0  # ... on this many requests


@dataclass
class FakeZenodo:
    url: str
    routes: dict[str, Route] = field(default_factory=dict)
    log: list[tuple[str, str | None, int]] = field(default_factory=list)  # path, Range, status

    def requests_to(self, path: str) -> list[tuple[str | None, int]]:
        return [(rng, status) for p, rng, status in self.log if p == path]


def _handler(server: FakeZenodo) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = urllib.parse.urlsplit(self.path).path
            rng = self.headers.get("Range")
            route = server.routes.get(path)
            if route is None:
                return self._reply(path, rng, 404, b"not found")
            if route.fails > 0:
                route.fails -= 1
                return self._reply(path, rng, route.fail_status or 500, b"try later")
            body, status, extra = route.body, 200, {}
            match = re.fullmatch(r"bytes=(\d+)-", rng or "")
            if match and route.honour_range:
                start = int(match.group(1))
                if start >= len(body):
                    return self._reply(path, rng, 416, b"")
                extra["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
                body, status = body[start:], 206
            server.log.append((path, rng, status))
            self.send_response(status)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            if route.cuts > 0 and route.cut_after is not None:
                route.cuts -= 1
                self.wfile.write(body[: route.cut_after])
                self.close_connection = True  # the rest never comes
                return
            self.wfile.write(body)

        def _reply(self, path: str, rng: str | None, status: int, body: bytes) -> None:
            server.log.append((path, rng, status))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

    return Handler


@pytest.fixture
def zenodo(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeZenodo]:
    """A fake Zenodo on an ephemeral loopback port; any other URL fails the test."""
    fake = FakeZenodo(url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    assert urllib.parse.urlsplit(fake.url).hostname == "127.0.0.1"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    real_urlopen = urllib.request.urlopen

    def loopback_only(request: urllib.request.Request | str, *args: object, **kwargs: object):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        host = urllib.parse.urlsplit(url).hostname
        assert host == "127.0.0.1", f"a test tried to reach {url}"
        return real_urlopen(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", loopback_only)
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------------- a tiny dataset

DATES = [20170101, 20170115, 20170210]
PARCELS = {  # id: (T, C, n) int16 reflectance, one parcel empty
    10: np.arange(3 * 2 * 4, dtype=np.int16).reshape(3, 2, 4),
    11: np.full((3, 2, 1), 7, dtype=np.int16),
    12: np.zeros((3, 2, 0), dtype=np.int16),
}
LABELS = {"label_44class": {"10": 1, "11": 3, "12": 39}}


def make_dataset(folder: Path) -> Path:
    """Write a three-parcel pixel-set folder by hand (independent of psetae.data.format)."""
    (folder / "DATA").mkdir(parents=True)
    (folder / "META").mkdir()
    for pid, array in PARCELS.items():
        np.save(folder / "DATA" / f"{pid}.npy", array)
    (folder / "META/labels.json").write_text(json.dumps(LABELS))
    (folder / "META/dates.json").write_text(json.dumps({str(i): d for i, d in enumerate(DATES)}))
    (folder / "META/sizes.json").write_text(
        json.dumps({str(k): v.shape[-1] for k, v in PARCELS.items()})
    )
    return folder


def archive_bytes(src: Path, name: str) -> bytes:
    """Pack ``src`` (as top folder ``S2-TOY``) into the archive format ``name`` asks for."""
    buffer = io.BytesIO()
    if name.endswith(".zip"):
        with zipfile.ZipFile(buffer, "w") as zf:
            for path in sorted(src.rglob("*")):
                zf.write(path, Path("S2-TOY", path.relative_to(src)).as_posix())
    else:
        mode = "w" if name.endswith(".tar") else "w:gz"
        with tarfile.open(fileobj=buffer, mode=mode) as tar:
            tar.add(src, arcname="S2-TOY")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("toy") / "S2-TOY")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def serve_record(
    zenodo: FakeZenodo, files: dict[str, bytes], checksums: dict[str, str] | None = None
) -> None:
    """Publish a record in the current records-API shape (files list, links.self)."""
    entries = []
    for key, body in files.items():
        path = f"/api/records/{RECORD}/files/{key}/content"
        zenodo.routes[path] = Route(body)
        entries.append(
            {
                "id": f"uuid-{key}",
                "key": key,
                "size": len(body),
                "checksum": "md5:" + (checksums or {}).get(key, md5(body)),
                "links": {"self": zenodo.url + path},
            }
        )
    record = {"id": int(RECORD), "doi": f"10.5281/zenodo.{RECORD}", "files": entries}
    zenodo.routes[f"/api/records/{RECORD}"] = Route(
        json.dumps(record).encode(), content_type="application/json"
    )


def fetch(zenodo: FakeZenodo, dest: Path, **kwargs: object) -> Path:
    options = {"progress": False, "retries": 0, "retry_wait": 0.0, "timeout": 5.0}
    options.update(kwargs)
    return download_s2agri(dest, RECORD, api_url=zenodo.url + "/api/records/", **options)


def assert_same_dataset(root: Path, original: Path) -> None:
    """Compare a downloaded dataset with the hand-made original, file by file."""
    for pid, array in PARCELS.items():
        loaded = np.load(root / "DATA" / f"{pid}.npy", allow_pickle=False)
        assert loaded.dtype == array.dtype
        np.testing.assert_array_equal(loaded, array)
    for name in ("labels.json", "dates.json", "sizes.json"):
        assert (root / "META" / name).read_bytes() == (original / "META" / name).read_bytes()
    assert json.loads((root / "META/labels.json").read_text()) == LABELS


def assert_nothing_complete(dest: Path) -> None:
    """An aborted run must not leave anything that looks like a finished dataset."""
    assert not dest.exists()
    assert not list(dest.parent.glob(f".{dest.name}.tmp-*"))
    assert not list(dest.parent.rglob(MARKER_NAME))


# ------------------------------------------------------------------- parsing the record

BODY = b"0123456789" * 5
BODY_MD5 = md5(BODY)

RECORD_SHAPES = {
    "records api": {
        "files": [
            {
                "key": "S2.tar.gz",
                "size": 50,
                "checksum": f"md5:{BODY_MD5}",
                "links": {"self": "https://z.org/api/records/1/files/S2.tar.gz/content"},
            }
        ]
    },
    "legacy with bucket": {
        "files": [
            {
                "bucket": "abc",
                "key": "S2.tar.gz",
                "size": 50,
                "type": "gz",
                "checksum": f"md5:{BODY_MD5.upper()}",
                "links": {"self": "https://z.org/api/records/1/files/S2.tar.gz/content"},
            }
        ]
    },
    "invenio entries mapping": {
        "files": {
            "enabled": True,
            "entries": {
                "S2.tar.gz": {
                    "key": "S2.tar.gz",
                    "size": 50,
                    "checksum": f"md5:{BODY_MD5}",
                    "links": {
                        "self": "https://z.org/api/records/1/files/S2.tar.gz",
                        "content": "https://z.org/api/records/1/files/S2.tar.gz/content",
                    },
                }
            },
        }
    },
    "deposit api": {
        "files": [
            {
                "filename": "S2.tar.gz",
                "filesize": 50,
                "checksum": BODY_MD5,
                "links": {"download": "https://z.org/api/records/1/files/S2.tar.gz/content"},
            }
        ]
    },
}


@pytest.mark.parametrize("shape", sorted(RECORD_SHAPES))
def test_parse_record_files_reads_every_known_shape(shape: str) -> None:
    files = parse_record_files(RECORD_SHAPES[shape], "https://z.org/api/records/1")
    assert files == [
        RemoteFile(
            key="S2.tar.gz",
            url="https://z.org/api/records/1/files/S2.tar.gz/content",
            size=50,
            checksum=f"md5:{BODY_MD5}",
        )
    ]


def test_invenio_entry_without_links_gets_the_content_url() -> None:
    data = {"entries": [{"key": "a b.zip", "size": 1, "checksum": "md5:00ff"}]}
    (remote,) = parse_record_files(data, "https://z.org/api/records/9")
    assert remote.url == "https://z.org/api/records/9/files/a%20b.zip/content"
    assert (remote.algorithm, remote.digest) == ("md5", "00ff")


@pytest.mark.parametrize(
    "data,message",
    [
        ({"hits": {"hits": []}}, r"no list of files .*top-level keys: \['hits'\]"),
        ({"files": []}, "lists no files"),
        ({"files": [{"key": "a.zip", "size": 3, "links": {"self": "u"}}]}, "has no checksum"),
        ({"files": [{"size": 3, "checksum": "md5:00"}]}, "no 'key' or 'filename'"),
        (
            {"files": [{"key": "../a.zip", "checksum": "md5:00", "links": {"self": "u"}}]},
            "unsafe file name",
        ),
        (
            {"files": [{"key": "a.zip", "checksum": "crc32:00", "links": {"self": "u"}}]},
            "unknown checksum algorithm",
        ),
        (
            {"files": [{"key": "a", "size": -1, "checksum": "md5:00", "links": {"self": "u"}}]},
            "invalid size",
        ),
    ],
)
def test_unexpected_record_json_is_a_clear_error(data: dict, message: str) -> None:
    with pytest.raises(RecordFormatError, match=message):
        parse_record_files(data, "https://z.org/api/records/1")


def test_record_may_be_given_as_doi(zenodo: FakeZenodo) -> None:
    serve_record(zenodo, {"a.bin": BODY})
    files = dl.resolve_record_files(
        "10.5281/zenodo.5815488", zenodo.url + "/api/records", retries=0
    )
    assert [(f.key, f.size, f.digest) for f in files] == [("a.bin", 50, BODY_MD5)]
    with pytest.raises(ValueError, match="not a Zenodo record"):
        dl.resolve_record_files("not-a-record", zenodo.url)


# ---------------------------------------------------------------------- end to end


@pytest.mark.parametrize("name", ["S2-TOY.tar.gz", "S2-TOY.tgz", "S2-TOY.tar", "S2-TOY.zip"])
def test_good_download_end_to_end(zenodo: FakeZenodo, toy: Path, tmp_path: Path, name: str) -> None:
    serve_record(zenodo, {name: archive_bytes(toy, name), "README.txt": b"read me"})
    dest = tmp_path / "s2agri"
    root = fetch(zenodo, dest)

    assert root == dest / "S2-TOY"
    assert_same_dataset(root, toy)
    assert (dest / "README.txt").read_bytes() == b"read me"  # plain files are copied
    marker = json.loads((dest / MARKER_NAME).read_text())
    assert marker["record"] == RECORD and marker["root"] == "S2-TOY"
    assert not (tmp_path / ".s2agri.download").exists()  # archives removed by default
    assert not list(tmp_path.glob(".s2agri.tmp-*"))

    # Idempotent: a second call returns the same root without any request.
    n_requests = len(zenodo.log)
    assert fetch(zenodo, dest) == root
    assert len(zenodo.log) == n_requests


def test_keep_archives_and_select_files(zenodo: FakeZenodo, toy: Path, tmp_path: Path) -> None:
    body = archive_bytes(toy, "S2-TOY.zip")
    serve_record(zenodo, {"S2-TOY.zip": body, "other.bin": b"never fetched"})
    root = fetch(zenodo, tmp_path / "s2agri", files=["*.zip"], keep_archives=True)
    assert_same_dataset(root, toy)
    assert (tmp_path / ".s2agri.download/S2-TOY.zip").read_bytes() == body
    assert not zenodo.requests_to(f"/api/records/{RECORD}/files/other.bin/content")
    with pytest.raises(DownloadError, match=r"no file of the record matches '\*.rar'.*S2-TOY.zip"):
        fetch(zenodo, tmp_path / "again", files=["*.rar"])


def test_checksum_mismatch_deletes_the_file_and_names_both_checksums(
    zenodo: FakeZenodo, toy: Path, tmp_path: Path
) -> None:
    body = archive_bytes(toy, "S2-TOY.tar.gz")
    corrupted = bytes([body[0] ^ 0xFF]) + body[1:]  # same size, one byte flipped
    serve_record(zenodo, {"S2-TOY.tar.gz": corrupted}, checksums={"S2-TOY.tar.gz": md5(body)})
    dest = tmp_path / "s2agri"
    with pytest.raises(ChecksumError) as info:
        fetch(zenodo, dest)
    message = str(info.value)
    assert "S2-TOY.tar.gz" in message
    assert f"expected md5:{md5(body)}" in message
    assert f"got md5:{md5(corrupted)}" in message
    assert_nothing_complete(dest)
    assert not list((tmp_path / ".s2agri.download").iterdir())  # no bad .part, no bad file


def test_transfer_cut_is_resumed_with_range_in_the_same_call(
    zenodo: FakeZenodo, toy: Path, tmp_path: Path
) -> None:
    body = archive_bytes(toy, "S2-TOY.tar.gz")
    serve_record(zenodo, {"S2-TOY.tar.gz": body})
    path = f"/api/records/{RECORD}/files/S2-TOY.tar.gz/content"
    cut = len(body) // 3
    zenodo.routes[path].cut_after, zenodo.routes[path].cuts = cut, 1
    root = fetch(zenodo, tmp_path / "s2agri", retries=2)
    assert_same_dataset(root, toy)
    assert zenodo.requests_to(path) == [(None, 200), (f"bytes={cut}-", 206)]


def test_interrupted_download_resumes_in_a_later_call(
    zenodo: FakeZenodo, toy: Path, tmp_path: Path
) -> None:
    body = archive_bytes(toy, "S2-TOY.zip")
    serve_record(zenodo, {"S2-TOY.zip": body})
    path = f"/api/records/{RECORD}/files/S2-TOY.zip/content"
    cut = len(body) // 2
    zenodo.routes[path].cut_after, zenodo.routes[path].cuts = cut, 1
    dest = tmp_path / "s2agri"

    with pytest.raises(DownloadError, match=f"connection closed after {cut} of {len(body)} bytes"):
        fetch(zenodo, dest, retries=0)
    assert_nothing_complete(dest)
    part = tmp_path / ".s2agri.download/S2-TOY.zip.part"
    assert part.read_bytes() == body[:cut]

    root = fetch(zenodo, dest, retries=0)
    assert_same_dataset(root, toy)
    assert zenodo.requests_to(path) == [(None, 200), (f"bytes={cut}-", 206)]


def test_server_ignoring_range_restarts_cleanly(
    zenodo: FakeZenodo, toy: Path, tmp_path: Path
) -> None:
    body = archive_bytes(toy, "S2-TOY.tar.gz")
    serve_record(zenodo, {"S2-TOY.tar.gz": body})
    path = f"/api/records/{RECORD}/files/S2-TOY.tar.gz/content"
    route = zenodo.routes[path]
    route.honour_range, route.cut_after, route.cuts = False, 100, 1
    root = fetch(zenodo, tmp_path / "s2agri", retries=1)
    assert_same_dataset(root, toy)
    # The second answer was the whole file again (200), written from byte 0, not appended.
    assert zenodo.requests_to(path) == [(None, 200), ("bytes=100-", 200)]


def test_transient_server_errors_are_retried(zenodo: FakeZenodo, toy: Path, tmp_path: Path) -> None:
    serve_record(zenodo, {"S2-TOY.zip": archive_bytes(toy, "S2-TOY.zip")})
    record = zenodo.routes[f"/api/records/{RECORD}"]
    record.fail_status, record.fails = 503, 2
    root = fetch(zenodo, tmp_path / "s2agri", retries=2)
    assert_same_dataset(root, toy)
    assert [s for _, s in zenodo.requests_to(f"/api/records/{RECORD}")] == [503, 503, 200]


def test_retries_are_limited(zenodo: FakeZenodo, tmp_path: Path) -> None:
    serve_record(zenodo, {"a.zip": b"x"})
    record = zenodo.routes[f"/api/records/{RECORD}"]
    record.fail_status, record.fails = 503, 10
    with pytest.raises(DownloadError, match="giving up after 3 attempt.*HTTP 503"):
        fetch(zenodo, tmp_path / "s2agri", retries=2)
    assert len(zenodo.requests_to(f"/api/records/{RECORD}")) == 3


# ------------------------------------------------------------------ errors and attacks


def test_unknown_record_is_a_404_naming_the_url(zenodo: FakeZenodo, tmp_path: Path) -> None:
    dest = tmp_path / "s2agri"
    with pytest.raises(DownloadError, match=rf"127\.0\.0\.1.*/api/records/{RECORD}: HTTP 404"):
        fetch(zenodo, dest, retries=3)
    assert len(zenodo.log) == 1  # a 404 is not retried
    assert_nothing_complete(dest)


def test_missing_file_is_a_404_naming_the_url(zenodo: FakeZenodo, tmp_path: Path) -> None:
    serve_record(zenodo, {"S2-TOY.zip": b"bytes"})
    del zenodo.routes[f"/api/records/{RECORD}/files/S2-TOY.zip/content"]
    with pytest.raises(DownloadError, match=r"files/S2-TOY\.zip/content: HTTP 404"):
        fetch(zenodo, tmp_path / "s2agri")
    assert_nothing_complete(tmp_path / "s2agri")


def _tar(*members: tuple[str, bytes, str]) -> bytes:
    """(name, tar type, link target) members; regular files hold b'x'."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            data = b"x" if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


ATTACKS = {
    "absolute path": _tar(
        ("S2/ok", tarfile.REGTYPE, ""), ("/tmp/psetae-evil", tarfile.REGTYPE, "")
    ),
    "traversal": _tar(("S2/ok", tarfile.REGTYPE, ""), ("S2/../../evil", tarfile.REGTYPE, "")),
    "symlink outside": _tar(("S2/ok", tarfile.REGTYPE, ""), ("S2/l", tarfile.SYMTYPE, "../../..")),
    "hardlink outside": _tar(("S2/ok", tarfile.REGTYPE, ""), ("S2/h", tarfile.LNKTYPE, "../evil")),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_malicious_archive_is_refused_with_nothing_extracted(
    zenodo: FakeZenodo, tmp_path: Path, attack: str
) -> None:
    serve_record(zenodo, {"S2.tar.gz": ATTACKS[attack]})
    dest = tmp_path / "s2agri"
    with pytest.raises(UnsafeArchiveError, match="refusing to extract"):
        fetch(zenodo, dest)
    assert_nothing_complete(dest)
    assert not (tmp_path / "evil").exists()
    assert not Path("/tmp/psetae-evil").exists()


def test_unsupported_archive_format_is_explained(zenodo: FakeZenodo, tmp_path: Path) -> None:
    serve_record(zenodo, {"S2.7z": b"7z\xbc\xaf\x27\x1c fake"})
    dest = tmp_path / "s2agri"
    with pytest.raises(DownloadError, match=r"S2\.7z: downloaded and verified.*7z x"):
        fetch(zenodo, dest)
    assert_nothing_complete(dest)
    # The verified archive is kept for the user to extract by hand.
    assert (tmp_path / ".s2agri.download/S2.7z").exists()


def test_non_empty_destination_without_marker_is_refused(
    zenodo: FakeZenodo, tmp_path: Path
) -> None:
    dest = tmp_path / "s2agri"
    (dest / "DATA").mkdir(parents=True)
    with pytest.raises(DownloadError, match="no completion marker"):
        fetch(zenodo, dest)
    assert zenodo.log == []  # refused before any network access


def test_only_http_urls_are_opened(tmp_path: Path) -> None:
    remote = RemoteFile("a.bin", "file:///etc/passwd", None, "md5:00")
    with pytest.raises(DownloadError, match="only http and https"):
        dl.download_file(remote, tmp_path / "a.bin", progress=False, retries=0)
