"""One node process: configuration, logging, the supervisor and its children, the admin
socket, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import zmq
from loguru import logger

from actors.admin import AdminError, AdminOp, AdminServer
from actors.config import NodeConfig
from actors.mirroring.ds_mirror import DSMirror
from actors.mirroring.ds_publisher import DSPublisher
from actors.monitoring.monitors import ModuleMonitor, PrimaryMonitor, primary_monitor_params
from actors.monitoring.network_check import backup_network_ok
from actors.monitoring.notifier import Notifier
from actors.monitoring.notifier_link import AUX, MAIN, NotifierLink, link_actor_name
from actors.roles.hooks import HookEvent, hook_directory, list_hooks
from actors.roles.node_supervisor import NodeSupervisor, StopNode
from actors.roles.virtual_switch import GetPeerStatus, VirtualSwitch
from actors.runtime.base import CrashActor
from actors.runtime.clock import RealClock
from actors.runtime.context import NodeContext
from actors.runtime.logs import configure_logging
from actors.runtime.supervision import Intensity
from actors.runtime.supervisor import GetActorStatus, actor_spec
from replication import ds_admin
from replication.ds_sync import StatusBoard, WriteGate, replication_warning
from replication.params import CATALOG, ServerParams, format_value, seed_from_config
from replication.store import Store
from transport.admin_client import ADMIN_SOCKET
from transport.faults import NO_FAULTS, Faults
from transport.icmp import IcmpPinger
from transport.security import Security


def security_of(cfg: NodeConfig) -> Security:
    if cfg.security.insecure:
        return Security.plain()
    return Security.curve_group(cfg.security.public_key.encode(), cfg.security.secret_key.encode())


def _seconds(params: dict[str, str], name: str, default: float, low: float, high: float | None) -> float:
    try:
        value = float(params.get(name, default))
    except ValueError:
        logger.warning("{}: {!r} is not a number; using {}", name, params.get(name), default)
        return default
    return max(low, value if high is None else min(high, value))


def _flag(params: dict[str, str], name: str) -> bool:
    return str(params.get(name, "0")).strip().lower() in ("1", "yes", "true")


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
        self.log = logger.bind(actor="Node", node=config.name)
        self.ds_board = StatusBoard()  # DS replication state (DSMirror / DSPublisher write it)
        self.ds_gate = WriteGate(time.monotonic)  # DS writes stop here during a controlled switch
        self.ctx.ds_status = self.ds_replication_status

    # ------------------------------------------------------------------------------ ops

    def admin_ops(self) -> dict[str, AdminOp]:
        return {
            "ping": self.op_ping,
            "actors": self.op_actors,
            "endpoints": self.op_endpoints,
            "inject": self.op_inject,
            "status": self.op_status,
            "ds.replication": self.op_ds_replication,
            **{f"ds.{op}": self._ds_op(op) for op in ("get", "ls", "set", "rm", "tree", "export", "import")},
            **{f"param.{op}": self._param_op(op) for op in ("list", "get", "set", "unset")},
        }

    def _is_active(self) -> bool:
        return self.ctx.role.role == "Primary"

    def _ds_op(self, op: str) -> AdminOp:
        def run(args: dict[str, Any]) -> dict[str, Any]:
            assert self.store is not None
            try:
                with self._write_gate(op in ("set", "rm", "import")):
                    return ds_admin.handle_ds(self.store, op, args, self._is_active())
            except ds_admin.AdminError as exc:
                raise AdminError(str(exc)) from None

        return run

    def _param_op(self, op: str) -> AdminOp:
        def run(args: dict[str, Any]) -> dict[str, Any]:
            assert self.store is not None and self.params is not None
            try:
                with self._write_gate(op in ("set", "unset")):
                    return ds_admin.handle_param(self.store, self.params, op, args, self._is_active())
            except ds_admin.AdminError as exc:
                raise AdminError(str(exc)) from None

        return run

    @contextlib.contextmanager
    def _write_gate(self, writes: bool) -> Iterator[None]:
        """DS writes on the active hold the gate, so a controlled switch's drain sees the last one."""
        if not writes:
            yield
            return
        with self.ds_gate.lock:
            why = self.ds_gate.check()
            if why is not None and self._is_active():
                raise AdminError(why)
            yield

    def ds_replication_status(self) -> dict[str, Any]:
        status = self.ds_board.snapshot()
        if self.store is not None:
            epoch, rev = self.store.position()
            status.update(history=epoch, revision=rev)
            if status.get("side") == "backup":
                status["applied"] = rev
                active = status.get("active_revision")
                if isinstance(active, int) and active >= 0 and status.get("lag_revisions") is not None:
                    status["lag_revisions"] = max(0, active - rev)
        status["warning"] = replication_warning(status)
        return status

    def op_ds_replication(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"node": self.config.name, "role": self.ctx.role.role, **self.ds_replication_status()}

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
        configure_logging(cfg.name, cfg.log_level, data)
        self.log.info("starting node {} (release {}), data in {}", cfg.name, cfg.release, data)
        security = security_of(cfg)
        self.store = Store.open_dir(data)
        seeded = seed_from_config(self.store, cfg.server_a.name, cfg.server_b.name, cfg.paths, cfg.parameters)
        if seeded:
            self.log.info("seeded server parameters from the configuration: {}", ", ".join(seeded))
        self.params = ServerParams(self.store)
        self.ctx.server_params = self.params
        self.ctx.parameters = self.parameters
        params = self.parameters()
        reconnect_delay = _seconds(params, "Switchover Notifier Reconnect Delay", 5.0, 5.0, 60.0)
        qos = _flag(params, "Switchover Use QoS For Ping") and _flag(
            params, "Switchover Ping on Aux Connection"
        )
        dscp = int(_seconds(params, "Switchover QoS DSCP", 34, 0, 63)) if qos else 0
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
            "active": [
                actor_spec("DSPublisher", DSPublisher, store=self.store, gate=self.ds_gate,
                           board=self.ds_board, security=security),
            ],
        }
        specs["backup"].append(
            actor_spec("DSMirror", DSMirror, store=self.store, board=self.ds_board, security=security))
        intensity = Intensity(cfg.supervisor.max_restarts, cfg.supervisor.window)
        self.supervisor = NodeSupervisor.start(
            self.ctx,
            specs,
            intensity,
            manual_switch_only=self.manual_switch_only,
            force_backup=self.force_backup,
            reconnect_timeout=self.reconnect_timeout,
            on_shutdown=self.shutdown_requested,
            network_check=self.network_check,
        )

    def parameters(self) -> dict[str, str]:
        """The server parameters set in the DS tree, by specification name, as validated text
        (an invalid stored value comes back as its documented fallback, with a warning)."""
        if self.params is None:
            return dict(self.config.parameters)
        values: dict[str, str] = {}
        for name in CATALOG:
            effective = self.params.effective(name)
            if effective.stored is not None:
                values[name] = format_value(name, effective.value)
        return values

    def reconnect_timeout(self) -> float:
        return _seconds(self.parameters(), "Switchover Reconnect Timeout", 30.0, 0.0, None)

    def network_check(self) -> bool:
        with IcmpPinger() as pinger:
            return backup_network_ok(primary_monitor_params(self.ctx), pinger)

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
        self.clock.stop()
        if self.params is not None:
            self.params.close()
        if self.store is not None:
            self.store.close()
        (Path(self.config.data_dir) / ADMIN_SOCKET).unlink(missing_ok=True)
        self.ctx.zmq.term()
        self.log.info("node {} stopped", self.config.name)

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
