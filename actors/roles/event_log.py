"""The switchover event log: one JSON line per state change, append-only and fsynced.

This is where an operator finds *why* a switch happened (``switchover ctl history`` merges the logs of
both nodes). A crash can tear the last line; reading skips a torn last line with a warning, and
opening the log for appending cuts it off so that the next record starts on a line of its own. A
broken line anywhere else is corruption and raises :class:`EventLogCorrupt` naming file and line.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from actors.roles.state_machine import Step


class EventLogCorrupt(ValueError):
    """A line other than the last one cannot be read."""


@dataclass(frozen=True)
class EventRecord:
    """One state change of one node."""

    wall_time: str  # ISO 8601, UTC
    epoch: float  # seconds since the Unix epoch (sort key across nodes)
    node: str
    old_state: str
    new_state: str
    event: str
    reason: str | None
    generation: int
    verdict: str

    @classmethod
    def create(
        cls,
        *,
        node: str,
        old_state: str,
        new_state: str,
        event: str,
        reason: str | None,
        generation: int,
        verdict: str,
        epoch: float | None = None,
    ) -> EventRecord:
        """A record stamped with ``epoch`` (default: the wall clock now)."""
        stamp = time.time() if epoch is None else epoch
        wall = datetime.fromtimestamp(stamp, tz=UTC).isoformat(timespec="milliseconds")
        return cls(wall, stamp, node, str(old_state), str(new_state), str(event), reason, generation, verdict)

    @classmethod
    def from_step(cls, step: Step, *, node: str, generation: int, epoch: float | None = None) -> EventRecord:
        return cls.create(
            node=node,
            old_state=step.old_state.value,
            new_state=step.new_state.value,
            event=step.event.value,
            reason=step.reason,
            generation=generation,
            verdict=step.verdict,
            epoch=epoch,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventRecord:
        """Strict: every field present with its type; unknown keys are ignored (newer writers)."""
        expected: dict[str, tuple[type, ...]] = {
            "wall_time": (str,),
            "epoch": (float, int),
            "node": (str,),
            "old_state": (str,),
            "new_state": (str,),
            "event": (str,),
            "reason": (str, type(None)),
            "generation": (int,),
            "verdict": (str,),
        }
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                raise ValueError(f"event record lacks {f.name!r}")
            value = data[f.name]
            if isinstance(value, bool) or not isinstance(value, expected[f.name]):
                raise ValueError(f"event record field {f.name!r} has the wrong type: {value!r}")
            values[f.name] = value
        values["epoch"] = float(values["epoch"])
        return cls(**values)


class EventLog:
    """The event log file of one node; ``append`` is durable when it returns. Thread-safe."""

    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._repaired = False

    @property
    def path(self) -> Path:
        return self._path

    def append(self, record: EventRecord) -> None:
        line = json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            if not self._repaired:
                self._cut_torn_tail()
                self._repaired = True
            created = not self._path.exists()
            with open(self._path, "a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            if created:
                _fsync_dir(self._path.parent)

    def read(self) -> list[EventRecord]:
        return read(self._path)

    def _cut_torn_tail(self) -> None:
        try:
            size = self._path.stat().st_size
        except FileNotFoundError:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            return
        if size == 0:
            return
        with open(self._path, "rb+") as handle:
            data = handle.read()
            if data.endswith(b"\n"):
                return
            keep = data.rfind(b"\n") + 1
            logger.warning(
                "event log {}: cutting off a torn last line ({} bytes) before appending",
                self._path,
                size - keep,
            )
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())


def read(path: Path | str) -> list[EventRecord]:
    """All records of the log at ``path`` (missing file: none), skipping a torn last line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records: list[EventRecord] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
            if not isinstance(obj, dict):
                raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
            records.append(EventRecord.from_dict(obj))
        except ValueError as error:
            if number - 1 == last:
                logger.warning("event log {}: skipping a torn last line {} ({})", path, number, error)
                continue
            raise EventLogCorrupt(
                f"event log {path}: line {number} is not an event record: {error}"
            ) from error
    return records


def merge_histories(histories: Iterable[Iterable[EventRecord]]) -> list[EventRecord]:
    """One timeline from several nodes' logs: sorted by time, exact duplicates dropped."""
    unique = {record: None for history in histories for record in history}
    return sorted(unique, key=lambda r: (r.epoch, r.node))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
