"""The file-system helpers of the mirroring actors: scans, hash cache, atomic finish, tree removal."""

from __future__ import annotations

import os
from pathlib import Path

from actors.mirroring.file_io import (
    TEMP_PREFIX,
    HashCache,
    entry_of,
    finish_file,
    remove_tree,
    scan,
    sync_filesystem,
    temp_path,
)
from replication.mirror_sets import MirrorRoot, When


def test_scan_lists_mirrored_paths_with_types_and_skips_temp_and_excluded(tmp_path: Path) -> None:
    (tmp_path / "d/e").mkdir(parents=True)
    (tmp_path / "d/e/f.dat").write_bytes(b"abc")
    (tmp_path / "n.txt").write_text("excluded")
    (tmp_path / f"{TEMP_PREFIX}x").write_text("partial")
    os.symlink("d/e/f.dat", tmp_path / "l")
    os.chmod(tmp_path / "d/e/f.dat", 0o640)
    root = MirrorRoot("/x", True, When.CONTINUOUS, ("txt",))
    entries = scan(tmp_path, root, HashCache())
    assert sorted(entries) == ["d", "d/e", "d/e/f.dat", "l"]
    f = entries["d/e/f.dat"]
    assert (f.type, f.size, f.mode) == ("file", 3, 0o640) and len(f.hash) == 32
    assert entries["l"].type == "link" and entries["l"].target == "d/e/f.dat"
    assert entries["d"].type == "dir"
    flat = scan(tmp_path, MirrorRoot("/x", False, When.CONTINUOUS), None)
    assert sorted(flat) == ["l", "n.txt"]


def test_hash_cache_rehashes_only_changed_files(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"one")
    cache = HashCache()
    first = cache.get(p, p.stat())
    assert cache.get(p, p.stat()) == first
    p.write_bytes(b"two")
    os.utime(p, ns=(1, 1))
    assert cache.get(p, p.stat()) != first
    assert entry_of(tmp_path, "missing", cache) is None


def test_finish_file_renames_with_mode_and_mtime(tmp_path: Path) -> None:
    final = tmp_path / "f"
    final.write_text("old")
    tmp = temp_path(final)
    tmp.write_text("new")
    finish_file(tmp, final, 0o600, 1_500_000_000_000_000_000)
    st = final.stat()
    assert final.read_text() == "new" and not tmp.exists()
    assert (st.st_mode & 0o777) == 0o600 and st.st_mtime_ns == 1_500_000_000_000_000_000
    tmp.write_text("newer")
    sync_filesystem(tmp_path)
    finish_file(tmp, final, 0o644, 1, synced=True)
    assert final.read_text() == "newer"


def test_remove_tree_does_not_follow_links(tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "k").write_text("k")
    gone = tmp_path / "gone/sub"
    gone.mkdir(parents=True)
    os.symlink(keep, gone / "link")
    remove_tree(tmp_path / "gone")
    remove_tree(tmp_path / "never-there")
    assert not (tmp_path / "gone").exists() and (keep / "k").read_text() == "k"
