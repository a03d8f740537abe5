"""The Supervisor: starts children from declarative specs, restarts the ones that fail,
and escalates when a child fails more often than the configured intensity allows.

A child reports its own failures (``ChildFailed``, from ``on_start`` or a ``tell``
handler, see :mod:`actors.runtime.base`); a periodic liveness check catches any child that
stopped without reporting. Children are published in the node's :class:`Directory`
so other actors always reach the current incarnation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pykka

from actors.runtime.base import ChildFailed, NodeActor, handles
from actors.runtime.context import NodeContext
from actors.runtime.supervision import Intensity, RestartHistory
from transport.messages import Tick

RestartPolicy = Literal["permanent", "transient", "temporary"]
ChildFactory = Callable[[NodeContext, int], pykka.ActorRef[Any]]


@dataclass(frozen=True)
class ChildSpec:
    """``factory(ctx, incarnation)`` starts the child and returns its reference.

    permanent: always restarted; transient: restarted after a failure only;
    temporary: never restarted.
    """

    name: str
    factory: ChildFactory
    restart: RestartPolicy = "permanent"


def actor_spec(
    name: str, cls: type[NodeActor], restart: RestartPolicy = "permanent", **kwargs: Any
) -> ChildSpec:
    """A spec for a :class:`NodeActor` subclass started with ``kwargs``."""

    def factory(ctx: NodeContext, incarnation: int) -> pykka.ActorRef[Any]:
        return cls.start(ctx, incarnation=incarnation, name=name, **kwargs)

    return ChildSpec(name, factory, restart)


@dataclass
class _Child:
    spec: ChildSpec
    history: RestartHistory
    ref: pykka.ActorRef[Any] | None = None
    incarnation: int = 0
    restarts: int = 0
    last_failure: str = ""
    started_at: float = 0.0
    dead_seen: int = 0  # consecutive liveness checks that found the child dead


@dataclass(frozen=True)
class StartChildren:
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class StopChildren:
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class GetActorStatus:
    pass


class Supervisor(NodeActor):
    actor_name = "Supervisor"
    LIVENESS_INTERVAL = 2.0
    """Seconds between checks for a child that died without reporting (a failing child reports itself
    at once, ChildFailed); long, so that an idle node does not wake for it (issue 14)."""

    def __init__(
        self,
        ctx: NodeContext,
        specs: list[ChildSpec] | None = None,
        intensity: Intensity | None = None,
        on_escalate: Callable[[str], None] | None = None,
        incarnation: int = 1,
        name: str | None = None,
    ) -> None:
        super().__init__(ctx, incarnation, name)
        self.intensity = intensity or Intensity()
        self.children: dict[str, _Child] = {}
        self.on_escalate = on_escalate
        self.error: str = ""
        for spec in specs or []:
            self.add_spec(spec)

    def add_spec(self, spec: ChildSpec) -> None:
        if spec.name in self.children:
            raise ValueError(f"a child named {spec.name!r} is already supervised")
        self.children[spec.name] = _Child(spec, RestartHistory(self.intensity))

    def started(self) -> None:
        self.ctx.supervisor = self.actor_ref
        self.schedule(self.LIVENESS_INTERVAL, Tick("liveness"))

    def stopped(self) -> None:
        self.stop_children(list(reversed(list(self.children))))

    # ------------------------------------------------------------------------- operations

    def start_children(self, names: list[str] | None = None) -> None:
        for name in list(self.children) if names is None else names:
            child = self.children[name]
            if child.ref is None or not child.ref.is_alive():
                self._start(child)

    def stop_children(self, names: list[str] | None = None) -> None:
        for name in list(reversed(list(self.children))) if names is None else names:
            child = self.children[name]
            ref, child.ref = child.ref, None
            self.ctx.directory.set(name, None)
            if ref is not None and ref.is_alive():
                try:
                    ref.stop(block=True, timeout=5)
                except pykka.Timeout:
                    self.log.error("child {} did not stop within 5 s", name)
                except pykka.ActorDeadError:
                    pass

    def _start(self, child: _Child) -> None:
        child.incarnation += 1
        child.started_at = time.time()
        child.ref = child.spec.factory(self.ctx, child.incarnation)
        self.ctx.directory.set(child.spec.name, child.ref)
        self.log.info("started {} (incarnation {})", child.spec.name, child.incarnation)

    def _failed(self, name: str, incarnation: int, error: str) -> None:
        child = self.children.get(name)
        if child is None or incarnation != child.incarnation or self.error:
            return  # stale report: that incarnation was already replaced
        child.last_failure = error
        child.ref = None
        self.ctx.directory.set(name, None)
        if child.spec.restart == "temporary":
            self.log.warning("{} failed ({}); temporary child, not restarted", name, error)
            return
        if not child.history.allow(self.ctx.clock.now()):
            self._escalate(
                f"{name} failed {self.intensity.max_restarts + 1} times within {self.intensity.window:g} s "
                f"(restart limit {self.intensity.max_restarts}); last error: {error}"
            )
            return
        child.restarts += 1
        self.log.warning("{} failed ({}); restarting it (restart {})", name, error, child.restarts)
        try:
            self._start(child)
        except Exception as exc:  # the factory itself failed: count it as another failure
            self._failed(name, child.incarnation, f"{type(exc).__name__}: {exc}")

    def _escalate(self, reason: str) -> None:
        self.error = reason
        self.log.critical("Supervisor: {}; node entering the Error state", reason)
        if self.on_escalate is not None:
            self.on_escalate(reason)

    # ---------------------------------------------------------------------------- messages

    @handles(ChildFailed)
    def on_child_failed(self, msg: ChildFailed) -> None:
        self._failed(msg.name, msg.incarnation, f"{msg.error} (in {msg.phase})")

    @handles(StartChildren)
    def on_start_children(self, msg: StartChildren) -> None:
        self.start_children(list(msg.names) or None)

    @handles(StopChildren)
    def on_stop_children(self, msg: StopChildren) -> None:
        self.stop_children(list(msg.names) or None)

    @handles(Tick)
    def on_tick(self, msg: Tick) -> None:
        # A child found dead twice in a row (one interval apart) without having reported is taken as
        # failed; the grace lets a failing child finish its cleanup and report the real error first.
        for name, child in self.children.items():
            ref = child.ref
            if ref is None or ref.is_alive():
                child.dead_seen = 0
                continue
            child.dead_seen += 1
            if child.dead_seen < 2:
                continue
            child.dead_seen = 0
            if child.spec.restart == "transient":
                self.log.info("{} stopped without a failure; transient child, not restarted", name)
                child.ref = None
                self.ctx.directory.set(name, None)
            else:
                self._failed(name, child.incarnation, "stopped without reporting a failure")
        self.schedule(self.LIVENESS_INTERVAL, Tick("liveness"))

    @handles(GetActorStatus)
    def status(self, msg: GetActorStatus | None = None) -> list[dict[str, Any]]:
        now = time.time()
        rows = [
            {
                "name": self.name,
                "alive": True,
                "incarnation": self.incarnation,
                "restarts": 0,
                "last_failure": self.error,
                "mailbox": _depth(self.actor_inbox),
                "uptime": round(now - self.started_at, 3),
            }
        ]
        for name, child in self.children.items():
            ref = child.ref
            alive = ref is not None and ref.is_alive()
            rows.append(
                {
                    "name": name,
                    "alive": alive,
                    "incarnation": child.incarnation,
                    "restarts": child.restarts,
                    "last_failure": child.last_failure,
                    "mailbox": _depth(ref.actor_inbox) if ref is not None else 0,
                    "uptime": round(now - child.started_at, 3) if alive else 0.0,
                }
            )
        return rows


def _depth(inbox: Any) -> int:
    """Messages waiting in a pykka inbox (a queue.Queue for threading actors)."""
    qsize = getattr(inbox, "qsize", None)
    return int(qsize()) if callable(qsize) else 0
