"""psetae.io.atomic_write: all or nothing."""

from __future__ import annotations

import os
import sys

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


def _folder(path, text):
    path.mkdir()
    (path / "a.txt").write_text(text)
    return path


def test_a_crash_between_the_renames_is_restored_by_the_next_run(tmp_path, monkeypatch):
    import psetae.io as pio

    target = _folder(tmp_path / "target", "old")
    new = _folder(tmp_path / ".target.tmp-1234", "new")
    monkeypatch.setattr(pio, "_exchange", lambda a, b: False)  # the portable path
    real_rename = os.rename
    calls = []

    def crash_on_second(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed between the renames")
        real_rename(src, dst)

    monkeypatch.setattr(pio.os, "rename", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        pio.replace_dir(new, target)
    monkeypatch.setattr(pio.os, "rename", real_rename)
    assert not target.exists(), "the crash left no dataset at the target"
    (stray := tmp_path / ".target.a1b2c3.tmp").write_text("half")
    assert pio.cleanup_stale_temporaries(tmp_path, "target") == [target]
    assert (target / "a.txt").read_text() == "old", "the old folder is back"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"], "temporaries removed"
    assert not stray.exists()


def test_cleanup_keeps_other_outputs_and_the_download_cache(tmp_path):
    from psetae.io import cleanup_stale_temporaries

    _folder(tmp_path / "ds", "current")
    _folder(tmp_path / ".ds.old-deadbeef", "superseded")  # a swap that finished but for rmtree
    _folder(tmp_path / ".ds.download", "archives")
    _folder(tmp_path / ".other.tmp-1", "not ours")
    assert cleanup_stale_temporaries(tmp_path, "ds") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ds.download", ".other.tmp-1", "ds"]
    assert (tmp_path / "ds" / "a.txt").read_text() == "current"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux only")
def test_replace_dir_exchanges_in_one_step_on_linux(tmp_path, monkeypatch):
    import psetae.io as pio

    target = _folder(tmp_path / "target", "old")
    new = _folder(tmp_path / "new", "new")

    def no_rename(*args):
        raise AssertionError("os.rename used: the swap was not one renameat2(RENAME_EXCHANGE)")

    monkeypatch.setattr(pio.os, "rename", no_rename)
    pio.replace_dir(new, target)
    assert (target / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]
