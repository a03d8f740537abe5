"""PrimaryMonitor and ModuleMonitor actors: thin shells around the pure monitor logic.

The logic (``actors.monitoring.primary_monitor_logic``, ``actors.monitoring.module_monitor_logic``) decides; these
actors give it a clock whose timers fire on the actor's thread, links that carry its pings
through the NotifierLink actors, and an ICMP pinger whose answers come back as messages.
The PrimaryMonitor posts its verdicts to the Supervisor as a state machine ``Event`` with its ``Facts``
(``MonitorVerdict``; the one mapping is :data:`primary_monitor_logic.OUTCOME_EVENTS`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from actors.monitoring.detection_time import LinkHeartbeat, detection_times
from actors.monitoring.module_monitor_logic import (
    Cancellable,
    Connection,
    ModuleEvent,
    ModuleMonitorLogic,
    ModuleNotRegistered,
    PingResult,
    SystemOk,
)
from actors.monitoring.monitor_params import (
    MODULE_MONITOR_PARAMS,
    PRIMARY_MONITOR_PARAMS,
    AppliedParams,
    module_monitor_params,
    primary_monitor_params,
)
from actors.monitoring.notifier import NOT_REGISTERED
from actors.monitoring.notifier_link import (
    HEARTBEAT_INTERVAL,
    HEARTBEAT_TIMEOUT_FACTOR,
    LinkPing,
    LinkResult,
    LinkState,
    deliver,
    link_endpoint_name,
    link_round_trip,
)
from actors.monitoring.primary_monitor_logic import (
    PrimaryMonitorEvent,
    PrimaryMonitorLogic,
    PrimaryMonitorParams,
    state_machine_input,
)
from actors.monitoring.process_watch import exit_latency
from actors.roles.node_supervisor import MonitorVerdict
from actors.runtime.base import ActorClock, NodeActor, handles
from actors.runtime.context import NodeContext
from replication.params import ParamChange
from transport.icmp import IcmpPinger, IcmpUnavailableError, gateways
from transport.messages import (
    Message,
    ModuleGone,
    ModulePing,
    ModulePingReply,
    NotifierPing,
    NotifierPong,
    Tick,
)

LIVENESS_POLL = 1.0
ICMP_WORKERS = 8


def this_server(ctx: NodeContext) -> Literal["A", "B"]:
    return "A" if ctx.config.is_server_a else "B"


@dataclass(frozen=True)
class GetMonitorParams:
    """Admin -> monitor: the parameter values the monitor uses now (actor-internal)."""


class MonitorActor(NodeActor):
    """What both monitors share: the parameter values they use (:class:`AppliedParams`, following the
    catalog's dynamic changes) and the ``admin monitors`` report."""

    param_names: tuple[str, ...] = ()

    def __init__(self, ctx: NodeContext, incarnation: int = 1, name: str | None = None) -> None:
        super().__init__(ctx, incarnation, name)
        self.links = LinksOverActors(self)
        self.applied: AppliedParams | None = None

    def open_params(self) -> AppliedParams:
        if self.ctx.server_params is None:
            raise RuntimeError(f"{self.name} needs the server parameters (the node opens them before the monitors)")
        self.applied = AppliedParams(self.name, self.ctx.server_params, self.param_names)
        return self.applied

    def follow_params(self) -> None:
        if self.applied is not None:
            self.applied.follow(self.on_own_thread(self._parameter_changed))

    def close_params(self) -> None:
        if self.applied is not None:
            self.applied.close()

    def _parameter_changed(self, change: ParamChange) -> None:
        """A change that applies now (a dynamic parameter, or one following it): from the next ping."""
        if self.applied is not None and self.applied.apply(change):
            self.params_changed()

    def params_changed(self) -> None:
        """Give the logic the new values."""

    def report(self) -> dict[str, Any]:
        """Besides the parameters, what ``admin monitors`` shows of this monitor."""
        return {}

    @handles(GetMonitorParams)
    def on_get_params(self, msg: GetMonitorParams) -> dict[str, Any]:
        report = self.applied.report() if self.applied is not None else {"params": {}, "pending_restart": {}}
        return {**report, **self.report()}


class _Token:
    def __init__(self, links: LinksOverActors, token: int) -> None:
        self.links, self.token = links, token

    def cancel(self) -> None:
        self.links.pending.pop(self.token, None)


class LinksOverActors:
    """The monitors' view of the two notifier connections, carried by the NotifierLink actors.

    Implements both ``NotifierLink`` (primary monitor) and ``ModulePingLink`` (module monitor).
    Results arrive at the owning actor as ``LinkResult`` messages and go to :meth:`resolve`.
    """

    def __init__(self, actor: NodeActor) -> None:
        self.actor = actor
        self.pending: dict[int, tuple[Callable[[PingResult], None], str]] = {}
        self._tokens = itertools.count(1)
        self._seq = itertools.count(1)

    def is_connected(self, connection: Connection) -> bool:
        return bool(self.actor.ctx.links.get(connection.value, False))

    def _send(
        self,
        connection: Connection,
        msg: Message,
        timeout: float,
        on_result: Callable[[PingResult], None],
        kind: str,
    ) -> Cancellable:
        token = next(self._tokens)
        self.pending[token] = (on_result, kind)
        # straight onto the link's endpoint (its command queue is thread-safe); the answer comes back
        # from the endpoint's I/O thread as a LinkResult: no hop through the NotifierLink actor
        endpoint = self.actor.ctx.endpoints.get(link_endpoint_name(connection.value))
        if endpoint is None:
            self.pending.pop(token, None)
            on_result(PingResult.connection_lost(f"{connection.value} link is not running"))
        else:
            ping = LinkPing(msg, timeout, token, self.actor.actor_ref)
            sent_at, round_trip = time.monotonic(), link_round_trip(self.actor.ctx, connection.value)
            endpoint.request(msg, timeout).add_done_callback(
                lambda f: deliver(connection.value, ping, f, sent_at, round_trip)
            )
        return _Token(self, token)

    def ping_notifier(
        self, connection: Connection, timeout: float, on_result: Callable[[PingResult], None]
    ) -> Cancellable:
        return self._send(connection, NotifierPing(next(self._seq)), timeout, on_result, "notifier")

    def ping_module(
        self,
        connection: Connection,
        module_name: str,
        timeout: float,
        on_result: Callable[[PingResult], None],
    ) -> Cancellable:
        return self._send(connection, ModulePing(module_name, next(self._seq)), timeout, on_result, "module")

    def resolve(self, result: LinkResult) -> None:
        entry = self.pending.pop(result.token, None)
        if entry is None:
            return  # cancelled, or already timed out by the logic
        on_result, kind = entry
        ping = _ping_result(result, kind)
        self.actor.ctx.metrics.counter(
            "switchover_pings_total",
            "Notifier and module pings by link and result",
            ("target", "link", "result"),
        ).labels(kind, result.link, ping.kind.value).inc()
        on_result(ping)


def _ping_result(result: LinkResult, kind: str) -> PingResult:
    if result.kind == "timeout":
        return PingResult.timeout(result.detail)
    if result.kind != "ok":
        return PingResult.connection_lost(result.detail)
    reply = result.reply
    if kind == "notifier":
        if isinstance(reply, NotifierPong):
            return PingResult.ok() if reply.serving else PingResult.rejected(f"{reply.node} is {reply.role}")
        return PingResult.rejected(f"unexpected answer {reply.TYPE if reply else None}")
    if isinstance(reply, ModulePingReply):
        if reply.status == "ok":
            return PingResult.ok(reply.pid)
        if reply.status == NOT_REGISTERED:
            return PingResult.not_registered(reply.detail)
        return PingResult.rejected(reply.detail or "rejected")
    return PingResult.rejected(f"unexpected answer {reply.TYPE if reply else None}")


@dataclass(frozen=True)
class ModuleMonitorReport:
    event: ModuleEvent


@dataclass(frozen=True)
class ModuleMonitorControl:
    run: bool


class ModuleMonitor(MonitorActor):
    actor_name = "ModuleMonitor"
    param_names = MODULE_MONITOR_PARAMS

    def __init__(self, ctx: NodeContext, incarnation: int = 1, name: str | None = None) -> None:
        super().__init__(ctx, incarnation, name)
        self.logic: ModuleMonitorLogic | None = None
        self.waiting_for_registration = False

    def started(self) -> None:
        applied = self.open_params()
        self.logic = ModuleMonitorLogic(
            ActorClock(self), module_monitor_params(applied.values), self.links, self._report
        )
        self.logic.start()
        self.follow_params()

    def stopped(self) -> None:
        self.close_params()
        if self.logic is not None:
            self.logic.stop()

    def params_changed(self) -> None:
        if self.logic is not None and self.applied is not None:
            self.logic.update_params(module_monitor_params(self.applied.values))

    def report(self) -> dict[str, Any]:
        return {
            "running": bool(self.logic and self.logic.running),
            "module_registered_on_active": not self.waiting_for_registration,
        }

    def _report(self, event: ModuleEvent) -> None:
        if isinstance(event, ModuleNotRegistered) and event.first:
            self._status(event.detail)
            self.waiting_for_registration = True
        elif isinstance(event, SystemOk) and self.waiting_for_registration:
            self.waiting_for_registration = False
            self._status(f"monitored module {event.module_name} answers on the active (pid {event.pid})")
        self.tell_actor("PrimaryMonitor", ModuleMonitorReport(event))

    def _status(self, line: str) -> None:
        self.ctx.status_lines.append(f"{time.strftime('%H:%M:%S')} - {line}")

    @handles(LinkResult)
    def on_link_result(self, result: LinkResult) -> None:
        self.links.resolve(result)

    @handles(ModuleGone)
    def on_module_gone(self, msg: ModuleGone) -> None:
        if self.logic is not None:
            self.logic.ping_now(f"the primary's notifier reports it gone (pid {msg.pid})")

    @handles(LinkState)
    def on_link_state(self, msg: LinkState) -> None:
        """Connection changes matter to the primary monitor; pings here just fail or succeed."""

    @handles(ModuleMonitorControl)
    def on_control(self, msg: ModuleMonitorControl) -> None:
        if self.logic is None:
            return
        if msg.run:
            self.logic.start()
        else:
            self.logic.stop()


class ActorPinger:
    """ICMP through :class:`IcmpPinger`, answers delivered on the actor's thread."""

    def __init__(self, actor: NodeActor, pinger: IcmpPinger | None) -> None:
        self.actor, self.pinger = actor, pinger

    def ping(self, address: str, timeout: float, on_result: Callable[[bool], None]) -> None:
        if self.pinger is None:
            self.actor.on_own_thread(on_result)(False)
            return
        self.pinger.ping(address, timeout, self.actor.on_own_thread(on_result))


class PrimaryMonitor(MonitorActor):
    actor_name = "PrimaryMonitor"
    param_names = PRIMARY_MONITOR_PARAMS

    def __init__(self, ctx: NodeContext, incarnation: int = 1, name: str | None = None) -> None:
        super().__init__(ctx, incarnation, name)
        self.logic: PrimaryMonitorLogic | None = None
        self.icmp: IcmpPinger | None = None

    def started(self) -> None:
        try:
            # the diagnosis sends the gateway, NetTest and primary echoes at once
            self.icmp = IcmpPinger(max_workers=ICMP_WORKERS)
        except IcmpUnavailableError as exc:
            self.log.error("ICMP is not available, gateway/NetTest/primary pings will fail: {}", exc)
        self.open_params()
        peer_address = self.ctx.config.peer.address
        self.logic = PrimaryMonitorLogic(
            ActorClock(self),
            self._params(),
            self.links,
            self.links,
            ActorPinger(self, self.icmp),
            self,
            self._post,
            gateways=gateways,
            primary_address=lambda: peer_address,
        )
        self.logic.start()
        self.follow_params()
        self.report_detection_times()
        self.schedule(LIVENESS_POLL, Tick("liveness"))

    def report_detection_times(self) -> None:
        """Log, and show in ``ctl status``, how long the current parameters let a failure go unnoticed."""
        assert self.ctx.server_params is not None
        times = detection_times(
            self._params(),
            self.ctx.server_params.seconds("Switchover Reconnect Timeout"),
            heartbeat=LinkHeartbeat(HEARTBEAT_INTERVAL, HEARTBEAT_INTERVAL * HEARTBEAT_TIMEOUT_FACTOR),
            module_gone_latency=exit_latency(),
        )
        self.log.info("Failure detection with the current parameters: {}", times.status_line())
        self.ctx.status_lines.append(f"{time.strftime('%H:%M:%S')} - {times.status_line()}")

    def _params(self) -> PrimaryMonitorParams:
        assert self.applied is not None
        return primary_monitor_params(self.applied.values, this_server=this_server(self.ctx))

    def stopped(self) -> None:
        self.close_params()
        if self.logic is not None:
            self.logic.stop()
        if self.icmp is not None:
            self.icmp.close()

    def params_changed(self) -> None:
        if self.logic is not None:
            self.logic.update_params(self._params())
            self.report_detection_times()

    def report(self) -> dict[str, Any]:
        return {"running": bool(self.logic and self.logic.running)}

    # ModuleMonitorControl (the logic starts and stops the module monitor)
    def start_module_monitor(self) -> None:
        self.tell_actor("ModuleMonitor", ModuleMonitorControl(True))

    def stop_module_monitor(self) -> None:
        self.tell_actor("ModuleMonitor", ModuleMonitorControl(False))

    def _post(self, event: PrimaryMonitorEvent) -> None:
        verdict = state_machine_input(event)
        if verdict is None:
            return
        sm_event, facts = verdict
        d = event.diagnosis
        detail = (
            f"{event.log_event}: connections: {d.connection_status.value}; network: {d.network_status.value}"
        )
        self.log.warning("Primary monitor posting {} ({})", sm_event, detail)
        if self.ctx.supervisor is not None:
            self.ctx.supervisor.tell(MonitorVerdict(sm_event, facts, detail))

    @handles(LinkResult)
    def on_link_result(self, result: LinkResult) -> None:
        self.links.resolve(result)

    @handles(ModuleMonitorReport)
    def on_module_report(self, msg: ModuleMonitorReport) -> None:
        if self.logic is not None:
            self.logic.on_module_event(msg.event)

    @handles(LinkState)
    def on_link_state(self, msg: LinkState) -> None:
        self.log.info("{} connection {}", msg.link, "up" if msg.connected else "down")
        if not msg.connected and self.logic is not None:
            self.logic.on_connection_down(Connection(msg.link))

    @handles(Tick)
    def on_tick(self, msg: Tick) -> None:
        if msg.name == "liveness" and self.logic is not None:
            self.logic.check_module_monitor_liveness()
            self.schedule(LIVENESS_POLL, Tick("liveness"))
