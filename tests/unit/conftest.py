"""Fixtures shared by the unit tests: virtual time for the monitors' logic, a DS store and its parameters."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from loguru import logger

from actors.runtime.clock import FakeClock
from replication.params import ServerParams
from replication.store import Store


@dataclass
class LogLine:
    """A log line as the logic wrote it, stamped with the virtual time."""

    at: float
    topic: str
    level: str
    message: str


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def logs(clock: FakeClock) -> Iterator[list[LogLine]]:
    lines: list[LogLine] = []

    def sink(message: object) -> None:
        record = message.record  # type: ignore[attr-defined]
        lines.append(
            LogLine(clock.now(), record["extra"].get("topic", ""), record["level"].name, record["message"])
        )

    handler = logger.add(sink, level="DEBUG", format="{message}")
    yield lines
    logger.remove(handler)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh DS store in a temporary directory."""
    s = Store(tmp_path / "ds.sqlite3")
    yield s
    s.close()


@pytest.fixture
def params(store: Store) -> Iterator[ServerParams]:
    p = ServerParams(store)
    yield p
    p.close()
