"""One node process: configuration, logging, the supervisor and its children, the admin
socket, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pykka
import zmq
from loguru import logger

from actors.admin import AdminError, AdminOp, AdminServer
from actors.config import NodeConfig, ServerConfig
from actors.monitoring.monitor_params import PRIMARY_MONITOR_PARAMS, primary_monitor_params, resolved_values
from actors.monitoring.monitors import GetMonitorParams, ModuleMonitor, PrimaryMonitor, this_server
from actors.monitoring.network_check import backup_network_ok
from actors.monitoring.notifier import Notifier
from actors.monitoring.notifier_link import AUX, MAIN, NotifierLink, link_actor_name
from actors.roles.hooks import HookEvent, hook_directory, list_hooks
from actors.roles.isolation import (
    IsolationPlan,
    LinkStatus,
    carrier_of,
    fastest_takeover,
    plan_isolation,
    read_link_status,
)
from actors.roles.isolation_watch import IsolationWatch
from actors.roles.node_supervisor import NodeSupervisor, StopNode
from actors.roles.virtual_switch import GetPeerStatus, VirtualSwitch
from actors.runtime.base import CrashActor
from actors.runtime.clock import RealClock
from actors.runtime.context import NodeContext
from actors.runtime.data_lock import DataDirLock
from actors.runtime.logs import configure_logging
from actors.runtime.supervision import Intensity
from actors.runtime.supervisor import GetActorStatus, actor_spec
from replication import ds_admin
from replication.params import ServerParams, seed_from_config
from replication.store import Store
from transport.admin_client import ADMIN_SOCKET
from transport.faults import NO_FAULTS, Faults
from transport.icmp import IcmpPinger, gateways
from transport.security import Security


def security_of(cfg: NodeConfig) -> Security:
    if cfg.security.insecure:
        return Security.plain()
    return Security.curve_group(cfg.security.public_key.encode(), cfg.security.secret_key.encode())


class NodeStartError(RuntimeError):
    """The node cannot start (a port it must listen on is taken...); the text says which and why."""


LISTEN_PORTS = ("vswitch_port", "notifier_port", "notifier_aux_port")


def check_listen_ports(me: ServerConfig) -> None:
    """Bind (and release at once) every TCP port this server listens on, the way ZeroMQ will
    (SO_REUSEADDR), so a port held by another process or an address that is not on this host
    stops the start with a message naming them, instead of a node idling in Error."""
    problems: list[str] = []
    for key in LISTEN_PORTS:
        port = int(getattr(me, key))
        try:
            family, kind, proto, _, where = socket.getaddrinfo(
                me.address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(where)
        except OSError as exc:
            why = exc.strerror or str(exc)
            problems.append(f"cannot listen on {me.address}:{port} ({key} of server {me.name}): {why}")
    if problems:
        raise NodeStartError("; ".join(problems))


class Node:
    def __init__(
        self, config: NodeConfig, *, force_backup: bool = False, manual_switch_only: bool = False
    ) -> None:
        self.config = config
        self.force_backup = force_backup
        self.manual_switch_only = manual_switch_only
        self.shutdown_done = threading.Event()
        self.clock = RealClock()
        self.ctx = NodeContext(node=config.name, clock=self.clock, config=config, zmq=zmq.Context())
        self.stop_requested = threading.Event()
        self.supervisor: pykka.ActorRef[Any] | None = None
        self.store: Store | None = None
        self.params: ServerParams | None = None
        self.lock = DataDirLock(Path(config.data_dir))
        self._pinger: IcmpPinger | None = None
        self._pinger_lock = threading.Lock()
        self.log = logger.bind(actor="Node", node=config.name)

    # ------------------------------------------------------------------------------ ops

    def admin_ops(self) -> dict[str, AdminOp]:
        return {
            "ping": self.op_ping,
            "actors": self.op_actors,
            "endpoints": self.op_endpoints,
            "inject": self.op_inject,
            "status": self.op_status,
            "monitors": self.op_monitors,
            **{f"ds.{op}": self._ds_op(op) for op in ("get", "ls", "set", "rm", "tree", "export", "import")},
            **{f"param.{op}": self._param_op(op) for op in ("list", "get", "set", "unset")},
        }

    def _is_active(self) -> bool:
        return self.ctx.role.role == "Primary"

    def _ds_op(self, op: str) -> AdminOp:
        def run(args: dict[str, Any]) -> dict[str, Any]:
            assert self.store is not None
            try:
                return ds_admin.handle_ds(self.store, op, args, self._is_active())
            except ds_admin.AdminError as exc:
                raise AdminError(str(exc)) from None

        return run

    def _param_op(self, op: str) -> AdminOp:
        def run(args: dict[str, Any]) -> dict[str, Any]:
            assert self.store is not None and self.params is not None
            try:
                return ds_admin.handle_param(self.store, self.params, op, args, self._is_active())
            except ds_admin.AdminError as exc:
                raise AdminError(str(exc)) from None

        return run

    def op_ping(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "node": self.config.name, "pid": os.getpid(), "time": time.time()}

    def op_status(self, args: dict[str, Any]) -> dict[str, Any]:
        r = self.ctx.role
        return {
            "node": self.config.name,
            "role": r.role,
            "generation": r.generation,
            "starting_up": r.starting_up,
            "reason": r.reason,
            "release": self.config.release,
            "pid": os.getpid(),
        }

    def op_monitors(self, args: dict[str, Any]) -> dict[str, Any]:
        """The parameter values each running monitor uses now (and changes waiting for a restart)."""
        out: dict[str, Any] = {"node": self.config.name, "role": self.ctx.role.role, "monitors": {}}
        for name in ("PrimaryMonitor", "ModuleMonitor"):
            ref = self.ctx.directory.lookup(name)
            if ref is None or not ref.is_alive():
                continue
            try:
                out["monitors"][name] = ref.ask(GetMonitorParams(), timeout=2)
            except (pykka.Timeout, pykka.ActorDeadError):
                out["monitors"][name] = {"error": f"{name} did not answer"}
        return out

    def op_actors(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.supervisor is not None
        rows = self.supervisor.ask(GetActorStatus(), timeout=3)
        vswitch = self.ctx.directory.lookup("VirtualSwitch")
        peer = vswitch.ask(GetPeerStatus(), timeout=2) if vswitch is not None else None
        return {"node": self.config.name, "role": self.ctx.role.role, "actors": rows, "peer": peer}

    def op_endpoints(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"endpoints": [e.status() for e in self.ctx.endpoints.all()]}

    def op_inject(self, args: dict[str, Any]) -> dict[str, Any]:
        if "crash" in args:
            name = str(args["crash"])
            if name == "Supervisor":
                raise AdminError("the Supervisor cannot be crashed: nothing would restart it")
            ref = self.ctx.directory.lookup(name)
            if ref is None:
                raise AdminError(
                    f"no running actor named {name!r}; running: {', '.join(self.ctx.directory.names())}"
                )
            ref.tell(CrashActor(f"crash injected by admin into {name}"))
            return {"crashed": name}
        if args.get("clear_all"):
            for each in self.ctx.endpoints.all():
                each.set_faults(NO_FAULTS)
            return {"cleared": [e.name for e in self.ctx.endpoints.all()]}
        name = str(args.get("endpoint", ""))
        endpoint = self.ctx.endpoints.get(name)
        if endpoint is None:
            known = ", ".join(e.name for e in self.ctx.endpoints.all())
            raise AdminError(f"no endpoint named {name!r}; endpoints: {known}")
        try:
            faults = Faults.from_dict(dict(args.get("faults", {})))
        except (ValueError, TypeError) as exc:
            raise AdminError(f"bad fault settings: {exc}") from None
        endpoint.set_faults(faults)
        return {"endpoint": name, "faults": faults.as_dict()}

    # ------------------------------------------------------------------------ life cycle

    def start(self) -> None:
        cfg = self.config
        data = Path(cfg.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()  # before anything in the directory is touched: DataDirInUse if it is taken
        configure_logging(cfg.name, cfg.log_level, data)
        self.log.info("starting node {} (release {}), data in {}", cfg.name, cfg.release, data)
        try:
            check_listen_ports(cfg.me)
        except NodeStartError as exc:
            self.log.error("cannot start node {}: {}", cfg.name, exc)
            self.lock.release()
            raise
        security = security_of(cfg)
        self.store = Store.open_dir(data)
        seeded = seed_from_config(self.store, cfg.server_a.name, cfg.server_b.name, cfg.paths, cfg.parameters)
        if seeded:
            self.log.info("seeded server parameters from the configuration: {}", ", ".join(seeded))
        self.params = params = ServerParams(self.store)
        self.ctx.server_params = params
        reconnect_delay = params.seconds("Switchover Notifier Reconnect Delay")
        # spec: QoS marks the ping only when it goes on the auxiliary connection
        qos = params.flag("Switchover Use QoS For Ping") and params.flag("Switchover Ping on Aux Connection")
        dscp = params.integer("Switchover QoS DSCP") if qos else 0
        specs = {
            "core": [
                actor_spec("Admin", AdminServer, ops=self.admin_ops()),
                actor_spec("VirtualSwitch", VirtualSwitch, security=security),
                actor_spec("Notifier", Notifier, security=security),
            ],
            "backup": [
                actor_spec(
                    link_actor_name(MAIN),
                    NotifierLink,
                    link=MAIN,
                    security=security,
                    reconnect_delay=reconnect_delay,
                ),
                actor_spec(
                    link_actor_name(AUX),
                    NotifierLink,
                    link=AUX,
                    security=security,
                    reconnect_delay=reconnect_delay,
                    tos=dscp << 2,
                ),
            ],
            "monitors": [
                actor_spec("ModuleMonitor", ModuleMonitor),
                actor_spec("PrimaryMonitor", PrimaryMonitor),
            ],
            "isolation": [
                actor_spec(
                    "IsolationWatch",
                    IsolationWatch,
                    plan=self.isolation_plan,
                    network_check=self.own_network_check,
                    link=self.peer_link,
                ),
            ],
        }
        self.log.info("isolation policy {}: {}", cfg.roles.isolation, self.isolation_plan().describe())
        intensity = Intensity(cfg.supervisor.max_restarts, cfg.supervisor.window)
        self.supervisor = NodeSupervisor.start(
            self.ctx,
            specs,
            intensity,
            manual_switch_only=self.manual_switch_only,
            force_backup=self.force_backup,
            keep_serving_when_isolated=cfg.roles.isolation == "keep-serving",
            reconnect_timeout=self.reconnect_timeout,
            reconnect_floor=lambda: reconnect_delay + 1.0 + 3.0,  # one retry, one probe, the heartbeat
            on_shutdown=self.shutdown_requested,
            network_check=self.network_check,
        )

    def reconnect_timeout(self) -> float:
        assert self.params is not None
        return self.params.seconds("Switchover Reconnect Timeout")

    def network_check(self) -> bool:
        assert self.params is not None
        values = resolved_values(self.params, PRIMARY_MONITOR_PARAMS)
        params = primary_monitor_params(values, this_server=this_server(self.ctx))
        with IcmpPinger() as pinger:
            return backup_network_ok(params, pinger.ping_sync, gateways)

    def _monitor_params(self) -> Any:
        assert self.params is not None
        values = resolved_values(self.params, PRIMARY_MONITOR_PARAMS)
        return primary_monitor_params(values, this_server=this_server(self.ctx))

    def isolation_plan(self) -> IsolationPlan:
        """The active's isolation timings from the current parameters (see actors/roles/isolation.py)."""
        params = self._monitor_params()
        echoes = len(params.nettest_addresses) + (0 if params.disable_gateway_ping else max(1, len(gateways())))
        timing = self.config.timing
        return plan_isolation(
            fastest_takeover(params, self.reconnect_timeout()),
            hello_interval=timing.hello_interval,
            peer_timeout=timing.peer_timeout,
            nettest_timeout=params.nettest_timeout,
            echoes=echoes,
        )

    def own_network_check(self, timeout: float) -> bool:
        """THE local-network rule (gateway when enabled, NetTest), each echo bounded by ``timeout``."""
        params = self._monitor_params()
        params = replace(params, nettest_timeout=min(params.nettest_timeout, timeout))
        with self._pinger_lock:
            if self._pinger is None:  # one pinger for the watch's checks (they run one at a time)
                self._pinger = IcmpPinger(max_workers=1)
            pinger = self._pinger
        return backup_network_ok(params, pinger.ping_sync, gateways)

    def peer_link(self, interface: str | None) -> LinkStatus | None:
        """The interface holding this node's address (it reaches the peer): carrier and address."""
        address = self.config.me.address

        def addresses() -> dict[str, list[str]]:
            return {name: [a.address for a in addrs] for name, addrs in psutil.net_if_addrs().items()}

        link = read_link_status(address, addresses=addresses)
        if link is None and interface is not None:
            return LinkStatus(interface, carrier_of(interface), False)  # the address is gone
        return link

    def shutdown_requested(self, why: str) -> None:
        self.log.info("state machine: {}", why)
        self.shutdown_done.set()

    def stop(self) -> None:
        self.log.info("stopping node {}", self.config.name)
        if self.supervisor is not None:
            try:
                self.supervisor.stop(block=True, timeout=10)
            except (pykka.Timeout, pykka.ActorDeadError):
                pass
        pykka.ActorRegistry.stop_all(block=True, timeout=5)
        if self._pinger is not None:
            self._pinger.close()
        self.clock.stop()
        if self.params is not None:
            self.params.close()
        if self.store is not None:
            self.store.close()
        (Path(self.config.data_dir) / ADMIN_SOCKET).unlink(missing_ok=True)
        self.ctx.zmq.term()
        self.log.info("node {} stopped", self.config.name)
        self.lock.release()

    def run(self) -> int:
        def request_stop(signum: int, frame: Any) -> None:
            self.log.info("received {}, stopping", signal.Signals(signum).name)
            self.stop_requested.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        self.start()
        while not self.stop_requested.wait(0.5):
            pass
        if self.supervisor is not None and self.supervisor.is_alive():
            self.supervisor.tell(StopNode("signal received"))
            # a primary runs its Discontinue hooks before it goes: wait for them, bounded by their timeouts
            hooks = list_hooks(hook_directory(self.config.hooks_path, HookEvent.DISCONTINUE))
            self.shutdown_done.wait(5.0 + self.config.hooks.timeout * len(hooks))
        self.stop()
        return 0
