"""Pure restart-intensity bookkeeping for the supervisor (no threads, no clock reads)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Intensity:
    """At most ``max_restarts`` restarts of one child within ``window`` seconds."""

    max_restarts: int = 5
    window: float = 10.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts}")
        if self.window <= 0:
            raise ValueError(f"restart window must be > 0 seconds, got {self.window}")


@dataclass
class RestartHistory:
    intensity: Intensity
    times: deque[float] = field(default_factory=deque)

    def allow(self, now: float) -> bool:
        """Record a restart at ``now``; False when that would exceed the intensity."""
        while self.times and now - self.times[0] > self.intensity.window:
            self.times.popleft()
        if len(self.times) >= self.intensity.max_restarts:
            return False
        self.times.append(now)
        return True
