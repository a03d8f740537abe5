"""NotifierLink main and aux: the backup's two redundant connections to the primary's Notifier.

Each link owns one client endpoint to one port of the primary's Notifier (main: 3634, aux:
3635), so the two are distinguishable flows that a lab can cut independently. It reports
connected/disconnected (ZeroMQ socket monitor) to the Supervisor and the monitors, keeps
``ctx.links`` current for anyone who checks "the connected state directly", carries the
monitors' pings (``LinkPing`` -> ``LinkResult``), and, while the Supervisor reconnects,
probes the remote Notifier every second (``Probe``) and reports when it answers again.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pykka
from prometheus_client import Histogram

from actors.runtime.base import Inbound, NodeActor, handles
from actors.runtime.context import NodeContext
from transport.codec import Envelope
from transport.endpoint import Endpoint, EndpointClosed, EndpointOptions, RequestTimeout, SendFailed, tcp
from transport.messages import (
    ConnectionEvent,
    Message,
    ModuleGone,
    NotifierPing,
    NotifierPong,
    Tick,
)
from transport.security import Security

MAIN, AUX = "main", "aux"
HEARTBEAT_INTERVAL = 1.0
"""Seconds between ZeroMQ heartbeats on the notifier links; a peer silent for ``HEARTBEAT_TIMEOUT_FACTOR``
intervals is declared disconnected (a frozen or vanished active)."""
HEARTBEAT_TIMEOUT_FACTOR = 3


def link_actor_name(link: str) -> str:
    return f"NotifierLink.{link}"


def link_endpoint_name(link: str) -> str:
    """The name of the link's client endpoint in the node's endpoint registry."""
    return f"notifier.link.{link}"


@dataclass(frozen=True)
class LinkPing:
    """Send ``msg`` as a request on this link; the answer goes to ``reply_to`` as a LinkResult."""

    msg: Message
    timeout: float
    token: int
    reply_to: pykka.ActorRef[Any]


@dataclass(frozen=True)
class LinkResult:
    """``kind``: ok (``reply`` set), timeout, connection_lost or cancelled."""

    link: str
    token: int
    kind: str
    reply: Message | None = None
    detail: str = ""


@dataclass(frozen=True)
class LinkState:
    link: str
    connected: bool


@dataclass(frozen=True)
class Probe:
    active: bool


@dataclass(frozen=True)
class LinkAnswering:
    """A probe was answered by a serving (primary) Notifier."""

    link: str
    node: str
    generation: int


def link_round_trip(ctx: NodeContext, link: str) -> Histogram:
    """The round-trip histogram of a notifier link (``/metrics``)."""
    family = ctx.metrics.histogram(
        "switchover_link_round_trip_seconds", "Round trip of a ping answered on a notifier link", ("link",)
    )
    return family.labels(link)


def deliver(
    link: str, ping: LinkPing, future: Future[Envelope], sent_at: float, round_trip: Histogram
) -> None:
    """The request's outcome as a LinkResult to whoever asked (called on the endpoint's I/O thread);
    an answered ping's round trip goes to the link's histogram."""
    try:
        env = future.result()
        result = LinkResult(link, ping.token, "ok", env.msg)
        round_trip.observe(time.monotonic() - sent_at)
    except RequestTimeout as exc:
        result = LinkResult(link, ping.token, "timeout", None, str(exc))
    except (SendFailed, EndpointClosed) as exc:
        result = LinkResult(link, ping.token, "connection_lost", None, str(exc))
    except Exception as exc:  # anything else the endpoint failed the future with: the ping is lost
        result = LinkResult(link, ping.token, "connection_lost", None, f"{type(exc).__name__}: {exc}")
    if ping.reply_to.is_alive():
        ping.reply_to.tell(result)


class NotifierLink(NodeActor):
    def __init__(
        self,
        ctx: NodeContext,
        incarnation: int = 1,
        name: str | None = None,
        *,
        link: str = MAIN,
        security: Security | None = None,
        reconnect_delay: float = 5.0,
        tos: int = 0,
        listeners: tuple[str, ...] = ("Supervisor", "PrimaryMonitor", "ModuleMonitor"),
        heartbeat: float = HEARTBEAT_INTERVAL,
    ) -> None:
        super().__init__(ctx, incarnation, name or link_actor_name(link))
        self.link = link
        self.security = security or Security.plain()
        self.reconnect_delay = reconnect_delay
        self.tos = tos
        self.listeners = listeners
        self.heartbeat = heartbeat
        self.endpoint: Endpoint | None = None
        self.probing = False
        self.probe_seq = 0

    def started(self) -> None:
        peer = self.ctx.config.peer
        port = peer.notifier_port if self.link == MAIN else peer.notifier_aux_port
        options = EndpointOptions(
            reconnect_ivl_ms=int(self.reconnect_delay * 1000),
            tos=self.tos,
            heartbeat_ivl_ms=int(self.heartbeat * 1000),
            heartbeat_timeout_ms=int(self.heartbeat * HEARTBEAT_TIMEOUT_FACTOR * 1000),
        )
        self.ctx.links[self.link] = False
        self.endpoint = self.open_endpoint(
            link_endpoint_name(self.link),
            "client",
            tcp(peer.address, port),
            security=self.security,
            options=options,
        )

    def stopped(self) -> None:
        self.ctx.links.pop(self.link, None)

    def _tell_listeners(self, msg: Any) -> None:
        for name in self.listeners:
            if name == "Supervisor":
                if self.ctx.supervisor is not None:
                    self.ctx.supervisor.tell(msg)
            else:
                self.tell_actor(name, msg)

    @handles(ConnectionEvent)
    def on_connection_event(self, event: ConnectionEvent) -> None:
        # up once the ZeroMQ handshake succeeded (with CURVE a TCP connect alone proves nothing)
        if event.kind not in ("handshake", "disconnected", "closed", "handshake_failed"):
            return
        connected = event.kind == "handshake"
        if self.ctx.links.get(self.link) == connected:
            return
        self.ctx.links[self.link] = connected
        if connected:
            self.log.info("{} notifier connection to the primary established ({})", self.link, event.address)
        else:
            self.log.warning("Lost notifier connection ({}): {}", self.link, event.address)
        self._tell_listeners(LinkState(self.link, connected))

    @handles(Inbound)
    def on_inbound(self, msg: Inbound) -> None:
        if isinstance(msg.env.msg, ModuleGone):
            gone = msg.env.msg
            self.log.warning("the primary's notifier reports module {} (pid {}) gone", gone.module, gone.pid)
            self.tell_actor("ModuleMonitor", gone)

    @handles(LinkPing)
    def on_ping(self, ping: LinkPing) -> None:
        if self.endpoint is None:
            ping.reply_to.tell(LinkResult(self.link, ping.token, "connection_lost", None, "link not started"))
            return
        sent_at = time.monotonic()
        future = self.endpoint.request(ping.msg, ping.timeout)
        link = self.link
        round_trip = link_round_trip(self.ctx, link)
        # the answer goes straight from the endpoint's I/O thread to the pinging monitor: one thread
        # hop per ping less (issue 14, an idle backup pings several times a second)
        future.add_done_callback(lambda f: deliver(link, ping, f, sent_at, round_trip))

    @handles(Probe)
    def on_probe(self, msg: Probe) -> None:
        if msg.active and not self.probing:
            self.probing = True
            self.on_tick(Tick("probe"))
        self.probing = msg.active

    @handles(Tick)
    def on_tick(self, msg: Tick) -> None:
        if msg.name != "probe" or not self.probing or self.endpoint is None:
            return
        self.probe_seq += 1
        self.endpoint.request(NotifierPing(self.probe_seq), 1.0).add_done_callback(
            self.on_own_thread(self._probe_answer)
        )
        self.schedule(1.0, Tick("probe"))

    def _probe_answer(self, future: Future[Envelope]) -> None:
        try:
            pong = future.result().msg
        except Exception:
            return
        if self.probing and isinstance(pong, NotifierPong) and pong.serving:
            self._tell_listeners(LinkAnswering(self.link, pong.node, pong.generation))
