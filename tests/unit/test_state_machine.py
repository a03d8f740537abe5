"""The switchover state machine: every row of the table, its safety properties, and whole sequences."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from actors.roles.state_machine import (
    BACKUP_ROLES,
    DEFERRED,
    TABLE,
    WATCHING,
    Action,
    Event,
    Facts,
    Reason,
    Release,
    Row,
    Situation,
    State,
    Step,
    SwitchoverStateMachine,
    compare_release,
    decide,
    negotiate_startup_role,
    outranks,
    rows_for,
)

# ---------------------------------------------------------------------------------------------------------
# Helpers: every situation the machine can be in for a given state, "normal" values first.
# ---------------------------------------------------------------------------------------------------------


def situations(state: State) -> Iterator[Situation]:
    homes = (state,) if state in BACKUP_ROLES else (State.BACKUP, State.UPGRADE_HIGHER, State.UPGRADE_LOWER)
    pendings = (False, True) if state in WATCHING else (False,)
    shutdowns = (False, True) if state is State.STOPPING else (False,)
    for pending, shutdown, home, release in itertools.product(pendings, shutdowns, homes, tuple(Release)):
        # Each flag flips away from the all-is-well default; fewer flips come first.
        for flips in sorted(itertools.product((False, True), repeat=10), key=sum):
            network_down, main_down, aux_down, peer_gone, now, won, manual, force, starting, keep = flips
            yield Situation(
                network_ok=not network_down,
                main_up=not main_down,
                aux_up=not aux_down,
                peer_reachable=not peer_gone,
                reconnect_now=now,
                release=release,
                won_startup_tie=won,
                manual_switch_only=manual,
                force_backup=force,
                starting_up=starting,
                home=home,
                switch_pending=pending,
                shutting_down=shutdown,
                keep_serving_when_isolated=keep,
            )


def machine_in(state: State, s: Situation) -> tuple[SwitchoverStateMachine, Facts]:
    machine = SwitchoverStateMachine(
        state=state,
        manual_switch_only=s.manual_switch_only,
        force_backup=s.force_backup,
        starting_up=s.starting_up,
        home=s.home,
        pending_switch=Reason.TS_PING_FAILURE if s.switch_pending else None,
        shutting_down=s.shutting_down,
        keep_serving_when_isolated=s.keep_serving_when_isolated,
    )
    facts = Facts(
        network_ok=s.network_ok,
        main_up=s.main_up,
        aux_up=s.aux_up,
        peer_reachable=s.peer_reachable,
        reconnect_timeout=0.0 if s.reconnect_now else 30.0,
        release=s.release,
        won_startup_tie=s.won_startup_tie,
    )
    return machine, facts


def witness(row: Row, state: State) -> Situation | None:
    """A situation in which ``row`` is the first matching row for ``(state, row.event)``."""
    for s in situations(state):
        if decide(state, row.event, s) is row:
            return s
    return None


ROW_CASES = [
    pytest.param(row, state, id=f"{i:02d}-{state.name}-{row.event.value}-{row.guard.text}")
    for i, row in enumerate(TABLE)
    for state in row.states
]


# ---------------------------------------------------------------------------------------------------------
# Every declared row
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("row", "state"), ROW_CASES)
def test_every_row_is_reachable_and_the_machine_does_what_it_declares(row: Row, state: State) -> None:
    s = witness(row, state)
    assert s is not None, f"row is shadowed by an earlier row for {state}: {row}"
    machine, facts = machine_in(state, s)

    step = machine.handle(row.event, facts)

    assert step.old_state is state
    assert step.new_state is (row.target or state)
    assert machine.state is step.new_state
    assert step.event is row.event
    assert step.actions == row.actions
    assert step.verdict == row.verdict
    expected_reason = Reason.TS_PING_FAILURE if row.reason is DEFERRED else row.reason
    assert step.reason == expected_reason


@pytest.mark.parametrize(("row", "state"), ROW_CASES)
def test_every_row_keeps_the_role_actions_consistent(row: Row, state: State) -> None:
    target = row.target or state
    if Action.BECOME_PRIMARY in row.actions:
        assert target is State.PRIMARY and row.reason is not None and "StatePrimary" in row.verdict
    if target is State.PRIMARY and state is not State.PRIMARY:
        assert Action.BECOME_PRIMARY in row.actions
    if target is State.INACTIVE and state is not State.INACTIVE:
        assert row.actions == (Action.GO_STALE,) and row.reason is not None
    if Action.GO_STALE in row.actions:
        assert state is State.PRIMARY and row.reason is not None
    if target is State.RECONNECTING and state is not State.RECONNECTING:
        assert Action.STOP_MONITORS in row.actions and Action.START_RECONNECT_TIMER in row.actions
    if state is State.RECONNECTING and target in BACKUP_ROLES:
        assert Action.CANCEL_RECONNECT_TIMER in row.actions and Action.RESYNC in row.actions
    if Action.SCHEDULE_SWITCH_AFTER_STARTUP in row.actions:
        assert row.target is None and isinstance(row.reason, Reason)
    if Action.START_MONITORS in row.actions:
        assert target is State.BACKUP
    if Action.REQUEST_DISCONTINUE in row.actions:
        assert row.actions.index(Action.REQUEST_DISCONTINUE) < row.actions.index(Action.BECOME_PRIMARY)


def test_the_table_declares_no_row_twice() -> None:
    keys = [(state, row.event, row.guard.text) for row in TABLE for state in row.states]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("state", list(State))
def test_stop_is_handled_in_every_state(state: State) -> None:
    machine = SwitchoverStateMachine(state=state)
    step = machine.handle(Event.STOP)
    assert step.new_state is State.STOPPING
    assert Action.SHUT_DOWN in step.actions


def test_an_undeclared_pair_is_ignored_without_an_exception() -> None:
    machine = SwitchoverStateMachine(state=State.PRIMARY)
    step = machine.handle(Event.MODULE_DOWN)
    assert step == Step(State.PRIMARY, State.PRIMARY, Event.MODULE_DOWN, (), "ignored module-down in Primary")
    assert not step.changed and machine.state is State.PRIMARY


def test_a_second_stop_while_shutting_down_is_ignored() -> None:
    machine = SwitchoverStateMachine(state=State.BACKUP)
    machine.handle(Event.STOP)
    step = machine.handle(Event.STOP)
    assert step.actions == () and step.verdict == "ignored stop in Stopping"


# ---------------------------------------------------------------------------------------------------------
# Safety properties over every situation
# ---------------------------------------------------------------------------------------------------------


def _all_decisions(states: tuple[State, ...]) -> Iterator[tuple[State, Event, Situation, Row | None]]:
    for state in states:
        for s in situations(state):
            for event in Event:
                yield state, event, s, decide(state, event, s)


def test_a_backup_whose_own_network_is_down_never_switches_on_its_own() -> None:
    for state, event, s, row in _all_decisions(WATCHING):
        if s.network_ok or event is Event.MANUAL_SWITCH_REQUEST or row is None:
            continue
        assert Action.BECOME_PRIMARY not in row.actions, (state, event, s)
        assert Action.SCHEDULE_SWITCH_AFTER_STARTUP not in row.actions, (state, event, s)


def test_manual_switch_only_and_upgrade_states_never_switch_automatically() -> None:
    for state, event, s, row in _all_decisions(WATCHING):
        if s.auto_switch or row is None or event in (Event.MANUAL_SWITCH_REQUEST, Event.STARTUP_COMPLETE):
            continue
        assert Action.BECOME_PRIMARY not in row.actions, (state, event, s)
        assert Action.SCHEDULE_SWITCH_AFTER_STARTUP not in row.actions, (state, event, s)
        assert Action.START_MONITORS not in row.actions, (state, event, s)


def test_nothing_but_a_manual_request_switches_while_starting_up() -> None:
    for state, event, s, row in _all_decisions(WATCHING):
        if not s.starting_up or row is None or event is Event.STARTUP_COMPLETE:
            continue
        assert Action.BECOME_PRIMARY not in row.actions, (state, event, s)


def test_only_a_backup_ever_becomes_primary_by_switching() -> None:
    for row in TABLE:
        if Action.BECOME_PRIMARY in row.actions:
            assert set(row.states) <= {State.INIT, *WATCHING}, row


# ---------------------------------------------------------------------------------------------------------
# Sequences
# ---------------------------------------------------------------------------------------------------------


def started_backup(manual_switch_only: bool = False) -> SwitchoverStateMachine:
    machine = SwitchoverStateMachine(manual_switch_only=manual_switch_only)
    machine.handle(Event.PEER_IS_PRIMARY)
    machine.handle(Event.STARTUP_COMPLETE)
    return machine


def test_a_node_started_alone_becomes_primary() -> None:
    machine = SwitchoverStateMachine()
    step = machine.handle(Event.PEER_UNREACHABLE_AT_START)
    assert machine.state is State.PRIMARY
    assert step.actions == (Action.BECOME_PRIMARY,)
    assert step.reason == Reason.FIRST_STARTED


def test_a_node_started_with_a_primary_present_becomes_backup_and_monitors() -> None:
    machine = SwitchoverStateMachine()
    step = machine.handle(Event.PEER_IS_PRIMARY)
    assert machine.state is State.BACKUP
    assert step.actions == (Action.BECOME_BACKUP, Action.START_MONITORS)
    assert step.verdict == "Peer is primary: going to StateBackup"


def test_a_force_backup_node_keeps_waiting_when_the_peer_is_unreachable() -> None:
    machine = SwitchoverStateMachine(force_backup=True)
    step = machine.handle(Event.PEER_UNREACHABLE_AT_START)
    assert machine.state is State.INIT and step.actions == (Action.RENEGOTIATE,)
    machine.handle(Event.PEER_IS_PRIMARY)
    assert machine.state is State.BACKUP


def test_a_backup_on_a_newer_release_enters_upgrade_higher_and_returns_there_after_reconnecting() -> None:
    machine = SwitchoverStateMachine()
    machine.handle(Event.PEER_IS_PRIMARY, Facts(release=Release.HIGHER))
    assert machine.state is State.UPGRADE_HIGHER
    machine.handle(Event.STARTUP_COMPLETE)
    machine.handle(Event.NOTIFIER_DOWN)
    assert machine.state is State.RECONNECTING
    step = machine.handle(Event.RECONNECT_TIMEOUT)
    assert machine.state is State.RECONNECTING and not step.switched
    machine.handle(Event.RECONNECTED)
    assert machine.state is State.UPGRADE_HIGHER


def test_an_upgrade_lower_backup_can_still_be_switched_manually() -> None:
    machine = SwitchoverStateMachine()
    machine.handle(Event.PEER_IS_PRIMARY, Facts(release=Release.LOWER))
    machine.handle(Event.STARTUP_COMPLETE)
    step = machine.handle(Event.MANUAL_SWITCH_REQUEST)
    assert machine.state is State.PRIMARY and step.reason == Reason.MANUAL


def test_a_manual_switch_with_the_primary_reachable_asks_it_to_discontinue_first() -> None:
    machine = started_backup()
    step = machine.handle(Event.MANUAL_SWITCH_REQUEST, Facts(peer_reachable=True))
    assert machine.state is State.PRIMARY
    assert step.actions == (
        Action.STOP_MONITORS,
        Action.CANCEL_RECONNECT_TIMER,
        Action.REQUEST_DISCONTINUE,
        Action.BECOME_PRIMARY,
    )
    assert step.reason == "Manual Switchover"


def test_a_manual_switch_with_the_primary_unreachable_switches_immediately() -> None:
    machine = started_backup()
    step = machine.handle(Event.MANUAL_SWITCH_REQUEST, Facts(peer_reachable=False))
    assert machine.state is State.PRIMARY
    assert Action.REQUEST_DISCONTINUE not in step.actions and Action.BECOME_PRIMARY in step.actions


def test_a_manual_switch_requested_on_the_primary_is_refused() -> None:
    machine = SwitchoverStateMachine(state=State.PRIMARY)
    step = machine.handle(Event.MANUAL_SWITCH_REQUEST)
    assert machine.state is State.PRIMARY and step.actions == ()
    assert "request the switch on the backup" in step.verdict


def test_a_primary_receiving_discontinue_goes_inactive() -> None:
    machine = SwitchoverStateMachine()
    machine.handle(Event.PEER_UNREACHABLE_AT_START)
    step = machine.handle(Event.DISCONTINUE_RECEIVED)
    assert machine.state is State.INACTIVE
    assert step.actions == (Action.GO_STALE,)
    assert step.verdict == "Discontinue received: going Inactive (stale)"


def test_a_primary_seeing_a_higher_generation_goes_inactive() -> None:
    machine = SwitchoverStateMachine(state=State.PRIMARY)
    step = machine.handle(Event.HIGHER_GENERATION_SEEN)
    assert machine.state is State.INACTIVE and step.reason == Reason.HIGHER_GENERATION


def test_a_stale_node_rejoins_by_renegotiating_and_becomes_backup() -> None:
    machine = SwitchoverStateMachine(state=State.INACTIVE, starting_up=False)
    step = machine.handle(Event.REJOIN)
    assert machine.state is State.INIT and step.actions == (Action.RENEGOTIATE,)
    assert machine.starting_up
    machine.handle(Event.PEER_IS_PRIMARY)
    assert machine.state is State.BACKUP


def test_module_down_switches_now_with_the_ts_ping_failure_reason() -> None:
    machine = started_backup()
    step = machine.handle(Event.MODULE_DOWN, Facts(peer_reachable=False))
    assert machine.state is State.PRIMARY
    assert step.reason == "TS Ping Failure"
    assert step.verdict == "Module is down, switching now and going to StatePrimary"
    assert step.actions == (Action.BECOME_PRIMARY,)


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ([(Event.MODULE_DOWN, Facts())], "TS Ping Failure"),
        ([(Event.PRIMARY_UNREACHABLE, Facts())], "Primary Unreachable"),
        ([(Event.NOTIFIER_DOWN, Facts(main_up=False, aux_up=False, reconnect_timeout=0))], "Loss of Connection to Notifier"),
        ([(Event.NOTIFIER_DOWN, Facts(main_up=False, aux_up=False)), (Event.RECONNECT_TIMEOUT, Facts())],
         "Reconnect Timeout"),
    ],
)
def test_an_automatic_switch_fences_a_reachable_old_active_before_commencing(
    events: list[tuple[Event, Facts]], reason: str
) -> None:
    """Issue 16: the old active still answers port 3633, so Discontinue goes first (bounded wait),
    and only then become-primary (whose Commence hooks run after the answer)."""
    machine = started_backup()
    for event, facts in events:
        step = machine.handle(event, facts)
    assert machine.state is State.PRIMARY and step.reason == reason
    assert step.actions.index(Action.REQUEST_DISCONTINUE) < step.actions.index(Action.BECOME_PRIMARY)
    assert "asking it to discontinue" in step.verdict


def test_an_automatic_switch_with_the_old_active_unreachable_fences_by_generation_only() -> None:
    machine = started_backup()
    step = machine.handle(Event.PRIMARY_UNREACHABLE, Facts(peer_reachable=False))
    assert machine.state is State.PRIMARY and Action.REQUEST_DISCONTINUE not in step.actions


def test_an_isolated_primary_steps_down_and_renegotiates_when_its_network_returns() -> None:
    machine = SwitchoverStateMachine()
    machine.handle(Event.PEER_UNREACHABLE_AT_START)
    machine.handle(Event.STARTUP_COMPLETE)
    step = machine.handle(Event.ISOLATED)
    assert machine.state is State.STEPPED_DOWN
    assert step.actions == (Action.GO_STALE,)
    assert step.verdict == "isolated from the network and from the backup: stepping down"
    assert step.reason == "Isolated from the Network and from the Backup"
    assert machine.handle(Event.MANUAL_SWITCH_REQUEST).new_state is State.STEPPED_DOWN
    assert machine.handle(Event.ISOLATED).actions == ()  # already stepped down: nothing more
    back = machine.handle(Event.NETWORK_RETURNED)
    assert machine.state is State.INIT and back.actions == (Action.RENEGOTIATE,)
    # the peer took over meanwhile: Backup; it never switched: Primary again
    assert machine.handle(Event.PEER_IS_PRIMARY).new_state is State.BACKUP
    again = SwitchoverStateMachine(state=State.STEPPED_DOWN, starting_up=False)
    again.handle(Event.NETWORK_RETURNED)
    assert again.handle(Event.PEER_IS_BACKUP).new_state is State.PRIMARY


def test_keep_serving_policy_keeps_an_isolated_primary_serving() -> None:
    machine = SwitchoverStateMachine(keep_serving_when_isolated=True, state=State.PRIMARY, starting_up=False)
    step = machine.handle(Event.ISOLATED)
    assert machine.state is State.PRIMARY and step.actions == ()
    assert "keep-serving" in step.verdict


def test_only_a_primary_steps_down() -> None:
    for state in State:
        if state is State.PRIMARY:
            continue
        machine = SwitchoverStateMachine(state=state, starting_up=False)
        assert machine.handle(Event.ISOLATED).new_state is state


def test_a_switch_during_start_up_is_deferred_and_performed_on_startup_complete() -> None:
    machine = SwitchoverStateMachine()
    machine.handle(Event.PEER_IS_PRIMARY)
    deferred = machine.handle(Event.MODULE_DOWN)
    assert machine.state is State.BACKUP
    assert deferred.actions == (Action.SCHEDULE_SWITCH_AFTER_STARTUP,)
    assert machine.pending_switch is Reason.TS_PING_FAILURE

    performed = machine.handle(Event.STARTUP_COMPLETE, Facts(peer_reachable=False))

    assert machine.state is State.PRIMARY and performed.switched
    assert performed.reason == Reason.TS_PING_FAILURE
    assert machine.pending_switch is None and not machine.starting_up


def test_a_reconnect_timeout_during_start_up_is_dropped_when_the_primary_comes_back() -> None:
    machine = SwitchoverStateMachine()
    machine.handle(Event.PEER_IS_PRIMARY)
    machine.handle(Event.NOTIFIER_DOWN)
    machine.handle(Event.RECONNECT_TIMEOUT)
    assert machine.pending_switch is Reason.RECONNECT_TIMEOUT
    step = machine.handle(Event.RECONNECTED)
    assert machine.state is State.BACKUP and machine.pending_switch is None
    assert step.verdict.endswith("(scheduled switch dropped: the primary is back)")
    assert not machine.handle(Event.STARTUP_COMPLETE).switched


def test_a_manual_switch_during_start_up_survives_a_reconnect() -> None:
    machine = SwitchoverStateMachine()
    machine.handle(Event.PEER_IS_PRIMARY)
    machine.handle(Event.NOTIFIER_DOWN)
    machine.handle(Event.MANUAL_SWITCH_REQUEST)
    machine.handle(Event.RECONNECTED)
    assert machine.pending_switch is Reason.MANUAL
    step = machine.handle(Event.STARTUP_COMPLETE)
    assert step.switched and step.reason == Reason.MANUAL
    assert Action.REQUEST_DISCONTINUE in step.actions


def test_module_down_with_manual_switch_only_does_not_switch() -> None:
    machine = started_backup(manual_switch_only=True)
    step = machine.handle(Event.MODULE_DOWN)
    assert not step.switched
    assert machine.state is State.STOPPING and step.actions == (Action.HALT,)
    assert "NOT switching" in step.verdict


def test_manual_switch_only_never_switches_automatically_through_a_whole_outage() -> None:
    machine = started_backup(manual_switch_only=True)
    steps = [
        machine.handle(Event.NOTIFIER_DOWN, Facts(main_up=False, aux_up=False, reconnect_timeout=0)),
        machine.handle(Event.PRIMARY_UNREACHABLE, Facts(reconnect_timeout=0)),
        machine.handle(Event.RECONNECT_TIMEOUT),
        machine.handle(Event.RECONNECT_TIMEOUT),
    ]
    assert not any(step.switched for step in steps)
    assert machine.state is State.RECONNECTING
    assert steps[2].verdict == (
        "Reconnect period expired but manual switch only: NOT switching, staying in StateReconnecting"
    )
    assert machine.handle(Event.MANUAL_SWITCH_REQUEST).switched


def test_a_backup_whose_own_network_is_down_stays_reconnecting_and_switches_once_it_is_back() -> None:
    machine = started_backup()
    step = machine.handle(Event.NETWORK_DOWN, Facts(network_ok=False))
    assert machine.state is State.RECONNECTING and Action.START_RECONNECT_TIMER in step.actions
    for _ in range(3):
        step = machine.handle(Event.RECONNECT_TIMEOUT, Facts(network_ok=False))
        assert not step.switched and machine.state is State.RECONNECTING
        assert step.actions == (Action.CHECK_NETWORK,)
        step = machine.handle(Event.NETWORK_STILL_DOWN, Facts(network_ok=False))
        assert not step.switched and machine.state is State.RECONNECTING
        assert step.verdict == "Backup's own network is down: staying Reconnecting, will not switch".replace(
            "is down", "is still down"
        )
        assert step.actions == (Action.START_RECONNECT_TIMER,)
    step = machine.handle(Event.RECONNECT_TIMEOUT, Facts(network_ok=True))
    assert step.switched and step.reason == Reason.RECONNECT_TIMEOUT


def test_the_network_recheck_at_reconnect_expiry_is_a_decision_of_the_table() -> None:
    # Before issue 9 the supervisor built this step by hand; now check-network is an action and its
    # answer an event with rows: network back -> a fresh reconnect period, never a switch at once.
    machine = started_backup()
    machine.handle(Event.NETWORK_DOWN, Facts(network_ok=False))
    step = machine.handle(Event.RECONNECT_TIMEOUT, Facts(network_ok=False))
    assert step.actions == (Action.CHECK_NETWORK,) and "checking it again" in step.verdict
    step = machine.handle(Event.NETWORK_RECOVERED, Facts(network_ok=True))
    assert (step.new_state, step.actions, step.switched) == (State.RECONNECTING, (Action.START_RECONNECT_TIMER,), False)
    assert "fresh reconnect period" in step.verdict
    # outside Reconnecting the answer of a check that is no longer wanted changes nothing
    backup = started_backup()
    for event in (Event.NETWORK_RECOVERED, Event.NETWORK_STILL_DOWN):
        step = backup.handle(event, Facts())
        assert step.actions == () and backup.state is State.BACKUP


@pytest.mark.parametrize(
    ("local", "peer", "expected"),
    [
        ("1.0.0", "1.0.0", Release.SAME),
        ("1.0.0", "", Release.SAME),
        ("1.10.0", "1.9.2", Release.HIGHER),
        ("1.9.2", "1.10.0", Release.LOWER),
        ("2.0", "2.0.1", Release.LOWER),
        ("2.0-rc1", "2.0-1", Release.HIGHER),
        ("2024.1", "2024.a", Release.LOWER),
    ],
)
def test_compare_release_orders_numeric_parts_as_numbers(local: str, peer: str, expected: Release) -> None:
    assert compare_release(local, peer) is expected


def test_module_down_while_the_own_network_is_down_does_not_switch() -> None:
    machine = started_backup()
    step = machine.handle(Event.MODULE_DOWN, Facts(network_ok=False))
    assert not step.switched and machine.state is State.RECONNECTING


def test_notifier_down_goes_reconnecting_and_a_reconnect_resynchronises() -> None:
    machine = started_backup()
    step = machine.handle(Event.NOTIFIER_DOWN, Facts(main_up=False, aux_up=False))
    assert step.verdict == "Notifier is down on both connections: going to StateReconnecting"
    assert step.actions == (Action.STOP_MONITORS, Action.START_RECONNECT_TIMER)
    step = machine.handle(Event.RECONNECTED)
    assert machine.state is State.BACKUP
    assert step.actions == (Action.CANCEL_RECONNECT_TIMER, Action.RESYNC, Action.START_MONITORS)


def test_notifier_down_with_a_zero_reconnect_timeout_switches_at_once() -> None:
    machine = started_backup()
    step = machine.handle(Event.NOTIFIER_DOWN, Facts(reconnect_timeout=0))
    assert step.switched and step.reason == "Loss of Connection to Notifier"


def test_network_down_with_a_zero_reconnect_timeout_still_does_not_switch() -> None:
    machine = started_backup()
    step = machine.handle(Event.NETWORK_DOWN, Facts(network_ok=False, reconnect_timeout=0))
    assert not step.switched and machine.state is State.RECONNECTING


def test_reconnect_timeout_switches_with_the_spec_wording() -> None:
    machine = started_backup()
    machine.handle(Event.NOTIFIER_DOWN, Facts(main_up=False, aux_up=False))
    step = machine.handle(Event.RECONNECT_TIMEOUT, Facts(peer_reachable=False))
    assert machine.state is State.PRIMARY
    assert step.verdict == (
        "Reconnect period expired: lost connections to the primary, going to StatePrimary and switching now"
    )
    assert step.reason == "Reconnect Timeout"


def test_a_halted_manual_mode_backup_resumes_with_rejoin() -> None:
    machine = started_backup(manual_switch_only=True)
    machine.handle(Event.MODULE_DOWN)
    assert machine.state is State.STOPPING
    assert not machine.handle(Event.MANUAL_SWITCH_REQUEST).switched
    assert machine.handle(Event.REJOIN).new_state is State.INIT
    machine.handle(Event.PEER_IS_PRIMARY)
    assert machine.state is State.BACKUP


def test_rejoin_is_refused_once_shutting_down() -> None:
    machine = started_backup()
    machine.handle(Event.STOP)
    step = machine.handle(Event.REJOIN)
    assert machine.state is State.STOPPING and step.verdict == "Rejoin refused: shutting down"


def test_a_primary_that_stops_runs_its_discontinue_hooks_before_shutting_down() -> None:
    machine = SwitchoverStateMachine(state=State.PRIMARY)
    step = machine.handle(Event.STOP)
    assert step.actions == (Action.GO_STALE, Action.SHUT_DOWN) and step.reason == Reason.SHUTDOWN


def test_supervisor_escalation_puts_a_backup_in_error_and_rejoin_recovers_it() -> None:
    machine = started_backup()
    step = machine.handle(Event.FATAL_ERROR)
    assert machine.state is State.ERROR and step.actions == (Action.HALT,)
    assert machine.handle(Event.REJOIN).new_state is State.INIT


def test_events_can_be_posted_by_their_wire_names() -> None:
    machine = SwitchoverStateMachine()
    step = machine.handle("peer-unreachable-at-start")
    assert step.new_state is State.PRIMARY


def test_rows_for_an_undeclared_pair_is_empty() -> None:
    assert rows_for(State.ERROR, Event.MODULE_DOWN) == ()


def test_a_home_that_is_not_a_backup_role_is_rejected() -> None:
    with pytest.raises(ValueError, match="home must be one of"):
        SwitchoverStateMachine(home=State.PRIMARY)


# ---------------------------------------------------------------------------------------------------------
# Start-up negotiation and fencing rank
# ---------------------------------------------------------------------------------------------------------


def test_negotiation_with_a_primary_peer_becomes_backup() -> None:
    decision = negotiate_startup_role(5, State.PRIMARY, 7, True, False)
    assert decision.event is Event.PEER_IS_PRIMARY
    assert "starting as backup" in decision.verdict


def test_negotiation_with_an_unreachable_peer_is_fail_safe_primary() -> None:
    decision = negotiate_startup_role(0, None, 0, False, False)
    assert decision.event is Event.PEER_UNREACHABLE_AT_START and "starting as primary" in decision.verdict


def test_negotiation_with_an_unreachable_peer_and_force_backup_waits() -> None:
    decision = negotiate_startup_role(0, None, 0, True, True)
    machine = SwitchoverStateMachine(force_backup=True)
    assert "waiting for a primary" in decision.verdict
    assert machine.handle(decision.event).new_state is State.INIT


@pytest.mark.parametrize("peer_state", [State.BACKUP, State.RECONNECTING, State.INACTIVE, State.ERROR])
def test_negotiation_with_a_peer_that_is_up_but_not_primary_reports_peer_is_backup(peer_state: State) -> None:
    assert negotiate_startup_role(1, peer_state, 1, False, False).event is Event.PEER_IS_BACKUP


@pytest.mark.parametrize(
    ("local_gen", "peer_gen", "local_is_a", "force", "peer_force", "won"),
    [
        (4, 3, False, False, False, True),  # higher generation wins
        (3, 4, True, False, False, False),  # lower generation loses even as server A
        (4, 4, True, False, False, True),  # tie: server A wins
        (4, 4, False, False, False, False),  # tie: server B loses
        (9, 1, True, True, False, False),  # force backup never wins
        (1, 9, False, False, True, True),  # a force-backup peer always lets us win
    ],
)
def test_a_startup_tie_is_won_by_generation_then_by_server_a(
    local_gen: int, peer_gen: int, local_is_a: bool, force: bool, peer_force: bool, won: bool
) -> None:
    decision = negotiate_startup_role(
        local_gen, State.INIT, peer_gen, local_is_a, force, peer_force_backup=peer_force
    )
    assert decision.event is Event.STARTUP_TIE and decision.won_tie is won
    machine = SwitchoverStateMachine(force_backup=force)
    step = machine.handle(decision.event, Facts(won_startup_tie=decision.won_tie))
    assert step.new_state is (State.PRIMARY if won else State.INIT)


def test_exactly_one_of_two_starting_nodes_wins_the_tie() -> None:
    for gen_a, gen_b in itertools.product(range(3), repeat=2):
        a = negotiate_startup_role(gen_a, State.INIT, gen_b, True, False).won_tie
        b = negotiate_startup_role(gen_b, State.INIT, gen_a, False, False).won_tie
        assert a != b, (gen_a, gen_b)


def test_a_higher_generation_outranks_and_server_a_breaks_a_tie() -> None:
    assert outranks(5, False, 4, True)
    assert not outranks(4, True, 5, False)
    assert outranks(5, True, 5, False)
    assert not outranks(5, False, 5, True)
    assert not outranks(5, True, 5, True)


def test_primary_unreachable_after_the_ping_sets_switches_with_its_own_reason() -> None:
    machine = started_backup()
    step = machine.handle(Event.PRIMARY_UNREACHABLE)
    assert step.switched and machine.state is State.PRIMARY
    assert step.reason == Reason.PRIMARY_UNREACHABLE


def test_primary_unreachable_with_the_backups_own_network_down_does_not_switch() -> None:
    machine = started_backup()
    step = machine.handle(Event.PRIMARY_UNREACHABLE, Facts(network_ok=False))
    assert not step.switched and machine.state is State.RECONNECTING
