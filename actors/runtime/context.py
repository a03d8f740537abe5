"""What every actor of a node shares: node name, clock, configuration, ZeroMQ context,
the endpoint registry (for fault injection) and the supervisor's child directory.

Actors look other actors up through the directory on every use and never keep a
reference across a restart: a restarted child is a new actor with a new reference.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pykka
import zmq

from actors.runtime.clock import Clock
from actors.runtime.metrics import Metrics

if TYPE_CHECKING:
    from actors.roles.event_log import EventLog
    from replication.params import ServerParams
    from transport.endpoint import Endpoint


class Directory:
    """The supervisor's table of live children: name -> current actor reference."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: dict[str, pykka.ActorRef[Any]] = {}

    def set(self, name: str, ref: pykka.ActorRef[Any] | None) -> None:
        with self._lock:
            if ref is None:
                self._refs.pop(name, None)
            else:
                self._refs[name] = ref

    def lookup(self, name: str) -> pykka.ActorRef[Any] | None:
        with self._lock:
            return self._refs.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._refs)


class EndpointRegistry:
    """Every live endpoint of the node by name, so the admin socket can inject faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._endpoints: dict[str, Endpoint] = {}

    def add(self, endpoint: Endpoint) -> None:
        with self._lock:
            self._endpoints[endpoint.name] = endpoint

    def remove(self, endpoint: Endpoint) -> None:
        with self._lock:
            if self._endpoints.get(endpoint.name) is endpoint:
                del self._endpoints[endpoint.name]

    def get(self, name: str) -> Endpoint | None:
        with self._lock:
            return self._endpoints.get(name)

    def all(self) -> list[Endpoint]:
        with self._lock:
            return list(self._endpoints.values())


@dataclass(frozen=True)
class RoleSnapshot:
    """What the node is right now; replaced whole (never mutated) by the state machine's owner."""

    role: str = "Init"
    generation: int = 0
    starting_up: bool = True
    reason: str = ""
    manual_switch_only: bool = False
    force_backup: bool = False
    replication: str = "unknown"


@dataclass
class NodeContext:
    node: str
    clock: Clock
    config: Any
    zmq: zmq.Context[Any] = field(default_factory=zmq.Context.instance)
    endpoints: EndpointRegistry = field(default_factory=EndpointRegistry)
    directory: Directory = field(default_factory=Directory)
    supervisor: pykka.ActorRef[Any] | None = None
    role: RoleSnapshot = field(default_factory=RoleSnapshot)
    status_lines: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    event_log: EventLog | None = None
    links: dict[str, bool] = field(default_factory=dict)  # NotifierLink name -> connected
    # the server parameter catalog over the DS tree (typed values, change subscriptions); set at start
    server_params: ServerParams | None = None  # change subscriptions for dynamic parameters
    peer_role: tuple[str, float] = ("", float("-inf"))  # the peer's last Hello: role, clock time seen
    # the node's transport Security (CURVE keys and access control): the default of every TCP
    # endpoint an actor opens, so a new server socket is encrypted and checked without asking
    security: Any = None
    metrics: Metrics = field(default_factory=Metrics)  # Prometheus families, served at /metrics
    # DS replication state for status reports (issue 10: set by the node; DSMirror/DSPublisher fill it)
    ds_status: Callable[[], Mapping[str, Any]] = field(default=lambda: {})
