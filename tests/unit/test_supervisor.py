"""The Supervisor with real pykka actors: restarts, incarnations, escalation, stale reports,
liveness, and the directory of current references."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pykka
import pytest

from actors.runtime.base import ChildFailed, NodeActor, handles
from actors.runtime.clock import RealClock
from actors.runtime.context import NodeContext
from actors.runtime.supervision import Intensity, RestartHistory
from actors.runtime.supervisor import (
    ChildSpec,
    GetActorStatus,
    StartChildren,
    StopChildren,
    Supervisor,
    actor_spec,
)
from tests.conftest import wait_until
from transport.messages import CrashActor, Ping, Pong

TIMEOUT = 3.0


@dataclass
class Plan:
    """Shared by every incarnation of a test child: what to do and what happened."""

    fail_starts: int = 0  # this many starts raise in started()
    starts: queue.Queue[int] = field(default_factory=queue.Queue)
    stops: queue.Queue[int] = field(default_factory=queue.Queue)
    start_count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Worker(NodeActor):
    actor_name = "Worker"

    def __init__(
        self, ctx: NodeContext, incarnation: int = 1, name: str | None = None, plan: Plan | None = None
    ) -> None:
        super().__init__(ctx, incarnation, name)
        self.plan = plan or Plan()

    def started(self) -> None:
        with self.plan.lock:
            self.plan.start_count += 1
            fail = self.plan.start_count <= self.plan.fail_starts
        if fail:
            raise RuntimeError(f"start failure of incarnation {self.incarnation}")
        self.plan.starts.put(self.incarnation)

    def stopped(self) -> None:
        self.plan.stops.put(self.incarnation)

    @handles(Ping)
    def on_ping(self, msg: Ping) -> Pong:
        return Pong(str(self.incarnation).encode())


class QuickSupervisor(Supervisor):
    """The liveness tick far off, so a failure is seen through its ChildFailed report only."""

    LIVENESS_INTERVAL = 60.0


@dataclass
class Harness:
    ctx: NodeContext
    clock: RealClock
    sup: pykka.ActorRef[Any] | None = None
    escalations: queue.Queue[str] = field(default_factory=queue.Queue)

    def start(
        self,
        specs: list[ChildSpec],
        intensity: Intensity | None = None,
        cls: type[Supervisor] = QuickSupervisor,
    ) -> pykka.ActorRef[Any]:
        self.sup = cls.start(self.ctx, specs, intensity or Intensity(5, 10.0), self.escalations.put)
        self.sup.ask(StartChildren(), timeout=TIMEOUT)
        return self.sup

    def status(self) -> dict[str, dict[str, Any]]:
        assert self.sup is not None
        rows = self.sup.ask(GetActorStatus(), timeout=TIMEOUT)
        return {row["name"]: row for row in rows}

    def ref(self, name: str) -> pykka.ActorRef[Any]:
        ref = self.ctx.directory.lookup(name)
        assert ref is not None, f"{name} is not in the directory"
        return ref

    def wait_incarnation(self, name: str, incarnation: int) -> dict[str, Any]:
        def back() -> dict[str, Any] | None:
            row = self.status()[name]
            ref = self.ctx.directory.lookup(name)
            if row["incarnation"] == incarnation and row["alive"] and ref is not None and ref.is_alive():
                return row
            return None

        row: dict[str, Any] = wait_until(back, TIMEOUT, message=f"{name} incarnation {incarnation} alive")
        return row


@pytest.fixture
def harness() -> Iterator[Harness]:
    clock = RealClock()
    h = Harness(NodeContext(node="T", clock=clock, config=None), clock)
    try:
        yield h
    finally:
        if h.sup is not None and h.sup.is_alive():
            h.sup.stop(block=True, timeout=TIMEOUT)
        clock.stop()


def next_start(plan: Plan) -> int:
    return plan.starts.get(timeout=TIMEOUT)


# ------------------------------------------------------------------------------------- tests


def test_children_start_and_are_published_in_the_directory(harness: Harness) -> None:
    one, two = Plan(), Plan()
    sup = harness.start([actor_spec("One", Worker, plan=one), actor_spec("Two", Worker, plan=two)])
    assert next_start(one) == 1 and next_start(two) == 1
    assert harness.ctx.supervisor is not None and harness.ctx.supervisor.actor_urn == sup.actor_urn
    assert harness.ctx.directory.names() == ["One", "Two"]
    assert harness.ref("One").ask(Ping(), timeout=TIMEOUT) == Pong(b"1")
    rows = harness.status()
    assert list(rows) == ["Supervisor", "One", "Two"]
    for name in ("One", "Two"):
        assert rows[name]["alive"] and rows[name]["incarnation"] == 1 and rows[name]["restarts"] == 0
    assert rows["Supervisor"]["last_failure"] == ""


def test_restarts_a_child_that_fails_in_on_receive(harness: Harness) -> None:
    plan = Plan()
    harness.start([actor_spec("W", Worker, plan=plan)])
    assert next_start(plan) == 1
    first = harness.ref("W")
    first.tell(CrashActor("test crash"))
    assert next_start(plan) == 2
    row = harness.wait_incarnation("W", 2)
    assert row["restarts"] == 1
    assert "InjectedCrash: test crash" in row["last_failure"] and "on_receive" in row["last_failure"]
    assert plan.stops.get(timeout=TIMEOUT) == 1  # the failed incarnation cleaned up (stopped() ran)
    assert not first.is_alive()
    new = harness.ref("W")
    assert new.actor_urn != first.actor_urn
    assert new.ask(Ping(), timeout=TIMEOUT) == Pong(b"2")
    assert harness.escalations.empty()


def test_restarts_a_child_that_fails_in_on_start(harness: Harness) -> None:
    plan = Plan(fail_starts=1)
    harness.start([actor_spec("W", Worker, plan=plan)])
    assert next_start(plan) == 2  # incarnation 1 raised in started(); 2 is the restart
    row = harness.wait_incarnation("W", 2)
    assert row["restarts"] == 1
    assert "start failure of incarnation 1" in row["last_failure"] and "on_start" in row["last_failure"]
    assert harness.ref("W").ask(Ping(), timeout=TIMEOUT) == Pong(b"2")


def test_repeated_failures_count_restarts_and_incarnations(harness: Harness) -> None:
    plan = Plan()
    harness.start([actor_spec("W", Worker, plan=plan)], Intensity(5, 10.0))
    assert next_start(plan) == 1
    for n in range(2, 5):
        harness.ref("W").tell(CrashActor(f"crash {n}"))
        assert next_start(plan) == n
        assert harness.wait_incarnation("W", n)["restarts"] == n - 1
    assert harness.escalations.empty()


def test_escalates_after_the_configured_intensity(harness: Harness) -> None:
    plan = Plan()
    other = Plan()
    specs = [actor_spec("Fragile", Worker, plan=plan), actor_spec("Other", Worker, plan=other)]
    harness.start(specs, Intensity(2, 30.0))
    assert next_start(plan) == 1
    for n in (2, 3):  # two restarts are allowed
        harness.ref("Fragile").tell(CrashActor(f"crash before {n}"))
        assert next_start(plan) == n
        harness.wait_incarnation("Fragile", n)
    harness.ref("Fragile").tell(CrashActor("the last straw"))
    reason = harness.escalations.get(timeout=TIMEOUT)
    assert "Fragile" in reason and "the last straw" in reason and "limit 2" in reason
    rows = harness.status()
    assert rows["Supervisor"]["last_failure"] == reason  # status() shows the escalation
    assert rows["Fragile"]["alive"] is False and rows["Fragile"]["restarts"] == 2
    assert "the last straw" in rows["Fragile"]["last_failure"]
    assert harness.ctx.directory.lookup("Fragile") is None
    assert plan.starts.empty()  # not restarted again
    assert rows["Other"]["alive"] is True  # the other child is left alone
    assert harness.escalations.empty()


def test_restart_window_forgets_old_failures() -> None:
    history = RestartHistory(Intensity(max_restarts=2, window=10.0))
    assert history.allow(0.0) and history.allow(1.0)
    assert not history.allow(2.0)  # third within 10 s
    assert history.allow(11.5)  # the one at 0.0 and 1.0 fell out of the window
    assert not RestartHistory(Intensity(0, 1.0)).allow(0.0)  # no restarts at all
    with pytest.raises(ValueError):
        Intensity(-1, 1.0)
    with pytest.raises(ValueError):
        Intensity(1, 0)


def test_escalates_when_on_start_keeps_failing(harness: Harness) -> None:
    plan = Plan(fail_starts=100)
    harness.start([actor_spec("Broken", Worker, plan=plan)], Intensity(3, 30.0))
    reason = harness.escalations.get(timeout=TIMEOUT)
    assert "Broken" in reason and "on_start" in reason
    row = harness.status()["Broken"]
    assert row["incarnation"] == 4 and row["restarts"] == 3 and not row["alive"]


def test_a_stale_child_failed_is_ignored(harness: Harness) -> None:
    plan = Plan()
    sup = harness.start([actor_spec("W", Worker, plan=plan)])
    assert next_start(plan) == 1
    harness.ref("W").tell(CrashActor("real crash"))
    assert next_start(plan) == 2
    current = harness.wait_incarnation("W", 2)
    ref = harness.ref("W")
    # a late report about incarnation 1 (and one about an incarnation that never existed)
    sup.tell(ChildFailed("W", 1, "on_receive", "late report"))
    sup.tell(ChildFailed("W", 7, "on_receive", "from the future"))
    sup.tell(ChildFailed("Nobody", 1, "on_receive", "unknown child"))
    row = harness.status()["W"]  # ask: processed after the tells above
    assert row["incarnation"] == 2 and row["restarts"] == 1 and row["alive"]
    assert row["last_failure"] == current["last_failure"]
    assert harness.ref("W").actor_urn == ref.actor_urn and ref.is_alive()
    assert plan.starts.empty()


def test_a_child_that_stops_without_reporting_is_detected_by_the_liveness_tick(harness: Harness) -> None:
    class FastLiveness(Supervisor):
        LIVENESS_INTERVAL = 0.05

    plan = Plan()
    harness.start([actor_spec("Quiet", Worker, plan=plan)], cls=FastLiveness)
    assert next_start(plan) == 1
    first = harness.ref("Quiet")
    first.stop(block=True, timeout=TIMEOUT)  # stops cleanly: on_stop, no ChildFailed
    assert plan.stops.get(timeout=TIMEOUT) == 1
    assert next_start(plan) == 2
    row = harness.wait_incarnation("Quiet", 2)
    assert row["restarts"] == 1
    assert "stopped without reporting" in row["last_failure"]
    assert harness.ref("Quiet").actor_urn != first.actor_urn


def test_directory_points_at_the_new_ref_after_a_restart(harness: Harness) -> None:
    plan = Plan()
    harness.start([actor_spec("W", Worker, plan=plan)])
    assert next_start(plan) == 1
    old = harness.ref("W")
    old.tell(CrashActor("crash"))
    assert next_start(plan) == 2
    harness.wait_incarnation("W", 2)
    new = harness.ref("W")
    assert new is not old and new.actor_urn != old.actor_urn
    assert new.is_alive() and not old.is_alive()
    with pytest.raises(pykka.ActorDeadError):
        old.ask(Ping(), timeout=TIMEOUT)
    assert new.ask(Ping(), timeout=TIMEOUT) == Pong(b"2")


def test_temporary_child_is_not_restarted(harness: Harness) -> None:
    plan = Plan()
    harness.start([actor_spec("Once", Worker, restart="temporary", plan=plan)])
    assert next_start(plan) == 1
    harness.ref("Once").tell(CrashActor("crash"))

    def down() -> bool:
        row = harness.status()["Once"]
        return not row["alive"] and "crash" in row["last_failure"]

    wait_until(down, TIMEOUT, message="temporary child reported down")
    assert harness.ctx.directory.lookup("Once") is None
    assert plan.starts.empty()
    assert harness.escalations.empty()


def test_stop_and_start_children_by_message(harness: Harness) -> None:
    plan = Plan()
    sup = harness.start([actor_spec("W", Worker, plan=plan)])
    assert next_start(plan) == 1
    sup.ask(StopChildren(("W",)), timeout=TIMEOUT)
    assert plan.stops.get(timeout=TIMEOUT) == 1
    assert harness.ctx.directory.lookup("W") is None
    sup.ask(StartChildren(("W",)), timeout=TIMEOUT)
    assert next_start(plan) == 2
    assert harness.status()["W"]["restarts"] == 0  # a deliberate start is not a restart


def test_stopping_the_supervisor_stops_its_children(harness: Harness) -> None:
    one, two = Plan(), Plan()
    sup = harness.start([actor_spec("One", Worker, plan=one), actor_spec("Two", Worker, plan=two)])
    assert next_start(one) == 1 and next_start(two) == 1
    refs = [harness.ref("One"), harness.ref("Two")]
    sup.stop(block=True, timeout=TIMEOUT)
    assert one.stops.get(timeout=TIMEOUT) == 1 and two.stops.get(timeout=TIMEOUT) == 1
    assert not any(r.is_alive() for r in refs)
    assert harness.ctx.directory.names() == []


def test_duplicate_child_names_are_refused(harness: Harness) -> None:
    with pytest.raises(ValueError, match="already supervised"):
        Supervisor(harness.ctx, [actor_spec("W", Worker), actor_spec("W", Worker)])


def test_an_actor_that_arms_and_cancels_timers_all_the_time_does_not_keep_them(harness: Harness) -> None:
    """A monitor arms a guard timer per ping and cancels it when the answer comes: the actor must not
    remember every cancelled timer (issue 14: an idle backup pings several times a second)."""
    from actors.runtime.base import TIMER_PURGE_AT

    made: list[NodeActor] = []

    class Pinger(NodeActor):
        actor_name = "Pinger"

        def started(self) -> None:
            made.append(self)  # the test looks inside the actor it started

    ref = Pinger.start(harness.ctx)
    try:
        wait_until(lambda: made, 5, 0.01, "the actor to start")
        actor = made[0]
        for _ in range(10 * TIMER_PURGE_AT):
            actor.schedule(3600, Ping()).cancel()
        assert len(actor._timers) <= TIMER_PURGE_AT
        kept = actor.schedule(3600, Ping())
        assert kept in actor._timers and not kept.cancelled
    finally:
        ref.stop()
