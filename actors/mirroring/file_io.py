"""File-system work shared by the File Monitor (active) and the FileMirror (backup): scanning a root
into manifest entries, content hashes (cached by inode, size and mtime), and the backup's atomic
writes (temp file in the same directory, fsync, rename)."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from replication.mirror_sets import Entry, MirrorRoot

HASH_BLOCK = 1024 * 1024
HASH_LIMIT = 16 * 1024 * 1024  # larger files are compared by size and mtime (rsync's quick check)
TEMP_PREFIX = ".swmirror-"  # the backup's partial files; never part of a manifest


def file_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


class HashCache:
    """Content hashes keyed by path and (inode, size, mtime_ns): a rescan reads only what changed."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[int, int, int], str]] = {}

    def get(self, path: Path, st: os.stat_result) -> str:
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        hit = self._cache.get(str(path))
        if hit is not None and hit[0] == key:
            return hit[1]
        digest = file_hash(path)
        self._cache[str(path)] = (key, digest)
        return digest

    def forget(self, prefix: str) -> None:
        for k in [k for k in self._cache if k == prefix or k.startswith(prefix + "/")]:
            del self._cache[k]


def entry_of(top: Path, rel: str, hashes: HashCache | None) -> Entry | None:
    """The manifest entry of ``top/rel`` (``None`` if it is gone or is not a file, directory or link)."""
    path = top / rel
    try:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
            return Entry(rel, "link", 0, st.st_mtime_ns, 0o777, target, target)
        if stat.S_ISDIR(st.st_mode):
            return Entry(rel, "dir", 0, st.st_mtime_ns, stat.S_IMODE(st.st_mode), "")
        if stat.S_ISREG(st.st_mode):
            digest = hashes.get(path, st) if hashes is not None and st.st_size <= HASH_LIMIT else ""
            return Entry(rel, "file", st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode), digest)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return None


def walk(top: Path, root: MirrorRoot) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every mirrored path under ``top`` (not following symlinks), parents before children."""
    stack = [""]
    while stack:
        base = stack.pop()
        try:
            with os.scandir(top / base if base else top) as it:
                items = sorted(it, key=lambda d: d.name)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for d in items:
            if d.name.startswith(TEMP_PREFIX):
                continue
            rel = f"{base}/{d.name}" if base else d.name
            is_dir = d.is_dir(follow_symlinks=False)
            if not root.includes(rel, is_dir):
                continue
            yield rel, d
            if is_dir:
                stack.append(rel)


def scan(top: Path, root: MirrorRoot, hashes: HashCache | None) -> dict[str, Entry]:
    """The manifest of a root as it is on disk now."""
    out: dict[str, Entry] = {}
    for rel, _d in walk(top, root):
        e = entry_of(top, rel, hashes)
        if e is not None:
            out[rel] = e
    return out


_SYNC_FILE_RANGE_WRITE = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing a range of a large file to disk now (``sync_file_range``), so that the final fsync
    does not wait for the whole file; best effort."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


_syncfs = getattr(_libc, "syncfs", None)


def sync_filesystem(path: Path) -> None:
    """Make everything written to the file system holding ``path`` durable (one ``syncfs`` for a batch
    of files instead of one fsync each); falls back to ``os.sync``."""
    if _syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def temp_path(final: Path) -> Path:
    return final.parent / f"{TEMP_PREFIX}{final.name}"


def finish_file(tmp: Path, final: Path, mode: int, mtime_ns: int, synced: bool = False) -> None:
    """fsync the temp file (unless ``synced``: the caller synced the file system), give it the mode and
    mtime, and rename it over the final name."""
    if not synced:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.chmod(tmp, mode)
    os.utime(tmp, ns=(mtime_ns, mtime_ns))
    os.replace(tmp, final)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Remove a file, link or directory tree (not following links); missing is fine."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        for child in list(os.scandir(path)):
            remove_tree(Path(child.path))
        path.rmdir()
    else:
        path.unlink()
