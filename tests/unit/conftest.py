"""Fixtures shared by the virtual-time tests of the monitors' logic."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from loguru import logger

from actors.clock import FakeClock


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
