"""IsolationWatch: the active watches its peer and its own network (issue 16, never two actives).

Runs while the node is Primary and while it is Stepped Down (the Supervisor's ``isolation`` group).
Every :data:`~actors.roles.isolation.WATCH_PERIOD` it looks at the interface that reaches the peer
(carrier, address: no probe) and at the time since the peer's last Hello (``PeerHeard`` from the
VirtualSwitch); once the peer has been silent long enough it runs THE local-network check (the same
function the backup uses, off its thread, with the plan's echo timeout). The decisions are the pure
functions of :mod:`actors.roles.isolation`; this actor only tells the Supervisor ``Isolated`` or
``NetworkReturned``, which posts them to the state machine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from actors.roles.isolation import (
    IsolationPlan,
    LinkStatus,
    isolation_verdict,
    needs_network_check,
    network_returned,
)
from actors.runtime.base import NodeActor, handles
from actors.runtime.context import NodeContext
from transport.messages import Tick

RECHECK_WHILE_STEPPED_DOWN = 0.5
"""Seconds between two network checks while stepped down."""


@dataclass(frozen=True)
class PeerHeard:
    """VirtualSwitch -> Supervisor and IsolationWatch: a Hello from the peer arrived (clock time)."""

    at: float


@dataclass(frozen=True)
class PeerLost:
    """VirtualSwitch -> Supervisor: the connection to the peer's VirtualSwitch closed (clock time). A
    peer last heard before this is not reachable: a crashed process's socket closes at once, and
    waiting for its Discontinue answer would only delay the takeover."""

    at: float


@dataclass(frozen=True)
class Isolated:
    """IsolationWatch -> Supervisor: the active is isolated (why)."""

    detail: str


@dataclass(frozen=True)
class NetworkReturned:
    """IsolationWatch -> Supervisor: a stepped-down node may renegotiate (why)."""

    detail: str


@dataclass(frozen=True)
class _Checked:
    ok: bool
    token: int


class IsolationWatch(NodeActor):
    actor_name = "IsolationWatch"

    def __init__(
        self,
        ctx: NodeContext,
        incarnation: int = 1,
        name: str | None = None,
        *,
        plan: Callable[[], IsolationPlan],
        network_check: Callable[[float], bool],
        link: Callable[[str | None], LinkStatus | None],
    ) -> None:
        super().__init__(ctx, incarnation, name)
        self.make_plan = plan
        self.network_check = network_check
        self.read_link = link
        self.plan: IsolationPlan | None = None
        self.heard_at = 0.0
        self.network_ok: bool | None = None  # verdict of a check made while the peer was silent
        self.checking = False
        self.token = 0
        self.last_check = -1e9
        self.interface: str | None = None
        self.reported = ""

    def started(self) -> None:
        self.plan = self.make_plan()
        self.heard_at = self.ctx.clock.now()  # a fresh start gives the peer one silence period
        self.log.info("isolation watch started: {}", self.plan.describe())
        self.on_tick(Tick("watch"))

    @handles(PeerHeard)
    def on_peer_heard(self, msg: PeerHeard) -> None:
        self.heard_at = max(self.heard_at, msg.at)
        if self.ctx.role.role == "Primary":
            self.network_ok = None  # a check made before the peer answered proves nothing now
            self.token += 1
            self.checking = False
            self.reported = ""

    @handles(_Checked)
    def on_checked(self, msg: _Checked) -> None:
        if msg.token != self.token:
            return
        self.checking = False
        self.network_ok = msg.ok
        self._look()

    @handles(Tick)
    def on_tick(self, msg: Tick) -> None:
        if msg.name != "watch" or self.plan is None:
            return
        self._look()
        self.schedule(self.plan.period, Tick("watch"))

    def _link(self) -> LinkStatus | None:
        link = self.read_link(self.interface)
        if link is not None:
            self.interface = link.interface
        return link

    def _look(self) -> None:
        plan = self.plan
        assert plan is not None
        role = self.ctx.role.role
        now = self.ctx.clock.now()
        silent = now - self.heard_at
        link = self._link()
        if role == "Primary":
            why = isolation_verdict(silent, plan, link, self.network_ok)
            if why is not None:
                if not self.reported:
                    self.reported = why
                    self._supervisor(Isolated(why))
                self.network_ok = None  # keep checking: a passing check ends this isolation
                return
            if self.network_ok and (link is None or link.ok):
                self.reported = ""
            stale = self.network_ok is not None and now - self.last_check >= max(plan.peer_silence, 0.5)
            if needs_network_check(silent, plan) and not self.checking and (self.network_ok is None or stale):
                self._check(plan.echo_timeout)
        elif role == "Stepped Down":
            why = network_returned(silent, plan, link, self.network_ok)
            if why is not None:
                self.network_ok = None
                self._supervisor(NetworkReturned(why))
                return
            if not self.checking and now - self.last_check >= RECHECK_WHILE_STEPPED_DOWN and (link is None or link.ok):
                self.network_ok = None
                self._check(plan.echo_timeout)

    def _check(self, timeout: float) -> None:
        self.token += 1
        self.checking = True
        self.last_check = self.ctx.clock.now()
        token, check, ref, log = self.token, self.network_check, self.actor_ref, self.log

        def work() -> None:
            try:
                ok = bool(check(timeout))
            except Exception:
                log.exception("the isolation network check failed; counting the network as down")
                ok = False
            ref.tell(_Checked(ok, token))

        threading.Thread(target=work, name="isolation-check", daemon=True).start()

    def _supervisor(self, msg: object) -> None:
        if self.ctx.supervisor is not None:
            self.ctx.supervisor.tell(msg)
