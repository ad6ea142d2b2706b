"""psetae.io.atomic_write: all or nothing."""

from __future__ import annotations

import os

import pytest

from psetae.io import atomic_write


def test_writes_the_file_with_ordinary_permissions(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_write(target, "w", encoding="utf-8") as f:
        f.write("hello")
    assert target.read_text() == "hello"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"], "temporary file left behind"


def test_a_failure_keeps_the_old_file_and_leaves_no_trace(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write(b"half of the new con")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_replace_dir_moves_a_new_folder_and_replaces_an_old_one(tmp_path):
    from psetae.io import replace_dir

    new = tmp_path / "new"
    new.mkdir()
    (new / "a.txt").write_text("new")
    target = tmp_path / "target"
    replace_dir(new, target)
    assert (target / "a.txt").read_text() == "new" and not new.exists()

    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "b.txt").write_text("newer")
    replace_dir(newer, target)
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"], "old content must be gone"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"], "nothing else left behind"
