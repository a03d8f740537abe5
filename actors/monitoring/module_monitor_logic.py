"""Module Monitor decision logic (spec "Module Monitor", "The ping process"): pure, in virtual time.

The backup pings the monitored module (``TsServer`` by default, ``Switchover Monitoring``) through the
remote Notifier on the primary, and tells the Primary Monitor what it saw.

This module does no I/O and reads no clock of its own: it is handed a :class:`~actors.runtime.clock.Clock`
and a :class:`ModulePingLink` (the actor implements it over the NotifierLinks; tests use a fake), and
it reports through an ``events`` callback. Every outcome is a loguru line *and* a typed event.

Cadence (spec lines 318-411 and 735-792, defaults in brackets)
---------------------------------------------------------------
* A ping is answered with the module's PID. It fails when no reply arrives within
  ``Switchover TS Timeout`` [10 s, 5-60] or when the reply is empty (no PID).
* After a success the next ping is sent ``Switchover TS Timeout`` later: the parameter "also specifies
  the number of seconds the Switchover system waits after a TS success before it sends another ping".
  The first ping after :meth:`ModuleMonitorLogic.start` is sent at once.
* After a failure the next ping is sent ``Switchover TS Failure Retry Delay`` [1 s] later ("each
  failure is followed by a 1-second sleep"), including the first ping on the alternate connection.
* ``Switchover Max TS Failures`` [2] failures on the main connection: the count is reset and pinging
  continues on the auxiliary connection. A success anywhere resets the count and returns to main.
  The maximum reached on the auxiliary connection posts :class:`ModuleDown`; the monitor reverts to
  main and keeps pinging at the regular interval (the Primary Monitor normally stops it then).
* ``Switchover Ping on Aux Connection`` swaps the roles: the auxiliary connection is the first one
  used and the main connection is the fallback.
* ``Switchover Monitoring = IP`` monitors the module ``IP`` with ``Switchover IP Timeout`` and
  ``Switchover IP Retry Delay`` in place of the TS ones (the catalog picks them:
  :func:`actors.monitoring.monitor_params.module_monitor_params`).
* ``Switchover TS Timeout``, ``TS Failure Retry Delay`` and ``Max TS Failures`` are dynamic: a new value
  takes effect from the next ping (a ping already in flight keeps the timeout it was sent with; a ping
  already scheduled keeps its delay).

Refinements and interpretations (where the specification is ambiguous)
----------------------------------------------------------------------
* **Rejected means failed.** The vendor's Ping method returns 0 for a *rejected* message ("the state
  of the module cannot be determined"), so its thread reissues the ping at the *regular* interval
  (the first log sample: rejections 10 s apart, module down about 30 s after the first ping), while
  still counting the rejection as an error. In this product the Notifier answers ``rejected`` at once
  precisely when no module is registered under that name, i.e. when the module has crashed. So a
  rejection is a ping failure that is retried after the *retry delay* like a timeout
  (:attr:`RejectedRetry.RETRY_DELAY`, the default): a crashed module is detected in about
  3 retry delays instead of 3 TS Timeouts. ``rejected_retry=RejectedRetry.REGULAR_INTERVAL``
  restores the vendor's timing exactly (used to replay the sample).
* **Connection lost** on the ping's connection is a ping failure (that is what the auxiliary fallback
  is for). **Cancelled** results are ignored after :meth:`ModuleMonitorLogic.stop`; a cancellation the
  monitor did not ask for is logged and the next ping is scheduled at the regular interval without
  counting an error, so the monitor can never go silent.
* **PID 0 / missing PID** is an empty reply (a failure): the specification uses "last PID is not zero"
  to mean "not the first reply".
* **Restarts.** A reply whose PID differs from the last non-zero PID is a restart
  (:class:`ModuleRestarted`). ``Switchover Max Restarts`` [2] is the number of restarts *allowed* within
  ``Switchover Max Restarts Period`` [300 s] (parameter table: "the maximum number of times in a
  restart period that a new process ID can be returned ... before a restart occurs"): the restart that
  makes the count exceed it sets the error count to the maximum and posts :class:`ModuleDown`.
* **Sequential restarts.** ``Switchover Max Sequential Restarts`` [2] counts restarts seen on
  *consecutive successful replies*: every reply carries a PID different from the previous reply's,
  however much time passes. A reply with the same PID as the previous one ends the sequence; failed
  pings in between (a restarting module is briefly unregistered) do not. Exceeding the maximum posts
  :class:`ModuleDown`. After a restart-caused :class:`ModuleDown` the restart history is cleared, so a
  later one needs fresh evidence.
* **Never registered.** The active's Notifier answers ``not-registered`` when no module of that name
  has ever registered with it (a pair run without a module, or a module not started yet). That is
  not a failure: it posts :class:`ModuleNotRegistered` (logged once: "monitored module TsServer is
  not registered on the active"), keeps the error count at 0 and pings again at the regular interval.
  A module that registered and then went away is answered ``rejected``: a failure, as above.
* Besides the specification's SYSTEM_OK / MODULE_DOWN the monitor posts :class:`ModulePingFailed` for
  every failure and :class:`ModuleRestarted` for every tolerated restart; they feed the Primary
  Monitor's liveness tracking and the logs.

Threading: every callback (clock timers, ``on_result``) must be delivered on the thread that owns the
logic; the actor does that by turning each callback into a message to itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from loguru import logger

from actors.monitoring.ping import Cancellable, Connection, ModulePingLink, PingResult, PingResultKind
from actors.runtime.clock import Clock, Timer

log = logger.bind(topic="ModuleMonitor")


# --------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------


class RejectedRetry(StrEnum):
    """When to re-ping after a *rejected* reply (see the module docstring)."""

    RETRY_DELAY = "retry-delay"  # this product: like a timeout, after the retry delay
    REGULAR_INTERVAL = "regular-interval"  # the vendor: "ping will be reissued with regular timeout"


@dataclass(frozen=True)
class ModuleMonitorParams:
    """Module Monitor parameters (seconds as floats), as the catalog resolved them
    (:func:`actors.monitoring.monitor_params.module_monitor_params`).

    ``ping_timeout`` is ``Switchover TS Timeout`` (or ``IP Timeout``): both the reply timeout and the
    regular interval between pings. ``retry_delay`` is ``TS Failure Retry Delay`` (or ``IP Retry
    Delay``). Which ones follow a change live is the catalog's ``dynamic`` flag
    (:class:`actors.monitoring.monitor_params.AppliedParams`).
    """

    module_name: str = "TsServer"
    ping_timeout: float = 10.0
    retry_delay: float = 1.0
    max_failures: int = 2
    max_restarts: int = 2
    max_restarts_period: float = 300.0
    max_sequential_restarts: int = 2
    ping_on_aux: bool = False
    rejected_retry: RejectedRetry = RejectedRetry.RETRY_DELAY

    def __post_init__(self) -> None:
        if not self.module_name:
            raise ValueError("module_name must not be empty")
        if self.ping_timeout <= 0:
            raise ValueError(f"ping_timeout must be > 0 (got {self.ping_timeout})")
        if self.retry_delay <= 0:
            raise ValueError(f"retry_delay must be > 0 (got {self.retry_delay})")
        if self.max_failures < 1:
            raise ValueError(f"max_failures must be >= 1 (got {self.max_failures})")
        if self.max_restarts < 0 or self.max_sequential_restarts < 0:
            raise ValueError("max_restarts and max_sequential_restarts must be >= 0")
        if self.max_restarts_period <= 0:
            raise ValueError(f"max_restarts_period must be > 0 (got {self.max_restarts_period})")

    @property
    def interval(self) -> float:
        """Seconds between a success and the next ping (= the ping timeout, per the specification)."""
        return self.ping_timeout

    @property
    def first_connection(self) -> Connection:
        return Connection.AUX if self.ping_on_aux else Connection.MAIN

    def with_dynamic(
        self,
        *,
        ping_timeout: float | None = None,
        retry_delay: float | None = None,
        max_failures: int | None = None,
    ) -> ModuleMonitorParams:
        """A copy with the dynamic parameters changed (``None`` keeps the current value)."""
        return replace(
            self,
            ping_timeout=self.ping_timeout if ping_timeout is None else float(ping_timeout),
            retry_delay=self.retry_delay if retry_delay is None else float(retry_delay),
            max_failures=self.max_failures if max_failures is None else int(max_failures),
        )


# --------------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------------


class ModuleDownReason(StrEnum):
    PING_FAILURES = "ping failures"  # max errors on the alternate connection
    MAX_RESTARTS = "max restarts"  # too many restarts within the restarts period
    MAX_SEQUENTIAL_RESTARTS = "max sequential restarts"  # too many restarts on consecutive replies


@dataclass(frozen=True)
class SystemOk:
    """SYSTEM_OK: the module answered with a PID and is not restarting too often."""

    module_name: str
    pid: int
    connection: Connection
    at: float


@dataclass(frozen=True)
class ModulePingFailed:
    """One failed ping (timeout, empty reply, rejected, connection lost), with the count after it."""

    module_name: str
    kind: PingResultKind
    connection: Connection
    error_count: int
    max_failures: int
    at: float
    detail: str = ""


@dataclass(frozen=True)
class ModuleRestarted:
    """The module answered with a new PID, within the tolerated limits."""

    module_name: str
    old_pid: int
    new_pid: int
    restarts_in_period: int
    sequential_restarts: int
    at: float


@dataclass(frozen=True)
class ModuleDown:
    """MODULE_DOWN, for the Primary Monitor to confirm."""

    module_name: str
    reason: ModuleDownReason
    connection: Connection
    error_count: int
    at: float
    detail: str = ""


@dataclass(frozen=True)
class ModuleNotRegistered:
    """The active's Notifier says no module of this name has ever registered there: nothing to monitor
    yet, and its absence is not a failure (a pair may run without a module). ``first`` is True for the
    first answer of this kind since the module was last seen or the monitor started."""

    module_name: str
    connection: Connection
    at: float
    detail: str = ""
    first: bool = True


ModuleEvent = SystemOk | ModulePingFailed | ModuleRestarted | ModuleDown | ModuleNotRegistered


# --------------------------------------------------------------------------------------------------
# The logic
# --------------------------------------------------------------------------------------------------


@dataclass
class _Outstanding:
    token: int
    connection: Connection
    sent_at: float
    timeout: float
    guard: Timer | None = None
    handle: Cancellable | None = None


@dataclass
class _RestartHistory:
    times: deque[float] = field(default_factory=deque)
    sequential: int = 0


_FAILURE_WORDS = {
    PingResultKind.TIMEOUT: "timed out",
    PingResultKind.REJECTED: "rejected",
    PingResultKind.CONNECTION_LOST: "lost its connection",
    PingResultKind.OK: "got an empty reply (no PID)",
}


class ModuleMonitorLogic:
    """Pings the monitored module on the primary and posts :data:`ModuleEvent` values."""

    def __init__(
        self,
        clock: Clock,
        params: ModuleMonitorParams,
        link: ModulePingLink,
        events: Callable[[ModuleEvent], None],
    ) -> None:
        self._clock = clock
        self._params = params
        self._link = link
        self._events = events
        self._running = False
        self._connection = params.first_connection
        self._error_count = 0
        self._last_pid = 0
        self._restarts = _RestartHistory()
        self._outstanding: _Outstanding | None = None
        self._next: Timer | None = None
        self._tokens = 0
        self._not_registered = False

    # -- inspection ---------------------------------------------------------------------------------

    @property
    def params(self) -> ModuleMonitorParams:
        return self._params

    @property
    def running(self) -> bool:
        return self._running

    @property
    def connection(self) -> Connection:
        """The connection the next ping goes out on."""
        return self._connection

    @property
    def error_count(self) -> int:
        return self._error_count

    @property
    def last_pid(self) -> int:
        return self._last_pid

    @property
    def ping_in_flight(self) -> bool:
        return self._outstanding is not None

    # -- control ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start pinging (first ping at once). Error count and connection start afresh; the PID
        history is kept, so a module that restarted while the monitor was stopped counts as a restart."""
        if self._running:
            return
        self._running = True
        self._error_count = 0
        self._not_registered = False
        self._connection = self._params.first_connection
        log.info(
            "Module monitor started: pinging the {} module every {:g} s (timeout {:g} s, retry delay {:g} s, "
            "max failures {}) on the {} connection",
            self._params.module_name,
            self._params.interval,
            self._params.ping_timeout,
            self._params.retry_delay,
            self._params.max_failures,
            self._connection,
        )
        self._schedule(0.0)

    def stop(self) -> None:
        """Stop: cancel the scheduled ping and the ping in flight (its result, if any, is ignored)."""
        if not self._running:
            return
        self._running = False
        if self._next is not None:
            self._next.cancel()
            self._next = None
        self._drop_outstanding(cancel_link=True)
        log.info("Module monitor stopped")

    def ping_now(self, why: str) -> bool:
        """Send the next ping at once instead of at its scheduled time (a hint, e.g. the primary's
        Notifier saw the module's process exit). Ignored while stopped or while a ping is in flight;
        counting, retries and fallback stay exactly as for a scheduled ping. True when it pinged."""
        if not self._running or self._outstanding is not None:
            return False
        log.info("Pinging the {} module now: {}", self._params.module_name, why)
        self._schedule(0.0)
        return True

    def update_params(self, params: ModuleMonitorParams) -> None:
        """Apply new parameters; they take effect from the next ping (see the module docstring)."""
        old = self._params
        changed = {
            name: (getattr(old, name), getattr(params, name))
            for name in ModuleMonitorParams.__dataclass_fields__
            if getattr(old, name) != getattr(params, name)
        }
        self._params = params
        if changed:
            log.info(
                "Module monitor parameters changed, effective from the next ping: {}",
                ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()),
            )
        if "ping_on_aux" in changed and self._error_count == 0:
            self._connection = params.first_connection

    # -- pinging ------------------------------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if self._next is not None:
            self._next.cancel()
        self._next = self._clock.call_later(delay, self._send)

    def _send(self) -> None:
        self._next = None
        if not self._running:
            return
        self._tokens += 1
        token = self._tokens
        p = self._params
        conn = self._connection
        out = _Outstanding(token, conn, self._clock.now(), p.ping_timeout)
        self._outstanding = out
        out.guard = self._clock.call_later(
            p.ping_timeout, lambda: self._on_result(token, PingResult.timeout("no reply within the timeout"))
        )
        log.debug(
            "Pinging the {} module on the {} connection: error count={} timeout={:g} s",
            p.module_name,
            conn,
            self._error_count,
            p.ping_timeout,
        )
        handle = self._link.ping_module(
            conn, p.module_name, p.ping_timeout, lambda r: self._on_result(token, r)
        )
        if self._outstanding is out:
            out.handle = handle

    def _drop_outstanding(self, *, cancel_link: bool) -> None:
        out = self._outstanding
        self._outstanding = None
        if out is None:
            return
        if out.guard is not None:
            out.guard.cancel()
        if cancel_link and out.handle is not None:
            out.handle.cancel()

    def _on_result(self, token: int, result: PingResult) -> None:
        out = self._outstanding
        if not self._running or out is None or out.token != token:
            log.debug("Ignoring a late or cancelled module ping result: {}", result.kind)
            return
        # the link answered, or our timer fired: in the latter case tell the link to give up
        self._drop_outstanding(cancel_link=result.kind is PingResultKind.TIMEOUT)
        if result.has_pid:
            assert result.pid is not None
            self._not_registered = False
            self._on_success(result.pid, out.connection)
        elif result.kind is PingResultKind.NOT_REGISTERED:
            self._on_not_registered(result, out.connection)
        elif result.kind is PingResultKind.CANCELLED:
            log.warning(
                "The ping to the {} module on the {} connection was cancelled by the link; "
                "pinging again in {:g} s",
                self._params.module_name,
                out.connection,
                self._params.interval,
            )
            self._schedule(self._params.interval)
        else:
            self._on_failure(result, out.connection)

    def _on_success(self, pid: int, conn: Connection) -> None:
        p = self._params
        now = self._clock.now()
        if conn is not p.first_connection:
            log.info(
                "Received ping from the {} module on the {} connection, resuming on the {} connection",
                p.module_name,
                conn,
                p.first_connection,
            )
        else:
            log.debug("Received ping from the {} module (pid {})", p.module_name, pid)
        self._error_count = 0
        self._connection = p.first_connection

        events: list[ModuleEvent] = []
        down: ModuleDown | None = None
        hist = self._restarts
        old = self._last_pid
        if old != 0 and pid != old:
            hist.times.append(now)
            while hist.times and hist.times[0] < now - p.max_restarts_period:
                hist.times.popleft()
            hist.sequential += 1
            in_period = len(hist.times)
            if in_period > p.max_restarts:
                detail = (
                    f"{in_period} restarts within {p.max_restarts_period:g} s "
                    f"(maximum {p.max_restarts}), pid {old} -> {pid}"
                )
                down = ModuleDown(
                    p.module_name, ModuleDownReason.MAX_RESTARTS, conn, p.max_failures, now, detail
                )
            elif hist.sequential > p.max_sequential_restarts:
                detail = (
                    f"{hist.sequential} sequential restarts (maximum {p.max_sequential_restarts}), "
                    f"pid {old} -> {pid}"
                )
                down = ModuleDown(
                    p.module_name, ModuleDownReason.MAX_SEQUENTIAL_RESTARTS, conn, p.max_failures, now, detail
                )
            else:
                log.warning(
                    "The {} module restarted: pid {} -> {} ({} restart(s) within {:g} s, maximum {}; "
                    "{} sequential, maximum {})",
                    p.module_name,
                    old,
                    pid,
                    in_period,
                    p.max_restarts_period,
                    p.max_restarts,
                    hist.sequential,
                    p.max_sequential_restarts,
                )
                events.append(ModuleRestarted(p.module_name, old, pid, in_period, hist.sequential, now))
        elif pid == old:
            hist.sequential = 0
        self._last_pid = pid

        if down is not None:
            self._error_count = p.max_failures
            log.error(
                "The {} module is restarting too frequently ({}): error count set to maximum [{}], "
                "signaling that the module is down",
                p.module_name,
                down.detail,
                p.max_failures,
            )
            self._error_count = 0
            self._restarts = _RestartHistory()
            events.append(down)
        else:
            events.append(SystemOk(p.module_name, pid, conn, now))
        self._schedule(p.interval)
        self._post(events)

    def _on_not_registered(self, result: PingResult, conn: Connection) -> None:
        """Not a failure: the error count starts afresh and the next ping goes at the regular interval."""
        p = self._params
        first = not self._not_registered
        self._not_registered = True
        self._error_count = 0
        self._connection = p.first_connection
        detail = result.detail or f"monitored module {p.module_name} is not registered on the active"
        if first:
            log.warning(
                "{}: it has never registered there, so its absence is not a failure and does not cause a "
                "switch; it is monitored once it registers (pinging every {:g} s)",
                detail,
                p.interval,
            )
        self._schedule(p.interval)
        self._post([ModuleNotRegistered(p.module_name, conn, self._clock.now(), detail, first)])

    def _on_failure(self, result: PingResult, conn: Connection) -> None:
        p = self._params
        now = self._clock.now()
        self._error_count += 1
        count = self._error_count
        what = _FAILURE_WORDS.get(result.kind, str(result.kind))
        if result.kind is PingResultKind.REJECTED and p.rejected_retry is RejectedRetry.REGULAR_INTERVAL:
            delay = p.interval
        else:
            delay = p.retry_delay
        detail = f" ({result.detail})" if result.detail else ""
        events: list[ModuleEvent] = [
            ModulePingFailed(p.module_name, result.kind, conn, count, p.max_failures, now, result.detail)
        ]
        if count < p.max_failures:
            log.warning(
                "Ping {} to the {} module on the {} connection{}: error count [{}] is within maximum [{}], "
                "ping will be reissued in {:g} s",
                what,
                p.module_name,
                conn,
                detail,
                count,
                p.max_failures,
                delay,
            )
            self._schedule(delay)
        elif conn is p.first_connection:
            log.warning(
                "Ping {} to the {} module{}: reached maximum error count [{}] pinging the {} module "
                "on the {} "
                "connection, resetting error count and trying the alternate connection ({}) in {:g} s",
                what,
                p.module_name,
                detail,
                count,
                p.module_name,
                conn,
                conn.other,
                delay,
            )
            self._error_count = 0
            self._connection = conn.other
            self._schedule(delay)
        else:
            log.error(
                "Ping {} to the {} module on the {} connection{}: reached maximum error count [{}], "
                "signaling that the module is down",
                what,
                p.module_name,
                conn,
                detail,
                count,
            )
            events.append(
                ModuleDown(
                    p.module_name,
                    ModuleDownReason.PING_FAILURES,
                    conn,
                    count,
                    now,
                    f"{count} failed ping(s) on the {conn} connection after {p.max_failures} on the "
                    f"{conn.other} connection; last: {result.kind}",
                )
            )
            self._error_count = 0
            self._connection = p.first_connection
            self._schedule(p.interval)
        self._post(events)

    def _post(self, events: list[ModuleEvent]) -> None:
        # posted last: a receiver may stop this monitor synchronously (the Primary Monitor does)
        for event in events:
            self._events(event)
