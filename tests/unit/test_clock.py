"""Injectable clocks: virtual time (FakeClock) and the real scheduler thread (RealClock)."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.runtime.clock import FakeClock, RealClock, real_clock


def test_fake_clock_starts_where_told_and_only_moves_on_advance() -> None:
    clock = FakeClock(start=100.0)
    assert clock.now() == 100.0
    clock.advance(2.5)
    assert clock.now() == 102.5
    clock.advance(0)
    assert clock.now() == 102.5
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_fake_timers_fire_in_deadline_order_ties_in_scheduling_order() -> None:
    clock = FakeClock()
    fired: list[tuple[str, float]] = []
    for name, delay in [("c", 3.0), ("a1", 1.0), ("b", 2.0), ("a2", 1.0), ("z", 0.0), ("a3", 1.0)]:
        clock.call_later(delay, lambda n=name: fired.append((n, clock.now())))
    clock.advance(10)
    assert fired == [("z", 0.0), ("a1", 1.0), ("a2", 1.0), ("a3", 1.0), ("b", 2.0), ("c", 3.0)]
    assert clock.now() == 10.0


def test_fake_timers_fire_only_when_due() -> None:
    clock = FakeClock()
    fired: list[str] = []
    clock.call_later(1.0, lambda: fired.append("one"))
    clock.call_later(2.0, lambda: fired.append("two"))
    clock.advance(0.999)
    assert fired == []
    clock.advance(0.001)  # exactly at the deadline
    assert fired == ["one"]
    assert clock.pending == 1
    clock.advance(5)
    assert fired == ["one", "two"]
    assert clock.pending == 0


def test_negative_delay_counts_as_now() -> None:
    clock = FakeClock(start=5.0)
    fired: list[float] = []
    clock.call_later(-3, lambda: fired.append(clock.now()))
    clock.advance(0)
    assert fired == [5.0]


def test_cancelled_fake_timer_does_not_fire() -> None:
    clock = FakeClock()
    fired: list[str] = []
    keep = clock.call_later(1.0, lambda: fired.append("keep"))
    drop = clock.call_later(1.0, lambda: fired.append("drop"))
    drop.cancel()
    drop.cancel()  # idempotent
    assert clock.pending == 1
    clock.advance(2)
    assert fired == ["keep"]
    keep.cancel()  # after firing: harmless
    assert clock.pending == 0


def test_a_callback_can_cancel_a_later_timer_of_the_same_advance() -> None:
    clock = FakeClock()
    fired: list[str] = []
    later = clock.call_later(2.0, lambda: fired.append("later"))
    clock.call_later(1.0, lambda: (fired.append("first"), later.cancel()))
    clock.advance(5)
    assert fired == ["first"]


def test_timers_scheduled_by_callbacks_fire_in_the_same_advance() -> None:
    clock = FakeClock()
    fired: list[tuple[str, float]] = []

    def chain(n: int) -> None:
        fired.append((f"chain{n}", clock.now()))
        if n < 3:
            clock.call_later(1.0, lambda: chain(n + 1))

    clock.call_later(1.0, lambda: chain(1))
    clock.call_later(0.5, lambda: clock.call_later(0, lambda: fired.append(("zero", clock.now()))))
    clock.call_later(2.5, lambda: fired.append(("fixed", clock.now())))
    clock.advance(3.0)
    assert fired == [("zero", 0.5), ("chain1", 1.0), ("chain2", 2.0), ("fixed", 2.5), ("chain3", 3.0)]
    # one scheduled beyond the end of the advance waits for the next one
    clock.call_later(1.0, lambda: fired.append(("next", clock.now())))
    assert clock.pending == 1
    clock.advance(0.5)
    assert fired[-1] == ("chain3", 3.0)
    clock.advance(0.5)
    assert fired[-1] == ("next", 4.0)


def test_run_until_idle_fires_everything_and_respects_the_limit() -> None:
    clock = FakeClock()
    fired: list[float] = []
    clock.call_later(5, lambda: fired.append(clock.now()))
    clock.call_later(50, lambda: fired.append(clock.now()))
    clock.run_until_idle(limit=10)
    assert fired == [5.0]
    assert clock.now() == 10.0
    clock.run_until_idle()
    assert fired == [5.0, 50.0]
    assert clock.pending == 0


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.booleans()), max_size=30),
    st.lists(st.integers(0, 25), max_size=5),
)
def test_fake_clock_order_property(timers: list[tuple[int, bool]], steps: list[int]) -> None:
    """Whatever the schedule and the advance steps: uncancelled timers fire in (deadline, order)."""
    clock = FakeClock()
    fired: list[int] = []
    handles = []
    for i, (delay, _) in enumerate(timers):
        handles.append(clock.call_later(delay / 2, lambda i=i: fired.append(i)))
    for handle, (_, cancel) in zip(handles, timers, strict=True):
        if cancel:
            handle.cancel()
    for step in steps:
        clock.advance(step / 2)
    clock.run_until_idle()
    kept = [i for i, (_, cancel) in enumerate(timers) if not cancel]
    expected = sorted(kept, key=lambda i: (timers[i][0], i))
    assert fired == expected


# ------------------------------------------------------------------------------------ real clock


@pytest.fixture
def clock():
    c = RealClock()
    yield c
    c.stop()


def test_real_clock_now_is_monotonic(clock: RealClock) -> None:
    a = clock.now()
    b = clock.now()
    assert b >= a
    assert abs(clock.now() - time.monotonic()) < 1.0


def test_real_clock_fires_after_the_delay(clock: RealClock) -> None:
    done = threading.Event()
    fired_at: list[float] = []
    start = time.monotonic()
    clock.call_later(0.05, lambda: (fired_at.append(time.monotonic()), done.set()))
    assert done.wait(timeout=2.0), "RealClock timer did not fire"
    assert fired_at[0] - start >= 0.05 - 0.002


def test_real_clock_fires_in_deadline_order_on_its_thread(clock: RealClock) -> None:
    done = threading.Event()
    fired: list[str] = []
    threads: set[str] = set()

    def note(name: str) -> None:
        fired.append(name)
        threads.add(threading.current_thread().name)
        if len(fired) == 3:
            done.set()

    clock.call_later(0.06, lambda: note("third"))
    clock.call_later(0.02, lambda: note("first"))
    clock.call_later(0.04, lambda: note("second"))
    assert done.wait(timeout=2.0)
    assert fired == ["first", "second", "third"]
    assert threads == {"clock"}


def test_real_clock_cancel(clock: RealClock) -> None:
    done = threading.Event()
    fired: list[str] = []
    cancelled = clock.call_later(0.01, lambda: fired.append("cancelled"))
    cancelled.cancel()
    clock.call_later(0.05, lambda: (fired.append("kept"), done.set()))
    assert done.wait(timeout=2.0)
    assert fired == ["kept"]


def test_real_clock_a_failing_callback_does_not_kill_the_scheduler(clock: RealClock) -> None:
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("callback bug")

    clock.call_later(0, boom)
    clock.call_later(0.01, done.set)
    assert done.wait(timeout=2.0)


def test_real_clock_an_earlier_timer_scheduled_later_wakes_the_scheduler(clock: RealClock) -> None:
    early = threading.Event()
    clock.call_later(30, lambda: None)  # the scheduler now waits ~30 s
    start = time.monotonic()
    clock.call_later(0.01, early.set)
    assert early.wait(timeout=2.0)
    assert time.monotonic() - start < 1.0


def test_real_clock_callbacks_can_schedule_more(clock: RealClock) -> None:
    done = threading.Event()
    count: list[int] = []

    def again() -> None:
        count.append(1)
        if len(count) < 5:
            clock.call_later(0.001, again)
        else:
            done.set()

    clock.call_later(0, again)
    assert done.wait(timeout=2.0)
    assert len(count) == 5


def test_real_clock_stop_drops_pending_timers() -> None:
    clock = RealClock()
    fired = threading.Event()
    clock.call_later(0.05, fired.set)
    clock.stop()
    assert not fired.wait(timeout=0.2)


def test_process_wide_real_clock_is_shared() -> None:
    assert real_clock() is real_clock()
