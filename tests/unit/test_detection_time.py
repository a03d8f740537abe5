"""Worst-case detection times (issue 14): a pure function of the parameters, checked over the parameter
ranges against the monitors' own logic run in virtual time."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.monitoring.detection_time import (
    STATUS_PREFIX,
    DetectionTimes,
    LinkHeartbeat,
    detection_times,
    silence,
)
from actors.monitoring.module_monitor_logic import ModuleMonitorLogic, ModuleMonitorParams
from actors.monitoring.monitor_params import PrimaryMonitorParams
from actors.monitoring.ping import Connection, PingResult
from actors.monitoring.primary_monitor_logic import MonitoredModuleDown, NotifierDown, PrimaryUnreachable
from actors.runtime.clock import FakeClock
from tests.unit.test_primary_monitor_logic import NETTEST, rig

NO_HEARTBEAT = LinkHeartbeat(interval=math.inf)

# the catalog's ranges (replication/params.py), kept small enough for virtual time to be quick
seconds = st.floats(min_value=0.01, max_value=20, allow_nan=False).map(lambda v: round(v, 3))
module_params = st.builds(
    ModuleMonitorParams,
    ping_timeout=st.floats(min_value=5, max_value=60).map(lambda v: round(v, 3)),
    retry_delay=seconds,
    max_failures=st.integers(min_value=1, max_value=5),
)
primary_params = st.builds(
    PrimaryMonitorParams,
    module=module_params,
    ping_delay=seconds,
    timeout=seconds,
    retry_count=st.integers(min_value=1, max_value=6),
    retry_ping_delay=st.floats(min_value=0, max_value=5).map(lambda v: round(v, 3)),
    nettest_a=st.just(NETTEST),
    nettest_timeout=seconds,
    extra_unreachable_ping_sets=st.one_of(st.just(0), st.integers(min_value=3, max_value=5)),
    unreachable_primary_ping_delay=st.floats(min_value=1, max_value=30).map(lambda v: round(v, 3)),
)


def simulated_host_loss(p: PrimaryMonitorParams) -> tuple[float, object]:
    """Run the Primary Monitor in virtual time; the host is lost just after a ping was answered."""
    clock = FakeClock()
    r = rig(clock, p)
    answered: list[float] = []

    def respond(call: object) -> tuple[float, PingResult] | None:
        if answered:
            return None  # the fault: nothing answers any more
        answered.append(clock.now())
        return (0.0, PingResult.ok())

    r.notifier.respond = respond  # type: ignore[assignment]
    r.pinger.reachable = {NETTEST}
    r.pm.start()
    clock.run_until_idle(limit=10_000)
    assert r.posted, "the monitor never posted"
    return r.last.at - answered[0], r.last


@settings(max_examples=60, deadline=None)
@given(primary_params)
def test_host_loss_is_what_the_primary_monitor_takes_in_virtual_time(p: PrimaryMonitorParams) -> None:
    elapsed, event = simulated_host_loss(p)
    assert isinstance(event, PrimaryUnreachable)
    assert elapsed == pytest.approx(detection_times(p, 0, heartbeat=NO_HEARTBEAT).host_loss, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(primary_params, st.floats(min_value=0, max_value=60))
def test_node_crash_is_the_retry_delays_and_the_reconnect_timeout(p: PrimaryMonitorParams, reconnect: float) -> None:
    clock = FakeClock()
    r = rig(clock, p)
    r.notifier.respond = lambda call: (  # type: ignore[assignment]
        (0.0, PingResult.connection_lost()) if not r.notifier.connected[call.connection] else (0.0, PingResult.ok())
    )
    r.pm.start()
    clock.advance(p.ping_delay * 2.5)
    crash_at = clock.now()
    r.notifier.connected = {Connection.MAIN: False, Connection.AUX: False}
    r.pm.on_connection_down(Connection.MAIN)
    r.pm.on_connection_down(Connection.AUX)
    clock.run_until_idle(limit=10_000)
    assert isinstance(r.last, NotifierDown)
    # the primary's host answers its echo after the fake's latency: NotifierDown, then the reconnect timeout
    decided = r.last.at - crash_at - r.pinger.latency
    expected = detection_times(p, reconnect).node_crash - reconnect
    assert decided == pytest.approx(expected, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(module_params)
def test_module_crash_is_the_module_monitors_retry_delays(m: ModuleMonitorParams) -> None:
    clock = FakeClock()
    p = PrimaryMonitorParams(module=m, nettest_a=NETTEST)
    crashed: list[float] = []
    r = rig(clock, p, module=lambda call: (0.0, PingResult.rejected() if crashed else PingResult.ok(700)))
    mm = ModuleMonitorLogic(clock, m, r.module_link, r.pm.on_module_event)
    r.control.monitor = mm
    r.pm.start()
    clock.advance(m.ping_timeout * 1.5)  # answered once, the next regular ping is scheduled
    crashed.append(clock.now())
    assert mm.ping_now("the primary's notifier reports it gone")
    clock.run_until_idle(limit=10_000)
    assert isinstance(r.last, MonitoredModuleDown)
    decided = r.last.at - crashed[0] - r.pinger.latency  # the primary's echo answers after the latency
    assert decided == pytest.approx(detection_times(p, 0).module_crash, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(primary_params, st.floats(min_value=0, max_value=300), st.sampled_from(
    ["ping_delay", "timeout", "retry_ping_delay", "nettest_timeout", "unreachable_primary_ping_delay"]
), st.floats(min_value=0.001, max_value=10))
def test_a_longer_wait_never_shortens_any_detection_time(
    p: PrimaryMonitorParams, reconnect: float, name: str, more: float
) -> None:
    before = detection_times(p, reconnect)
    after = detection_times(replace(p, **{name: getattr(p, name) + more}), reconnect)
    for field in ("host_loss", "node_crash", "node_freeze", "module_crash"):
        assert getattr(after, field) >= getattr(before, field)
    assert before.node_crash <= before.node_freeze <= silence(p) + reconnect


def test_the_heartbeat_caps_host_loss_when_the_ping_chain_is_slower() -> None:
    p = PrimaryMonitorParams()  # the defaults: ping every 1 s, timeout 5 s, 2 retries
    assert silence(p) == 16.0
    times = detection_times(p, 30)
    assert times.host_loss == LinkHeartbeat().worst + 1.0  # heartbeat 4 s + the NetTest timeout
    assert times.node_freeze == LinkHeartbeat().worst + 30


def test_unlimited_ping_sets_never_switch_on_host_loss() -> None:
    times = detection_times(PrimaryMonitorParams(extra_unreachable_ping_sets=None), 2)
    assert math.isinf(times.host_loss) and times.as_dict()["host_loss"] is None
    assert "host loss never" in times.status_line()


def test_the_lab_profile() -> None:
    p = PrimaryMonitorParams(
        module=ModuleMonitorParams(ping_timeout=5, retry_delay=0.2, max_failures=2),
        ping_delay=0.1, timeout=0.3, retry_count=1, retry_ping_delay=0.05, nettest_timeout=0.2,
    )
    times = detection_times(p, 2, module_gone_latency=0.0)
    assert times == DetectionTimes(host_loss=0.75, node_crash=2.05, node_freeze=2.75, module_crash=0.6000000000000001)
    assert times.status_line() == (
        f"{STATUS_PREFIX}: host loss 0.75 s, node crash 2.05 s, node freeze 2.75 s, module crash 0.60 s"
    )


def test_a_negative_reconnect_timeout_is_refused_with_what_was_expected() -> None:
    with pytest.raises(ValueError, match="reconnect_timeout must be >= 0 seconds, got -1"):
        detection_times(PrimaryMonitorParams(), -1)

