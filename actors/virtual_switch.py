"""VirtualSwitch: the node's port 3633.

It binds a ROUTER on its own VirtualSwitch port and connects a DEALER to the peer's. Every
``hello_interval`` it tells the peer its status (``Hello``); it answers ``QueryState`` from
the peer, the control panel and applications with the same status. It keeps the peer's
last status and whether the peer is reachable (a Hello within ``peer_timeout``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.base import Inbound, NodeActor, handles
from actors.context import NodeContext
from transport.codec import REQUEST
from transport.endpoint import Endpoint
from transport.messages import ConnectionEvent, Hello, Message, Tick, register
from transport.security import Security


@register("QueryState")
@dataclass(frozen=True)
class QueryState(Message):
    """Ask a node's VirtualSwitch for its status; the reply is a ``Hello``."""

    asker: str = ""


@register("GetPeerStatus")
@dataclass(frozen=True)
class GetPeerStatus(Message):
    pass


def tcp(address: str, port: int) -> str:
    return f"tcp://{address}:{port}"


class VirtualSwitch(NodeActor):
    actor_name = "VirtualSwitch"

    def __init__(self, ctx: NodeContext, incarnation: int = 1, name: str | None = None,
                 security: Security | None = None) -> None:
        super().__init__(ctx, incarnation, name)
        self.security = security or Security.plain()
        self.peer_hello: Hello | None = None
        self.peer_seen_at: float | None = None
        self.peer_connected = False
        self.server: Endpoint | None = None
        self.client: Endpoint | None = None

    def started(self) -> None:
        cfg = self.ctx.config
        self.server = self.open_endpoint(
            "vswitch.server", "server", tcp(cfg.me.address, cfg.me.vswitch_port), security=self.security
        )
        self.client = self.open_endpoint(
            "vswitch.peer", "client", tcp(cfg.peer.address, cfg.peer.vswitch_port), security=self.security
        )
        self.on_tick(Tick("hello"))

    def my_hello(self) -> Hello:
        role = self.ctx.role
        return Hello(
            node=self.ctx.node,
            role=role.role,
            generation=role.generation,
            release=self.ctx.config.release,
            started_at=self.started_at,
            starting_up=role.starting_up,
            replication=role.replication,
            manual_switch_only=role.manual_switch_only,
        )

    def peer_reachable(self) -> bool:
        return self.peer_seen_at is not None and (
            self.ctx.clock.now() - self.peer_seen_at <= self.ctx.config.timing.peer_timeout
        )

    @handles(Tick)
    def on_tick(self, msg: Tick) -> None:
        if self.client is not None:
            self.client.send(self.my_hello())
        self.schedule(self.ctx.config.timing.hello_interval, Tick("hello"))

    @handles(Inbound)
    def on_inbound(self, msg: Inbound) -> None:
        env = msg.env
        if isinstance(env.msg, Hello) and env.msg.node != self.ctx.node:
            if self.peer_hello is None or not self.peer_reachable():
                self.log.info("peer {} is reachable ({}, generation {})", env.msg.node, env.msg.role,
                              env.msg.generation)
            self.peer_hello = env.msg
            self.peer_seen_at = self.ctx.clock.now()
        if env.kind == REQUEST and self.server is not None and msg.endpoint == "vswitch.server":
            if isinstance(env.msg, QueryState):
                self.server.reply(env, self.my_hello(), to=msg.peer)

    @handles(ConnectionEvent)
    def on_connection_event(self, event: ConnectionEvent) -> None:
        if event.endpoint == "vswitch.peer" and event.kind in ("connected", "disconnected"):
            self.peer_connected = event.kind == "connected"
            self.log.info("link to peer VirtualSwitch {}: {}", event.address, event.kind)

    @handles(GetPeerStatus)
    def peer_status(self, msg: GetPeerStatus | None = None) -> dict[str, Any]:
        hello = self.peer_hello
        seen = self.peer_seen_at
        return {
            "name": self.ctx.config.peer.name,
            "reachable": self.peer_reachable(),
            "connected": self.peer_connected,
            "last_seen_ago": None if seen is None else round(self.ctx.clock.now() - seen, 3),
            "role": hello.role if hello else None,
            "generation": hello.generation if hello else None,
            "release": hello.release if hello else None,
        }
