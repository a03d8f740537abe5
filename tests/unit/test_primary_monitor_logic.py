"""Primary Monitor decision logic in virtual time (spec lines 522-734, 793-831, 1541-1634, 1754-1834)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import pytest

from actors.monitoring.diagnosis import ConnectionStatus, Diagnosis, Outcome, Trigger, decide
from actors.monitoring.local_network import NetworkStatus
from actors.monitoring.module_monitor_logic import (
    ModuleDown,
    ModuleDownReason,
    ModuleMonitorLogic,
    ModuleMonitorParams,
    RejectedRetry,
    SystemOk,
)
from actors.monitoring.monitor_params import PrimaryMonitorParams
from actors.monitoring.ping import Connection, PingResult, PingResultKind
from actors.monitoring.primary_monitor_logic import (
    MonitoredModuleDown,
    NetworkDown,
    NoError,
    NotifierDown,
    PrimaryMonitorEvent,
    PrimaryMonitorLogic,
    PrimaryUnreachable,
    state_machine_input,
)
from actors.roles.state_machine import Event, Facts
from actors.runtime.clock import FakeClock
from tests.unit.conftest import LogLine
from tests.unit.test_module_monitor_logic import Answer, FakeHandle, FakeModuleLink, LinkCall

PRIMARY = "10.0.0.1"
GATEWAY = "10.0.9.1"
NETTEST = "10.1.0.1"

# ------------------------------------------------------------------------------------------------
# Fakes
# ------------------------------------------------------------------------------------------------


@dataclass
class NotifierCall:
    at: float
    connection: Connection
    timeout: float
    link: LinkCall | None = None

    @property
    def cancelled(self) -> bool:
        return self.link is not None and self.link.cancelled


class FakeNotifier:
    """Two connections with a "connected" flag each; pings answered per ``respond(call)``."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.connected = {Connection.MAIN: True, Connection.AUX: True}
        self.respond: Callable[[NotifierCall], Answer] = self.default
        self.calls: list[NotifierCall] = []

    def default(self, call: NotifierCall) -> Answer:
        if not self.connected[call.connection]:
            return (0.0, PingResult.connection_lost())
        return (0.002, PingResult.ok())

    def is_connected(self, connection: Connection) -> bool:
        return self.connected[connection]

    def ping_notifier(
        self, connection: Connection, timeout: float, on_result: Callable[[PingResult], None]
    ) -> FakeHandle:
        link_call = LinkCall(self.clock.now(), connection, "", timeout, on_result)
        call = NotifierCall(link_call.at, connection, timeout, link_call)
        self.calls.append(call)
        answer = self.respond(call)
        if answer is not None:
            delay, result = answer
            self.clock.call_later(delay, lambda: None if link_call.cancelled else on_result(result))
        return FakeHandle(link_call, notify=True)

    def times(self) -> list[float]:
        return [round(c.at, 3) for c in self.calls]


class FakePinger:
    """ICMP in virtual time: reachable addresses answer after ``latency``, others fail at the timeout."""

    def __init__(self, clock: FakeClock, reachable: set[str] | None = None, latency: float = 0.004) -> None:
        self.clock = clock
        self.reachable = set(reachable or ())
        self.latency = latency
        self.silent: set[str] = set()  # never call back at all
        self.calls: list[tuple[float, str, float]] = []

    def ping(self, address: str, timeout: float, on_result: Callable[[bool], None]) -> None:
        self.calls.append((round(self.clock.now(), 3), address, timeout))
        if address in self.silent:
            return
        if address in self.reachable:
            self.clock.call_later(self.latency, lambda: on_result(True))
        else:
            self.clock.call_later(timeout, lambda: on_result(False))

    def to(self, address: str) -> list[float]:
        return [t for t, a, _ in self.calls if a == address]


@dataclass
class FakeControl:
    """Records start/stop; optionally drives a real Module Monitor."""

    clock: FakeClock
    monitor: ModuleMonitorLogic | None = None
    calls: list[tuple[float, str]] = field(default_factory=list)

    def start_module_monitor(self) -> None:
        self.calls.append((self.clock.now(), "start"))
        if self.monitor is not None:
            self.monitor.start()

    def stop_module_monitor(self) -> None:
        self.calls.append((self.clock.now(), "stop"))
        if self.monitor is not None:
            self.monitor.stop()

    @property
    def running(self) -> bool:
        return bool(self.calls) and self.calls[-1][1] == "start"


@dataclass
class Rig:
    clock: FakeClock
    pm: PrimaryMonitorLogic
    notifier: FakeNotifier
    module_link: FakeModuleLink
    pinger: FakePinger
    control: FakeControl
    posted: list[PrimaryMonitorEvent]

    def of(self, kind: type) -> list:
        return [e for e in self.posted if isinstance(e, kind)]

    @property
    def last(self) -> PrimaryMonitorEvent:
        return self.posted[-1]

    def module_down(self, reason: ModuleDownReason = ModuleDownReason.PING_FAILURES) -> None:
        self.pm.on_module_event(ModuleDown("TsServer", reason, Connection.AUX, 2, self.clock.now(), "test"))


def rig(
    clock: FakeClock,
    params: PrimaryMonitorParams | None = None,
    *,
    reachable: set[str] | None = None,
    gateways: list[str] | None = None,
    primary: str | None = PRIMARY,
    primary_lookup: Callable[[], str | None] | None = None,
    module: Callable[[LinkCall], Answer] | None = None,
) -> Rig:
    notifier = FakeNotifier(clock)
    module_link = FakeModuleLink(clock, module or (lambda call: (0.0, PingResult.rejected())))
    pinger = FakePinger(clock, {PRIMARY, GATEWAY, NETTEST} if reachable is None else reachable)
    control = FakeControl(clock)
    posted: list[PrimaryMonitorEvent] = []
    pm = PrimaryMonitorLogic(
        clock,
        params or PrimaryMonitorParams(),
        notifier,
        module_link,
        pinger,
        control,
        posted.append,
        gateways=lambda: list(gateways or []),
        primary_address=primary_lookup or (lambda: primary),
    )
    return Rig(clock, pm, notifier, module_link, pinger, control, posted)


def diagnosis(event: PrimaryMonitorEvent) -> Diagnosis:
    return event.diagnosis


# ------------------------------------------------------------------------------------------------
# Notifier ping cadence and response kinds
# ------------------------------------------------------------------------------------------------


def test_successful_notifier_pings_follow_each_other_after_the_ping_delay(clock: FakeClock) -> None:
    r = rig(clock, PrimaryMonitorParams(ping_delay=2))
    r.pm.start()
    clock.advance(7)
    assert r.notifier.times() == [2.0, 4.002, 6.004]
    assert [c.timeout for c in r.notifier.calls] == [5.0] * 3  # 0 = half the 10 s module timeout
    assert [c.connection for c in r.notifier.calls] == [Connection.MAIN] * 3
    assert r.posted == [] and r.pm.retry_count == 0


def test_a_ping_delay_of_zero_means_one_second(clock: FakeClock) -> None:
    r = rig(clock)
    r.pm.start()
    clock.advance(3)
    assert r.notifier.times() == [1.0, 2.002]


def test_a_timeout_sends_retry_pings_and_the_diagnosis_starts_about_fifteen_seconds_later(
    clock: FakeClock, logs: list[LogLine]
) -> None:
    # spec (Switchover Reconnect Timeout): "retry pings ... and then the network checks ... around 15 seconds"
    r = rig(clock)
    r.pm.start()
    clock.advance(1.5)
    r.notifier.respond = lambda call: None
    clock.advance(100)
    # the last retry goes out with the confirmation ping on aux (it is itself the one on main)
    assert r.notifier.times() == [1.0, 2.002, 7.002, 12.002, 12.002]
    start = next(line for line in logs if "no reply after 2 retry ping(s)" in line.message)
    assert start.at == pytest.approx(17.002)
    # both connections are "connected": the confirmation pings the notifier on main and on aux
    assert [c.connection for c in r.notifier.calls[3:5]] == [Connection.MAIN, Connection.AUX]
    assert r.last.at == pytest.approx(17.002)  # both waited for once, together
    assert isinstance(r.last, NotifierDown)
    assert diagnosis(r.last).trigger is Trigger.NOTIFIER_PING
    assert diagnosis(r.last).connection_status is ConnectionStatus.BOTH_UP


def test_a_rejected_notifier_ping_is_handled_like_a_timeout(clock: FakeClock) -> None:
    r = rig(clock)
    r.notifier.respond = lambda call: (0.0, PingResult.rejected())
    r.pm.start()
    clock.advance(1)
    # three pings at once (retry ping delay 0), the last retry with the aux confirmation, rejected too
    assert r.notifier.times() == [1.0] * 4
    clock.advance(0.01)
    assert isinstance(r.last, NotifierDown)
    assert r.last.at == pytest.approx(1.004)  # after the primary's ICMP answer


def test_a_retry_ping_that_is_answered_resets_the_retry_count(clock: FakeClock) -> None:
    r = rig(clock)
    answers = iter([None, None, (0.0, PingResult.ok())])
    r.notifier.respond = lambda call: next(answers, (0.0, PingResult.ok()))
    r.pm.start()
    clock.advance(12.5)
    assert r.pm.retry_count == 0 and r.posted == []
    # the last retry (answered) went out with the aux confirmation sent ahead, then dropped
    assert r.notifier.times()[:5] == [1.0, 6.0, 11.0, 11.0, 12.0]
    assert [c.connection for c in r.notifier.calls[2:5]] == [Connection.MAIN, Connection.AUX, Connection.MAIN]


def test_a_retry_ping_delay_spaces_the_retry_pings(clock: FakeClock) -> None:
    r = rig(clock, PrimaryMonitorParams(retry_ping_delay=3, retry_count=3))
    r.notifier.respond = lambda call: None
    r.pm.start()
    clock.advance(40)
    assert r.notifier.times()[:4] == [1.0, 9.0, 17.0, 25.0]


def test_a_connection_loss_while_main_is_up_sends_a_standard_ping_not_a_retry(clock: FakeClock) -> None:
    r = rig(clock)
    answers = iter([(0.0, PingResult.connection_lost())])
    r.notifier.respond = lambda call: next(answers, (0.0, PingResult.ok()))
    r.pm.start()
    clock.advance(1)
    assert r.notifier.times() == [1.0, 1.0]
    assert r.pm.retry_count == 0
    clock.advance(1)
    assert r.notifier.times() == [1.0, 1.0, 2.0] and r.posted == []


def test_repeated_connection_losses_while_main_is_up_end_in_a_diagnosis(clock: FakeClock) -> None:
    r = rig(clock)
    r.notifier.respond = lambda call: (0.0, PingResult.connection_lost())
    r.pm.start()
    clock.advance(2)
    # 1 + 2 standard pings, then 2 retry pings (the last one with the confirmation on aux)
    assert r.notifier.times() == [1.0] * 6
    assert isinstance(r.last, NotifierDown)


def test_a_connection_loss_while_main_is_down_sends_a_retry_ping_on_the_aux_connection(
    clock: FakeClock,
) -> None:
    r = rig(clock)
    r.pm.start()
    clock.advance(1.5)
    r.notifier.connected[Connection.MAIN] = False
    answers = iter([(0.0, PingResult.connection_lost())])
    r.notifier.respond = lambda call: next(answers, None)
    clock.advance(0.502)
    assert r.pm.retry_count == 1
    assert [c.connection for c in r.notifier.calls[1:]] == [Connection.AUX, Connection.AUX]


def test_a_cancelled_notifier_ping_does_nothing(clock: FakeClock) -> None:
    r = rig(clock)
    r.notifier.respond = lambda call: (0.0, PingResult.cancelled())
    r.pm.start()
    clock.advance(60)
    assert r.notifier.times() == [1.0]
    assert r.posted == [] and r.pm.retry_count == 0 and not r.pm.diagnosing


def test_stop_cancels_the_ping_in_flight_and_stops_the_module_monitor(clock: FakeClock) -> None:
    r = rig(clock)
    r.notifier.respond = lambda call: None
    r.pm.start()
    clock.advance(2)
    r.pm.stop()
    assert r.notifier.calls[0].cancelled
    clock.advance(100)
    assert r.notifier.times() == [1.0] and r.posted == []
    assert r.control.calls == [(0.0, "start"), (2.0, "stop")]


# ------------------------------------------------------------------------------------------------
# The decision list (spec lines 673-684), one row at a time, through a full diagnosis
# ------------------------------------------------------------------------------------------------


def test_network_not_ok_but_primary_reachable_means_notifier_down(clock: FakeClock) -> None:
    r = rig(
        clock,
        PrimaryMonitorParams(disable_gateway_ping=False),
        reachable={PRIMARY},
        gateways=[GATEWAY],
    )
    r.pm.start()
    r.module_down()
    clock.advance(5)
    ev = r.last
    assert isinstance(ev, NotifierDown)
    assert ev.network_status is NetworkStatus.GATEWAY_UNREACHABLE
    assert diagnosis(ev).network_steps == (NetworkStatus.GATEWAY_UNREACHABLE, NetworkStatus.PRIMARY_REACHED)


def test_network_not_ok_and_primary_unreachable_with_the_gateway_unreachable_means_network_down(
    clock: FakeClock,
) -> None:
    r = rig(clock, PrimaryMonitorParams(disable_gateway_ping=False), reachable=set(), gateways=[GATEWAY])
    r.pm.start()
    r.module_down()
    clock.advance(10)
    ev = r.last
    assert isinstance(ev, NetworkDown)
    assert ev.network_status is NetworkStatus.GATEWAY_UNREACHABLE
    assert not diagnosis(ev).local_network_ok
    # the gateway once and one ping set of three echoes to the primary, all at once; no extra ping sets
    assert r.pinger.to(GATEWAY) == [0.0]
    assert r.pinger.to(PRIMARY) == [0.0, 0.0, 0.0]
    assert ev.at == 1.0 and diagnosis(ev).primary_ping_sets == 1  # rejected at once, then one echo timeout


def test_a_netest_address_that_does_not_answer_means_network_down(clock: FakeClock) -> None:
    r = rig(clock, PrimaryMonitorParams(nettest_a=NETTEST), reachable=set())
    r.pm.start()
    r.module_down()
    clock.advance(10)
    ev = r.last
    assert isinstance(ev, NetworkDown)
    assert diagnosis(ev).network_steps == (
        NetworkStatus.GATEWAY_PING_DISABLED,
        NetworkStatus.NETTEST_UNREACHABLE,
        NetworkStatus.PRIMARY_UNREACHABLE,
    )
    assert ev.network_status is NetworkStatus.NETTEST_UNREACHABLE


def test_network_not_ok_and_primary_unreachable_with_the_local_network_fine_means_primary_unreachable(
    clock: FakeClock,
) -> None:
    r = rig(clock, PrimaryMonitorParams(nettest_a=NETTEST), reachable={NETTEST})
    r.pm.start()
    r.module_down()
    clock.advance(10)
    ev = r.last
    assert isinstance(ev, PrimaryUnreachable)
    assert ev.network_status is NetworkStatus.PRIMARY_UNREACHABLE
    assert diagnosis(ev).local_network_ok and not diagnosis(ev).network_ok


def test_network_ok_and_both_connections_down_means_notifier_down(clock: FakeClock) -> None:
    r = rig(clock)
    r.pm.start()
    clock.advance(1.5)
    r.notifier.connected = {Connection.MAIN: False, Connection.AUX: False}
    clock.advance(1)
    ev = r.last
    assert isinstance(ev, NotifierDown)
    assert ev.connection_status is ConnectionStatus.BOTH_DOWN
    assert ev.network_status is NetworkStatus.PRIMARY_REACHED
    assert diagnosis(ev).confirmation is None  # nothing is up to confirm over
    assert ev.at == pytest.approx(2.006)


def test_network_ok_both_connections_up_and_the_module_not_answering_means_module_down(
    clock: FakeClock,
) -> None:
    r = rig(clock)
    r.pm.start()
    r.module_down()
    clock.advance(1)
    ev = r.last
    assert isinstance(ev, MonitoredModuleDown) and ev.module_name == "TsServer"
    assert ev.connection_status is ConnectionStatus.BOTH_UP
    assert diagnosis(ev).confirmation is PingResultKind.REJECTED
    assert [c.connection for c in r.module_link.calls] == [Connection.MAIN, Connection.MAIN]
    assert state_machine_input(ev) == (Event.MODULE_DOWN, Facts(network_ok=True, main_up=True, aux_up=True))


def test_network_ok_both_connections_up_and_the_module_answering_again_means_no_error(
    clock: FakeClock,
) -> None:
    r = rig(clock, module=lambda call: (0.01, PingResult.ok(4321)))
    r.pm.start()
    clock.advance(3.5)
    r.module_down()
    assert r.control.calls == [(0.0, "start"), (3.5, "stop")]
    clock.advance(0.01)
    ev = r.last
    assert isinstance(ev, NoError) and diagnosis(ev).outcome is Outcome.NO_ERROR
    assert diagnosis(ev).network_steps == ()  # no network checks needed
    assert r.control.calls[-1] == (pytest.approx(3.51), "start") and r.control.running
    assert not r.pm.idle and r.pm.liveness_tracking
    before = len(r.notifier.calls)
    clock.advance(1.0)
    assert len(r.notifier.calls) == before + 1  # notifier pings resumed


@pytest.mark.parametrize(
    "down, via",
    [(Connection.AUX, Connection.MAIN), (Connection.MAIN, Connection.AUX)],
    ids=["main only", "aux only"],
)
def test_one_connection_up_a_silent_module_and_a_live_notifier_mean_module_down(
    clock: FakeClock, down: Connection, via: Connection
) -> None:
    r = rig(clock)
    r.notifier.connected[down] = False
    r.pm.start()
    r.module_down()
    clock.advance(1)
    ev = r.last
    assert isinstance(ev, MonitoredModuleDown)
    assert ev.connection_status is ConnectionStatus.of(
        down is not Connection.MAIN, down is not Connection.AUX
    )
    assert [c.connection for c in r.module_link.calls] == [via, via]
    assert r.notifier.calls[-1].connection is via and diagnosis(ev).notifier_alive is True


@pytest.mark.parametrize("down", [Connection.AUX, Connection.MAIN], ids=["main only", "aux only"])
def test_one_connection_up_a_silent_module_and_a_silent_notifier_mean_notifier_down(
    clock: FakeClock, down: Connection
) -> None:
    r = rig(clock)
    r.notifier.connected[down] = False
    r.pm.start()
    r.notifier.respond = lambda call: None
    r.module_down()
    clock.advance(20)
    ev = r.last
    assert isinstance(ev, NotifierDown)
    assert diagnosis(ev).notifier_alive is False
    assert ev.at == pytest.approx(5.004)


def test_notifier_ping_failures_with_the_notifier_answering_on_aux_mean_no_error(clock: FakeClock) -> None:
    r = rig(clock)
    r.notifier.respond = lambda call: None if call.connection is Connection.MAIN else (0.0, PingResult.ok())
    r.pm.start()
    clock.advance(22)
    ev = r.last
    assert isinstance(ev, NoError) and ev.at == 16.0  # the aux confirmation went out with the last retry
    assert diagnosis(ev).trigger is Trigger.NOTIFIER_PING and diagnosis(ev).confirmation is PingResultKind.OK
    assert r.control.running


def test_a_module_restarting_too_often_is_module_down_without_confirmation_pings(clock: FakeClock) -> None:
    r = rig(clock, module=lambda call: (0.0, PingResult.ok(1)))
    r.pm.start()
    r.module_down(ModuleDownReason.MAX_RESTARTS)
    ev = r.last
    assert isinstance(ev, MonitoredModuleDown) and ev.at == 0.0
    assert r.module_link.calls == [] and r.pinger.calls == []
    assert ev.network_status is NetworkStatus.NOT_CHECKED


@pytest.mark.parametrize(
    "trigger, conn, steps, alive, outcome",
    [
        (
            Trigger.MODULE_MONITOR,
            ConnectionStatus.BOTH_UP,
            ["GatewayUnreachable", "PrimaryReached"],
            None,
            "notifier",
        ),
        (
            Trigger.MODULE_MONITOR,
            ConnectionStatus.BOTH_UP,
            ["GatewayUnreachable", "PrimaryUnreachable"],
            None,
            "net",
        ),
        (
            Trigger.NOTIFIER_PING,
            ConnectionStatus.BOTH_DOWN,
            ["NetTestUnreachable", "PrimaryUnreachable"],
            None,
            "net",
        ),
        (
            Trigger.MODULE_MONITOR,
            ConnectionStatus.BOTH_UP,
            ["NetTestReached", "PrimaryUnreachable"],
            None,
            "unr",
        ),
        (Trigger.NOTIFIER_PING, ConnectionStatus.BOTH_DOWN, ["PrimaryUnreachable"], None, "unr"),
        (Trigger.MODULE_MONITOR, ConnectionStatus.BOTH_DOWN, ["PrimaryReached"], None, "notifier"),
        (
            Trigger.MODULE_MONITOR,
            ConnectionStatus.BOTH_UP,
            ["GatewayReached", "PrimaryReached"],
            None,
            "module",
        ),
        (Trigger.MODULE_MONITOR, ConnectionStatus.BOTH_UP, ["PrimaryAddressUnknown"], None, "module"),
        (Trigger.MODULE_MONITOR, ConnectionStatus.MAIN_ONLY, ["PrimaryReached"], True, "module"),
        (Trigger.MODULE_MONITOR, ConnectionStatus.AUX_ONLY, ["PrimaryReached"], False, "notifier"),
        (Trigger.NOTIFIER_PING, ConnectionStatus.BOTH_UP, ["PrimaryReached"], None, "notifier"),
        (Trigger.NOTIFIER_PING, ConnectionStatus.MAIN_ONLY, ["PrimaryReached"], None, "notifier"),
    ],
)
def test_the_decision_table(
    trigger: Trigger, conn: ConnectionStatus, steps: list[str], alive: bool | None, outcome: str
) -> None:
    expected = {
        "notifier": Outcome.NOTIFIER_DOWN,
        "net": Outcome.NETWORK_DOWN,
        "unr": Outcome.PRIMARY_UNREACHABLE,
        "module": Outcome.MODULE_DOWN,
    }[outcome]
    assert decide(trigger, conn, [NetworkStatus(s) for s in steps], notifier_alive=alive) is expected


# ------------------------------------------------------------------------------------------------
# The specification's log sample, end to end with a real Module Monitor
# ------------------------------------------------------------------------------------------------


def test_the_failure_sample_from_module_rejections_to_module_down_with_gateway_and_primary_reached(
    clock: FakeClock, logs: list[LogLine]
) -> None:
    params = PrimaryMonitorParams(
        module=ModuleMonitorParams(rejected_retry=RejectedRetry.REGULAR_INTERVAL), disable_gateway_ping=False
    )
    r = rig(
        clock,
        params,
        gateways=[GATEWAY],
        module=lambda call: (0.0, PingResult.ok(700) if call.at < 120 else PingResult.rejected()),
    )
    mm = ModuleMonitorLogic(clock, params.module, r.module_link, r.pm.on_module_event)
    r.control.monitor = mm
    r.pm.start()
    clock.advance(200)

    assert len(r.posted) == 1
    ev = r.last
    assert isinstance(ev, MonitoredModuleDown)
    # rejections at 120, 130 (main), 140, 150 (aux): MODULE_DOWN 30 s after the first failed ping, then
    # two confirmation pings, and meanwhile the gateway echo and the primary's echoes (4 ms, together)
    assert diagnosis(ev).started_at == 150.0
    assert ev.at == pytest.approx(150.004)
    assert diagnosis(ev).network_steps == (
        NetworkStatus.GATEWAY_REACHED,
        NetworkStatus.NETTEST_UNAVAILABLE,
        NetworkStatus.PRIMARY_REACHED,
    )
    assert ev.network_status is NetworkStatus.PRIMARY_REACHED
    assert not mm.running and r.pm.idle

    pm_lines = [line.message for line in logs if line.topic == "PrimaryMonitor" and line.at >= 150]
    expected_order = [
        "module monitor indicated the [TsServer] module is not responding (ping failures), "
        "both connections are up",
        "Sending up to 2 ping(s) to the TsServer module using the main connection",
        "Did not receive a reply from the TsServer module after 2 ping(s) on the main connection",
        "Failed to ping the [TsServer] module, checking connections",
        f"Successfully pinged local gateway address [{GATEWAY}], setting network connection status to "
        "'GatewayReached'",
        "No NetTest addresses to ping, setting network connection status to 'NetTestUnavailable'",
        f"Successfully pinged primary address [{PRIMARY}], setting network connection status to "
        "'PrimaryReached'",
        "Primary connection status=[monitored module down], connection status=[both connections are up], "
        "network connection status=[primary reached]: [TsServer] module is down, posting [event=eTSDown]",
    ]
    positions = [next(i for i, m in enumerate(pm_lines) if text in m) for text in expected_order]
    assert positions == sorted(positions)


# ------------------------------------------------------------------------------------------------
# Unreachable primary ping sets (spec lines 512-518, parameter table)
# ------------------------------------------------------------------------------------------------


def both_down_rig(clock: FakeClock, extra_sets: int | None) -> Rig:
    r = rig(clock, PrimaryMonitorParams(extra_unreachable_ping_sets=extra_sets), reachable=set())
    r.notifier.connected = {Connection.MAIN: False, Connection.AUX: False}
    r.pm.start()
    return r


def primary_sets(r: Rig) -> list[float]:
    """Start times of ping sets to the primary (three echoes each, sent together)."""
    times = r.pinger.to(PRIMARY)
    return times[::3]


def test_unreachable_primary_ping_count_unset_switches_after_a_single_ping_set(clock: FakeClock) -> None:
    r = both_down_rig(clock, 0)  # the catalog resolves "unset" to no extra ping set
    clock.advance(100)
    ev = r.last
    assert isinstance(ev, PrimaryUnreachable)
    assert primary_sets(r) == [1.0] and diagnosis(ev).primary_ping_sets == 1
    assert ev.at == 2.0  # one echo timeout: the set's three echoes are waited for once


def test_unreachable_primary_ping_count_zero_sends_three_more_ping_sets(clock: FakeClock) -> None:
    r = both_down_rig(clock, 3)  # the catalog resolves 0-3 to 3 extra ping sets
    clock.advance(100)
    ev = r.last
    assert isinstance(ev, PrimaryUnreachable)
    # diagnosis at 1 s; sets of 1 s (three echoes at once), 10 s apart: 1, 12, 23, 34 -> posted at 35 s
    assert primary_sets(r) == [1.0, 12.0, 23.0, 34.0] and diagnosis(ev).primary_ping_sets == 4
    assert r.pinger.to(PRIMARY) == [t for t in (1.0, 12.0, 23.0, 34.0) for _ in range(3)]
    assert ev.at == 35.0 and len(r.posted) == 1


def test_unreachable_primary_ping_count_five_sends_five_more_ping_sets(clock: FakeClock) -> None:
    r = both_down_rig(clock, 5)
    clock.advance(200)
    ev = r.last
    assert isinstance(ev, PrimaryUnreachable)
    assert primary_sets(r) == [1.0, 12.0, 23.0, 34.0, 45.0, 56.0] and diagnosis(ev).primary_ping_sets == 6
    assert ev.at == 57.0


def test_unreachable_primary_ping_count_minus_one_never_gives_up_until_the_primary_answers(
    clock: FakeClock,
) -> None:
    r = both_down_rig(clock, None)  # -1: unlimited
    clock.advance(1000)
    assert r.posted == [] and r.pm.diagnosing
    assert len(primary_sets(r)) == 91  # one set every 11 s
    r.pinger.reachable.add(PRIMARY)
    clock.advance(11)
    ev = r.last
    assert isinstance(ev, NotifierDown) and diagnosis(ev).primary_ping_sets == 92
    assert ev.network_status is NetworkStatus.PRIMARY_REACHED


def test_unreachable_primary_ping_delay_sets_the_gap_between_ping_sets(clock: FakeClock) -> None:
    r = rig(
        clock,
        PrimaryMonitorParams(extra_unreachable_ping_sets=3, unreachable_primary_ping_delay=2),
        reachable=set(),
    )
    r.notifier.connected = {Connection.MAIN: False, Connection.AUX: False}
    r.pm.start()
    clock.advance(100)
    assert primary_sets(r) == [1.0, 4.0, 7.0, 10.0]  # a set (1 s), 2 s, a set...


# ------------------------------------------------------------------------------------------------
# Gateways, NetTest, primary address
# ------------------------------------------------------------------------------------------------


def test_gateways_are_pinged_in_turn_until_one_answers(clock: FakeClock) -> None:
    r = rig(
        clock,
        PrimaryMonitorParams(disable_gateway_ping=False),
        reachable={PRIMARY, "10.0.8.1"},
        gateways=["10.0.7.1", "10.0.8.1", "10.0.6.1", "10.0.7.1", " "],
    )
    r.pm.start()
    assert r.pm.gateways == ["10.0.7.1", "10.0.8.1", "10.0.6.1"]
    r.module_down()
    clock.advance(5)
    # every gateway is sent an echo at once with the primary's set; the first answer in order decides
    assert sorted({a for _, a, _ in r.pinger.calls}) == sorted(["10.0.7.1", "10.0.8.1", "10.0.6.1", PRIMARY])
    assert {t for t, _, _ in r.pinger.calls} == {0.0}
    assert diagnosis(r.last).network_steps[0] is NetworkStatus.GATEWAY_REACHED
    assert isinstance(r.last, MonitoredModuleDown)


def test_gateway_ping_enabled_without_any_gateway_is_not_a_network_failure(clock: FakeClock) -> None:
    r = rig(clock, PrimaryMonitorParams(disable_gateway_ping=False))
    r.pm.start()
    r.module_down()
    clock.advance(1)
    assert NetworkStatus.GATEWAY_UNAVAILABLE in diagnosis(r.last).network_steps
    assert isinstance(r.last, MonitoredModuleDown)


@pytest.mark.parametrize("server, expected", [("A", "10.1.0.1"), ("B", "10.2.0.1")])
def test_server_b_pings_netest_b_and_server_a_pings_netest_a(
    clock: FakeClock, server: Literal["A", "B"], expected: str
) -> None:
    params = PrimaryMonitorParams(nettest_a="10.1.0.1", nettest_b="10.2.0.1; 10.2.0.2", this_server=server)
    r = rig(clock, params, reachable={PRIMARY, expected})
    r.pm.start()
    r.module_down()
    clock.advance(5)
    assert r.pinger.calls[0][1] == expected
    assert diagnosis(r.last).network_steps[1] is NetworkStatus.NETTEST_REACHED
    assert PrimaryMonitorParams(nettest_b="10.2.0.1; 10.2.0.2", this_server="B").nettest_addresses == (
        "10.2.0.1",
        "10.2.0.2",
    )


def test_the_netest_echo_uses_the_netest_timeout(clock: FakeClock) -> None:
    r = rig(clock, PrimaryMonitorParams(nettest_a=NETTEST, nettest_timeout=3), reachable={PRIMARY})
    r.pm.start()
    r.module_down()
    clock.advance(10)
    assert r.pinger.calls[0] == (0.0, NETTEST, 3.0)
    assert isinstance(r.last, NotifierDown)  # NetTest unreachable, primary reachable


def test_the_primary_address_is_looked_up_again_when_it_was_unknown_at_start(clock: FakeClock) -> None:
    answers = iter([None, PRIMARY])
    r = rig(clock, primary_lookup=lambda: next(answers))
    r.pm.start()
    assert r.pm.primary_address is None
    r.module_down()
    clock.advance(1)
    assert r.pm.primary_address == PRIMARY and r.pinger.to(PRIMARY) == [0.0] * 3


def test_an_unknown_primary_address_counts_as_reachable(clock: FakeClock) -> None:
    r = rig(clock, primary=None)
    r.pm.start()
    r.module_down()
    clock.advance(1)
    assert isinstance(r.last, MonitoredModuleDown)
    assert r.last.network_status is NetworkStatus.PRIMARY_ADDRESS_UNKNOWN


def test_a_pinger_that_never_calls_back_counts_as_no_answer_after_the_timeout_and_a_grace(
    clock: FakeClock,
) -> None:
    r = rig(clock, PrimaryMonitorParams(disable_gateway_ping=False), gateways=[GATEWAY])
    r.pinger.silent.add(GATEWAY)
    r.pm.start()
    r.module_down()
    clock.advance(10)
    assert r.pinger.to(PRIMARY) == [0.0] * 3  # sent with the gateway echo
    assert isinstance(r.last, NotifierDown)
    assert r.last.at == 2.0  # gateway echo given up at 1 s timeout + 1 s grace


# ------------------------------------------------------------------------------------------------
# Module Monitor control and liveness
# ------------------------------------------------------------------------------------------------


def test_the_module_monitor_is_stopped_during_a_diagnosis_and_left_stopped_after_an_event(
    clock: FakeClock,
) -> None:
    r = rig(clock)
    r.pm.start()
    clock.advance(3)
    r.module_down()
    clock.advance(5)
    assert isinstance(r.last, MonitoredModuleDown)
    assert r.control.calls == [(0.0, "start"), (3.0, "stop")]
    assert r.pm.idle and not r.pm.liveness_tracking
    calls = len(r.notifier.calls)
    clock.advance(100)
    assert len(r.notifier.calls) == calls  # no pings while waiting for the state machine
    r.module_down()
    assert len(r.posted) == 1  # ignored while idle
    r.pm.stop()
    r.pm.start()
    assert not r.pm.idle and r.control.running


def test_a_module_down_during_a_diagnosis_is_ignored(clock: FakeClock) -> None:
    r = rig(clock, reachable=set(), params=PrimaryMonitorParams(extra_unreachable_ping_sets=3))
    r.pm.start()
    r.module_down()
    clock.advance(2)
    assert r.pm.diagnosing
    r.module_down()
    clock.advance(100)
    assert len(r.posted) == 1 and len(r.pm.diagnoses) == 1


def test_stopping_during_a_diagnosis_abandons_it(clock: FakeClock) -> None:
    r = rig(clock, reachable=set(), params=PrimaryMonitorParams(extra_unreachable_ping_sets=3))
    r.pm.start()
    r.module_down()
    clock.advance(2)
    r.pm.stop()
    clock.advance(100)
    assert r.posted == [] and not r.pm.diagnosing and clock.pending == 0


def test_the_maximum_module_monitor_silence_is_derived_from_its_ping_parameters() -> None:
    assert PrimaryMonitorParams().module_monitor_max_silence == 64.0
    m = ModuleMonitorParams(ping_timeout=20, retry_delay=2, max_failures=3)
    assert PrimaryMonitorParams(module=m).module_monitor_max_silence == 20 + 6 * 22 + 20


def test_a_silent_module_monitor_is_reported_and_restarted_at_the_next_ping_tick(
    clock: FakeClock, logs: list[LogLine]
) -> None:
    r = rig(clock, PrimaryMonitorParams(ping_delay=10))
    r.pm.start()
    clock.advance(30)
    r.pm.on_module_event(SystemOk("TsServer", 1, Connection.MAIN, clock.now()))
    clock.advance(64)
    assert r.pm.check_module_monitor_liveness() is None
    clock.advance(1)
    stalled = r.pm.check_module_monitor_liveness()
    assert stalled is not None and stalled.silent_for == 65.0 and stalled.max_silence == 64.0
    assert any(
        "SelfMonitor - Detected ModuleMonitor thread stop" in line.message and line.topic == "SelfMonitor"
        for line in logs
    )
    pings = len(r.notifier.calls)
    clock.advance(10)
    # the next tick (pings every 10 s + 2 ms answer: ..., 90.016, 100.018) restarts it and sends no ping
    assert r.control.calls[-2:] == [(pytest.approx(100.018), "stop"), (pytest.approx(100.018), "start")]
    assert len(r.notifier.calls) == pings
    clock.advance(10)
    assert len(r.notifier.calls) == pings + 1
    assert r.pm.check_module_monitor_liveness() is None


def test_liveness_is_not_tracked_while_stopped_or_diagnosing_and_restarts_fresh(clock: FakeClock) -> None:
    r = rig(clock, reachable=set(), params=PrimaryMonitorParams(extra_unreachable_ping_sets=None))
    r.pm.start()
    r.module_down()
    clock.advance(500)
    assert r.pm.diagnosing and r.pm.check_module_monitor_liveness() is None
    r.pm.stop()
    clock.advance(500)
    assert r.pm.check_module_monitor_liveness() is None
    r.pm.start()
    clock.advance(60)
    assert r.pm.check_module_monitor_liveness() is None
    r.pm.suspend_liveness_tracking()  # e.g. reconnecting
    clock.advance(60)
    assert r.pm.check_module_monitor_liveness() is None
    r.pm.resume_liveness_tracking()
    clock.advance(65)
    assert r.pm.check_module_monitor_liveness() is not None


def test_module_monitor_events_keep_it_alive(clock: FakeClock) -> None:
    r = rig(clock)
    mm = ModuleMonitorLogic(clock, ModuleMonitorParams(), FakeModuleLink(clock), r.pm.on_module_event)
    r.control.monitor = mm
    r.pm.start()
    for _ in range(30):
        clock.advance(10)
        assert r.pm.check_module_monitor_liveness() is None


# ------------------------------------------------------------------------------------------------
# Parameters
# ------------------------------------------------------------------------------------------------


def test_a_new_notifier_timeout_takes_effect_on_the_next_ping(clock: FakeClock) -> None:
    # (the catalog derives it from a dynamic TS Timeout change: tests/unit/test_monitor_params.py)
    r = rig(clock)
    r.notifier.respond = lambda call: (0.5, PingResult.ok())
    r.pm.start()
    clock.advance(1.2)  # a ping is in flight
    r.pm.update_params(replace(r.pm.params, timeout=15.0))
    clock.advance(2)
    assert [c.timeout for c in r.notifier.calls] == [5.0, 15.0]


def test_a_main_link_that_loses_everything_moves_the_notifier_pings_to_aux_until_main_answers(
    clock: FakeClock,
) -> None:
    # Main stays "connected" but silently drops everything (a one-way cut): after one diagnosis that
    # finds the notifier answering on aux, pings go on aux, so the module monitor is not stopped and
    # restarted every few seconds (which would keep it from ever reaching its own aux fallback).
    r = rig(clock, PrimaryMonitorParams(ping_delay=1, timeout=0.3, retry_count=1, retry_ping_delay=0.05))
    r.pm.start()
    clock.advance(1.5)
    main_answers = [False]

    def respond(call: NotifierCall) -> Answer:
        if call.connection is Connection.MAIN and not main_answers[0]:
            return None
        return (0.002, PingResult.ok())

    r.notifier.respond = respond
    clock.advance(30)
    diagnoses = [d for d in r.pm.diagnoses if d.trigger is Trigger.NOTIFIER_PING]
    assert len(diagnoses) == 1, "one diagnosis, then the pings move to aux"
    assert r.posted and all(isinstance(e, NoError) for e in r.posted)
    late = [c for c in r.notifier.calls if c.at > 10]
    assert {c.connection for c in late if c.timeout == 0.3} >= {Connection.AUX}
    starts_after = [c for c in r.control.calls if c[1] == "start"]
    clock.advance(20)
    starts = [c for c in r.control.calls if c[1] == "start"]
    assert starts == starts_after, "the module monitor is left alone while aux answers"
    main_answers[0] = True
    clock.advance(12)  # a side ping on main every 5 s finds it answering again
    clock.advance(3)
    assert r.notifier.calls[-1].connection is Connection.MAIN


# ------------------------------------------------------------------------------------------------
# Parallel diagnosis: the same verdicts, each set of pings waited for once (issue 14)
# ------------------------------------------------------------------------------------------------

LAB_PROFILE = PrimaryMonitorParams(
    ping_delay=0.1,
    timeout=0.3,
    retry_count=1,
    retry_ping_delay=0.05,
    nettest_timeout=0.2,
    nettest_a=NETTEST,
)


@pytest.mark.parametrize("fault_at", [1.0, 1.05, 1.1, 1.15])
def test_host_loss_costs_two_monitor_timeouts_the_echoes_run_meanwhile(clock: FakeClock, fault_at: float) -> None:
    r = rig(clock, LAB_PROFILE)
    r.pm.start()
    clock.advance(fault_at)
    # the primary's host is gone: no notifier answer, no echo; the NetTest still answers
    r.notifier.respond = lambda call: None
    r.pinger.reachable = {NETTEST}
    clock.advance(5)
    ev = r.last
    assert isinstance(ev, PrimaryUnreachable) and len(r.posted) == 1
    first_lost = next(c for c in r.notifier.calls if c.at >= fault_at - 0.002)
    p = LAB_PROFILE
    # the ping's timeout, the retry delay, the retry's timeout; the aux confirmation, the NetTest echo
    # and the primary's ping set went out with the retry and were over before it timed out
    assert ev.at == pytest.approx(first_lost.at + p.timeout + p.retry_ping_delay + p.timeout)
    assert ev.at - fault_at <= p.ping_delay + 0.002 + 2 * p.timeout + p.retry_ping_delay + 1e-9
    retry_at = first_lost.at + p.timeout + p.retry_ping_delay
    assert [round(c.at - retry_at, 6) for c in r.notifier.calls[-2:]] == [0.0, 0.0]
    assert r.pinger.to(PRIMARY) == [round(retry_at, 3)] * 3 and r.pinger.to(NETTEST) == [round(retry_at, 3)]
    assert diagnosis(ev).network_steps == (
        NetworkStatus.GATEWAY_PING_DISABLED,
        NetworkStatus.NETTEST_REACHED,
        NetworkStatus.PRIMARY_UNREACHABLE,
    )


def test_an_echo_timeout_longer_than_the_monitor_timeout_is_waited_for_once(clock: FakeClock) -> None:
    p = replace(LAB_PROFILE, nettest_timeout=0.5)
    r = rig(clock, p)
    r.pm.start()
    clock.advance(1.0)
    r.notifier.respond = lambda call: None
    r.pinger.reachable = {NETTEST}
    clock.advance(5)
    ev = r.last
    assert isinstance(ev, PrimaryUnreachable)
    retry_at = r.notifier.calls[-1].at
    assert ev.at == pytest.approx(retry_at + 0.5)  # the three echoes of the set end together


def test_a_connection_down_event_fails_the_ping_in_flight_at_once(clock: FakeClock) -> None:
    r = rig(clock)  # timeout 5 s
    r.notifier.respond = lambda call: (0.0, PingResult.connection_lost()) if not r.notifier.connected[
        call.connection
    ] else None
    r.pm.start()
    clock.advance(1.05)  # a ping went out at 1.0 and waits for its answer
    r.notifier.connected = {Connection.MAIN: False, Connection.AUX: False}
    r.pm.on_connection_down(Connection.MAIN)
    clock.advance(0.01)
    ev = r.last
    # the retries fail at once on the dead connections, the primary's host answers: notifier down
    assert isinstance(ev, NotifierDown) and ev.at == pytest.approx(1.054)
    assert diagnosis(ev).connection_status is ConnectionStatus.BOTH_DOWN


def test_a_connection_down_event_fails_a_confirmation_ping_in_flight(clock: FakeClock) -> None:
    r = rig(clock)
    r.pm.start()
    clock.advance(1.5)
    r.notifier.respond = lambda call: None
    clock.advance(11)  # ping at 2.002, retries at 7.002 and 12.002 (with the aux confirmation)
    assert r.notifier.times()[-2:] == [12.002, 12.002] and r.posted == []
    r.notifier.connected[Connection.AUX] = False
    r.pm.on_connection_down(Connection.AUX)
    clock.advance(10)
    ev = r.last
    assert isinstance(ev, NotifierDown)
    assert ev.at == pytest.approx(17.002)  # main's retry timed out; aux's confirmation did not hold it up
    assert diagnosis(ev).connection_status is ConnectionStatus.MAIN_ONLY
    assert r.notifier.calls[-1].connection is Connection.AUX and r.notifier.calls[-1].cancelled


def test_a_connection_down_on_the_other_connection_leaves_the_ping_in_flight(clock: FakeClock) -> None:
    r = rig(clock)
    r.notifier.respond = lambda call: None
    r.pm.start()
    clock.advance(1.05)
    r.notifier.connected[Connection.AUX] = False
    r.pm.on_connection_down(Connection.AUX)
    clock.advance(1)
    assert r.notifier.times() == [1.0] and r.pm.retry_count == 0 and r.posted == []
