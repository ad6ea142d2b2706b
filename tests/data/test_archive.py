"""Tests of psetae/data/archive.py: every unsafe member is refused before anything is written."""

from __future__ import annotations

import io
import os
import re
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from psetae.data.archive import (
    UnsafeArchiveError,
    archive_kind,
    check_archive,
    extract_archive,
)

# ----------------------------------------------------------------------------- builders


def _tar_member(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info, data


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def make_zip(path: Path, members: list[tuple[str, bytes, int]]) -> Path:
    """members: (name, content, unix mode); a symlink's content is its target."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # Unix, so that the mode bits mean something
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


GOOD_TAR = [
    _tar_member("pkg", tarfile.DIRTYPE),
    _tar_member("pkg/META/labels.json", data=b'{"a": {"1": 2}}'),
    _tar_member("pkg/DATA/1.npy", data=b"\x93NUMPY fake"),
    _tar_member("./pkg/notes.txt", data=b"hello"),
    _tar_member("pkg/link-inside", tarfile.SYMTYPE, link="notes.txt"),
    _tar_member("pkg/hard-inside", tarfile.LNKTYPE, link="pkg/notes.txt"),
]

FILE = stat.S_IFREG | 0o644
LINK = stat.S_IFLNK | 0o777

# ------------------------------------------------------------------------- good archives


@pytest.mark.parametrize("suffix,mode", [(".tar", "w"), (".tar.gz", "w:gz"), (".tgz", "w:gz")])
def test_good_tar_is_extracted_with_its_content(tmp_path: Path, suffix: str, mode: str) -> None:
    archive = make_tar(tmp_path / f"good{suffix}", GOOD_TAR, mode)
    out = extract_archive(archive, tmp_path / "out")
    assert (out / "pkg/META/labels.json").read_bytes() == b'{"a": {"1": 2}}'
    assert (out / "pkg/DATA/1.npy").read_bytes() == b"\x93NUMPY fake"
    assert (out / "pkg/link-inside").is_symlink()
    assert os.readlink(out / "pkg/link-inside") == "notes.txt"
    assert (out / "pkg/link-inside").read_bytes() == b"hello"
    assert (out / "pkg/hard-inside").read_bytes() == b"hello"


def test_good_zip_is_extracted_with_its_content(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "good.zip",
        [
            ("pkg/", b"", stat.S_IFDIR | 0o755),
            ("pkg/META/labels.json", b'{"a": {}}', FILE),
            ("pkg/DATA/7.npy", b"x" * 1000, FILE),
            ("pkg/alias", b"META/labels.json", LINK),
        ],
    )
    assert check_archive(archive) == [
        "pkg/",
        "pkg/META/labels.json",
        "pkg/DATA/7.npy",
        "pkg/alias",
    ]
    out = extract_archive(archive, tmp_path / "out")
    assert (out / "pkg/DATA/7.npy").read_bytes() == b"x" * 1000
    assert (out / "pkg/alias").is_symlink()
    assert (out / "pkg/alias").read_bytes() == b'{"a": {}}'


def test_zip_members_without_file_type_bits_are_regular_files(tmp_path: Path) -> None:
    archive = tmp_path / "plain.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/1.npy", b"one")  # stores permission bits 0o600 only
        info = zipfile.ZipInfo("a/2.npy")
        info.create_system = 0  # made on Windows/DOS: no Unix mode at all
        info.external_attr = 0xFFFF0000  # junk high bits that mean nothing there
        zf.writestr(info, b"two")
    out = extract_archive(archive, tmp_path / "out")
    assert (out / "a/1.npy").read_bytes() == b"one"
    assert (out / "a/2.npy").read_bytes() == b"two"


def test_archive_kind_from_name() -> None:
    assert archive_kind("a/b/S2.tar.gz") == "tar"
    assert archive_kind("S2.TGZ") == "tar"
    assert archive_kind("S2.tar") == "tar"
    assert archive_kind("S2.zip") == "zip"
    assert archive_kind("S2.7z") is None
    assert archive_kind("meanstd.pkl") is None


def test_not_an_archive_is_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "broken.tar.gz"
    fake.write_bytes(b"this is not gzip")
    with pytest.raises(ValueError, match="broken.tar.gz: cannot read the archive"):
        check_archive(fake)
    with pytest.raises(ValueError, match="not a supported archive"):
        check_archive(tmp_path / "data.7z")


# ------------------------------------------------------------------------ attacks: tar

TAR_ATTACKS = {
    "absolute path": [_tar_member("/tmp/psetae-evil.txt", data=b"x")],
    "'..' component": [_tar_member("pkg/../../evil.txt", data=b"x")],
    "link to an absolute path": [_tar_member("pkg/l", tarfile.SYMTYPE, link="/etc/passwd")],
    "points outside the destination": [_tar_member("pkg/l", tarfile.SYMTYPE, link="../../x")],
    "hard link to '../outside.txt'": [_tar_member("pkg/h", tarfile.LNKTYPE, link="../outside.txt")],
    "hard link to '/etc/passwd'": [_tar_member("pkg/h", tarfile.LNKTYPE, link="/etc/passwd")],
    "device file": [_tar_member("pkg/dev", tarfile.CHRTYPE)],
    "placed under a link": [
        _tar_member("pkg/sub", tarfile.DIRTYPE),
        _tar_member("pkg/l", tarfile.SYMTYPE, link="sub"),
        _tar_member("pkg/l/file.txt", data=b"x"),
    ],
}


@pytest.mark.parametrize("attack", sorted(TAR_ATTACKS))
def test_unsafe_tar_is_refused_and_nothing_extracted(tmp_path: Path, attack: str) -> None:
    # A good member first: it must not be extracted either.
    members = [_tar_member("pkg/ok.txt", data=b"ok"), *TAR_ATTACKS[attack]]
    archive = make_tar(tmp_path / "evil.tar.gz", members)
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=re.escape(attack)):
        extract_archive(archive, out)
    assert not out.exists()
    assert not (tmp_path / "outside.txt").exists()
    assert not Path("/tmp/psetae-evil.txt").exists()


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "evil.tar",
        [
            _tar_member("/abs", data=b"x"),
            _tar_member("a/../../b", data=b"x"),
            _tar_member("s", tarfile.SYMTYPE, link="../x"),
        ],
        mode="w",
    )
    with pytest.raises(UnsafeArchiveError) as info:
        check_archive(archive)
    message = str(info.value)
    assert "3 unsafe member(s)" in message
    assert "'/abs'" in message and "'a/../../b'" in message and "'s'" in message
    assert "evil.tar" in message


def test_symlink_resolving_inside_through_dotdot_is_allowed(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "ok.tar",
        [
            _tar_member("pkg/a/data.txt", data=b"d"),
            _tar_member("pkg/b/l", tarfile.SYMTYPE, link="../a/data.txt"),
        ],
        mode="w",
    )
    out = extract_archive(archive, tmp_path / "out")
    assert (out / "pkg/b/l").read_bytes() == b"d"


# ------------------------------------------------------------------------ attacks: zip

ZIP_ATTACKS = {
    "absolute path": [("/tmp/psetae-evil.txt", b"x", FILE)],
    "'..' component": [("pkg/../../evil.txt", b"x", FILE)],
    "backslash '..'": [("pkg\\..\\..\\evil.txt", b"x", FILE)],
    "drive letter": [("C:/evil.txt", b"x", FILE)],
    "symlink outside": [("pkg/l", b"../../outside.txt", LINK)],
    "symlink absolute": [("pkg/l", b"/etc/passwd", LINK)],
    "device file": [("pkg/dev", b"", stat.S_IFCHR | 0o644)],
    "placed under a link": [("pkg/l", b".", LINK), ("pkg/l/x.txt", b"x", FILE)],
}


@pytest.mark.parametrize("attack", sorted(ZIP_ATTACKS))
def test_unsafe_zip_is_refused_and_nothing_extracted(tmp_path: Path, attack: str) -> None:
    archive = make_zip(tmp_path / "evil.zip", [("pkg/ok.txt", b"ok", FILE), *ZIP_ATTACKS[attack]])
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="refusing to extract"):
        extract_archive(archive, out)
    assert not out.exists()
    assert not (tmp_path / "outside.txt").exists()
    assert not (tmp_path / "evil.txt").exists()


# ------------------------------------------------------------- links that chain, bombs


def test_tar_link_chain_escaping_is_refused_before_extraction(tmp_path: Path) -> None:
    # Compared as text each link stays inside; followed as the file system would, the
    # second one ends one level above the destination.
    archive = make_tar(
        tmp_path / "chain.tar",
        [
            _tar_member("ok.txt", data=b"ok"),
            _tar_member("sub", tarfile.DIRTYPE),
            _tar_member("sub/up", tarfile.SYMTYPE, link=".."),
            _tar_member("sub/esc", tarfile.SYMTYPE, link="up/.."),
        ],
        mode="w",
    )
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=r"'sub/esc': link to 'up/\.\.' points outside"):
        extract_archive(archive, out)
    assert not out.exists(), "nothing may be extracted"


def test_zip_link_chain_escaping_is_refused_and_leaves_no_link(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "chain.zip",
        [("sub/", b"", stat.S_IFDIR | 0o755), ("sub/up", b"..", LINK), ("sub/esc", b"up/..", LINK)],
    )
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="'sub/esc'"):
        extract_archive(archive, out)
    assert not out.exists()


def test_link_loops_are_refused(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "loop.tar",
        [_tar_member("a", tarfile.SYMTYPE, link="b"), _tar_member("b", tarfile.SYMTYPE, link="a")],
        mode="w",
    )
    with pytest.raises(UnsafeArchiveError, match="'a'.*loops"):
        check_archive(archive)


def test_refusal_is_one_line_naming_the_members(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "evil.tar", TAR_ATTACKS["device file"], mode="w")
    with pytest.raises(UnsafeArchiveError) as info:
        check_archive(archive)
    assert "\n" not in str(info.value)
    assert "'pkg/dev'" in str(info.value).split(":", 2)[-1]


def test_total_declared_size_over_the_limit_is_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "big.tar", [_tar_member("a.bin", data=b"x" * 5000)], mode="w")
    with pytest.raises(UnsafeArchiveError, match="5000 bytes uncompressed, more than"):
        extract_archive(archive, tmp_path / "out", max_total_bytes=4999)
    assert not (tmp_path / "out").exists()
    assert extract_archive(archive, tmp_path / "out", max_total_bytes=5000).is_dir()


def test_zip_member_compressed_too_well_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.npy", bytes(8 << 20))  # 8 MiB of zeros deflate ~1000x
    with pytest.raises(UnsafeArchiveError, match="'zeros.npy': 8388608 bytes compressed into"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert extract_archive(archive, tmp_path / "ok", max_ratio=1e6).is_dir()


def test_tar_stream_compressed_too_well_is_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "bomb.tar.gz", [_tar_member("z", data=bytes(4 << 20))])
    with pytest.raises(UnsafeArchiveError, match="a ratio above max_ratio=100"):
        check_archive(archive)


def test_zip_member_longer_than_declared_is_cut_and_removed(tmp_path: Path, monkeypatch) -> None:
    archive = make_zip(tmp_path / "liar.zip", [("a.npy", b"x" * 10, FILE)])
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(
        zipfile.ZipFile,
        "open",
        lambda self, info, *a, **k: io.BytesIO(b"y" * 1000) if a == () else real_open(self, info),
    )
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="'a.npy' inflates past its declared 10 bytes"):
        extract_archive(archive, out)
    assert not (out / "a.npy").exists(), "the partial file is removed"


def test_tarfile_filter_is_a_second_line_of_defence(tmp_path: Path, monkeypatch) -> None:
    import psetae.data.archive as arc

    archive = make_tar(
        tmp_path / "evil.tar", [_tar_member("l", tarfile.SYMTYPE, link="../x")], mode="w"
    )
    monkeypatch.setattr(arc, "_check_members", lambda members: [])  # the first line fails
    with pytest.raises(UnsafeArchiveError, match="'l' refused while extracting"):
        extract_archive(archive, tmp_path / "out")
