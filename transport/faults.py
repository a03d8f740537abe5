"""Fault hooks every endpoint honours: drop all, drop a fraction, delay by N ms, cut.

They stand in for kernel netem (absent here) and let tests and operators inject faults
through the admin socket. A ``Faults`` value is immutable; an endpoint swaps it atomically.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Faults:
    drop_all: bool = False
    drop_fraction: float = 0.0
    delay_ms: float = 0.0
    cut: bool = False  # a client endpoint disconnects and stays disconnected until healed

    def __post_init__(self) -> None:
        if not 0.0 <= self.drop_fraction <= 1.0:
            raise ValueError(f"drop fraction must be between 0 and 1, got {self.drop_fraction}")
        if self.delay_ms < 0:
            raise ValueError(f"delay must be >= 0 ms, got {self.delay_ms}")

    @property
    def active(self) -> bool:
        return self.drop_all or self.cut or self.drop_fraction > 0 or self.delay_ms > 0

    def drops(self, rng: random.Random) -> bool:
        if self.drop_all or self.cut:
            return True
        return self.drop_fraction > 0 and rng.random() < self.drop_fraction

    def as_dict(self) -> dict[str, Any]:
        return {
            "drop_all": self.drop_all,
            "drop_fraction": self.drop_fraction,
            "delay_ms": self.delay_ms,
            "cut": self.cut,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        unknown = set(data) - {"drop_all", "drop_fraction", "delay_ms", "cut"}
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
        return replace(
            cls(),
            drop_all=bool(data.get("drop_all", False)),
            drop_fraction=float(data.get("drop_fraction", 0.0)),
            delay_ms=float(data.get("delay_ms", 0.0)),
            cut=bool(data.get("cut", False)),
        )


NO_FAULTS = Faults()
