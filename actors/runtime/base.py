"""The base of every actor: a pykka ThreadingActor with a bound logger, an injectable
clock, timers that are messages to itself, and dispatch by message type.

Subclasses implement ``started()`` / ``stopped()`` and handler methods marked with
``@handles(MessageType)``. A failure in ``started()`` or in a handler of a ``tell`` is
reported to the supervisor (pykka calls ``on_failure`` only for ``tell`` failures, never
for ``on_start``; the base class reports both).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

import pykka
from loguru import logger

from actors.runtime.clock import Timer
from actors.runtime.context import NodeContext
from transport.codec import Envelope
from transport.endpoint import Endpoint, EndpointOptions
from transport.messages import ConnectionEvent, CrashActor, ErrorReply

F = TypeVar("F", bound=Callable[..., Any])


def handles(*types: type[Any]) -> Callable[[F], F]:
    """Mark a method as the handler of the given message types."""

    def mark(fn: F) -> F:
        fn._handles = types  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass(frozen=True)
class ChildFailed:
    """Sent by a failing child to its supervisor."""

    name: str
    incarnation: int
    phase: str
    error: str


@dataclass(frozen=True)
class Inbound:
    """A message that arrived on one of the actor's endpoints (not a wire type itself)."""

    env: Envelope
    peer: bytes | None
    endpoint: str


@dataclass(frozen=True)
class RunCallback:
    """Run ``fn`` on the actor's own thread (timers and I/O callbacks of pure logic)."""

    fn: Callable[[], None]


TIMER_PURGE_AT = 64
"""An actor forgets its cancelled timers when it holds this many (kept for cancel-all at stop)."""


class ActorClock:
    """A :class:`~actors.runtime.clock.Clock` whose timers fire on the owning actor's thread."""

    def __init__(self, actor: NodeActor) -> None:
        self._actor = actor

    def now(self) -> float:
        return self._actor.ctx.clock.now()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self._actor.schedule(delay, RunCallback(callback))


class InjectedCrash(RuntimeError):
    """Raised by an actor on purpose (admin fault injection)."""


class NodeActor(pykka.ThreadingActor):
    actor_name: ClassVar[str] = ""
    _handlers: ClassVar[dict[type[Any], str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[type[Any], str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                for t in getattr(value, "_handles", ()):
                    table[t] = attr
        cls._handlers = table

    def __init__(self, ctx: NodeContext, incarnation: int = 1, name: str | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.name = name or self.actor_name or type(self).__name__
        self.incarnation = incarnation
        self.started_at = time.time()
        self.log = logger.bind(actor=self.name, node=ctx.node)
        self._timers: set[Timer] = set()
        self._endpoints: list[Endpoint] = []

    # ------------------------------------------------------------------------- life cycle

    def started(self) -> None:
        """Set up (runs in the actor's thread). Raising here is reported and restarts the actor."""

    def stopped(self) -> None:
        """Clean up: close endpoints, stop timers (timers are cancelled by the base)."""

    def on_start(self) -> None:
        try:
            self.started()
        except Exception as exc:
            self._cleanup("after a failed start")  # pykka calls neither on_stop nor on_failure here
            self._report_failure("on_start", exc)
            raise

    def on_stop(self) -> None:
        self._cleanup("while stopping")

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self._cleanup("after a failure")  # pykka does not call on_stop after a failure
        self._report_failure("on_receive", exception_value)

    def _cleanup(self, when: str) -> None:
        for timer in list(self._timers):
            timer.cancel()
        self._timers.clear()
        try:
            self.stopped()
        except Exception:
            self.log.exception("{} failed to clean up {}", self.name, when)
        for endpoint in self._endpoints:
            self.ctx.endpoints.remove(endpoint)
            endpoint.stop()
        self._endpoints.clear()

    def _report_failure(self, phase: str, exc: BaseException | None) -> None:
        error = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown error"
        self.log.error("{} (incarnation {}) failed in {}: {}", self.name, self.incarnation, phase, error)
        if self.ctx.supervisor is not None and self.ctx.supervisor.is_alive():
            self.ctx.supervisor.tell(ChildFailed(self.name, self.incarnation, phase, error))

    # ---------------------------------------------------------------------------- messages

    def on_receive(self, message: Any) -> Any:
        method = self._handlers.get(type(message))
        if method is None:
            name = getattr(message, "TYPE", "") or type(message).__name__
            self.log.warning("{} got a message it does not handle: {}; ignored", self.name, name)
            return ErrorReply(f"{self.name} does not handle {name}", name)
        return getattr(self, method)(message)

    @handles(CrashActor)
    def _crash(self, message: CrashActor) -> None:
        raise InjectedCrash(message.reason)

    @handles(RunCallback)
    def _run_callback(self, message: RunCallback) -> None:
        message.fn()

    def on_own_thread(self, fn: Callable[..., None]) -> Callable[..., None]:
        """Wrap a callback so that, called from any thread, it runs on this actor's thread."""
        ref = self.actor_ref

        def deliver(*args: Any) -> None:
            if ref.is_alive():
                ref.tell(RunCallback(lambda: fn(*args)))

        return deliver

    @handles(ConnectionEvent)
    def on_connection_event(self, event: ConnectionEvent) -> None:
        """Default: note it. Actors that care about their links override this."""
        self.log.debug("{}: {} {}", event.endpoint, event.kind, event.address)

    # ------------------------------------------------------------------------------ helpers

    def schedule(self, delay: float, message: Any) -> Timer:
        """Deliver ``message`` to this actor after ``delay`` seconds (cancellable)."""
        ref = self.actor_ref

        def fire() -> None:
            self._timers.discard(timer)
            if ref.is_alive():
                ref.tell(message)

        timer = self.ctx.clock.call_later(delay, fire)
        if len(self._timers) >= TIMER_PURGE_AT:
            # a cancelled timer never fires, so never leaves the set by itself: without this an actor
            # that arms a guard per ping (the monitors, several a second) would grow without bound
            # (a timer past its deadline has fired, or is firing: nothing left to cancel either)
            now = self.ctx.clock.now()
            self._timers = {t for t in self._timers if not t.cancelled and t.deadline > now}
        self._timers.add(timer)
        return timer

    def open_endpoint(
        self, name: str, role: Literal["server", "client"], address: str, **kwargs: Any
    ) -> Endpoint:
        """Start an endpoint whose messages and connection events come to this actor.

        It is registered for fault injection and closed when the actor stops or fails. A TCP
        endpoint gets the node's security (``ctx.security``) unless the caller passes one.
        """
        ref = self.actor_ref

        def on_message(env: Envelope, peer: bytes | None) -> None:
            ref.tell(Inbound(env, peer, name))

        def on_event(event: ConnectionEvent) -> None:
            ref.tell(event)

        if "security" not in kwargs and address.startswith("tcp://") and self.ctx.security is not None:
            kwargs["security"] = self.ctx.security  # the node's CURVE keys and rights checks
        kwargs.setdefault("node", self.ctx.node)
        kwargs.setdefault("context", self.ctx.zmq)
        kwargs.setdefault("options", EndpointOptions())
        endpoint = Endpoint(name, role, address, on_message=on_message, on_event=on_event, **kwargs).start()
        self._endpoints.append(endpoint)
        self.ctx.endpoints.add(endpoint)
        return endpoint

    def lookup(self, name: str) -> pykka.ActorRef[Any] | None:
        return self.ctx.directory.lookup(name)

    def tell_actor(self, name: str, message: Any) -> bool:
        """Tell the current incarnation of ``name``; False when it is not running."""
        ref = self.ctx.directory.lookup(name)
        if ref is None or not ref.is_alive():
            return False
        ref.tell(message)
        return True
