"""Isolation step-down (issue 16): the backup's fastest takeover, the active's plan, the verdicts."""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.monitoring.module_monitor_logic import ModuleMonitorParams
from actors.monitoring.monitor_params import (
    PRIMARY_MONITOR_PARAMS,
    PrimaryMonitorParams,
    primary_monitor_params,
    resolved_values,
)
from actors.roles.isolation import (
    MIN_ECHO_TIMEOUT,
    STEP_SLACK,
    WATCH_PERIOD,
    LinkStatus,
    fastest_takeover,
    isolation_verdict,
    needs_network_check,
    network_returned,
    plan_isolation,
    read_link_status,
)
from deploy.pair import FAST_PARAMETERS
from replication.params import ServerParams
from replication.store import Store

# The catalog's ranges (replication/params.py): timeouts > 0 (Primary Monitor Timeout <= 300), Retry
# Count 1-50, Retry Ping Delay 0-300, NetTest Timeout > 0, Unreachable Primary Ping Count -1 / 0-3 -> 3 /
# N, its delay 1-300, Reconnect Timeout >= 0; the node's [timing] hello interval and peer timeout.
seconds = st.floats(min_value=0.001, max_value=300, allow_nan=False)
monitor_params = st.builds(
    PrimaryMonitorParams,
    module=st.just(ModuleMonitorParams()),
    timeout=seconds,
    retry_count=st.integers(1, 50),
    retry_ping_delay=st.floats(min_value=0, max_value=300),
    nettest_timeout=st.floats(min_value=0.001, max_value=60),
    extra_unreachable_ping_sets=st.one_of(st.none(), st.just(0), st.integers(3, 20)),
    unreachable_primary_ping_delay=st.floats(min_value=1, max_value=300),
)
reconnect = st.floats(min_value=0, max_value=600)
hello = st.floats(min_value=0.05, max_value=5)
echoes = st.integers(1, 6)


def plan_for(p: PrimaryMonitorParams, rt: float, h: float, n: int, peer_timeout: float | None = None):  # type: ignore[no-untyped-def]
    return plan_isolation(
        fastest_takeover(p, rt), hello_interval=h, peer_timeout=peer_timeout or 3 * h, nettest_timeout=p.nettest_timeout,
        echoes=n,
    )


@settings(max_examples=400, deadline=None)
@given(monitor_params, reconnect, hello, echoes)
def test_a_guaranteed_step_down_is_shorter_than_the_backups_fastest_takeover(
    p: PrimaryMonitorParams, rt: float, h: float, n: int
) -> None:
    plan = plan_for(p, rt, h, n)
    if plan.carrier_guaranteed:
        assert plan.carrier_bound < plan.fastest_takeover
    if plan.probe_guaranteed:
        assert plan.probe_bound < plan.fastest_takeover
        assert plan.echo_timeout >= MIN_ECHO_TIMEOUT


@settings(max_examples=400, deadline=None)
@given(monitor_params, reconnect, hello, echoes)
def test_the_plan_is_guaranteed_whenever_the_fastest_takeover_leaves_room(
    p: PrimaryMonitorParams, rt: float, h: float, n: int
) -> None:
    plan = plan_for(p, rt, h, n)
    room = (1.2 * h + WATCH_PERIOD + STEP_SLACK + n * MIN_ECHO_TIMEOUT) / 0.8
    assert plan.check_after >= 1.1 * h  # no check on an ordinary gap between two Hellos
    if plan.fastest_takeover > 2 * room and p.nettest_timeout >= MIN_ECHO_TIMEOUT:
        assert plan.probe_guaranteed, plan.describe()
    if plan.fastest_takeover > (WATCH_PERIOD + STEP_SLACK):
        assert plan.carrier_guaranteed
    # the peer is never declared lost before a Hello interval has passed without one
    assert plan.peer_silence >= h


@settings(max_examples=200, deadline=None)
@given(monitor_params, reconnect)
def test_the_fastest_takeover_is_no_longer_than_any_one_path(p: PrimaryMonitorParams, rt: float) -> None:
    f = fastest_takeover(p, rt)
    assert f >= 0
    assert f <= 2.0 + rt + 1e-9  # the heartbeat notices within 2 s, then the reconnect timeout
    if p.extra_unreachable_ping_sets is None:
        assert f <= 2.0 + rt + 1e-9
    else:
        assert f <= p.retry_count * (p.retry_ping_delay + p.timeout) + 3 * p.nettest_timeout * (
            1 + p.extra_unreachable_ping_sets
        ) + p.extra_unreachable_ping_sets * p.unreachable_primary_ping_delay + 1e-9


def catalog_params(extra: dict[str, str], tmp_path: Path) -> tuple[PrimaryMonitorParams, float]:
    store = Store.open_dir(tmp_path)
    sp = ServerParams(store)
    for name, value in extra.items():
        sp.set(name, value)
    params = primary_monitor_params(resolved_values(sp, PRIMARY_MONITOR_PARAMS), this_server="A")
    return params, sp.seconds("Switchover Reconnect Timeout")


def test_the_specification_defaults_are_guaranteed_on_both_paths(tmp_path: Path) -> None:
    params, rt = catalog_params({}, tmp_path)
    plan = plan_isolation(fastest_takeover(params, rt), hello_interval=0.5, peer_timeout=1.5,
                          nettest_timeout=params.nettest_timeout, echoes=2)
    # defaults: Primary Monitor Timeout 5 s (half of TS Timeout 10 s), Retry Count 2: the heartbeat
    # notices first (2 s), then one ping set of 3 x 1 s: 5 s
    assert math.isclose(plan.fastest_takeover, 5.0)
    assert plan.carrier_guaranteed and plan.probe_guaranteed
    assert plan.probe_bound < 5.0


def test_the_lab_profile_guarantees_the_carrier_path_and_one_echo(tmp_path: Path) -> None:
    params, rt = catalog_params(dict(FAST_PARAMETERS), tmp_path)
    plan = plan_isolation(fastest_takeover(params, rt), hello_interval=0.5, peer_timeout=1.5,
                          nettest_timeout=params.nettest_timeout, echoes=1)
    # 1 retry x (0.05 + 0.3) to notice, a ping set of 3 x 0.2 s
    assert math.isclose(plan.fastest_takeover, 0.35 + 0.6)
    assert plan.carrier_guaranteed and plan.probe_guaranteed
    tight = plan_isolation(plan.fastest_takeover, hello_interval=0.5, peer_timeout=1.5, nettest_timeout=0.2, echoes=20)
    assert tight.carrier_guaranteed and not tight.probe_guaranteed
    assert "NOT shorter" in tight.describe()  # too tight for 20 echoes with 0.5 s Hellos: said so at start


LINK_UP = LinkStatus("eth0", True, True)
PLAN = plan_isolation(5.0, hello_interval=0.5, peer_timeout=1.5, nettest_timeout=1.0, echoes=2)


def test_isolated_only_when_the_peer_is_lost_and_the_network_check_failed() -> None:
    lost = PLAN.peer_silence + 0.01
    assert isolation_verdict(lost, PLAN, LINK_UP, False) is not None
    assert isolation_verdict(None, PLAN, LINK_UP, False) is not None
    assert isolation_verdict(lost, PLAN, LINK_UP, True) is None  # the backup died: keep serving
    assert isolation_verdict(lost, PLAN, LINK_UP, None) is None  # no check finished yet
    assert isolation_verdict(0.1, PLAN, LINK_UP, False) is None  # the backup is still heard


def test_carrier_or_address_loss_isolates_without_a_probe() -> None:
    why = isolation_verdict(0.0, PLAN, LinkStatus("eth0", False, True), None)
    assert why is not None and "eth0 lost its carrier" in why
    why = isolation_verdict(0.0, PLAN, LinkStatus("eth0", True, False), True)
    assert why is not None and "lost this node's address" in why


def test_the_network_check_starts_in_time_for_the_silence_threshold() -> None:
    assert not needs_network_check(0.5, PLAN)  # an ordinary gap between two Hellos
    assert needs_network_check(PLAN.check_after, PLAN)
    assert PLAN.check_after + PLAN.echoes * PLAN.echo_timeout + WATCH_PERIOD + STEP_SLACK <= PLAN.probe_bound + 1e-9
    assert needs_network_check(None, PLAN)


def test_a_stepped_down_node_returns_when_it_hears_the_peer_or_its_network_is_fine() -> None:
    assert network_returned(0.1, PLAN, LINK_UP, None) == "the peer is heard again on port 3633"
    assert network_returned(10.0, PLAN, LINK_UP, True) == "this node's own network check passes again"
    assert network_returned(10.0, PLAN, LINK_UP, False) is None
    assert network_returned(0.1, PLAN, LinkStatus("eth0", False, True), True) is None


def test_read_link_status_reads_carrier_then_operstate(tmp_path: Path) -> None:
    (tmp_path / "eth0").mkdir()
    (tmp_path / "eth0" / "carrier").write_text("1\n")
    (tmp_path / "eth1").mkdir()
    (tmp_path / "eth1" / "operstate").write_text("down\n")  # carrier unreadable when admin-down
    addrs = {"eth0": ["10.0.0.1"], "eth1": ["10.0.1.1"]}
    assert read_link_status("10.0.0.1", addresses=lambda: addrs, sys_class_net=tmp_path) == LinkStatus(
        "eth0", True, True
    )
    assert read_link_status("10.0.1.1", addresses=lambda: addrs, sys_class_net=tmp_path) == LinkStatus(
        "eth1", False, True
    )
    assert read_link_status("10.9.9.9", addresses=lambda: addrs, sys_class_net=tmp_path) is None
