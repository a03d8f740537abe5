"""Never two actives: when an isolated active must stop serving, and how fast it must do it. Pure.

The active watches its peer (the Hellos it hears on port 3633) and its own network. It is *isolated*
when it has lost the backup **and** its own network is bad, by THE one rule of
:mod:`actors.monitoring.local_network` (gateway when gateway ping is enabled, NetTest), or, whatever is
configured, when the interface that reaches the peer lost its carrier or its address (read from
``/sys/class/net`` and the interface's addresses: no probe). An isolated active steps down (state
machine event ``isolated``) unless the node's isolation policy is ``keep-serving`` (the specification's
behaviour: it keeps serving and only says so).

The step-down must be done before the backup can possibly have taken over. :func:`fastest_takeover` is
the backup's fastest possible takeover under the current parameters, counted from the moment the active
is cut off; :func:`plan_isolation` derives the active's own timings from it (peer silence, the echo
timeout of its network check, the watch period) so that its step-down bound is shorter. Both are logged
at start. (Issue 14 builds ``actors/monitoring/detection_time.py``, the worst-case detection time;
:func:`fastest_takeover` is its best-case twin and should move beside it.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from actors.monitoring.monitor_params import PrimaryMonitorParams

NOTIFIER_HEARTBEAT = 1.0
"""ZeroMQ heartbeat interval of the backup's notifier links (timeout: 3 intervals), see notifier_link."""
NOTIFIER_HEARTBEAT_TIMEOUT = 3.0 * NOTIFIER_HEARTBEAT
PRIMARY_PINGS_PER_SET = 3
WATCH_PERIOD = 0.1
"""Seconds between two looks of the isolation watch at the carrier and the peer's last Hello."""
STEP_SLACK = 0.05
"""Seconds allowed to carry out the step-down once decided (stop the active-side actors, start hooks)."""
MIN_ECHO_TIMEOUT = 0.02
"""Below this an ICMP echo timeout is not trustworthy: the probe path is then not guaranteed."""
SILENCE_HELLOS = 1.2
"""The peer counts as lost after this many Hello intervals of silence (at least)."""
MARGIN = 0.8
"""The step-down bound must fit in this fraction of the backup's fastest takeover."""


class IsolationPolicy(StrEnum):
    """Node-local ``[roles] isolation``: what an isolated active does."""

    STEP_DOWN = "step-down"
    KEEP_SERVING = "keep-serving"


def fastest_takeover(
    p: PrimaryMonitorParams,
    reconnect_timeout: float,
    *,
    heartbeat: float = NOTIFIER_HEARTBEAT,
    heartbeat_timeout: float = NOTIFIER_HEARTBEAT_TIMEOUT,
) -> float:
    """The backup's fastest possible takeover (seconds) after the active is cut off (a lower bound).

    *Noticing*: a ping in flight may time out right after the cut, then each of the ``Retry Count``
    retries waits ``Retry Ping Delay`` and times out; the notifier links' heartbeat may see the
    connection die sooner, but no sooner than its timeout less one interval. *Deciding*: with both
    connections down and the primary silent, the backup switches either on Primary Unreachable, after
    a ping set of ICMP echoes (NetTest Timeout each) and the extra sets (Unreachable Primary Ping Count,
    Ping Delay apart; unlimited = never), or, should the primary answer ICMP (only its ports cut), on
    the Reconnect Timeout (0 = at once). The backup's own network checks answer at once (best case).
    """
    pings = p.retry_count * (p.retry_ping_delay + p.timeout)
    notice = max(0.0, min(pings, heartbeat_timeout - heartbeat))
    ping_set = PRIMARY_PINGS_PER_SET * p.nettest_timeout
    extra = p.extra_unreachable_ping_sets
    unreachable = math.inf if extra is None else ping_set + extra * (p.unreachable_primary_ping_delay + ping_set)
    return notice + min(unreachable, max(0.0, reconnect_timeout))


@dataclass(frozen=True)
class IsolationPlan:
    """The active's isolation timings, derived from the backup's fastest takeover."""

    fastest_takeover: float
    peer_silence: float  # the peer counts as lost after this much silence on port 3633
    check_after: float  # the network check starts after this much silence (its answer is due by peer_silence)
    echo_timeout: float  # the active's own network check: timeout of each ICMP echo
    echoes: int  # echoes the check may send (gateways + NetTest addresses)
    period: float  # the watch looks at carrier and peer this often

    @property
    def carrier_bound(self) -> float:
        """Step-down bound after the peer-facing interface lost carrier or address (no probe)."""
        return self.period + STEP_SLACK

    @property
    def probe_bound(self) -> float:
        """Step-down bound when only the network check can tell (peer silence, then the echoes)."""
        return max(self.peer_silence, self.check_after + self.echoes * self.echo_timeout) + self.period + STEP_SLACK

    @property
    def carrier_guaranteed(self) -> bool:
        return self.carrier_bound < self.fastest_takeover

    @property
    def probe_guaranteed(self) -> bool:
        return self.echo_timeout >= MIN_ECHO_TIMEOUT and self.probe_bound < self.fastest_takeover

    def describe(self) -> str:
        def ok(flag: bool) -> str:
            return "shorter" if flag else "NOT shorter"

        fastest = "never (unlimited ping sets)" if math.isinf(self.fastest_takeover) else f"{self.fastest_takeover:.2f} s"
        return (
            f"the backup's fastest possible takeover is {fastest}; an isolated active steps down within "
            f"{self.carrier_bound:.2f} s on carrier/address loss ({ok(self.carrier_guaranteed)}) and within "
            f"{self.probe_bound:.2f} s by the network check ({ok(self.probe_guaranteed)}: peer silence "
            f"{self.peer_silence:.2f} s, check from {self.check_after:.2f} s of silence, {self.echoes} echo(es) "
            f"of {self.echo_timeout:.3f} s)"
        )


def plan_isolation(
    fastest: float, *, hello_interval: float, peer_timeout: float, nettest_timeout: float, echoes: int
) -> IsolationPlan:
    """The active's timings within ``MARGIN`` of the fastest takeover (the budget): the peer silence is
    the larger of ``SILENCE_HELLOS`` Hello intervals and half the budget (never more than
    ``peer_timeout``); the network check may start after 1.1 Hello intervals of silence (a false start
    costs a few echoes: both conditions are needed) and its echoes share what is left of the budget,
    never longer than ``NetTest Timeout``."""
    echoes = max(1, echoes)
    budget = MARGIN * fastest if math.isfinite(fastest) else math.inf
    silence = max(SILENCE_HELLOS * hello_interval, min(peer_timeout, budget / 2))
    earliest = 1.1 * hello_interval
    left = budget - WATCH_PERIOD - STEP_SLACK - earliest
    echo = min(nettest_timeout, max(0.0, left / echoes))
    if echo < MIN_ECHO_TIMEOUT:
        echo = min(nettest_timeout, MIN_ECHO_TIMEOUT)  # still check; the plan says it is not guaranteed
    check_after = max(earliest, silence - echoes * echo)
    return IsolationPlan(fastest, silence, check_after, echo, echoes, WATCH_PERIOD)


# ------------------------------------------------------------------------------ the decision


@dataclass(frozen=True)
class LinkStatus:
    """The interface that reaches the peer: carrier and whether it still holds this node's address."""

    interface: str
    carrier: bool
    has_address: bool

    @property
    def ok(self) -> bool:
        return self.carrier and self.has_address

    def describe(self) -> str:
        if not self.carrier:
            return f"interface {self.interface} lost its carrier"
        if not self.has_address:
            return f"interface {self.interface} lost this node's address"
        return f"interface {self.interface} is up"


def isolation_verdict(
    peer_silent_for: float | None, plan: IsolationPlan, link: LinkStatus | None, network_ok: bool | None
) -> str | None:
    """Why the active is isolated now (None: it is not, or not known yet).

    ``peer_silent_for``: seconds since the last Hello (None: never heard, counts as lost);
    ``network_ok``: the one rule's verdict of a check made while the peer was silent (None: no check
    finished yet). Carrier or address loss needs no probe and no silence: the peer cannot be reached.
    """
    if link is not None and not link.ok:
        return f"{link.describe()}: the backup cannot be reached"
    lost = peer_silent_for is None or peer_silent_for >= plan.peer_silence
    if not lost:
        return None
    if network_ok is False:
        silent = "never heard" if peer_silent_for is None else f"silent for {peer_silent_for:.2f} s"
        return f"the backup is {silent} on port 3633 and this node's own network check failed"
    return None


def needs_network_check(peer_silent_for: float | None, plan: IsolationPlan) -> bool:
    """Start the network check once the peer has been silent for ``plan.check_after``: its answer is
    then ready about when the silence reaches ``plan.peer_silence``."""
    return peer_silent_for is None or peer_silent_for >= plan.check_after


def network_returned(peer_silent_for: float | None, plan: IsolationPlan, link: LinkStatus | None,
                     network_ok: bool | None) -> str | None:
    """Why a stepped-down node may renegotiate now (None: not yet): it hears the peer again, or its
    interface is fine and its network check passes."""
    if link is not None and not link.ok:
        return None
    if peer_silent_for is not None and peer_silent_for < plan.peer_silence:
        return "the peer is heard again on port 3633"
    if network_ok:
        return "this node's own network check passes again"
    return None


# --------------------------------------------------------------------------- reading the link


def read_link_status(
    address: str,
    *,
    addresses: Callable[[], dict[str, list[str]]],
    sys_class_net: Path = Path("/sys/class/net"),
) -> LinkStatus | None:
    """The interface holding ``address`` (this node's VirtualSwitch address, the one that reaches the
    peer): carrier from ``/sys/class/net/<if>/carrier`` (operstate when unreadable). ``addresses``
    maps interface -> its addresses (``psutil.net_if_addrs``). None when no interface ever held it
    (wildcard or unknown): nothing to watch. A vanished address keeps the last interface known."""
    for name, addrs in addresses().items():
        if address in addrs:
            return LinkStatus(name, _carrier(sys_class_net / name), True)
    return None


def _carrier(path: Path) -> bool:
    try:
        return (path / "carrier").read_text().strip() == "1"
    except OSError:
        try:
            return (path / "operstate").read_text().strip() in ("up", "unknown")
        except OSError:
            return False


def carrier_of(interface: str, sys_class_net: Path = Path("/sys/class/net")) -> bool:
    """The carrier of ``interface`` (False when it is gone)."""
    return _carrier(sys_class_net / interface)
