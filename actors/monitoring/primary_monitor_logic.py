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
The steps live in :mod:`actors.monitoring.diagnosis` (each a small generator, composed by
:func:`~actors.monitoring.diagnosis.diagnose`); the backup's own network check is the one rule of
:mod:`actors.monitoring.local_network`; this module runs them in time and posts the result.

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

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from loguru import logger

from actors.monitoring.diagnosis import (
    ConnectionStatus,
    Diagnosis,
    ModulePing,
    NotifierPing,
    Op,
    Outcome,
    Sleep,
    Trigger,
    diagnose,
)
from actors.monitoring.local_network import Icmp, LocalChecks, NetworkStatus, clean_addresses
from actors.monitoring.module_monitor_logic import ModuleDown, ModuleDownReason, ModuleEvent
from actors.monitoring.monitor_params import PrimaryMonitorParams
from actors.monitoring.ping import (
    ICMP_GUARD_GRACE,
    Cancellable,
    Connection,
    ModulePingLink,
    NotifierLink,
    Pinger,
    PingResult,
    PingResultKind,
)
from actors.roles.state_machine import Event, Facts
from actors.runtime.clock import Clock, Timer

log = logger.bind(topic="PrimaryMonitor")
MAIN_RECHECK_INTERVAL = 5.0  # seconds between side pings on main while notifier pings go on aux
selflog = logger.bind(topic="SelfMonitor")



# --------------------------------------------------------------------------------------------------
# Injected interfaces
# --------------------------------------------------------------------------------------------------


class ModuleMonitorControl(Protocol):
    def start_module_monitor(self) -> None: ...

    def stop_module_monitor(self) -> None: ...


# --------------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PrimaryMonitorEvent:
    diagnosis: Diagnosis
    at: float
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

    log_event: ClassVar[str] = "eNetworkDown"


@dataclass(frozen=True)
class NotifierDown(_PrimaryMonitorEvent):
    """The remote Notifier (or the connections to it) is down while the primary is reachable."""

    log_event: ClassVar[str] = "eNotifierDown"


@dataclass(frozen=True)
class PrimaryUnreachable(_PrimaryMonitorEvent):
    """The primary's host does not answer ICMP although the backup's network is fine."""

    log_event: ClassVar[str] = "ePrimaryUnreachable"


@dataclass(frozen=True)
class MonitoredModuleDown(_PrimaryMonitorEvent):
    """The network and connections are good and the module does not answer: switch."""

    module_name: str = "TsServer"
    log_event: ClassVar[str] = "eTSDown"


@dataclass(frozen=True)
class NoError(_PrimaryMonitorEvent):
    """The confirmation pings were answered: nothing to do (the state machine may ignore it)."""

    log_event: ClassVar[str] = ""


PrimaryMonitorEvent = NetworkDown | NotifierDown | PrimaryUnreachable | MonitoredModuleDown | NoError

OUTCOME_EVENTS: dict[Outcome, Event] = {
    Outcome.MODULE_DOWN: Event.MODULE_DOWN,
    Outcome.NOTIFIER_DOWN: Event.NOTIFIER_DOWN,
    Outcome.NETWORK_DOWN: Event.NETWORK_DOWN,
    Outcome.PRIMARY_UNREACHABLE: Event.PRIMARY_UNREACHABLE,
}
"""THE mapping of a diagnosis outcome to the state machine's event (no error posts nothing)."""


def state_machine_input(event: PrimaryMonitorEvent) -> tuple[Event, Facts] | None:
    """What the Supervisor feeds the state machine for a posted event: the event and the facts the
    diagnosis found (own network, connections); ``None`` for :class:`NoError`."""
    d = event.diagnosis
    sm_event = OUTCOME_EVENTS.get(d.outcome)
    if sm_event is None:
        return None
    return sm_event, Facts(network_ok=d.local_network_ok, main_up=d.main_up, aux_up=d.aux_up)


@dataclass(frozen=True)
class ModuleMonitorStalled:
    """The Module Monitor has been silent for longer than allowed; a restart has been requested."""

    silent_for: float
    max_silence: float
    at: float


@dataclass
class _Pending:
    """An operation the diagnosis waits for, or will wait for (sent ahead, see :meth:`_prefetch`)."""

    token: int
    op: Op
    timers: list[Timer] = field(default_factory=list)
    handle: Cancellable | None = None
    done: bool = False
    value: object = None
    complete: Callable[[object], None] = lambda value: None

    def cancel(self) -> None:
        for t in self.timers:
            t.cancel()
        if self.handle is not None:
            self.handle.cancel()


@dataclass
class _NotifierOutstanding:
    token: int
    connection: Connection
    retry: bool
    guard: Timer | None = None
    handle: Cancellable | None = None
    head_start: _Pending | None = None  # the last retry doubles as this connection's confirmation


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

        self._diag: Generator[Op, object, Diagnosis] | None = None
        self._diag_pending: _Pending | None = None
        # operations sent ahead of the diagnosis asking for them (the same op may be there several
        # times, e.g. the echoes of one ping set); taken in order by :meth:`_start_op`
        self._prefetched: dict[Op, list[_Pending]] = {}
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
        last_retry = retry and self._retries >= p.retry_count
        if last_retry:
            self._drop_prefetch()
            out.head_start = self._make_pending(NotifierPing(conn, timeout))
            self._prefetched[out.head_start.op] = [out.head_start]
        handle = self._notifier.ping_notifier(conn, timeout, lambda r: self._on_ping_result(token, r))
        if self._outstanding is out:
            out.handle = handle
            if last_retry:
                # If the last retry fails, the diagnosis follows at once and asks for a confirmation
                # ping on each connection, the local network's echoes and the primary's first ping
                # set: send them now, with the retry (itself the confirmation on its connection), so
                # that each set is waited for once, together with the retry, not one after the other.
                self._prefetch(Trigger.NOTIFIER_PING)

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
            if out.head_start is not None:
                self._drop_prefetch()

    def _on_ping_result(self, token: int, result: PingResult) -> None:
        out = self._outstanding
        if not self._running or out is None or out.token != token:
            return
        self._outstanding = None
        if out.guard is not None:
            out.guard.cancel()
        if result.kind is PingResultKind.TIMEOUT and out.handle is not None:
            out.handle.cancel()
        if out.head_start is not None:
            out.head_start.complete(result)
        self._handle_ping_result(out, result)
        if out.head_start is not None and self._diag is None:
            self._drop_prefetch()  # the last retry did not lead to a diagnosis: what was sent ahead is moot

    def _handle_ping_result(self, out: _NotifierOutstanding, result: PingResult) -> None:
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
            if p.retry_ping_delay <= 0:
                self._send_ping(retry=True)  # at once: no round trip through the clock's thread
            else:
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
        if trigger is Trigger.MODULE_MONITOR:
            self._drop_prefetch()
        if module_event is None or module_event.reason is ModuleDownReason.PING_FAILURES:
            self._prefetch(trigger)
        self._diag = diagnose(
            trigger,
            module_event,
            self._params,
            now=self._clock.now,
            connection_status=self.connection_status,
            local_checks=self._local_checks(),
            primary_address=self._known_primary_address,
        )
        self._advance(None)

    def _abort_diagnosis(self) -> None:
        pending = self._diag_pending
        self._diag_pending = None
        if pending is not None:
            pending.cancel()
        self._drop_prefetch()
        if self._diag is not None:
            self._diag.close()
            self._diag = None

    def _prefetch_ops(self, trigger: Trigger) -> list[Op]:
        """What the diagnosis will ask for unless an earlier answer settles it: a confirmation notifier
        ping on each connection that is up (after notifier ping failures), every gateway and NetTest
        echo, the primary's first ping set."""
        p = self._params
        ops: list[Op] = []
        if trigger is Trigger.NOTIFIER_PING:
            ops += [NotifierPing(c, p.timeout) for c in self.connection_status().up_connections]
        checks = self._local_checks()
        if checks.gateway_ping:
            ops += [Icmp(a, checks.timeout) for a in checks.gateways()]
        ops += [Icmp(a, checks.timeout) for a in checks.nettest]
        address = self._known_primary_address()
        if address is not None:
            ops += [Icmp(address, p.nettest_timeout)] * p.primary_pings_per_set
        return ops

    def _prefetch(self, trigger: Trigger) -> None:
        """Send now whatever of :meth:`_prefetch_ops` is not already on its way; the diagnosis's steps
        stay sequential and find their answers here (:meth:`_start_op`), so the verdicts are those of
        the sequential steps while the waiting is that of the slowest set."""
        have = {op: len(pendings) for op, pendings in self._prefetched.items()}
        for op in self._prefetch_ops(trigger):
            if have.get(op, 0) > 0:
                have[op] -= 1
                continue
            self._prefetched.setdefault(op, []).append(self._launch(op))

    def _drop_prefetch(self) -> None:
        prefetched, self._prefetched = self._prefetched, {}
        for pendings in prefetched.values():
            for pending in pendings:
                if pending is not self._diag_pending:
                    pending.done = True  # an answer still on its way is ignored
                    pending.cancel()

    def on_connection_down(self, connection: Connection) -> None:
        """The connection's socket reported the peer gone (ZeroMQ disconnect or heartbeat expiry): a
        ping in flight on it will not be answered, so it fails now instead of at its timeout."""
        lost = PingResult.connection_lost(f"the {connection} connection went down")
        out = self._outstanding
        if self._running and out is not None and out.connection is connection:
            log.info("The {} connection went down with a notifier ping in flight: not waiting for it", connection)
            self._on_ping_result(out.token, lost)
            if out.handle is not None:
                out.handle.cancel()  # the "cancelled" answer this may bring is ignored: the ping is done
        elif self._running and not self._idle and self._diag is None and out is None and self._tick_timer is not None:
            log.info("The {} connection went down between notifier pings: pinging now", connection)
            self._schedule_tick(0.0)
        waiting = [p for ps in self._prefetched.values() for p in ps]
        if self._diag_pending is not None:
            waiting.append(self._diag_pending)
        for pending in waiting:
            op = pending.op
            if not pending.done and isinstance(op, (ModulePing, NotifierPing)) and op.connection is connection:
                pending.complete(lost)
                if pending.handle is not None:
                    pending.handle.cancel()

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

    def _start_op(self, op: Op) -> _Pending:
        """The op the diagnosis asks for: the one sent ahead if there is one, else sent now. An echo
        to the primary is sent as its whole ping set at once (the set stops at the first answer)."""
        p = self._params
        if isinstance(op, Icmp) and op.address == self._primary_address and not self._prefetched.get(op):
            self._prefetched[op] = [self._launch(op) for _ in range(p.primary_pings_per_set)]
        ahead = self._prefetched.get(op)
        if ahead:
            pending = ahead.pop(0)
            if not ahead:
                del self._prefetched[op]
            return pending
        return self._launch(op)

    def _make_pending(self, op: Op) -> _Pending:
        self._tokens += 1
        pending = _Pending(self._tokens, op)

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

        pending.complete = complete
        return pending

    def _launch(self, op: Op) -> _Pending:
        pending = self._make_pending(op)
        complete = pending.complete
        if isinstance(op, Sleep):
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
            if isinstance(op, ModulePing):
                handle = self._module_link.ping_module(
                    op.connection, self._params.module.module_name, op.timeout, complete
                )
            else:
                handle = self._notifier.ping_notifier(op.connection, op.timeout, complete)
            pending.handle = handle
        return pending

    def _finish(self, diagnosis: Diagnosis) -> None:
        self._drop_prefetch()
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

    # -- what the diagnosis needs from here ---------------------------------------------------------

    def _known_primary_address(self) -> str | None:
        if self._primary_address is None:
            self._primary_address = self._primary_address_source()
        return self._primary_address

    def _local_checks(self) -> LocalChecks:
        def gateways() -> list[str]:
            if not self._gateways:
                self._gateways = clean_addresses(self._gateways_source())
            return self._gateways

        p = self._params
        return LocalChecks(not p.disable_gateway_ping, gateways, p.nettest_addresses, p.nettest_timeout)
