"""The Primary Monitor's diagnosis (spec lines 387-397 and 673-684) as small composed steps, pure.

Each step is a generator that *yields* what it needs done (an ICMP echo, a ping to the module or to the
Notifier through one connection, a pause) and receives the answer; it has no clock, no I/O and no state
of its own, so each is tested on its own with scripted answers, and :class:`PrimaryMonitorLogic` runs
the composition in (virtual) time:

1. :func:`confirm`: confirmation pings over whatever connection is up (the module after MODULE_DOWN,
   the Notifier after failed notifier pings); an answer means no error.
2. :func:`actors.monitoring.local_network.check_local_network`: the backup's own network (gateway,
   NetTest), the one rule shared with the supervisor's re-check.
3. :func:`primary_sets`: the primary's address in ping sets (Unreachable Primary Ping Count/Delay).
4. :func:`final_check`: with the connection status as it is now, one more notifier ping when only
   one connection is up after MODULE_DOWN, then :func:`decide` (the decision list).

:func:`diagnose` composes them (and the shortcut for a module that keeps restarting).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from loguru import logger

from actors.monitoring.local_network import (
    Icmp,
    LocalChecks,
    NetworkStatus,
    check_local_network,
    local_network_ok,
)
from actors.monitoring.module_monitor_logic import ModuleDown, ModuleDownReason
from actors.monitoring.monitor_params import PrimaryMonitorParams
from actors.monitoring.ping import Connection, PingResult, PingResultKind

log = logger.bind(topic="PrimaryMonitor")


class ConnectionStatus(StrEnum):
    BOTH_UP = "both connections are up"
    MAIN_ONLY = "the main connection is up (auxiliary connection is down)"
    AUX_ONLY = "the auxiliary connection is up (main connection is down)"
    BOTH_DOWN = "both connections are down"

    @classmethod
    def of(cls, main_up: bool, aux_up: bool) -> ConnectionStatus:
        if main_up and aux_up:
            return cls.BOTH_UP
        if main_up:
            return cls.MAIN_ONLY
        if aux_up:
            return cls.AUX_ONLY
        return cls.BOTH_DOWN

    @property
    def main_up(self) -> bool:
        return self in (ConnectionStatus.BOTH_UP, ConnectionStatus.MAIN_ONLY)

    @property
    def aux_up(self) -> bool:
        return self in (ConnectionStatus.BOTH_UP, ConnectionStatus.AUX_ONLY)

    @property
    def up_connections(self) -> tuple[Connection, ...]:
        return tuple(c for c, up in ((Connection.MAIN, self.main_up), (Connection.AUX, self.aux_up)) if up)


class Trigger(StrEnum):
    NOTIFIER_PING = "notifier ping failures"
    MODULE_MONITOR = "module monitor MODULE_DOWN"


class Outcome(StrEnum):
    NO_ERROR = "no error"
    NETWORK_DOWN = "network down"
    NOTIFIER_DOWN = "notifier down"
    PRIMARY_UNREACHABLE = "primary unreachable"
    MODULE_DOWN = "monitored module down"


@dataclass(frozen=True)
class Diagnosis:
    """Everything the Primary Monitor found, in the order it found it."""

    trigger: Trigger
    connection_status: ConnectionStatus
    network_steps: tuple[NetworkStatus, ...]
    outcome: Outcome
    started_at: float
    finished_at: float
    confirmation: PingResultKind | None = None  # last confirmation ping result (None: not attempted)
    notifier_alive: bool | None = None  # one-connection case after MODULE_DOWN
    primary_ping_sets: int = 0
    module_event: ModuleDown | None = None

    @property
    def network_status(self) -> NetworkStatus:
        """The decisive network status: the first failed step, else the last step."""
        return decisive_network_status(self.network_steps)

    @property
    def network_ok(self) -> bool:
        return all(s.good for s in self.network_steps)

    @property
    def local_network_ok(self) -> bool:
        """The backup's own network (gateway / NetTest), the state machine's ``Facts.network_ok``."""
        return local_network_ok(self.network_steps)

    @property
    def main_up(self) -> bool:
        return self.connection_status.main_up

    @property
    def aux_up(self) -> bool:
        return self.connection_status.aux_up


def decisive_network_status(steps: Sequence[NetworkStatus]) -> NetworkStatus:
    """The first failed step, else the last step (``NotChecked`` when there is none)."""
    for status in steps:
        if not status.good:
            return status
    return steps[-1] if steps else NetworkStatus.NOT_CHECKED


def decide(
    trigger: Trigger,
    connection_status: ConnectionStatus,
    network_steps: Sequence[NetworkStatus],
    *,
    notifier_alive: bool | None = None,
) -> Outcome:
    """The decision list (spec lines 673-684), for a failed confirmation; see the module docstring."""
    local_failed = not local_network_ok(network_steps)
    primary_reachable = NetworkStatus.PRIMARY_UNREACHABLE not in network_steps
    if local_failed or not primary_reachable:  # Network NOT OK
        if primary_reachable:
            return Outcome.NOTIFIER_DOWN
        return Outcome.NETWORK_DOWN if local_failed else Outcome.PRIMARY_UNREACHABLE
    if connection_status is ConnectionStatus.BOTH_DOWN:
        return Outcome.NOTIFIER_DOWN
    if trigger is Trigger.MODULE_MONITOR:
        if connection_status is ConnectionStatus.BOTH_UP or notifier_alive:
            return Outcome.MODULE_DOWN
        return Outcome.NOTIFIER_DOWN
    return Outcome.NOTIFIER_DOWN


# --------------------------------------------------------------------------------------------------
# What the steps yield
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModulePing:
    connection: Connection
    timeout: float


@dataclass(frozen=True)
class NotifierPing:
    connection: Connection
    timeout: float


@dataclass(frozen=True)
class Sleep:
    seconds: float


Op = Icmp | ModulePing | NotifierPing | Sleep
Step = Generator[Op, object, object]


# --------------------------------------------------------------------------------------------------
# The steps
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Confirmation:
    answered: bool
    last: PingResultKind | None  # the last confirmation ping's result (None: none sent)


def confirm(
    trigger: Trigger, conn: ConnectionStatus, module_name: str, count: int, timeout: float
) -> Generator[Op, object, Confirmation]:
    """Step 1: up to ``count`` pings to the module (after MODULE_DOWN) on main, or aux when main is
    down; or one notifier ping per connection that is up. Nothing when both are down."""
    last: PingResultKind | None = None
    if conn is ConnectionStatus.BOTH_DOWN:
        return Confirmation(False, None)
    if trigger is Trigger.MODULE_MONITOR:
        via = Connection.MAIN if conn.main_up else Connection.AUX
        log.info(
            "ping_monitored_module : Sending up to {} ping(s) to the {} module using the {} connection",
            count, module_name, via,
        )
        for _ in range(count):
            answer = yield ModulePing(via, timeout)
            assert isinstance(answer, PingResult)
            last = answer.kind
            if answer.has_pid:
                log.info(
                    "ping_monitored_module : Received a reply from the {} module (pid {}) on the {} "
                    "connection: the module is up, no error",
                    module_name, answer.pid, via,
                )
                return Confirmation(True, last)
        log.warning(
            "ping_monitored_module : Did not receive a reply from the {} module after {} ping(s) on the "
            "{} connection",
            module_name, count, via,
        )
        log.warning(
            "process_module_monitor_event : Failed to ping the [{}] module, checking connections", module_name
        )
        return Confirmation(False, last)
    for via in conn.up_connections:
        answer = yield NotifierPing(via, timeout)
        assert isinstance(answer, PingResult)
        last = answer.kind
        if answer.kind is PingResultKind.OK:
            log.info("The notifier on the primary answered on the {} connection: no error, resuming", via)
            return Confirmation(True, last)
    log.warning(
        "The notifier on the primary did not answer on the {} connection(s), checking the network",
        "/".join(conn.up_connections),
    )
    return Confirmation(False, last)


@dataclass(frozen=True)
class PrimarySets:
    status: NetworkStatus
    sets: int


def primary_sets(
    address: str | None, extra_sets: int | None, pings_per_set: int, timeout: float, delay: float
) -> Generator[Op, object, PrimarySets]:
    """Step 3: ping sets to the primary's address, ``extra_sets`` more after the first (``None`` =
    until it answers), ``delay`` apart; stop at the first answer."""
    if address is None:
        log.warning(
            "check_primary_address : The primary's address is not known, setting network connection status "
            "to 'PrimaryAddressUnknown'"
        )
        return PrimarySets(NetworkStatus.PRIMARY_ADDRESS_UNKNOWN, 0)
    sets = 0
    while True:
        sets += 1
        for _ in range(pings_per_set):
            if (yield Icmp(address, timeout)):
                log.info(
                    "check_primary_address : Successfully pinged primary address [{}], setting network "
                    "connection status to 'PrimaryReached'",
                    address,
                )
                return PrimarySets(NetworkStatus.PRIMARY_REACHED, sets)
        if extra_sets is not None and sets > extra_sets:
            log.error(
                "check_primary_address : No reply from primary address [{}] after {} ping set(s), setting "
                "network connection status to 'PrimaryUnreachable'",
                address, sets,
            )
            return PrimarySets(NetworkStatus.PRIMARY_UNREACHABLE, sets)
        log.warning(
            "check_primary_address : No reply from primary address [{}] (ping set {} of {}), next ping "
            "set in {:g} s",
            address, sets, "unlimited" if extra_sets is None else extra_sets + 1, delay,
        )
        yield Sleep(delay)


@dataclass(frozen=True)
class FinalCheck:
    outcome: Outcome
    connection_status: ConnectionStatus
    notifier_alive: bool | None


def final_check(
    trigger: Trigger,
    before: ConnectionStatus,
    now: ConnectionStatus,
    steps: Sequence[NetworkStatus],
    timeout: float,
) -> Generator[Op, object, FinalCheck]:
    """Step 4: with the connection status as it is ``now``, after MODULE_DOWN with only one connection
    up and the network fine, ask the Notifier on that connection; then the decision list."""
    if now is not before:
        log.info("Connection status changed during the diagnosis: {} -> {}", before.value, now.value)
    notifier_alive: bool | None = None
    network_ok = all(s.good for s in steps)
    if network_ok and trigger is Trigger.MODULE_MONITOR and now in (ConnectionStatus.MAIN_ONLY, ConnectionStatus.AUX_ONLY):
        via = now.up_connections[0]
        answer = yield NotifierPing(via, timeout)
        assert isinstance(answer, PingResult)
        notifier_alive = answer.kind is PingResultKind.OK
        log.info(
            "Only the {} connection is up; the notifier on the primary {} on it",
            via, "answers" if notifier_alive else "does not answer",
        )
    outcome = decide(trigger, now, steps, notifier_alive=notifier_alive)
    log.info(
        "detect_and_signal_connection_status : trigger [{}], {}, network connection status [{}]: {}",
        trigger.value, now.value, decisive_network_status(steps).phrase, outcome.value,
    )
    return FinalCheck(outcome, now, notifier_alive)


def diagnose(
    trigger: Trigger,
    module_event: ModuleDown | None,
    params: PrimaryMonitorParams,
    *,
    now: Callable[[], float],
    connection_status: Callable[[], ConnectionStatus],
    local_checks: LocalChecks,
    primary_address: Callable[[], str | None],
) -> Generator[Op, object, Diagnosis]:
    """The whole diagnosis: the steps above in order; returns what it found."""
    name = params.module.module_name
    started = now()
    conn = connection_status()
    if module_event is not None:
        log.warning(
            "process_module_monitor_event : module monitor indicated the [{}] module is not responding "
            "({}), {}",
            name, module_event.reason, conn.value,
        )
        if module_event.reason is not ModuleDownReason.PING_FAILURES:
            # it answers, it just keeps restarting: no confirmation, no network checks
            log.error(
                "detect_and_signal_connection_status : the [{}] module answers but is restarting too "
                "frequently ({}), signaling the module is down",
                name, module_event.detail,
            )
            return Diagnosis(trigger, conn, (NetworkStatus.NOT_CHECKED,), Outcome.MODULE_DOWN, started, now(),
                             module_event=module_event)
    else:
        log.warning("The notifier on the primary does not answer, {}, checking connections", conn.value)

    confirmation = yield from confirm(trigger, conn, name, params.module.max_failures, params.timeout)
    if confirmation.answered:
        return Diagnosis(trigger, conn, (), Outcome.NO_ERROR, started, now(), confirmation.last,
                         module_event=module_event)
    steps = yield from check_local_network(local_checks)
    extra = params.extra_unreachable_ping_sets if local_network_ok(steps) else 0
    primary = yield from primary_sets(
        primary_address(), extra, params.primary_pings_per_set, params.nettest_timeout,
        params.unreachable_primary_ping_delay,
    )
    steps.append(primary.status)
    final = yield from final_check(trigger, conn, connection_status(), steps, params.timeout)
    return Diagnosis(trigger, final.connection_status, tuple(steps), final.outcome, started, now(),
                     confirmation.last, final.notifier_alive, primary.sets, module_event)
