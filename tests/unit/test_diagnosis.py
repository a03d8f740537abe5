"""The Primary Monitor's diagnosis steps, each on its own with scripted answers (issue 9, structure)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from actors.monitoring.diagnosis import (
    ConnectionStatus,
    ModulePing,
    NotifierPing,
    Op,
    Outcome,
    Sleep,
    Trigger,
    confirm,
    decide,
    diagnose,
    final_check,
    primary_sets,
)
from actors.monitoring.local_network import Icmp, LocalChecks, NetworkStatus
from actors.monitoring.module_monitor_logic import ModuleDown, ModuleDownReason
from actors.monitoring.monitor_params import PrimaryMonitorParams
from actors.monitoring.ping import Connection, PingResult
from actors.monitoring.primary_monitor_logic import OUTCOME_EVENTS
from actors.roles.state_machine import TABLE, Event

PRIMARY, GATEWAY, NETTEST = "10.0.0.1", "10.0.9.1", "10.1.0.1"


def run(step: Generator[Op, object, Any], answer: Callable[[Op], object]) -> tuple[Any, list[Op]]:
    """Drive a step: every op it yields gets ``answer(op)``; returns (result, ops in order)."""
    ops: list[Op] = []
    value: object = None
    try:
        while True:
            op = step.send(value)
            ops.append(op)
            value = answer(op)
    except StopIteration as stop:
        return stop.value, ops


def test_confirm_pings_the_module_on_main_and_stops_at_a_reply_with_a_pid() -> None:
    replies = iter([PingResult.timeout(), PingResult.ok(77)])
    result, ops = run(confirm(Trigger.MODULE_MONITOR, ConnectionStatus.BOTH_UP, "TsServer", 3, 5.0),
                      lambda op: next(replies))
    assert result.answered and ops == [ModulePing(Connection.MAIN, 5.0)] * 2


def test_confirm_after_notifier_pings_asks_each_connection_that_is_up() -> None:
    result, ops = run(confirm(Trigger.NOTIFIER_PING, ConnectionStatus.AUX_ONLY, "TsServer", 2, 1.0),
                      lambda op: PingResult.timeout())
    assert not result.answered and ops == [NotifierPing(Connection.AUX, 1.0)]
    result, ops = run(confirm(Trigger.NOTIFIER_PING, ConnectionStatus.BOTH_DOWN, "TsServer", 2, 1.0),
                      lambda op: PingResult.ok())
    assert not result.answered and ops == []


def test_primary_sets_stop_at_the_first_answer_and_count_the_extra_sets() -> None:
    result, ops = run(primary_sets(PRIMARY, 3, 3, 1.0, 10.0), lambda op: False if isinstance(op, Icmp) else None)
    assert result.status is NetworkStatus.PRIMARY_UNREACHABLE and result.sets == 4
    assert [type(op).__name__ for op in ops].count("Sleep") == 3 and Sleep(10.0) in ops
    answers = iter([False, False, True])
    result, ops = run(primary_sets(PRIMARY, 0, 3, 1.0, 10.0), lambda op: next(answers))
    assert result.status is NetworkStatus.PRIMARY_REACHED and len(ops) == 3
    result, ops = run(primary_sets(None, 0, 3, 1.0, 10.0), lambda op: True)
    assert result.status is NetworkStatus.PRIMARY_ADDRESS_UNKNOWN and ops == []


def test_final_check_asks_the_notifier_on_the_only_connection_after_module_down() -> None:
    steps = [NetworkStatus.GATEWAY_PING_DISABLED, NetworkStatus.PRIMARY_REACHED]
    result, ops = run(final_check(Trigger.MODULE_MONITOR, ConnectionStatus.BOTH_UP, ConnectionStatus.MAIN_ONLY,
                                  steps, 2.0), lambda op: PingResult.ok())
    assert ops == [NotifierPing(Connection.MAIN, 2.0)]
    assert (result.outcome, result.notifier_alive) == (Outcome.MODULE_DOWN, True)
    result, ops = run(final_check(Trigger.MODULE_MONITOR, ConnectionStatus.BOTH_UP, ConnectionStatus.BOTH_UP,
                                  steps, 2.0), lambda op: PingResult.ok())
    assert ops == [] and result.outcome is Outcome.MODULE_DOWN


def test_the_whole_diagnosis_of_a_wan_cut_is_network_down() -> None:
    reachable = {GATEWAY}
    result, ops = run(
        diagnose(
            Trigger.NOTIFIER_PING,
            None,
            PrimaryMonitorParams(disable_gateway_ping=False, nettest_a=NETTEST),
            now=lambda: 0.0,
            connection_status=lambda: ConnectionStatus.BOTH_DOWN,
            local_checks=LocalChecks(True, lambda: [GATEWAY], (NETTEST,), 1.0),
            primary_address=lambda: PRIMARY,
        ),
        lambda op: isinstance(op, Icmp) and op.address in reachable,
    )
    assert result.outcome is Outcome.NETWORK_DOWN and not result.local_network_ok
    assert result.network_steps == (NetworkStatus.GATEWAY_REACHED, NetworkStatus.NETTEST_UNREACHABLE,
                                    NetworkStatus.PRIMARY_UNREACHABLE)
    assert result.primary_ping_sets == 1  # the local network failed: one ping set only
    assert [op.address for op in ops if isinstance(op, Icmp)] == [GATEWAY, NETTEST, PRIMARY, PRIMARY, PRIMARY]


def test_a_restarting_module_is_down_without_confirmation_or_network_checks() -> None:
    event = ModuleDown("TsServer", ModuleDownReason.MAX_RESTARTS, Connection.MAIN, 2, 0.0, "3 restarts")
    result, ops = run(
        diagnose(Trigger.MODULE_MONITOR, event, PrimaryMonitorParams(), now=lambda: 0.0,
                 connection_status=lambda: ConnectionStatus.BOTH_UP,
                 local_checks=LocalChecks(False, list, (), 1.0), primary_address=lambda: PRIMARY),
        lambda op: None,
    )
    assert ops == [] and result.outcome is Outcome.MODULE_DOWN


def test_every_outcome_but_no_error_maps_to_one_event_the_table_handles() -> None:
    assert set(OUTCOME_EVENTS) == set(Outcome) - {Outcome.NO_ERROR}
    handled = {row.event for row in TABLE}
    assert all(event in handled for event in OUTCOME_EVENTS.values())
    assert decide(Trigger.NOTIFIER_PING, ConnectionStatus.BOTH_DOWN, [NetworkStatus.PRIMARY_REACHED]) \
        is Outcome.NOTIFIER_DOWN
    assert OUTCOME_EVENTS[Outcome.PRIMARY_UNREACHABLE] is Event.PRIMARY_UNREACHABLE
