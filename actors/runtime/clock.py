"""Injectable clocks: a real one for nodes, a fake one for virtual-time tests.

Decision logic never reads time itself; it is handed a :class:`Clock`.
``now()`` is monotonic seconds. ``call_later()`` returns a cancellable
:class:`Timer`. Callbacks of the real clock run on its scheduler thread, so an
actor schedules a *message to itself* rather than touching its state there.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(eq=False)
class Timer:
    """A scheduled callback; ``cancel()`` stops it from firing (idempotent)."""

    deadline: float
    seq: int
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: Timer) -> bool:
        return (self.deadline, self.seq) < (other.deadline, other.seq)


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` once, ``delay`` seconds from now."""
        ...


class FakeClock:
    """Virtual time: nothing happens until :meth:`advance` is called.

    Timers fire in deadline order (ties in scheduling order); a timer scheduled
    by a callback fires in the same ``advance`` if its deadline falls inside it.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._heap: list[Timer] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(self._now + max(0.0, delay), next(self._seq), callback)
        heapq.heappush(self._heap, timer)
        return timer

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing every timer that falls due."""
        if seconds < 0:
            raise ValueError(f"cannot advance a clock backwards (got {seconds})")
        end = self._now + seconds
        while self._heap and self._heap[0].deadline <= end:
            timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self._now = max(self._now, timer.deadline)
            timer.callback()
        self._now = end

    def run_until_idle(self, limit: float = 3600.0) -> None:
        """Advance to each pending timer in turn until none is left (or ``limit`` seconds pass)."""
        end = self._now + limit
        while True:
            pending = [t for t in self._heap if not t.cancelled]
            if not pending:
                return
            nxt = min(t.deadline for t in pending)
            if nxt > end:
                self._now = end
                return
            self.advance(nxt - self._now)

    @property
    def pending(self) -> int:
        return sum(1 for t in self._heap if not t.cancelled)


class RealClock:
    """Monotonic time with one scheduler thread for all timers of a process."""

    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._wake_at = -math.inf  # when the scheduler thread next wakes by itself (-inf: it is awake)

    def now(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(self.now() + max(0.0, delay), next(self._seq), callback)
        with self._cond:
            heapq.heappush(self._heap, timer)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="clock", daemon=True)
                self._thread.start()
            if timer.deadline < self._wake_at:
                self._cond.notify()  # the scheduler thread sleeps past this one: wake it to re-plan
        return timer

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0].deadline > self.now()):
                    while self._heap and self._heap[0].cancelled:
                        heapq.heappop(self._heap)  # a cancelled timer (a ping's guard) costs no wake-up
                    timeout = max(0.0, self._heap[0].deadline - self.now()) if self._heap else None
                    self._wake_at = self._heap[0].deadline if self._heap else math.inf
                    self._cond.wait(timeout)
                    self._wake_at = -math.inf  # awake: a timer scheduled now is seen without a notify
                if self._stopped:
                    return
                timer = heapq.heappop(self._heap)
            if not timer.cancelled:
                try:
                    timer.callback()
                except Exception:
                    from loguru import logger

                    logger.exception("timer callback failed")


_default_clock: RealClock | None = None


def real_clock() -> RealClock:
    """The process-wide real clock (one scheduler thread)."""
    global _default_clock
    if _default_clock is None:
        _default_clock = RealClock()
    return _default_clock
