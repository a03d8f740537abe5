"""Module Monitor decision logic in virtual time (spec lines 318-411 and 735-792)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from actors.monitoring.module_monitor_logic import (
    ModuleDown,
    ModuleDownReason,
    ModuleEvent,
    ModuleMonitorLogic,
    ModuleMonitorParams,
    ModuleNotRegistered,
    ModulePingFailed,
    ModuleRestarted,
    RejectedRetry,
    SystemOk,
)
from actors.monitoring.ping import Connection, PingResult, PingResultKind
from actors.runtime.clock import FakeClock
from tests.unit.conftest import LogLine

# ------------------------------------------------------------------------------------------------
# Fakes and helpers (also used by the Primary Monitor tests)
# ------------------------------------------------------------------------------------------------


@dataclass
class LinkCall:
    at: float
    connection: Connection
    module_name: str
    timeout: float
    on_result: Callable[[PingResult], None]
    cancelled: bool = False


class FakeHandle:
    def __init__(self, call: LinkCall, notify: bool) -> None:
        self._call = call
        self._notify = notify

    def cancel(self) -> None:
        if not self._call.cancelled:
            self._call.cancelled = True
            if self._notify:  # like a real link: a cancelled request answers "cancelled"
                self._call.on_result(PingResult.cancelled())


Answer = tuple[float, PingResult] | None
"""(delay, result) or None (never answers)."""


class FakeModuleLink:
    """Answers module pings after a virtual delay, as told by ``respond(call)``."""

    def __init__(self, clock: FakeClock, respond: Callable[[LinkCall], Answer] | None = None) -> None:
        self.clock = clock
        self.respond: Callable[[LinkCall], Answer] = respond or (lambda call: (0.0, PingResult.ok(100)))
        self.calls: list[LinkCall] = []
        self.synchronous = False

    def ping_module(
        self,
        connection: Connection,
        module_name: str,
        timeout: float,
        on_result: Callable[[PingResult], None],
    ) -> FakeHandle:
        call = LinkCall(self.clock.now(), connection, module_name, timeout, on_result)
        self.calls.append(call)
        answer = self.respond(call)
        if answer is not None:
            delay, result = answer
            if self.synchronous and delay == 0:
                on_result(result)
            else:
                self.clock.call_later(delay, lambda: None if call.cancelled else on_result(result))
        return FakeHandle(call, notify=True)

    def times(self) -> list[float]:
        return [round(c.at, 3) for c in self.calls]

    def connections(self) -> list[str]:
        return [str(c.connection) for c in self.calls]


def answer_with(result: PingResult, delay: float = 0.0) -> Callable[[LinkCall], Answer]:
    return lambda call: (delay, result)


def never(call: LinkCall) -> Answer:
    return None


@dataclass
class Recorder:
    clock: FakeClock
    events: list[ModuleEvent] = field(default_factory=list)

    def __call__(self, event: ModuleEvent) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


def make(
    clock: FakeClock,
    params: ModuleMonitorParams | None = None,
    respond: Callable[[LinkCall], Answer] | None = None,
) -> tuple[ModuleMonitorLogic, FakeModuleLink, Recorder]:
    link = FakeModuleLink(clock, respond)
    rec = Recorder(clock)
    mm = ModuleMonitorLogic(clock, params or ModuleMonitorParams(), link, rec)
    return mm, link, rec


def failures(rec: Recorder) -> list[tuple[float, str, int]]:
    return [(round(e.at, 3), str(e.connection), e.error_count) for e in rec.of(ModulePingFailed)]


# ------------------------------------------------------------------------------------------------
# The specification's log samples
# ------------------------------------------------------------------------------------------------


def test_the_first_failure_sample_replays_rejections_ten_seconds_apart_with_the_vendor_timing(
    clock: FakeClock, logs: list[LogLine]
) -> None:
    # spec lines 377-383: rejections at 14:17:55.667, :05.667, :15.667, :25.667, then the module is down,
    # "approximately 30 seconds from the first ping transmission".
    params = ModuleMonitorParams(rejected_retry=RejectedRetry.REGULAR_INTERVAL)
    first_failure = 130.0
    mm, link, rec = make(
        clock,
        params,
        lambda call: (0.0, PingResult.ok(4242) if call.at < first_failure else PingResult.rejected()),
    )
    mm.start()
    clock.advance(200)

    assert link.times()[:14] == [10.0 * i for i in range(14)]  # a ping every TS Timeout after a success
    assert failures(rec)[:4] == [(130.0, "main", 1), (140.0, "main", 2), (150.0, "aux", 1), (160.0, "aux", 2)]
    downs = rec.of(ModuleDown)
    assert downs[0].at == first_failure + 30
    assert downs[0].reason is ModuleDownReason.PING_FAILURES
    assert downs[0].connection is Connection.AUX

    warnings = [line.message for line in logs if line.topic == "ModuleMonitor" and line.level != "DEBUG"]
    failure_lines = [m for m in warnings if m.startswith("Ping rejected")]
    assert "error count [1] is within maximum [2], ping will be reissued in 10 s" in failure_lines[0]
    assert (
        "reached maximum error count [2] pinging the TsServer module on the main connection, resetting error "
        "count and trying the alternate connection" in failure_lines[1]
    )
    assert (
        "aux connection" in failure_lines[2] and "error count [1] is within maximum [2]" in failure_lines[2]
    )
    assert "reached maximum error count [2], signaling that the module is down" in failure_lines[3]


def test_the_first_failure_sample_with_this_products_rejection_rule_detects_a_crashed_module_in_three_seconds(
    clock: FakeClock,
) -> None:
    mm, _link, rec = make(
        clock, None, lambda call: (0.0, PingResult.ok(4242) if call.at < 130 else PingResult.rejected())
    )
    mm.start()
    clock.advance(200)
    assert failures(rec)[:4] == [(130.0, "main", 1), (131.0, "main", 2), (132.0, "aux", 1), (133.0, "aux", 2)]
    assert rec.of(ModuleDown)[0].at == 133.0


def test_the_second_failure_sample_times_out_after_ten_seconds_and_retries_after_one_second(
    clock: FakeClock, logs: list[LogLine]
) -> None:
    # spec lines 2240-2250 (the pre-2015 main-only monitor): ping at 0 (timeout=10000), error count=1 at 10,
    # "scheduling retry in 1000 ms", ping at 11, max error count at 21. The current design then tries the
    # auxiliary connection the same way before signaling MODULE_DOWN.
    mm, link, rec = make(clock, None, never)
    mm.start()
    clock.advance(100)
    assert link.times()[:4] == [0.0, 11.0, 22.0, 33.0]
    assert link.connections()[:4] == ["main", "main", "aux", "aux"]
    assert [c.timeout for c in link.calls[:4]] == [10.0] * 4
    assert failures(rec)[:4] == [(10.0, "main", 1), (21.0, "main", 2), (32.0, "aux", 1), (43.0, "aux", 2)]
    assert [e.kind for e in rec.of(ModulePingFailed)][:4] == [PingResultKind.TIMEOUT] * 4
    assert rec.of(ModuleDown)[0].at == 43.0
    first = next(m for m in logs if m.message.startswith("Ping timed out"))
    assert first.at == 10.0 and "ping will be reissued in 1 s" in first.message
    # the timed-out requests were cancelled at the link
    assert all(c.cancelled for c in link.calls[:4])


# ------------------------------------------------------------------------------------------------
# Counting, fallback, recovery
# ------------------------------------------------------------------------------------------------


def test_a_successful_ping_posts_system_ok_and_the_next_ping_follows_after_the_ts_timeout(
    clock: FakeClock,
) -> None:
    mm, link, rec = make(clock, None, answer_with(PingResult.ok(77), delay=0.25))
    mm.start()
    clock.advance(25)
    assert link.times() == [0.0, 10.25, 20.5]
    oks = rec.of(SystemOk)
    assert [(e.at, e.pid, e.connection) for e in oks] == [
        (0.25, 77, Connection.MAIN),
        (10.5, 77, Connection.MAIN),
        (20.75, 77, Connection.MAIN),
    ]


def test_a_success_on_the_aux_connection_resets_the_count_and_returns_to_main(clock: FakeClock) -> None:
    mm, link, rec = make(
        clock,
        None,
        lambda call: None if call.connection is Connection.MAIN else (0.0, PingResult.ok(5)),
    )
    mm.start()
    clock.advance(22)
    assert link.connections() == ["main", "main", "aux"]
    assert rec.of(SystemOk)[0].connection is Connection.AUX
    assert mm.error_count == 0 and mm.connection is Connection.MAIN
    clock.advance(10)
    assert link.connections()[3] == "main" and link.times()[3] == 32.0
    assert not rec.of(ModuleDown)


def test_a_single_failure_followed_by_a_success_resets_the_error_count(clock: FakeClock) -> None:
    answers = iter([None, (0.0, PingResult.ok(9)), None, None, None, None])
    mm, _link, rec = make(clock, None, lambda call: next(answers))
    mm.start()
    clock.advance(11)
    assert mm.error_count == 0 and rec.of(SystemOk)
    clock.advance(10)  # ping at 21 fails at 31: count 1, still main
    clock.advance(10)
    assert mm.error_count == 1 and mm.connection is Connection.MAIN


def test_an_empty_reply_without_a_pid_is_a_failure(clock: FakeClock) -> None:
    mm, _link, rec = make(clock, None, answer_with(PingResult.ok(None)))
    mm.start()
    clock.advance(5)
    assert failures(rec) == [(0.0, "main", 1), (1.0, "main", 2), (2.0, "aux", 1), (3.0, "aux", 2)]
    assert [e.kind for e in rec.of(ModulePingFailed)] == [PingResultKind.OK] * 4
    assert rec.of(ModuleDown)[0].at == 3.0


def test_a_connection_loss_is_a_failure_that_moves_the_ping_to_the_aux_connection(clock: FakeClock) -> None:
    mm, _link, rec = make(
        clock,
        None,
        lambda call: (
            (0.0, PingResult.connection_lost())
            if call.connection is Connection.MAIN
            else (0.01, PingResult.ok(3))
        ),
    )
    mm.start()
    clock.advance(2.5)
    assert failures(rec) == [(0.0, "main", 1), (1.0, "main", 2)]
    assert rec.of(SystemOk)[0].at == 2.01 and rec.of(SystemOk)[0].connection is Connection.AUX


def test_max_errors_on_aux_posts_module_down_and_the_monitor_goes_on_from_main(clock: FakeClock) -> None:
    mm, link, rec = make(clock, None, answer_with(PingResult.rejected()))
    mm.start()
    clock.advance(3)
    assert rec.of(ModuleDown)[0].at == 3.0
    assert mm.connection is Connection.MAIN and mm.error_count == 0
    clock.advance(10)
    assert link.times()[4] == 13.0 and link.connections()[4] == "main"


def test_a_cancellation_the_monitor_did_not_ask_for_is_not_an_error_and_pinging_goes_on(
    clock: FakeClock, logs: list[LogLine]
) -> None:
    answers = iter([(0.0, PingResult.cancelled()), (0.0, PingResult.ok(1))])
    mm, link, rec = make(clock, None, lambda call: next(answers))
    mm.start()
    clock.advance(10)
    assert link.times() == [0.0, 10.0]
    assert not rec.of(ModulePingFailed) and mm.error_count == 0
    assert rec.of(SystemOk)[0].at == 10.0
    assert any("cancelled by the link" in line.message for line in logs)


def test_stop_cancels_the_ping_in_flight_and_ignores_its_late_answer(clock: FakeClock) -> None:
    mm, link, rec = make(clock, None, answer_with(PingResult.ok(1), delay=3.0))
    mm.start()
    clock.advance(1)
    mm.stop()
    assert link.calls[0].cancelled
    link.calls[0].on_result(PingResult.ok(1))  # a straggler
    clock.advance(100)
    assert rec.events == [] and len(link.calls) == 1 and clock.pending == 0


def test_a_link_that_answers_synchronously_is_handled(clock: FakeClock) -> None:
    mm, link, rec = make(clock, None, answer_with(PingResult.rejected()))
    link.synchronous = True
    mm.start()
    clock.advance(3)
    assert failures(rec) == [(0.0, "main", 1), (1.0, "main", 2), (2.0, "aux", 1), (3.0, "aux", 2)]


def test_a_receiver_that_stops_the_monitor_on_module_down_leaves_nothing_scheduled(clock: FakeClock) -> None:
    link = FakeModuleLink(clock, answer_with(PingResult.rejected()))
    mm: ModuleMonitorLogic

    def on_event(event: ModuleEvent) -> None:
        if isinstance(event, ModuleDown):
            mm.stop()

    mm = ModuleMonitorLogic(clock, ModuleMonitorParams(), link, on_event)
    mm.start()
    clock.advance(100)
    assert len(link.calls) == 4 and not mm.running and clock.pending == 0


def test_ping_on_aux_connection_pings_aux_first_and_falls_back_to_main(clock: FakeClock) -> None:
    mm, link, rec = make(clock, ModuleMonitorParams(ping_on_aux=True), never)
    mm.start()
    clock.advance(44)
    assert link.connections()[:4] == ["aux", "aux", "main", "main"]
    assert rec.of(ModuleDown)[0].connection is Connection.MAIN


# ------------------------------------------------------------------------------------------------
# PID tracking
# ------------------------------------------------------------------------------------------------


def pids(sequence: Sequence[int | None]) -> Callable[[LinkCall], Answer]:
    """Answer the n-th ping with the n-th PID (None = no answer); then repeat the last."""
    state = {"i": 0}

    def respond(call: LinkCall) -> Answer:
        i = min(state["i"], len(sequence) - 1)
        state["i"] += 1
        pid = sequence[i]
        return None if pid is None else (0.0, PingResult.ok(pid))

    return respond


def test_the_first_pid_is_not_a_restart_and_a_new_pid_is(clock: FakeClock) -> None:
    mm, _link, rec = make(clock, None, pids([100, 100, 200, 200]))
    mm.start()
    clock.advance(35)
    restarts = rec.of(ModuleRestarted)
    assert [(r.old_pid, r.new_pid, r.at, r.restarts_in_period, r.sequential_restarts) for r in restarts] == [
        (100, 200, 20.0, 1, 1)
    ]
    assert [e.pid for e in rec.of(SystemOk)] == [100, 100, 200, 200]


def test_a_third_restart_within_the_restarts_period_posts_module_down(clock: FakeClock) -> None:
    # same-PID replies between restarts, so only the period limit applies
    mm, _link, rec = make(clock, None, pids([1, 2, 2, 3, 3, 4, 4]))
    mm.start()
    clock.advance(65)
    assert [r.new_pid for r in rec.of(ModuleRestarted)] == [2, 3]
    downs = rec.of(ModuleDown)
    assert len(downs) == 1 and downs[0].reason is ModuleDownReason.MAX_RESTARTS and downs[0].at == 50.0
    assert "3 restarts within 300 s (maximum 2)" in downs[0].detail
    assert downs[0].error_count == 2  # the error count was set to the maximum


def test_restarts_spread_wider_than_the_restarts_period_never_trip_the_limit(clock: FakeClock) -> None:
    # a restart every 160 s: never more than 2 within 300 s
    sequence = [pid for n in range(1, 8) for pid in [n] * 16]
    mm, _link, rec = make(clock, None, pids(sequence))
    mm.start()
    clock.advance(len(sequence) * 10)
    assert len(rec.of(ModuleRestarted)) == 6
    assert not rec.of(ModuleDown)


def test_a_third_sequential_restart_posts_module_down(clock: FakeClock) -> None:
    params = ModuleMonitorParams(max_restarts=10)
    mm, _link, rec = make(clock, params, pids([1, 2, 3, 4, 5]))
    mm.start()
    clock.advance(35)
    downs = rec.of(ModuleDown)
    assert len(downs) == 1 and downs[0].reason is ModuleDownReason.MAX_SEQUENTIAL_RESTARTS
    assert downs[0].at == 30.0 and "3 sequential restarts (maximum 2)" in downs[0].detail


def test_a_reply_with_the_same_pid_ends_a_sequence_of_restarts(clock: FakeClock) -> None:
    params = ModuleMonitorParams(max_restarts=10)
    mm, _link, rec = make(clock, params, pids([1, 2, 3, 3, 4, 5, 5]))
    mm.start()
    clock.advance(70)
    assert [r.sequential_restarts for r in rec.of(ModuleRestarted)] == [1, 2, 1, 2]
    assert not rec.of(ModuleDown)


def test_failed_pings_between_new_pids_do_not_end_a_sequence_of_restarts(clock: FakeClock) -> None:
    params = ModuleMonitorParams(max_restarts=10)
    mm, _link, rec = make(clock, params, pids([1, None, 2, None, 3, None, 4]))
    mm.start()
    clock.advance(70)
    assert [(r.at, r.sequential_restarts) for r in rec.of(ModuleRestarted)] == [(21.0, 1), (42.0, 2)]
    downs = rec.of(ModuleDown)
    assert len(downs) == 1 and downs[0].reason is ModuleDownReason.MAX_SEQUENTIAL_RESTARTS
    assert downs[0].at == 63.0


def test_the_pid_history_survives_a_stop_and_start(clock: FakeClock) -> None:
    mm, _link, rec = make(clock, None, pids([1, 1, 2]))
    mm.start()
    clock.advance(5)
    mm.stop()
    clock.advance(100)
    mm.start()
    clock.advance(1)
    assert not rec.of(ModuleRestarted) and mm.last_pid == 1
    clock.advance(10)
    assert [(r.old_pid, r.new_pid) for r in rec.of(ModuleRestarted)] == [(1, 2)]


# ------------------------------------------------------------------------------------------------
# Parameters
# ------------------------------------------------------------------------------------------------


def test_a_new_ts_timeout_takes_effect_on_the_next_ping_not_the_one_in_flight(clock: FakeClock) -> None:
    mm, link, rec = make(clock, None, never)
    mm.start()
    clock.advance(2)
    mm.update_params(mm.params.with_dynamic(ping_timeout=20, retry_delay=3))
    clock.advance(100)
    assert failures(rec)[:2] == [(10.0, "main", 1), (33.0, "main", 2)]  # 10 + 3 s delay + 20 s timeout
    assert [c.timeout for c in link.calls[:2]] == [10.0, 20.0]


def test_a_lower_max_ts_failures_takes_effect_on_the_next_failure(clock: FakeClock) -> None:
    mm, _link, rec = make(clock, ModuleMonitorParams(max_failures=5), answer_with(PingResult.rejected()))
    mm.start()
    clock.advance(1.5)
    assert mm.error_count == 2
    mm.update_params(mm.params.with_dynamic(max_failures=2))
    clock.advance(5)
    assert failures(rec)[:5] == [
        (0.0, "main", 1),
        (1.0, "main", 2),
        (2.0, "main", 3),
        (3.0, "aux", 1),
        (4.0, "aux", 2),
    ]
    assert rec.of(ModuleDown)[0].at == 4.0


def test_the_ip_variant_monitors_ip_with_the_ip_timeout_and_retry_delay(clock: FakeClock) -> None:
    params = ModuleMonitorParams(module_name="IP", ping_timeout=20.0, retry_delay=2.0)
    mm, link, rec = make(clock, params, never)
    mm.start()
    clock.advance(100)
    assert link.calls[0].module_name == "IP"
    assert link.times()[:4] == [0.0, 22.0, 44.0, 66.0]
    assert rec.of(ModuleDown)[0].at == 86.0


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        ModuleMonitorParams(retry_delay=0)
    with pytest.raises(ValueError):
        ModuleMonitorParams(max_failures=0)


# ------------------------------------------------------------------------------------------------
# A module that has never registered on the active (issue 9, defect 4)
# ------------------------------------------------------------------------------------------------


def test_a_module_never_registered_on_the_active_is_not_a_failure_and_never_down(
    clock: FakeClock, logs: list[LogLine]
) -> None:
    state = {"answer": PingResult.not_registered("monitored module TsServer is not registered on the active (A)")}
    mm, link, rec = make(clock, ModuleMonitorParams(retry_delay=0.2), lambda call: (0.0, state["answer"]))
    mm.start()
    clock.advance(300)
    assert rec.of(ModuleDown) == [] and rec.of(ModulePingFailed) == []
    not_registered = rec.of(ModuleNotRegistered)
    assert len(not_registered) == 31 and link.times()[:3] == [0.0, 10.0, 20.0]  # the regular interval
    assert [e.first for e in not_registered[:2]] == [True, False]
    said = [line.message for line in logs if "is not registered on the active" in line.message]
    assert len(said) == 1 and "does not cause a switch" in said[0]
    # once it registered, it is monitored: its going away is a failure and, in the end, MODULE_DOWN
    state["answer"] = PingResult.ok(4242)
    clock.advance(10)
    assert rec.of(SystemOk)
    state["answer"] = PingResult.rejected("no module registered as TsServer")
    clock.advance(30)
    assert rec.of(ModuleDown)[0].reason is ModuleDownReason.PING_FAILURES
