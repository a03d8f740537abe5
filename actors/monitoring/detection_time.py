"""How long the backup can take to act on a failure of the active, with the current parameters.

An operator thinks "switch after this much silence"; this module says what silence the parameters
amount to. :func:`detection_times` is a pure function of the monitors' parameters (and of the few
fixed properties of the links it depends on); the PrimaryMonitor logs it when it starts and puts it in
the status lines that ``switchover ctl status`` shows. Each figure is the worst case from the fault to
the backup's decision to switch (hooks and the role change come after), as the monitors are built:

**Host loss** (the active's host or its NIC is gone; the backup's own network is fine). The last
notifier ping was answered just before the fault, so the next one goes out ``Ping Delay`` later and
times out after ``Primary Monitor Timeout`` (T); then ``Retry Count`` retries, each ``Retry Ping
Delay`` (d) after the previous failure and T long. The last retry goes out with the confirmation ping
on the other connection, the gateway/NetTest echoes and the primary's first ping set, so nothing more
is waited for unless the echo timeout (``NetTest Timeout``, E) is longer than T::

    silence = ping_delay + T + retries * (d + T)
    host loss = silence + max(0, E - T) + extra_sets * (unreachable_delay + E)

unless the links' ZeroMQ heartbeat declares both connections down first (after at most its interval
plus its timeout, H): the ping in flight fails then, the retries on dead connections fail at once and
the echoes are waited for (``H + retries * d + E``). ``Unreachable Primary Ping Count`` adds its ping
sets (-1: never, the figure is infinite). Primary Unreachable switches at once.

**Node crash** (the node process dies, the host stays up): the kernel resets both connections, the
connection-down event fails the ping in flight (or sends one at once), the retries fail at once, the
primary's host answers its echo: Notifier Down, then ``Reconnect Timeout`` (R)::

    node crash = retries * d + R

**Node freeze** (SIGSTOP of the node: the host answers, the process does not): the silence above or
the heartbeat, then R.

**Module crash** (the monitored module's process exits): the active's Notifier sees it exit (a pidfd,
``module_gone_latency``) and tells the backup, whose Module Monitor pings at once; the Notifier rejects
at once, so ``Max TS Failures`` failures on the first connection and as many on the other one cost
``(2 * max_failures - 1)`` retry delays (``TS Failure Retry Delay``); the Primary Monitor's
confirmation pings are rejected at once and its echoes answered: Monitored Module Down, switch::

    module crash = module_gone_latency + (2 * max_failures - 1) * retry_delay
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the control panel reads STATUS_PREFIX and stays light
    from actors.monitoring.monitor_params import PrimaryMonitorParams

STATUS_PREFIX = "detection time (worst case)"
"""How the status line that ``ctl status`` shows begins (one home: :meth:`DetectionTimes.status_line`)."""


@dataclass(frozen=True)
class LinkHeartbeat:
    """The NotifierLinks' ZeroMQ heartbeat: a silent peer is declared gone at most ``interval +
    timeout`` seconds after the last thing it sent."""

    interval: float = 1.0
    timeout: float = 3.0

    @property
    def worst(self) -> float:
        return self.interval + self.timeout


@dataclass(frozen=True)
class DetectionTimes:
    """Worst-case seconds from the fault to the backup's decision (``math.inf``: never switches)."""

    host_loss: float
    node_crash: float
    node_freeze: float
    module_crash: float

    def as_dict(self) -> dict[str, float | None]:
        """JSON-friendly: ``None`` for never."""
        return {k: (None if math.isinf(v) else round(v, 3)) for k, v in vars(self).items()}

    def status_line(self) -> str:
        def s(v: float) -> str:
            return "never" if math.isinf(v) else f"{v:.2f} s"

        return (
            f"{STATUS_PREFIX}: host loss {s(self.host_loss)}, node crash {s(self.node_crash)}, "
            f"node freeze {s(self.node_freeze)}, module crash {s(self.module_crash)}"
        )


def silence(p: PrimaryMonitorParams) -> float:
    """From the last answered notifier ping to the last retry's timeout."""
    return p.ping_delay + p.timeout + p.retry_count * (p.retry_ping_delay + p.timeout)


def extra_ping_sets(p: PrimaryMonitorParams) -> float:
    """The time the extra ping sets to an unreachable primary add (``inf``: unlimited)."""
    if p.extra_unreachable_ping_sets is None:
        return math.inf
    return p.extra_unreachable_ping_sets * (p.unreachable_primary_ping_delay + p.nettest_timeout)


def detection_times(
    p: PrimaryMonitorParams,
    reconnect_timeout: float,
    *,
    heartbeat: LinkHeartbeat | None = None,
    module_gone_latency: float = 0.0,
) -> DetectionTimes:
    """The worst-case detection times the parameters give (see the module docstring)."""
    if reconnect_timeout < 0:
        raise ValueError(f"reconnect_timeout must be >= 0 seconds, got {reconnect_timeout}")
    hb = heartbeat or LinkHeartbeat()
    echo = p.nettest_timeout
    retries_at_once = p.retry_count * p.retry_ping_delay
    by_silence = silence(p) + max(0.0, echo - p.timeout)
    by_heartbeat = hb.worst + retries_at_once + echo
    host_loss = min(by_silence, by_heartbeat) + extra_ping_sets(p)
    node_crash = retries_at_once + reconnect_timeout
    node_freeze = min(silence(p), hb.worst + retries_at_once) + reconnect_timeout
    m = p.module
    module_crash = module_gone_latency + (2 * m.max_failures - 1) * m.retry_delay
    return DetectionTimes(host_loss, node_crash, node_freeze, module_crash)
