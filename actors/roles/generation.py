"""The durable fencing generation of a node.

Every switch increments the generation on the node that becomes primary; every VirtualSwitch and
Notifier message carries it. A primary that learns of a primary with a higher generation demotes
itself. The counter must survive crashes, so it is written atomically: a temporary file in the same
directory, fsync, rename over the old file, fsync of the directory.

The file holds one non-negative decimal integer and a newline. A missing file means generation 0 (a
node that never was primary); a file that exists but does not hold such a number is an error, never
silently reset, because a reset could let a stale primary outrank the real one.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from loguru import logger


class GenerationFileCorrupt(ValueError):
    """The generation file exists but does not hold a generation."""


class GenerationStore:
    """The generation counter in ``path`` (typically ``<data dir>/generation``)."""

    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._value = self._load()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def value(self) -> int:
        with self._lock:
            return self._value

    def bump(self) -> int:
        """Increment the generation durably and return the new value."""
        with self._lock:
            self._write(self._value + 1)
            logger.info("fencing generation bumped to {} ({})", self._value, self._path)
            return self._value

    def observe(self, generation: int) -> int:
        """Raise the stored generation to ``generation`` if it is higher (durably); return the value."""
        if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
            raise ValueError(f"a generation is a non-negative integer, got {generation!r}")
        with self._lock:
            if generation > self._value:
                self._write(generation)
                logger.info("fencing generation raised to {} as observed ({})", generation, self._path)
            return self._value

    def _load(self) -> int:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return 0
        text = raw.decode("ascii", errors="replace").strip()
        if not text.isascii() or not text.isdigit():
            shown = raw[:40].decode("ascii", errors="replace")
            raise GenerationFileCorrupt(
                f"generation file {self._path} is corrupt: expected one non-negative decimal integer "
                f"(the fencing generation) followed by a newline, found {shown!r}"
                f"{' (truncated)' if len(raw) > 40 else ''}; restore it from the peer's generation or "
                "remove it only if this node must never outrank the peer"
            )
        return int(text)

    def _write(self, value: int) -> None:
        directory = self._path.parent
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{self._path.name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, f"{value}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._value = value
