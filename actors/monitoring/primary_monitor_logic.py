"""Primary Monitor decision logic (spec "Primary Monitor", lines 522-734): pure, in virtual time.

On the backup, the Primary Monitor

* pings the Notifier on the primary every ``Switchover Primary Monitor Ping Delay``;
* receives the Module Monitor's events, tracks the time since the last one and restarts a Module
  Monitor that went silent (:meth:`PrimaryMonitorLogic.check_module_monitor_liveness`);
* when its pings are not answered, or when the Module Monitor signals MODULE_DOWN, stops the Module
  Monitor, diagnoses the **connection status** and the **network status** and posts one of
  :class:`NetworkDown`, :class:`NotifierDown`, :class:`PrimaryUnreachable`, :class:`MonitoredModuleDown`
  to the state machine (or :class:`NoError`, after which it restarts the Module Monitor and goes on).

No I/O, no threads, no clock reads of its own: it is handed a :class:`~actors.runtime.clock.Clock`, a
:class:`NotifierLink` (pings to the remote Notifier and the connections' "connected" state), a
:class:`~actors.monitoring.module_monitor_logic.ModulePingLink` (confirmation pings to the module), a
:class:`Pinger` (ICMP echo; :class:`transport.icmp.IcmpPinger` in production), a
:class:`ModuleMonitorControl` and a ``post`` callback. Every callback it receives (timers, ping results)
must arrive on the thread that owns it; the actor turns each into a message to itself. The
:class:`Pinger` is asynchronous (a callback, not a return value) so that the whole diagnosis, ICMP
included, runs in virtual time under :class:`~actors.runtime.clock.FakeClock`.

Notifier ping cadence (parameter table, defaults in brackets)
-------------------------------------------------------------
* ``Ping Delay`` [0, max 300] between a reply and the next ping. **0 means 1 s** here (resolved by
  the catalog, :meth:`replication.params.ServerParams.primary_monitor_ping_delay`): pinging back to
  back would flood the link.
* ``Primary Monitor Timeout`` [0, max 300]; 0 means half the module timeout (TS or IP Timeout).
* After a timeout or a *rejected* reply, up to ``Retry Count`` [2, 1-50] retry pings are sent,
  ``Retry Ping Delay`` [0, 0-300] apart; when the last one fails the diagnosis starts. A reply resets
  the retry count.
* *Connection loss*: if the main connection is still up (a momentary drop, or the auxiliary connection
  went down) a standard ping is sent (after the retry ping delay); at most ``Retry Count`` such
  standard pings in a row, then it counts as a failed retry, so a flapping link cannot loop forever.
  If the main connection is down, a retry ping is sent.
* *Cancelled*: nothing (the monitor itself cancels its pings when it stops).
* Pings go out on the main connection when it is connected, else on the auxiliary one.

Diagnosis (the order of the specification's log sample, lines 387-397)
----------------------------------------------------------------------
1. **Connection status** from the links' "connected" state: both up, main only, aux only, both down.
2. **Confirmation** while at least one connection is up. After MODULE_DOWN: up to ``Max TS Failures``
   pings to the module on the main connection (aux if main is down), back to back, each with the
   Primary Monitor timeout ("Sending up to 2 ping(s) to the TsServer module using the main
   connection"). After failed notifier pings: one notifier ping on each connection that is up. An
   answer means **no error** ("the module is considered to be up"): :class:`NoError` is posted, the
   Module Monitor is restarted and pinging resumes. A MODULE_DOWN caused by *restarts* skips this step
   (the module answers, it just keeps restarting) and the network checks: it is posted at once.
3. **Local network**: gateways when ``Switchover Disable Gateway Ping`` is No (all gateways, one echo
   each, stop at the first answer: GatewayReached / GatewayUnreachable); then, unless the gateways
   were unreachable, the NetTest addresses (``Switchover NetTest A`` on server A, ``B`` on server B;
   several may be given separated by ``;`` or ``,``; NetTestReached / NetTestUnreachable /
   NetTestUnavailable). All ICMP echoes here use ``Switchover NetTest Timeout`` [1 s].
   *Interpretation*: the prose says "once any step is taken ... no further steps", but the log sample
   checks the NetTest after the gateway was reached, and the NetTest exists to catch a WAN cut that a
   reachable local gateway cannot reveal; so the NetTest is skipped only when the gateway already
   failed.
4. **Primary address** ("throughout the entire process"): a *ping set* of
   ``primary_pings_per_set`` [3] echoes, stop at the first answer. If the primary does not answer and
   the local network is fine, more sets follow ``Switchover Unreachable Primary Ping Delay`` [10 s]
   after the previous one failed: ``Unreachable Primary Ping Count`` unset -> none ("the default is to
   switch over immediately"); 0..3 -> 3 more sets; N > 3 -> N more sets; -1 -> sets forever, nothing
   is posted until the primary answers. If the local network already failed, only one set is sent.
   If the primary's address is unknown (resolver returns ``None``) the status is
   ``PrimaryAddressUnknown`` and the primary counts as reachable (nothing proves otherwise).
5. **Decision** (:func:`decide`, spec lines 673-684), the connection status read again:

   ================================  ===================================================
   Network NOT OK (a failed step)
   - primary reachable               NotifierDown
   - primary unreachable, local net  NetworkDown   (gateway / NetTest unreachable: no switch)
     failed
   - primary unreachable, local net  PrimaryUnreachable
     fine
   Network OK
   - both connections down           NotifierDown
   - both up, after MODULE_DOWN      MonitoredModuleDown (the confirmation pings failed)
   - both up, after notifier pings   NotifierDown (the Notifier itself does not answer)
   - main only / aux only, after     one notifier ping on the connection that is up: answered ->
     MODULE_DOWN                     MonitoredModuleDown (the path to the primary works, the module
                                     does not); not answered -> NotifierDown
   - main only / aux only, after     NotifierDown (state machine: reconnect, at least one up)
     notifier pings
   ================================  ===================================================

After posting, the monitor stays idle (Module Monitor stopped, no pings) until the state machine
stops and restarts it. :meth:`PrimaryMonitorLogic.start` starts the Module Monitor and
:meth:`~PrimaryMonitorLogic.stop` stops it, so the owner only drives the Primary Monitor.

Module Monitor liveness
-----------------------
Every Module Monitor event resets the "last event" time. The maximum silence is derived from the
module parameters (:meth:`PrimaryMonitorParams.module_monitor_max_silence`)::

    interval + 2 * max_failures * (timeout + retry_delay) + timeout

i.e. the longest legitimate gap from a SYSTEM_OK through a full main-then-aux failure sequence
(10 + 4 * 11 + 10 = 64 s with the defaults), plus one timeout of slack. Tracking is suspended while
the Primary Monitor is stopped (reconnecting), diagnosing, or idle after posting, and resumes with a
fresh start time. A stall is logged ("SelfMonitor - Detected ModuleMonitor thread stop"), returned as
:class:`ModuleMonitorStalled`, and the restart is *requested*: the ping scheduler performs it at its
next tick and sends no ping in that tick (spec: "this method will identify those requests and restart
the module monitor ... performs no other processing after the restart").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import ClassVar, Literal, Protocol

from loguru import logger

from actors.monitoring.local_network import (
    Icmp,
    LocalChecks,
    NetworkStatus,
    check_local_network,
    clean_addresses,
    local_network_ok,
)
from actors.monitoring.module_monitor_logic import (
    Cancellable,
    Connection,
    ModuleDown,
    ModuleDownReason,
    ModuleEvent,
    ModuleMonitorParams,
    ModulePingLink,
    PingResult,
    PingResultKind,
)
from actors.runtime.clock import Clock, Timer

log = logger.bind(topic="PrimaryMonitor")
MAIN_RECHECK_INTERVAL = 5.0  # seconds between side pings on main while notifier pings go on aux
selflog = logger.bind(topic="SelfMonitor")

ICMP_GUARD_GRACE = 1.0
"""A pinger that has not answered ``timeout + ICMP_GUARD_GRACE`` seconds after the echo counts as a miss."""


# --------------------------------------------------------------------------------------------------
# Injected interfaces
# --------------------------------------------------------------------------------------------------


class NotifierLink(Protocol):
    """The two notifier connections to the primary, as the Primary Monitor needs them."""

    def is_connected(self, connection: Connection) -> bool:
        """The connection's current "connected" state."""
        ...

    def ping_notifier(
        self, connection: Connection, timeout: float, on_result: Callable[[PingResult], None]
    ) -> Cancellable | None:
        """Ping the Notifier itself; ``on_result`` once (OK, timeout, rejected, connection lost,
        cancelled), possibly synchronously. The logic also enforces ``timeout`` with its own timer."""
        ...


class Pinger(Protocol):
    """ICMP echo. ``on_result(True)`` when ``address`` answered within ``timeout`` seconds.

    Asynchronous on purpose: the real pinger answers from a worker thread (the actor marshals the
    callback), a fake one answers through the fake clock. A pinger that never calls back is treated
    as "no answer" after ``timeout + ICMP_GUARD_GRACE``.
    """

    def ping(self, address: str, timeout: float, on_result: Callable[[bool], None]) -> None: ...


class ModuleMonitorControl(Protocol):
    def start_module_monitor(self) -> None: ...

    def stop_module_monitor(self) -> None: ...


# --------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrimaryMonitorParams:
    """The Primary Monitor's parameters as the catalog resolved them (seconds as floats); ``module``
    holds the Module Monitor's. Built by :func:`actors.monitoring.monitor_params.primary_monitor_params`
    from :class:`replication.params.ServerParams`; special values are already resolved there
    (``ping_delay`` 0 = 1 s, ``timeout`` 0 = half the module timeout, ``extra_unreachable_ping_sets``:
    ``None`` = unlimited, 0 = switch at once).
    """

    module: ModuleMonitorParams = field(default_factory=ModuleMonitorParams)
    ping_delay: float = 1.0
    timeout: float = 5.0
    retry_count: int = 2
    retry_ping_delay: float = 0.0
    disable_gateway_ping: bool = True
    nettest_a: str = ""
    nettest_b: str = ""
    this_server: Literal["A", "B"] = "A"
    nettest_timeout: float = 1.0
    extra_unreachable_ping_sets: int | None = 0
    unreachable_primary_ping_delay: float = 10.0
    primary_pings_per_set: int = 3

    def __post_init__(self) -> None:
        if self.this_server not in ("A", "B"):
            raise ValueError(f"this_server must be 'A' or 'B' (got {self.this_server!r})")

    @property
    def nettest_addresses(self) -> tuple[str, ...]:
        return nettest_addresses(self.nettest_a if self.this_server == "A" else self.nettest_b)

    @property
    def module_monitor_max_silence(self) -> float:
        m = self.module
        return m.interval + 2 * m.max_failures * (m.ping_timeout + m.retry_delay) + m.ping_timeout

    def with_module(self, module: ModuleMonitorParams) -> PrimaryMonitorParams:
        return replace(self, module=module)


def nettest_addresses(text: str) -> tuple[str, ...]:
    """``Switchover NetTest A``/``B`` may name several hosts separated by ';', ',' or spaces."""
    return tuple(a for a in re.split(r"[;,\s]+", text.strip()) if a)


# --------------------------------------------------------------------------------------------------
# Status values, diagnosis and events
# --------------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class _PrimaryMonitorEvent:
    diagnosis: Diagnosis
    at: float
    state_machine_event: ClassVar[str] = ""
    log_event: ClassVar[str] = ""

    @property
    def connection_status(self) -> ConnectionStatus:
        return self.diagnosis.connection_status

    @property
    def network_status(self) -> NetworkStatus:
        return self.diagnosis.network_status


@dataclass(frozen=True)
class NetworkDown(_PrimaryMonitorEvent):
    """The backup's own network is down (gateway or NetTest unreachable, primary too): no switch."""

    state_machine_event: ClassVar[str] = "network-down"
    log_event: ClassVar[str] = "eNetworkDown"


@dataclass(frozen=True)
class NotifierDown(_PrimaryMonitorEvent):
    """The remote Notifier (or the connections to it) is down while the primary is reachable."""

    state_machine_event: ClassVar[str] = "notifier-down"
    log_event: ClassVar[str] = "eNotifierDown"


@dataclass(frozen=True)
class PrimaryUnreachable(_PrimaryMonitorEvent):
    """The primary's host does not answer ICMP although the backup's network is fine."""

    state_machine_event: ClassVar[str] = "primary-unreachable"
    log_event: ClassVar[str] = "ePrimaryUnreachable"


@dataclass(frozen=True)
class MonitoredModuleDown(_PrimaryMonitorEvent):
    """The network and connections are good and the module does not answer: switch."""

    module_name: str = "TsServer"
    state_machine_event: ClassVar[str] = "module-down"
    log_event: ClassVar[str] = "eTSDown"


@dataclass(frozen=True)
class NoError(_PrimaryMonitorEvent):
    """The confirmation pings were answered: nothing to do (the state machine may ignore it)."""

    state_machine_event: ClassVar[str] = ""
    log_event: ClassVar[str] = ""


PrimaryMonitorEvent = NetworkDown | NotifierDown | PrimaryUnreachable | MonitoredModuleDown | NoError


@dataclass(frozen=True)
class ModuleMonitorStalled:
    """The Module Monitor has been silent for longer than allowed; a restart has been requested."""

    silent_for: float
    max_silence: float
    at: float


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
# Diagnosis operations (what the diagnosis generator yields)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Icmp:
    address: str
    timeout: float


@dataclass(frozen=True)
class _ModulePing:
    connection: Connection
    timeout: float


@dataclass(frozen=True)
class _NotifierPing:
    connection: Connection
    timeout: float


@dataclass(frozen=True)
class _Sleep:
    seconds: float


_Op = Icmp | _ModulePing | _NotifierPing | _Sleep
_Diag = Generator[_Op, object, Diagnosis]


@dataclass
class _Pending:
    """The operation the diagnosis waits for."""

    token: int
    timers: list[Timer] = field(default_factory=list)
    handle: Cancellable | None = None
    done: bool = False
    value: object = None


@dataclass
class _NotifierOutstanding:
    token: int
    connection: Connection
    retry: bool
    guard: Timer | None = None
    handle: Cancellable | None = None


# --------------------------------------------------------------------------------------------------
# The logic
# --------------------------------------------------------------------------------------------------


class PrimaryMonitorLogic:
    """Pings the remote Notifier, watches the Module Monitor, diagnoses and posts events."""

    def __init__(
        self,
        clock: Clock,
        params: PrimaryMonitorParams,
        notifier: NotifierLink,
        module_link: ModulePingLink,
        pinger: Pinger,
        module_monitor: ModuleMonitorControl,
        post: Callable[[PrimaryMonitorEvent], None],
        *,
        gateways: Callable[[], Sequence[str]] = tuple,
        primary_address: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._clock = clock
        self._params = params
        self._notifier = notifier
        self._module_link = module_link
        self._pinger = pinger
        self._module_monitor = module_monitor
        self._post = post
        self._gateways_source = gateways
        self._primary_address_source = primary_address
        self._gateways: list[str] = []
        self._primary_address: str | None = None

        self._running = False
        self._idle = False  # after posting an event: waiting for the state machine
        self._tokens = 0
        self._tick_timer: Timer | None = None
        self._outstanding: _NotifierOutstanding | None = None
        self._retries = 0
        self._standard_after_loss = 0
        self._restart_requested = False

        self._diag: _Diag | None = None
        self._diag_pending: _Pending | None = None
        self._diagnoses: list[Diagnosis] = []

        self._tracking = False
        self._last_module_event_at = 0.0

        # After a diagnosis found the notifier answering on aux but not on main (a main link that
        # silently loses everything), notifier pings go on aux, and main is re-checked now and then
        # with a side ping whose failure counts for nothing.
        self._prefer_aux = False
        self._failed_on: Connection | None = None
        self._main_recheck_at = 0.0

    # -- inspection ---------------------------------------------------------------------------------

    @property
    def params(self) -> PrimaryMonitorParams:
        return self._params

    @property
    def running(self) -> bool:
        return self._running

    @property
    def diagnosing(self) -> bool:
        return self._diag is not None

    @property
    def idle(self) -> bool:
        """An event was posted; the monitor waits to be stopped or restarted by the state machine."""
        return self._idle

    @property
    def retry_count(self) -> int:
        return self._retries

    @property
    def diagnoses(self) -> list[Diagnosis]:
        """Every finished diagnosis, oldest first."""
        return list(self._diagnoses)

    @property
    def liveness_tracking(self) -> bool:
        return self._tracking

    @property
    def gateways(self) -> list[str]:
        return list(self._gateways)

    @property
    def primary_address(self) -> str | None:
        return self._primary_address

    def connection_status(self) -> ConnectionStatus:
        return ConnectionStatus.of(
            self._notifier.is_connected(Connection.MAIN), self._notifier.is_connected(Connection.AUX)
        )

    # -- control ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start: enumerate gateways, look up the primary's address, start the Module Monitor, ping."""
        if self._running:
            return
        self._running = True
        self._idle = False
        self._retries = 0
        self._standard_after_loss = 0
        self._restart_requested = False
        self._gateways = clean_addresses(self._gateways_source())
        self._primary_address = self._primary_address_source()
        p = self._params
        log.info(
            "Primary monitor started: notifier ping every {:g} s (timeout {:g} s, {} retry ping(s) "
            "{:g} s apart); "
            "gateways {} (gateway ping {}); NetTest {}; primary address {}",
            p.ping_delay,
            p.timeout,
            p.retry_count,
            p.retry_ping_delay,
            self._gateways or "none",
            "disabled" if p.disable_gateway_ping else "enabled",
            list(p.nettest_addresses) or "none",
            self._primary_address or "not known yet",
        )
        self._module_monitor.start_module_monitor()
        self.resume_liveness_tracking()
        self._schedule_tick(p.ping_delay)

    def stop(self) -> None:
        """Stop: cancel pings, timers and a diagnosis in progress; stop the Module Monitor."""
        if not self._running:
            return
        self._running = False
        self._idle = False
        self._cancel_ping_loop()
        self._abort_diagnosis()
        self.suspend_liveness_tracking()
        self._module_monitor.stop_module_monitor()
        log.info("Primary monitor stopped")

    def update_params(self, params: PrimaryMonitorParams) -> None:
        """Apply new parameters; they take effect from the next ping (pings in flight keep theirs)."""
        if params != self._params:
            log.info("Primary monitor parameters changed, effective from the next ping")
        self._params = params

    def suspend_liveness_tracking(self) -> None:
        self._tracking = False

    def resume_liveness_tracking(self) -> None:
        self._tracking = True
        self._last_module_event_at = self._clock.now()

    # -- module monitor events and liveness ---------------------------------------------------------

    def on_module_event(self, event: ModuleEvent) -> None:
        """An event from the Module Monitor (SYSTEM_OK, MODULE_DOWN, ...)."""
        if not self._running:
            log.debug("Ignoring a module monitor event while stopped: {}", type(event).__name__)
            return
        self._last_module_event_at = self._clock.now()
        if not isinstance(event, ModuleDown):
            return
        if self._diag is not None or self._idle:
            log.info(
                "module monitor indicated the [{}] module is not responding ({}), "
                "already diagnosing or waiting for the state machine: ignored",
                event.module_name,
                event.reason,
            )
            return
        self._cancel_ping_loop()
        self._begin_diagnosis(Trigger.MODULE_MONITOR, event)

    def check_module_monitor_liveness(self) -> ModuleMonitorStalled | None:
        """Polled by the state machine: a :class:`ModuleMonitorStalled` (and a restart request) when the
        Module Monitor has been silent too long, else ``None``."""
        if not self._running or not self._tracking:
            return None
        now = self._clock.now()
        silent = now - self._last_module_event_at
        limit = self._params.module_monitor_max_silence
        if silent <= limit:
            return None
        selflog.error(
            "SelfMonitor - Detected ModuleMonitor thread stop: no event for {:g} s (maximum {:g} s), "
            "requesting a restart of the module monitor",
            silent,
            limit,
        )
        self._restart_requested = True
        self._last_module_event_at = now
        return ModuleMonitorStalled(silent, limit, now)

    # -- notifier ping loop -------------------------------------------------------------------------

    def _schedule_tick(self, delay: float) -> None:
        if self._tick_timer is not None:
            self._tick_timer.cancel()
        self._tick_timer = self._clock.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._tick_timer = None
        if not self._running or self._idle or self._diag is not None:
            return
        if self._restart_requested:
            self._restart_requested = False
            selflog.warning("SelfMonitor - Restarting the module monitor")
            self._module_monitor.stop_module_monitor()
            self._module_monitor.start_module_monitor()
            self._last_module_event_at = self._clock.now()
            self._schedule_tick(self._params.ping_delay)
            return
        self._send_ping(retry=False)

    def _send_ping(self, *, retry: bool) -> None:
        if not self._running or self._idle or self._diag is not None:
            return
        p = self._params
        main_up = self._notifier.is_connected(Connection.MAIN)
        aux_up = self._notifier.is_connected(Connection.AUX)
        conn = Connection.MAIN if main_up or not aux_up else Connection.AUX
        if self._prefer_aux and aux_up:
            conn = Connection.AUX
            self._recheck_main()
        self._tokens += 1
        token = self._tokens
        timeout = p.timeout
        out = _NotifierOutstanding(token, conn, retry)
        self._outstanding = out
        out.guard = self._clock.call_later(timeout, lambda: self._on_ping_result(token, PingResult.timeout()))
        log.debug(
            "Sending {} ping to the notifier on the primary on the {} connection (timeout {:g} s)",
            f"retry {self._retries} of {p.retry_count}" if retry else "a",
            conn,
            timeout,
        )
        handle = self._notifier.ping_notifier(conn, timeout, lambda r: self._on_ping_result(token, r))
        if self._outstanding is out:
            out.handle = handle

    def _cancel_ping_loop(self) -> None:
        if self._tick_timer is not None:
            self._tick_timer.cancel()
            self._tick_timer = None
        out = self._outstanding
        self._outstanding = None
        if out is not None:
            if out.guard is not None:
                out.guard.cancel()
            if out.handle is not None:
                out.handle.cancel()

    def _on_ping_result(self, token: int, result: PingResult) -> None:
        out = self._outstanding
        if not self._running or out is None or out.token != token:
            return
        self._outstanding = None
        if out.guard is not None:
            out.guard.cancel()
        if result.kind is PingResultKind.TIMEOUT and out.handle is not None:
            out.handle.cancel()
        p = self._params
        kind = result.kind
        if kind is PingResultKind.OK:
            if self._retries:
                log.info("The notifier on the primary answered on the {} connection again", out.connection)
            self._retries = 0
            self._standard_after_loss = 0
            self._schedule_tick(p.ping_delay)
        elif kind is PingResultKind.CANCELLED:
            log.debug("Notifier ping cancelled: nothing to do")
        elif kind is PingResultKind.CONNECTION_LOST and self._notifier.is_connected(Connection.MAIN):
            self._standard_after_loss += 1
            if self._standard_after_loss <= p.retry_count:
                log.info(
                    "Connection loss reported for the notifier ping on the {} connection; the main "
                    "connection "
                    "is up, sending a standard ping",
                    out.connection,
                )
                self._tick_timer = self._clock.call_later(
                    p.retry_ping_delay, lambda: self._send_ping(retry=False)
                )
            else:
                self._retry_or_diagnose(result, out.connection)
        else:
            self._retry_or_diagnose(result, out.connection)

    def _recheck_main(self) -> None:
        """While pinging on aux, ask main now and then; when it answers, go back to main."""
        now = self._clock.now()
        if now < self._main_recheck_at or not self._notifier.is_connected(Connection.MAIN):
            return
        self._main_recheck_at = now + MAIN_RECHECK_INTERVAL

        def answered(result: PingResult) -> None:
            if result.kind is PingResultKind.OK and self._prefer_aux:
                self._prefer_aux = False
                log.info("The notifier on the primary answers on the main connection again: pinging on main")

        self._notifier.ping_notifier(Connection.MAIN, self._params.timeout, answered)

    def _retry_or_diagnose(self, result: PingResult, conn: Connection) -> None:
        self._failed_on = conn
        p = self._params
        what = {
            PingResultKind.TIMEOUT: "timed out",
            PingResultKind.REJECTED: "was rejected",
            PingResultKind.CONNECTION_LOST: "lost its connection (main connection down)",
        }.get(result.kind, str(result.kind))
        if self._retries < p.retry_count:
            self._retries += 1
            log.warning(
                "Ping to the notifier on the primary on the {} connection {}: sending retry ping {} "
                "of {} in {:g} s",
                conn,
                what,
                self._retries,
                p.retry_count,
                p.retry_ping_delay,
            )
            self._tick_timer = self._clock.call_later(p.retry_ping_delay, lambda: self._send_ping(retry=True))
            return
        log.error(
            "Ping to the notifier on the primary on the {} connection {}: no reply after {} retry ping(s), "
            "diagnosing the connections and the network",
            conn,
            what,
            p.retry_count,
        )
        self._begin_diagnosis(Trigger.NOTIFIER_PING, None)

    # -- diagnosis driver ---------------------------------------------------------------------------

    def _begin_diagnosis(self, trigger: Trigger, module_event: ModuleDown | None) -> None:
        self._retries = 0
        self._standard_after_loss = 0
        self.suspend_liveness_tracking()
        self._module_monitor.stop_module_monitor()
        self._diag = self._diagnose(trigger, module_event)
        self._advance(None)

    def _abort_diagnosis(self) -> None:
        pending = self._diag_pending
        self._diag_pending = None
        if pending is not None:
            for t in pending.timers:
                t.cancel()
            if pending.handle is not None:
                pending.handle.cancel()
        if self._diag is not None:
            self._diag.close()
            self._diag = None

    def _advance(self, value: object) -> None:
        """Run the diagnosis until it waits for something that has not happened yet (a trampoline)."""
        while True:
            gen = self._diag
            if gen is None:
                return
            try:
                op = gen.send(value)
            except StopIteration as stop:
                self._diag = None
                self._finish(stop.value)
                return
            pending = self._start_op(op)
            if not pending.done:
                self._diag_pending = pending
                return
            value = pending.value

    def _start_op(self, op: _Op) -> _Pending:
        self._tokens += 1
        pending = _Pending(self._tokens)

        def complete(value: object) -> None:
            if pending.done:
                return
            pending.done = True
            pending.value = value
            for t in pending.timers:
                t.cancel()
            if self._diag_pending is pending:
                self._diag_pending = None
                self._advance(value)

        if isinstance(op, _Sleep):
            pending.timers.append(self._clock.call_later(op.seconds, lambda: complete(None)))
        elif isinstance(op, Icmp):
            pending.timers.append(
                self._clock.call_later(op.timeout + ICMP_GUARD_GRACE, lambda: complete(False))
            )
            self._pinger.ping(op.address, op.timeout, lambda ok: complete(bool(ok)))
        else:
            timeout_result = PingResult.timeout()

            def on_timeout() -> None:
                complete(timeout_result)
                if pending.handle is not None:
                    pending.handle.cancel()  # a "cancelled" answer it may trigger is ignored

            pending.timers.append(self._clock.call_later(op.timeout, on_timeout))
            if isinstance(op, _ModulePing):
                handle = self._module_link.ping_module(
                    op.connection, self._params.module.module_name, op.timeout, complete
                )
            else:
                handle = self._notifier.ping_notifier(op.connection, op.timeout, complete)
            pending.handle = handle
        return pending

    def _finish(self, diagnosis: Diagnosis) -> None:
        self._diagnoses.append(diagnosis)
        now = self._clock.now()
        if diagnosis.outcome is Outcome.NO_ERROR:
            if (
                diagnosis.trigger is Trigger.NOTIFIER_PING
                and self._failed_on is Connection.MAIN
                and self._notifier.is_connected(Connection.AUX)
            ):
                self._prefer_aux = True
                self._main_recheck_at = now + MAIN_RECHECK_INTERVAL
                log.warning(
                    "The notifier answers on the aux connection but not on main: pinging on aux "
                    "until main answers again"
                )
            self._module_monitor.start_module_monitor()
            self.resume_liveness_tracking()
            self._schedule_tick(self._params.ping_delay)
            self._post(NoError(diagnosis, now))
            return
        self._idle = True
        name = self._params.module.module_name
        posted: PrimaryMonitorEvent
        if diagnosis.outcome is Outcome.MODULE_DOWN:
            posted = MonitoredModuleDown(diagnosis, now, module_name=name)
            what = f"[{name}] module is down"
        elif diagnosis.outcome is Outcome.NETWORK_DOWN:
            posted = NetworkDown(diagnosis, now)
            what = "the backup's network is down"
        elif diagnosis.outcome is Outcome.PRIMARY_UNREACHABLE:
            posted = PrimaryUnreachable(diagnosis, now)
            what = "the primary is unreachable"
        else:
            posted = NotifierDown(diagnosis, now)
            what = "the notifier on the primary is down"
        log.error(
            "signal_primary_down : Primary connection status=[{}], connection status=[{}], "
            "network connection status=[{}]: {}, posting [event={}]",
            diagnosis.outcome.value,
            diagnosis.connection_status.value,
            diagnosis.network_status.phrase,
            what,
            posted.log_event,
        )
        self._post(posted)

    # -- the diagnosis itself -----------------------------------------------------------------------

    def _local_checks(self) -> LocalChecks:
        def gateways() -> list[str]:
            if not self._gateways:
                self._gateways = clean_addresses(self._gateways_source())
            return self._gateways

        p = self._params
        return LocalChecks(not p.disable_gateway_ping, gateways, p.nettest_addresses, p.nettest_timeout)

    def _diagnose(self, trigger: Trigger, module_event: ModuleDown | None) -> _Diag:
        p = self._params
        name = p.module.module_name
        started = self._clock.now()
        conn = self.connection_status()
        steps: list[NetworkStatus] = []
        confirmation: PingResultKind | None = None

        def result(outcome: Outcome, *, notifier_alive: bool | None = None, sets: int = 0) -> Diagnosis:
            return Diagnosis(
                trigger,
                conn,
                tuple(steps),
                outcome,
                started,
                self._clock.now(),
                confirmation,
                notifier_alive,
                sets,
                module_event,
            )

        if module_event is not None:
            log.warning(
                "process_module_monitor_event : module monitor indicated the [{}] module is not responding "
                "({}), {}",
                name,
                module_event.reason,
                conn.value,
            )
            if module_event.reason is not ModuleDownReason.PING_FAILURES:
                log.error(
                    "detect_and_signal_connection_status : the [{}] module answers but is restarting too "
                    "frequently ({}), signaling the module is down",
                    name,
                    module_event.detail,
                )
                steps.append(NetworkStatus.NOT_CHECKED)
                return result(Outcome.MODULE_DOWN)
        else:
            log.warning("The notifier on the primary does not answer, {}, checking connections", conn.value)

        # 2. confirmation over whatever is up
        if conn is not ConnectionStatus.BOTH_DOWN:
            timeout = p.timeout
            if trigger is Trigger.MODULE_MONITOR:
                via = Connection.MAIN if conn.main_up else Connection.AUX
                count = p.module.max_failures
                log.info(
                    "ping_monitored_module : Sending up to {} ping(s) to the {} module using the {} "
                    "connection",
                    count,
                    name,
                    via,
                )
                for _ in range(count):
                    answer = yield _ModulePing(via, timeout)
                    assert isinstance(answer, PingResult)
                    confirmation = answer.kind
                    if answer.has_pid:
                        log.info(
                            "ping_monitored_module : Received a reply from the {} module (pid {}) on the {} "
                            "connection: the module is up, no error",
                            name,
                            answer.pid,
                            via,
                        )
                        return result(Outcome.NO_ERROR)
                log.warning(
                    "ping_monitored_module : Did not receive a reply from the {} module after {} "
                    "ping(s) on the "
                    "{} connection",
                    name,
                    count,
                    via,
                )
                log.warning(
                    "process_module_monitor_event : Failed to ping the [{}] module, checking connections",
                    name,
                )
            else:
                for via in conn.up_connections:
                    answer = yield _NotifierPing(via, timeout)
                    assert isinstance(answer, PingResult)
                    confirmation = answer.kind
                    if answer.kind is PingResultKind.OK:
                        log.info(
                            "The notifier on the primary answered on the {} connection: no error, resuming",
                            via,
                        )
                        return result(Outcome.NO_ERROR)
                log.warning(
                    "The notifier on the primary did not answer on the {} connection(s), checking "
                    "the network",
                    "/".join(conn.up_connections),
                )

        # 3. the backup's own network: gateways, then NetTest (one rule: actors.monitoring.local_network)
        steps += yield from check_local_network(self._local_checks())
        local_ok = local_network_ok(steps)

        # 4. the primary's address, in ping sets
        if self._primary_address is None:
            self._primary_address = self._primary_address_source()
        address = self._primary_address
        sets = 0
        if address is None:
            log.warning(
                "check_primary_address : The primary's address is not known, setting network "
                "connection status "
                "to 'PrimaryAddressUnknown'"
            )
            steps.append(NetworkStatus.PRIMARY_ADDRESS_UNKNOWN)
        else:
            extra = p.extra_unreachable_ping_sets if local_ok else 0
            reached = False
            while True:
                sets += 1
                for _ in range(p.primary_pings_per_set):
                    ok = yield Icmp(address, p.nettest_timeout)
                    if ok:
                        reached = True
                        break
                if reached:
                    log.info(
                        "check_primary_address : Successfully pinged primary address [{}], setting network "
                        "connection status to 'PrimaryReached'",
                        address,
                    )
                    break
                if extra is not None and sets > extra:
                    log.error(
                        "check_primary_address : No reply from primary address [{}] after {} ping "
                        "set(s), setting "
                        "network connection status to 'PrimaryUnreachable'",
                        address,
                        sets,
                    )
                    break
                log.warning(
                    "check_primary_address : No reply from primary address [{}] (ping set {} of {}), "
                    "next ping "
                    "set in {:g} s",
                    address,
                    sets,
                    "unlimited" if extra is None else extra + 1,
                    p.unreachable_primary_ping_delay,
                )
                yield _Sleep(p.unreachable_primary_ping_delay)
            steps.append(NetworkStatus.PRIMARY_REACHED if reached else NetworkStatus.PRIMARY_UNREACHABLE)

        # 5. decide, with the connection status as it is now
        before = conn
        conn = self.connection_status()
        if conn is not before:
            log.info("Connection status changed during the diagnosis: {} -> {}", before.value, conn.value)
        notifier_alive: bool | None = None
        network_ok = all(s.good for s in steps)
        if (
            network_ok
            and trigger is Trigger.MODULE_MONITOR
            and conn in (ConnectionStatus.MAIN_ONLY, ConnectionStatus.AUX_ONLY)
        ):
            via = conn.up_connections[0]
            answer = yield _NotifierPing(via, p.timeout)
            assert isinstance(answer, PingResult)
            notifier_alive = answer.kind is PingResultKind.OK
            log.info(
                "Only the {} connection is up; the notifier on the primary {} on it",
                via,
                "answers" if notifier_alive else "does not answer",
            )
        outcome = decide(trigger, conn, steps, notifier_alive=notifier_alive)
        log.info(
            "detect_and_signal_connection_status : trigger [{}], {}, network connection status [{}]: {}",
            trigger.value,
            conn.value,
            decisive_network_status(steps).phrase,
            outcome.value,
        )
        return result(outcome, notifier_alive=notifier_alive, sets=sets)
