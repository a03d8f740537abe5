"""The node's HTTP endpoint (``[http]`` in the node config, default 127.0.0.1:9633).

``/health``   200 when the node runs and every actor it should run is alive; 503 otherwise. The JSON
              body says what is wrong (``problems``) as well as the role and generation.
``/primary``  200 when this node is the active server (Primary), 503 otherwise: what a load
              balancer (HAProxy ``option httpchk GET /primary``) asks to route to the active.
``/backup``   200 when this node is a backup (Backup, Reconnecting, Upgrade Higher/Lower), 503 otherwise.
``/metrics``  Prometheus text format (``ctx.metrics``, see :mod:`actors.runtime.metrics`).

Served by a ``ThreadingHTTPServer`` on its own daemon threads: a request reads the node's shared
state (the role snapshot, the child directory, endpoint counters) and asks the supervisor for its
restart counts with a short timeout, so a slow scrape never blocks an actor.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pykka
from loguru import logger
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from actors.roles.state_machine import WATCHING, State
from actors.runtime.context import NodeContext
from actors.runtime.metrics import CONTENT_TYPE
from actors.runtime.supervisor import GetActorStatus

SUPERVISOR_ASK_TIMEOUT = 1.0
BACKUP_STATES = frozenset(s.value for s in WATCHING)


@dataclass(frozen=True)
class Health:
    """The node's health as ``/health`` reports it."""

    node: str
    role: str
    generation: int
    starting_up: bool
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "failing",
            "node": self.node,
            "role": self.role,
            "generation": self.generation,
            "starting_up": self.starting_up,
            "problems": list(self.problems),
        }


def health_problems(
    role: str, supervisor_alive: bool, children: dict[str, bool], stopping: bool, role_reason: str = ""
) -> tuple[str, ...]:
    """What keeps the node from being healthy (empty: healthy). ``children``: each child the
    supervisor runs now (its directory) and whether that actor is alive."""
    problems: list[str] = []
    if stopping:
        problems.append("node is stopping")
    if not supervisor_alive:
        problems.append("the supervisor is not running")
    if role == State.ERROR.value:
        problems.append(f"node is in the Error state{': ' + role_reason if role_reason else ''}")
    problems += [f"actor {name} is not alive" for name, alive in sorted(children.items()) if not alive]
    return tuple(problems)


def node_health(ctx: NodeContext, stopping: bool) -> Health:
    sup = ctx.supervisor
    children: dict[str, bool] = {}
    for name in ctx.directory.names():
        ref = ctx.directory.lookup(name)
        if ref is not None:
            children[name] = ref.is_alive()
    r = ctx.role
    problems = health_problems(r.role, sup is not None and sup.is_alive(), children, stopping, r.reason)
    return Health(ctx.node, r.role, r.generation, r.starting_up, problems)


def node_state_collector(ctx: NodeContext) -> Callable[[], Iterable[Metric]]:
    """Families read at scrape time from the state the node already keeps."""

    def collect() -> Iterable[Metric]:
        r = ctx.role
        role = GaugeMetricFamily(
            "switchover_role", "1 for the node's current role, 0 for the others", labels=["role"]
        )
        for state in State:
            role.add_metric([state.value], 1.0 if r.role == state.value else 0.0)
        yield role
        yield GaugeMetricFamily("switchover_generation", "The fencing generation", value=r.generation)
        yield GaugeMetricFamily(
            "switchover_starting_up", "1 while the node is starting up", value=int(r.starting_up)
        )
        links = GaugeMetricFamily(
            "switchover_link_up",
            "1 when the backup's notifier link to the active is connected",
            labels=["link"],
        )
        for link, up in sorted(dict(ctx.links).items()):
            links.add_metric([link], 1.0 if up else 0.0)
        yield links
        decode = CounterMetricFamily(
            "switchover_decode_errors",
            "Malformed frames received, per live endpoint (restarts with the endpoint)",
            labels=["endpoint"],
        )
        for endpoint in ctx.endpoints.all():
            decode.add_metric([endpoint.name], endpoint.stats.decode_errors)
        yield decode
        yield from _actor_families(ctx)

    return collect


def _actor_families(ctx: NodeContext) -> Iterable[Metric]:
    sup = ctx.supervisor
    if sup is None:
        return
    try:
        rows: Any = sup.ask(GetActorStatus(), timeout=SUPERVISOR_ASK_TIMEOUT)
    except (pykka.Timeout, pykka.ActorDeadError):
        return
    restarts = CounterMetricFamily(
        "switchover_actor_restarts", "Restarts of each actor by its supervisor", labels=["actor"]
    )
    up = GaugeMetricFamily("switchover_actor_up", "1 when the actor is running", labels=["actor"])
    for row in rows:
        restarts.add_metric([row["name"]], row["restarts"])
        up.add_metric([row["name"]], 1.0 if row["alive"] else 0.0)
    yield restarts
    yield up


class HttpEndpoint:
    """The HTTP server of one node, on its own threads; :meth:`close` stops it."""

    def __init__(self, ctx: NodeContext, address: str, port: int, stopping: Callable[[], bool]) -> None:
        self.ctx = ctx
        self.stopping = stopping
        self.log = logger.bind(actor="Http", node=ctx.node)
        handler = _handler_class(self)
        self.server = ThreadingHTTPServer((address, port), handler)
        self.server.daemon_threads = True
        self.address = f"http://{address}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="http-endpoint", daemon=True)

    def start(self) -> HttpEndpoint:
        self._thread.start()
        self.log.info("HTTP endpoint on {} (/health, /primary, /backup, /metrics)", self.address)
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(2.0)

    def respond(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for ``path``."""
        route = path.split("?", 1)[0].rstrip("/") or "/"
        if route == "/metrics":
            return 200, CONTENT_TYPE, self.ctx.metrics.render()
        if route == "/health":
            health = node_health(self.ctx, self.stopping())
            return (200 if health.ok else 503), "application/json", _json(health.as_dict())
        if route in ("/primary", "/backup"):
            r = self.ctx.role
            if self.stopping():
                serving = False
            elif route == "/primary":
                serving = r.role == State.PRIMARY.value
            else:
                serving = r.role in BACKUP_STATES
            body = {"node": self.ctx.node, "role": r.role, "generation": r.generation, route[1:]: serving}
            return (200 if serving else 503), "application/json", _json(body)
        known = {"paths": ["/health", "/primary", "/backup", "/metrics"], "error": f"no such path {route!r}"}
        return 404, "application/json", _json(known)


def _json(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, sort_keys=True) + "\n").encode()


def _handler_class(endpoint: HttpEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "switchover"

        def do_GET(self) -> None:
            self._reply(body=True)

        def do_HEAD(self) -> None:
            self._reply(body=False)

        def _reply(self, body: bool) -> None:
            try:
                status, ctype, content = endpoint.respond(self.path)
            except Exception as exc:  # a bug in a collector must not kill the server
                endpoint.log.exception("HTTP {} failed: {}", self.path, exc)
                status, ctype = 500, "application/json"
                content = _json({"error": f"{type(exc).__name__}: {exc}"})
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if body:
                self.wfile.write(content)

        def log_message(self, format: str, *args: Any) -> None:
            endpoint.log.debug("HTTP {} {}", self.address_string(), format % args)

    return Handler
