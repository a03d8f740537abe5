"""VirtualSwitch: the node's port 3633.

- binds a ROUTER on this node's VirtualSwitch port and connects a DEALER to the peer's;
- tells the peer its status every ``hello_interval`` (``Hello``) and tracks the peer's;
- start-up negotiation: on ``Negotiate`` it asks the peer for its state, retrying until
  ``startup_wait`` runs out, and reports the answer (or the silence) to the Supervisor;
- answers ``QueryState`` (peer, control panel, applications: Query Backup) and
  ``HistoryRequest``; forwards ``SwitchRequest``, ``RejoinRequest`` and ``Discontinue`` to the
  Supervisor, which decides and answers through the reply callback;
- carries a controlled switch's ``Discontinue`` to the peer (bounded wait for the ack);
- pushes Commence/Discontinue ``RoleEvent``s to subscribed applications and records this
  node's state changes in the peer's copy of its history.

It decides nothing: every decision is the Supervisor's.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.roles.event_log import EventLog, EventRecord
from actors.roles.isolation_watch import PeerHeard, PeerLost
from actors.runtime.base import Inbound, NodeActor, handles
from actors.runtime.context import NodeContext
from transport.codec import REQUEST, Envelope
from transport.endpoint import Endpoint, EndpointOptions, tcp
from transport.messages import (
    CommandReply,
    ConnectionEvent,
    Discontinue,
    DiscontinueAck,
    Hello,
    HistoryReply,
    HistoryRequest,
    Message,
    QueryState,
    RecordEvent,
    RejoinRequest,
    RoleEvent,
    StatusReport,
    Subscribe,
    SwitchRequest,
    Tick,
    WhoAmI,
    WhoAmIReply,
)
from transport.security import Security

PEER_EVENTS_FILE = "peer-events.jsonl"
SUBSCRIPTION_TTL = 10.0
DISCONTINUE_RETRY = 0.1
"""Seconds between two attempts to deliver a Discontinue within [timing] discontinue_timeout."""


@dataclass(frozen=True)
class Negotiate:
    """Supervisor -> VirtualSwitch: find out the peer's role for start-up negotiation."""

    attempt: int = 0


@dataclass(frozen=True)
class NegotiationResult:
    """VirtualSwitch -> Supervisor: the peer's answer (``answered`` False: nobody answered)."""

    answered: bool
    peer_role: str = ""
    peer_generation: int = 0
    peer_force_backup: bool = False
    peer_release: str = ""


@dataclass(frozen=True)
class PeerSeen:
    """VirtualSwitch -> Supervisor: the peer's latest status (on every change of role or generation)."""

    node: str
    role: str
    generation: int
    release: str


@dataclass(frozen=True)
class SendDiscontinue:
    generation: int
    reason: str


@dataclass(frozen=True)
class DiscontinueResult:
    acked: bool
    detail: str


@dataclass(frozen=True)
class PublishRoleChange:
    """Supervisor -> VirtualSwitch: tell applications (commence/discontinue) and the peer's log."""

    record: dict[str, Any]
    app_event: str = ""


@dataclass(frozen=True)
class GetPeerStatus:
    pass


@dataclass(frozen=True)
class _QueryOutcome:
    attempt: int
    future: Future[Envelope]


@dataclass(frozen=True)
class _DiscontinueOutcome:
    future: Future[Envelope]


@dataclass(frozen=True)
class Forwarded:
    """A request the Supervisor must decide; ``reply`` answers the asker (any thread)."""

    msg: Message
    sender: str
    peer_reachable: bool
    reply: Callable[[Message], None]


class VirtualSwitch(NodeActor):
    actor_name = "VirtualSwitch"

    def __init__(
        self,
        ctx: NodeContext,
        incarnation: int = 1,
        name: str | None = None,
        security: Security | None = None,
    ) -> None:
        super().__init__(ctx, incarnation, name)
        self.security = security or Security.plain()
        self.peer_hello: Hello | None = None
        self.peer_seen_at: float | None = None
        self.peer_connected = False
        self.server: Endpoint | None = None
        self.client: Endpoint | None = None
        self.subscribers: dict[bytes, float] = {}
        self.negotiation_deadline: float | None = None
        self.negotiation_attempt = -1
        self.discontinue: SendDiscontinue | None = None
        self.discontinue_deadline = 0.0
        self.peer_log = EventLog(Path(ctx.config.data_dir) / PEER_EVENTS_FILE)

    def started(self) -> None:
        cfg = self.ctx.config
        self.server = self.open_endpoint(
            "vswitch.server", "server", tcp(cfg.me.address, cfg.me.vswitch_port), security=self.security
        )
        self.client = self.open_endpoint(
            "vswitch.peer",
            "client",
            tcp(cfg.peer.address, cfg.peer.vswitch_port),
            security=self.security,
            options=EndpointOptions(reconnect_ivl_ms=200, reconnect_ivl_max_ms=1000),
        )
        self.on_tick(Tick("hello"))

    # ------------------------------------------------------------------------------ status

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

    def my_status(self) -> StatusReport:
        role, cfg, peer = self.ctx.role, self.ctx.config, self.peer_hello
        reachable = self.peer_reachable()
        return StatusReport(
            node=self.ctx.node,
            role=role.role,
            generation=role.generation,
            release=cfg.release,
            started_at=self.started_at,
            starting_up=role.starting_up,
            manual_switch_only=role.manual_switch_only,
            force_backup=role.force_backup,
            replication=role.replication,
            server_a=cfg.server_a.name,
            server_b=cfg.server_b.name,
            peer=cfg.peer.name,
            peer_reachable=reachable,
            peer_role=peer.role if peer and reachable else "",
            peer_release=peer.release if peer else "",
            messages=tuple(self.ctx.status_lines)[-20:],
            ds=dict(self.ctx.ds_status()),  # issue 10
            isolation=self.ctx.config.roles.isolation,
        )

    def peer_reachable(self) -> bool:
        return self.peer_seen_at is not None and (
            self.ctx.clock.now() - self.peer_seen_at <= self.ctx.config.timing.peer_timeout
        )

    def _supervisor(self, msg: Any) -> None:
        if self.ctx.supervisor is not None:
            self.ctx.supervisor.tell(msg)

    # ------------------------------------------------------------------------------ timers

    @handles(Tick)
    def on_tick(self, msg: Tick) -> None:
        if msg.name == "hello":
            if self.client is not None:
                self.client.send(self.my_hello())
            self.schedule(self.ctx.config.timing.hello_interval, Tick("hello"))
        elif msg.name == "negotiate" and msg.token == self.negotiation_attempt:
            self._query_peer()
        elif msg.name == "discontinue":
            self._send_discontinue()

    # ------------------------------------------------------------------------- negotiation

    @handles(Negotiate)
    def on_negotiate(self, msg: Negotiate) -> None:
        self.negotiation_attempt = msg.attempt
        self.negotiation_deadline = self.ctx.clock.now() + self.ctx.config.timing.startup_wait
        self._query_peer()

    def _query_peer(self) -> None:
        if self.client is None or self.negotiation_deadline is None:
            return
        attempt = self.negotiation_attempt
        ref = self.actor_ref
        fut = self.client.request(QueryState(self.ctx.node), timeout=0.5)

        def done(f: Future[Envelope]) -> None:
            ref.tell(_QueryOutcome(attempt, f))

        fut.add_done_callback(done)

    @handles(_QueryOutcome)
    def on_query_outcome(self, msg: _QueryOutcome) -> None:
        if msg.attempt != self.negotiation_attempt or self.negotiation_deadline is None:
            return  # an answer to an older negotiation
        try:
            env = msg.future.result()
        except Exception:
            env = None
        if env is not None and isinstance(env.msg, StatusReport):
            report = env.msg
            self.peer_seen_at = self.ctx.clock.now()
            # the peer's role is known from here on, not only from its next Hello: the rights check
            # ("is there a primary?") must not wave a request through in the gap between the two
            self.ctx.peer_role = (report.role, self.peer_seen_at)
            self._supervisor(PeerHeard(self.peer_seen_at))
            self.negotiation_deadline = None
            self._supervisor(
                NegotiationResult(True, report.role, report.generation, report.force_backup, report.release)
            )
            return
        if self.ctx.clock.now() >= self.negotiation_deadline:
            self.negotiation_deadline = None
            self._supervisor(NegotiationResult(False))
            return
        self.schedule(0.2, Tick("negotiate", self.negotiation_attempt))

    # ------------------------------------------------------------------- controlled switch

    @handles(SendDiscontinue)
    def on_send_discontinue(self, msg: SendDiscontinue) -> None:
        if self.client is None:
            self._supervisor(DiscontinueResult(False, "no link to the peer"))
            return
        self.discontinue = msg
        self.discontinue_deadline = self.ctx.clock.now() + self.ctx.config.timing.discontinue_timeout
        self._send_discontinue()

    def _send_discontinue(self) -> None:
        msg, client = self.discontinue, self.client
        if msg is None or client is None:
            return
        ref = self.actor_ref
        left = max(0.05, self.discontinue_deadline - self.ctx.clock.now())
        fut = client.request(Discontinue(msg.generation, msg.reason, self.ctx.node), timeout=left)
        fut.add_done_callback(lambda f: ref.tell(_DiscontinueOutcome(f)))

    @handles(_DiscontinueOutcome)
    def on_discontinue_outcome(self, msg: _DiscontinueOutcome) -> None:
        try:
            env = msg.future.result()
        except Exception as exc:
            if self.ctx.clock.now() + DISCONTINUE_RETRY < self.discontinue_deadline:
                # e.g. the link to a peer that just restarted is not connected yet: the wait is bounded by
                # discontinue_timeout, not by the first attempt
                self.log.info("Discontinue not delivered yet ({}); trying again", exc)
                self.schedule(DISCONTINUE_RETRY, Tick("discontinue"))
                return
            self.discontinue = None
            self._supervisor(DiscontinueResult(False, f"no acknowledgement from the peer: {exc}"))
            return
        self.discontinue = None
        ack = env.msg
        if isinstance(ack, DiscontinueAck):
            self._supervisor(DiscontinueResult(ack.stale, ack.detail or f"{ack.node} acknowledged"))
        else:
            self._supervisor(DiscontinueResult(False, f"unexpected answer {ack.TYPE}"))

    # ---------------------------------------------------------------------- role changes

    @handles(PublishRoleChange)
    def on_publish(self, msg: PublishRoleChange) -> None:
        if not msg.app_event and self.client is not None and self.peer_reachable():
            self.client.send(RecordEvent(msg.record))
        if msg.app_event and self.server is not None:
            now = self.ctx.clock.now()
            event = RoleEvent(
                msg.app_event,
                self.ctx.node,
                str(msg.record.get("new_state", "")),
                int(msg.record.get("generation", 0)),
                str(msg.record.get("reason") or ""),
            )
            for identity, expires in list(self.subscribers.items()):
                if expires < now:
                    del self.subscribers[identity]
                else:
                    self.server.send(event, to=identity)

    # ------------------------------------------------------------------------- inbound

    @handles(Inbound)
    def on_inbound(self, msg: Inbound) -> None:
        env = msg.env
        body = env.msg
        if isinstance(body, Hello) and body.node != self.ctx.node:
            self._peer_hello(body)
            return
        if isinstance(body, RecordEvent):
            try:
                self.peer_log.append(EventRecord.from_dict(dict(body.record)))
            except (KeyError, TypeError, ValueError) as exc:
                self.log.warning("peer sent an event record that is not valid: {}", exc)
            return
        if env.kind != REQUEST or self.server is None or msg.endpoint != "vswitch.server":
            return
        server, peer = self.server, msg.peer

        def reply(answer: Message) -> None:
            server.reply(env, answer, to=peer)

        if isinstance(body, QueryState):
            if body.asker == self.ctx.config.peer.name:
                # the peer asks (start-up negotiation): it is alive and reaches this port, so an
                # automatic switch here must fence it with Discontinue first (issue 16)
                self._supervisor(PeerHeard(self.ctx.clock.now()))
            reply(self.my_status())
        elif isinstance(body, HistoryRequest):
            reply(self._history(body.limit))
        elif isinstance(body, Subscribe):
            if peer is not None:
                self.subscribers[peer] = self.ctx.clock.now() + SUBSCRIPTION_TTL
            reply(CommandReply(True, "subscribed", self.ctx.role.role))
        elif isinstance(body, WhoAmI):
            reply(self._whoami(env.user))
        elif isinstance(body, (SwitchRequest, RejoinRequest, Discontinue)):
            if env.user and not isinstance(body, Discontinue):
                self.log.info("{} from user {} at {}", body.TYPE, env.user, env.peer_address or "?")
            self._supervisor(Forwarded(body, env.sender, self.peer_reachable(), reply))
        else:
            reply(CommandReply(False, f"the virtual switch does not serve {body.TYPE}"))

    def _whoami(self, user: str) -> WhoAmIReply:
        access = self.security.access
        if access is None or self.security.insecure:
            return WhoAmIReply(self.ctx.node, user, (), False)
        rights = tuple(sorted(r.value for r in access.rights_of(user)))
        return WhoAmIReply(self.ctx.node, user, rights, True)

    def _peer_hello(self, hello: Hello) -> None:
        self.ctx.peer_role = (hello.role, self.ctx.clock.now())
        old = self.peer_hello
        if old is None or not self.peer_reachable():
            self.log.info(
                "peer {} is reachable ({}, generation {})", hello.node, hello.role, hello.generation
            )
        self.peer_hello = hello
        self.peer_seen_at = self.ctx.clock.now()
        heard = PeerHeard(self.peer_seen_at)
        self._supervisor(heard)
        self.tell_actor("IsolationWatch", heard)
        if (
            old is None
            or (old.role, old.generation) != (hello.role, hello.generation)
            or hello.role == "Primary"
        ):
            self._supervisor(PeerSeen(hello.node, hello.role, hello.generation, hello.release))

    def _history(self, limit: int) -> HistoryReply:
        log = self.ctx.event_log
        mine = [r.to_dict() for r in log.read()[-limit:]] if log is not None else []
        theirs = [r.to_dict() for r in self.peer_log.read()[-limit:]]
        return HistoryReply(self.ctx.node, tuple(mine), tuple(theirs))

    @handles(ConnectionEvent)
    def on_connection_event(self, event: ConnectionEvent) -> None:
        if event.endpoint == "vswitch.peer" and event.kind in (
            "handshake",
            "disconnected",
            "handshake_failed",
        ):
            self.peer_connected = event.kind == "handshake"
            if event.kind == "disconnected":
                self._supervisor(PeerLost(self.ctx.clock.now()))
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
