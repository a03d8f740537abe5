"""One node per data directory: an exclusive ``flock`` on ``<data dir>/node.lock`` holding the PID.

The lock is taken before the node touches anything in the directory (log file, DS store, admin
socket, history), and held by an open file descriptor for the life of the process: the kernel
releases it when the process exits, however it exits (SIGKILL included), so a stale lock file
never blocks a restart. The file itself is never deleted (deleting it would let two processes
lock two different files of the same name).

A second process that finds the lock held refuses with :class:`DataDirInUse`, which names the
PID written by the holder.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "node.lock"


class DataDirInUse(RuntimeError):
    """Another live process holds the data directory's lock."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        self.data_dir = data_dir
        self.pid = pid
        holder = f"node process {pid}" if pid is not None else "another process (its PID is not readable)"
        super().__init__(
            f"data directory {data_dir} is in use by {holder} (lock {data_dir / LOCK_FILE}); "
            "stop that node first, or give this one its own data_dir"
        )


class DataDirLock:
    """The exclusive lock of one data directory, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock and write our PID into the file, or raise :class:`DataDirInUse`."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by hooks (PEP 446)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DataDirInUse(self.data_dir, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # no PID of a stopped process left behind
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
