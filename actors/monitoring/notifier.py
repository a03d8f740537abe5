"""Notifier: ports 3634 (main) and 3635 (aux) of every node.

- local modules register under a name with their PID (``RegisterModule``) and answer
  Diagnostic Pings (``ModulePing``) with it;
- on the primary it answers the backup's ``NotifierPing`` on either connection and routes
  ``ModulePing`` to the module registered under that name. When no such module is
  registered, or its process is gone, it answers *rejected* at once, so a crashed module is
  detected without waiting for a timeout. A hung module is not answered for: the backup's
  own timeout decides, as the specification's TS ping does;
- a ping for a module name that has never registered here (since this node started) is answered
  ``not-registered``: the backup does not count that as a failure, so a pair without a module does
  not switch back and forth;
- a node that is not primary answers ``NotifierPing`` with ``serving=False`` and rejects
  module pings from the peer: it serves nothing.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

import psutil

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
    Tick,
)
from transport.security import Security

NOT_REGISTERED = "not-registered"
"""ModulePingReply status: no module of that name has registered on this node since it started (not a
failure: a pair may run without a module). ``rejected`` means one did and is gone."""
MAX_FORWARD_TIMEOUT = 120.0
WATCH_INTERVAL = 0.1  # how often registered modules' processes are checked
MODULE_GONE_LATENCY = WATCH_INTERVAL
"""Worst-case seconds from a registered module's exit to the Notifier's ModuleGone push."""
WATCHER_TTL = 30.0  # a peer that pinged a module this recently hears when it goes


@dataclass
class Registration:
    name: str
    pid: int
    endpoint: str
    identity: bytes


@dataclass(frozen=True)
class _Forwarded:
    future: Future[Envelope]
    endpoint: str
    request: Envelope
    peer: bytes | None
    module: str


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

    def started(self) -> None:
        me = self.ctx.config.me
        for name, port in (("notifier.main", me.notifier_port), ("notifier.aux", me.notifier_aux_port)):
            self.endpoints[name] = self.open_endpoint(
                name, "server", tcp(me.address, port), security=self.security
            )
        self.schedule(WATCH_INTERVAL, Tick("watch"))

    @handles(Tick)
    def on_tick(self, msg: Tick) -> None:
        for name, reg in list(self.modules.items()):
            if not psutil.pid_exists(reg.pid) or _zombie(reg.pid):
                self.log.warning("module {} (pid {}) exited; unregistered", name, reg.pid)
                del self.modules[name]
                self._tell_watchers(ModuleGone(name, reg.pid))
        self.schedule(WATCH_INTERVAL, Tick("watch"))

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
        if not psutil.pid_exists(reg.pid) or _zombie(reg.pid):
            self.log.warning("module {} (pid {}) is gone; unregistered", reg.name, reg.pid)
            del self.modules[body.module]
            reject(f"module {body.module} (pid {reg.pid}) is not running")
            return
        module_endpoint = self.endpoints[reg.endpoint]
        future = module_endpoint.request(body, timeout=self.forward_timeout, to=reg.identity)
        ref = self.actor_ref
        future.add_done_callback(
            lambda f: ref.tell(_Forwarded(f, msg.endpoint, msg.env, msg.peer, body.module))
        )

    @handles(_Forwarded)
    def on_forwarded(self, msg: _Forwarded) -> None:
        endpoint = self.endpoints.get(msg.endpoint)
        if endpoint is None:
            return
        try:
            reply = msg.future.result()
        except Exception:
            return
        if isinstance(reply.msg, ModulePingReply):
            endpoint.reply(msg.request, reply.msg, to=msg.peer)


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True
