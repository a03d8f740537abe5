"""Notifier: ports 3634 (main) and 3635 (aux) of every node.

- local modules register under a name with their PID (``RegisterModule``) and answer
  Diagnostic Pings (``ModulePing``) with it;
- on the primary it answers the backup's ``NotifierPing`` on either connection and routes
  ``ModulePing`` to the module registered under that name. When no such module is
  registered, or its process is gone, it answers *rejected* at once, so a crashed module is
  detected without waiting for a timeout. A hung module is not answered for: the backup's
  own timeout decides, as the specification's TS ping does;
- it learns that a registered module's process exited the moment it does (a pidfd,
  :mod:`actors.monitoring.process_watch`; nothing is polled while nothing happens): the module is
  unregistered, pings forwarded to it and still unanswered are answered *rejected*, and the backups
  that pinged it recently are told (``ModuleGone``);
- a ping for a module name that has never registered here (since this node started) is answered
  ``not-registered``: the backup does not count that as a failure, so a pair without a module does
  not switch back and forth;
- a node that is not primary answers ``NotifierPing`` with ``serving=False`` and rejects
  module pings from the peer: it serves nothing.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

from actors.monitoring.process_watch import ProcessWatch, process_gone
from actors.runtime.base import Inbound, NodeActor, handles
from actors.runtime.context import NodeContext
from transport.codec import REQUEST, Envelope
from transport.endpoint import Endpoint, tcp
from transport.messages import (
    CommandReply,
    ModuleGone,
    ModulePing,
    ModulePingReply,
    NotifierPing,
    NotifierPong,
    RegisterModule,
)
from transport.security import Security

NOT_REGISTERED = "not-registered"
"""ModulePingReply status: no module of that name has registered on this node since it started (not a
failure: a pair may run without a module). ``rejected`` means one did and is gone."""
MAX_FORWARD_TIMEOUT = 120.0
WATCHER_TTL = 150.0
"""A peer that pinged a module this recently hears when it goes: more than twice the longest regular
module ping interval (Switchover TS Timeout, at most 60 s)."""


@dataclass
class Registration:
    name: str
    pid: int
    endpoint: str
    identity: bytes


@dataclass(frozen=True)
class _Forwarded:
    token: int
    future: Future[Envelope]


@dataclass(frozen=True)
class _InFlight:
    """A module ping forwarded to the module and not answered yet."""

    endpoint: str
    request: Envelope
    peer: bytes | None
    module: str


@dataclass(frozen=True)
class _Exited:
    pid: int


class Notifier(NodeActor):
    actor_name = "Notifier"

    def __init__(
        self,
        ctx: NodeContext,
        incarnation: int = 1,
        name: str | None = None,
        security: Security | None = None,
        forward_timeout: float = 60.0,
    ) -> None:
        super().__init__(ctx, incarnation, name)
        self.security = security or Security.plain()
        self.forward_timeout = forward_timeout
        self.modules: dict[str, Registration] = {}
        self.ever_registered: set[str] = set()  # names that registered since this node started
        self.endpoints: dict[str, Endpoint] = {}
        self.watchers: dict[tuple[str, bytes], float] = {}  # (endpoint, peer identity) -> last ping
        self.in_flight: dict[int, _InFlight] = {}
        self._tokens = 0
        self.process_watch: ProcessWatch | None = None

    def started(self) -> None:
        me = self.ctx.config.me
        for name, port in (("notifier.main", me.notifier_port), ("notifier.aux", me.notifier_aux_port)):
            self.endpoints[name] = self.open_endpoint(
                name, "server", tcp(me.address, port), security=self.security
            )
        ref = self.actor_ref
        self.process_watch = ProcessWatch(lambda pid: ref.tell(_Exited(pid)) if ref.is_alive() else None)

    def stopped(self) -> None:
        if self.process_watch is not None:
            self.process_watch.close()

    @handles(_Exited)
    def on_exited(self, msg: _Exited) -> None:
        for name, reg in list(self.modules.items()):
            if reg.pid != msg.pid:
                continue
            self.log.warning("module {} (pid {}) exited; unregistered", name, reg.pid)
            del self.modules[name]
            self._reject_in_flight(name, f"module {name} (pid {reg.pid}) exited")
            self._tell_watchers(ModuleGone(name, reg.pid))

    def _reject_in_flight(self, module: str, detail: str) -> None:
        for token, fwd in list(self.in_flight.items()):
            endpoint = self.endpoints.get(fwd.endpoint)
            if fwd.module != module or endpoint is None:
                continue
            del self.in_flight[token]
            endpoint.reply(fwd.request, ModulePingReply(module, "rejected", 0, detail), to=fwd.peer)

    def _tell_watchers(self, msg: ModuleGone) -> None:
        now = self.ctx.clock.now()
        for (endpoint_name, identity), seen in list(self.watchers.items()):
            if now - seen > WATCHER_TTL:
                del self.watchers[(endpoint_name, identity)]
            elif self.serving():
                self.endpoints[endpoint_name].send(msg, to=identity)

    def serving(self) -> bool:
        return self.ctx.role.role == "Primary"

    @handles(Inbound)
    def on_inbound(self, msg: Inbound) -> None:
        env, body = msg.env, msg.env.msg
        endpoint = self.endpoints.get(msg.endpoint)
        if endpoint is None or env.kind != REQUEST:
            return
        if isinstance(body, NotifierPing):
            role = self.ctx.role
            endpoint.reply(
                env, NotifierPong(self.ctx.node, role.role, role.generation, self.serving()), to=msg.peer
            )
        elif isinstance(body, RegisterModule):
            self._register(body, msg, endpoint)
        elif isinstance(body, ModulePing):
            self._route(body, msg, endpoint)
        else:
            endpoint.reply(env, CommandReply(False, f"the notifier does not serve {body.TYPE}"), to=msg.peer)

    def _register(self, body: RegisterModule, msg: Inbound, endpoint: Endpoint) -> None:
        old = self.modules.get(body.name)
        if old is None or (old.pid, old.identity) != (body.pid, msg.peer):
            self.log.info("module {} registered (pid {})", body.name, body.pid)
        self.modules[body.name] = Registration(body.name, body.pid, msg.endpoint, msg.peer or b"")
        if self.process_watch is not None and (old is None or old.pid != body.pid):
            self.process_watch.watch(body.pid)
            if old is not None and all(r.pid != old.pid for r in self.modules.values()):
                self.process_watch.unwatch(old.pid)
        self.ever_registered.add(body.name)
        endpoint.reply(
            msg.env, CommandReply(True, f"{body.name} registered", self.ctx.role.role), to=msg.peer
        )

    def _route(self, body: ModulePing, msg: Inbound, endpoint: Endpoint) -> None:
        def reject(detail: str) -> None:
            endpoint.reply(msg.env, ModulePingReply(body.module, "rejected", 0, detail), to=msg.peer)

        from_peer = msg.env.sender != self.ctx.node
        if from_peer and msg.peer is not None:
            self.watchers[(msg.endpoint, msg.peer)] = self.ctx.clock.now()
        if from_peer and not self.serving():
            reject(f"{self.ctx.node} is {self.ctx.role.role}, not serving")
            return
        reg = self.modules.get(body.module)
        if reg is None and body.module not in self.ever_registered:
            endpoint.reply(
                msg.env,
                ModulePingReply(
                    body.module,
                    NOT_REGISTERED,
                    0,
                    f"monitored module {body.module} is not registered on the active ({self.ctx.node})",
                ),
                to=msg.peer,
            )
            return
        if reg is None:
            reject(f"no module registered as {body.module}")
            return
        if process_gone(reg.pid):
            self.log.warning("module {} (pid {}) is gone; unregistered", reg.name, reg.pid)
            del self.modules[body.module]
            reject(f"module {body.module} (pid {reg.pid}) is not running")
            return
        module_endpoint = self.endpoints[reg.endpoint]
        self._tokens += 1
        token = self._tokens
        self.in_flight[token] = _InFlight(msg.endpoint, msg.env, msg.peer, body.module)
        future = module_endpoint.request(body, timeout=self.forward_timeout, to=reg.identity)
        ref = self.actor_ref
        future.add_done_callback(lambda f: ref.tell(_Forwarded(token, f)))

    @handles(_Forwarded)
    def on_forwarded(self, msg: _Forwarded) -> None:
        fwd = self.in_flight.pop(msg.token, None)
        if fwd is None:
            return  # answered already (the module exited meanwhile)
        endpoint = self.endpoints.get(fwd.endpoint)
        if endpoint is None:
            return
        try:
            reply = msg.future.result()
        except Exception:
            return
        if isinstance(reply.msg, ModulePingReply):
            endpoint.reply(fwd.request, reply.msg, to=fwd.peer)
