"""One node process: configuration, logging, the supervisor and its children, the admin
socket, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pykka
import zmq
from loguru import logger

from actors.admin import AdminError, AdminOp, AdminServer
from actors.config import SERVER_PORTS, NodeConfig, ServerConfig
from actors.http_endpoint import HttpEndpoint, node_state_collector
from actors.mirroring.ds_mirror import DSMirror
from actors.mirroring.ds_publisher import DSPublisher
from actors.mirroring.file_mirror import FileMirror
from actors.mirroring.file_monitor import FileMonitor, GetFilesStatus, StallReaders
from actors.mirroring.interaction_publisher import GetInteractions, InteractionPublisher
from actors.mirroring.interaction_shadow import InteractionShadow
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
from replication.ds_sync import StatusBoard, WriteGate, replication_warning
from replication.params import ServerParams, seed_from_config
from replication.store import Store
from transport.admin_client import ADMIN_SOCKET
from transport.auth import AccessControl, ClientsFileError, PairAuthenticator
from transport.faults import NO_FAULTS, Faults
from transport.icmp import IcmpPinger, gateways
from transport.messages import InteractionList
from transport.security import KeyFileError, Security, load_keypair


def security_of(cfg: NodeConfig, access: AccessControl | None = None) -> Security:
    """The node's security: plain text by explicit choice, else CURVE with the server group
    keypair (its secret file must be private: KeyFileError names it and its mode)."""
    if cfg.security.insecure:
        return Security.plain()
    public, secret = load_keypair(cfg.security.group_key)
    return Security.curve_group(public, secret, access)


class NodeStartError(RuntimeError):
    """The node cannot start (a port it must listen on is taken...); the text says which and why."""


LISTEN_PORTS = SERVER_PORTS


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
        self.access: AccessControl | None = None
        self.authenticator: PairAuthenticator | None = None
        self._pinger: IcmpPinger | None = None
        self._pinger_lock = threading.Lock()
        self.log = logger.bind(actor="Node", node=config.name)
        self.http: HttpEndpoint | None = None
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
            "monitors": self.op_monitors,
            "keys-reload": self.op_keys_reload,
            "security": self.op_security,
            "ds.replication": self.op_ds_replication,
            **{f"ds.{op}": self._ds_op(op) for op in ("get", "ls", "set", "rm", "tree", "export", "import")},
            **{f"param.{op}": self._param_op(op) for op in ("list", "get", "set", "unset")},
            "interactions": self.op_interactions,
            "files.status": self.op_files_status,
            "files.stall": self.op_files_stall,
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

    def op_interactions(self, args: dict[str, Any]) -> dict[str, Any]:
        """Live interactions on the active, shadows on the backup: ``type``, ``id``, ``limit``,
        ``counts_only``."""
        for name in ("InteractionPublisher", "InteractionShadow"):
            ref = self.ctx.directory.lookup(name)
            if ref is None or not ref.is_alive():
                continue
            try:
                limit = int(args.get("limit", 0) or 0)
            except (TypeError, ValueError):
                raise AdminError(f"limit must be an integer, got {args.get('limit')!r}") from None
            query = GetInteractions(str(args.get("type", "") or ""), str(args.get("id", "") or ""), limit)
            if args.get("counts_only"):
                query = GetInteractions(query.type, query.id, -1)
            reply = ref.ask(query, timeout=5)
            if not isinstance(reply, InteractionList):
                raise AdminError(f"{name} answered {type(reply).__name__} to a listing")
            items = [] if args.get("counts_only") else list(reply.items)
            return {
                "node": reply.node,
                "role": reply.role,
                "kind": reply.kind,
                "counts": reply.counts,
                "total": reply.total,
                "stats": reply.stats,
                "items": items,
            }
        return {
            "node": self.config.name,
            "role": self.ctx.role.role,
            "kind": "none",
            "counts": {},
            "total": 0,
            "stats": {},
            "items": [],
        }

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

    def op_keys_reload(self, args: dict[str, Any]) -> dict[str, Any]:
        """Read the clients file again: added keys may connect, revoked ones are refused from
        their next request (also on SIGHUP)."""
        if self.access is None:
            raise AdminError("this node runs plain text (security.insecure = true): there are no keys")
        try:
            changes = self.access.reload()
        except ClientsFileError as exc:
            self.log.error("clients file not reloaded (the previous list stays in force): {}", exc)
            raise AdminError(f"not reloaded, the previous list stays in force: {exc}") from None
        self.log.info(
            "clients file {} reloaded: {} authorized (added: {}; removed or revoked: {})",
            self.access.clients_path,
            len(changes["clients"]),
            ", ".join(changes["added"]) or "none",
            ", ".join(changes["removed"]) or "none",
        )
        return changes

    def op_security(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.access is None:
            return {"secured": False}
        refused = {e.name: e.stats.refused for e in self.ctx.endpoints.all() if e.stats.refused}
        return {"secured": True, **self.access.status(), "refused_by_endpoint": refused}

    def _primary_present(self) -> bool:
        """Is there a primary (this node, or a peer that said so lately)? Without one, the
        control panel's Remote Control right is not checked (spec)."""
        role, seen = self.ctx.peer_role
        fresh = self.clock.now() - seen <= self.config.timing.peer_timeout
        return self.ctx.role.role == "Primary" or (role == "Primary" and fresh)

    def _start_security(self) -> Security:
        cfg = self.config
        if cfg.security.insecure:
            self.log.warning(
                "security.insecure = true: the pair's traffic is plain text, NOT encrypted and NOT "
                "authenticated; anyone who reaches ports {}, {}, {} can query and switch the pair",
                cfg.me.vswitch_port,
                cfg.me.notifier_port,
                cfg.me.notifier_aux_port,
            )
            return Security.plain()
        public, _ = load_keypair(cfg.security.group_key)
        try:
            self.access = AccessControl(
                public.decode(), cfg.security.clients_path, primary_present=self._primary_present
            )
        except ClientsFileError as exc:
            raise KeyFileError(str(exc)) from None
        self.authenticator = PairAuthenticator(self.ctx.zmq, self.access)
        self.authenticator.start()
        self.log.info(
            "CURVE on: server group key {}, {} authorized client(s) from {}",
            cfg.security.group_key,
            len([c for c in self.access.clients() if c.active]),
            cfg.security.clients_path,
        )
        return security_of(cfg, self.access)

    def op_files_status(self, args: dict[str, Any]) -> dict[str, Any]:
        """File mirroring per root: the File Monitor's on the active, the FileMirror's on the backup."""
        for name in ("FileMirror", "FileMonitor"):
            ref = self.ctx.directory.lookup(name)
            if ref is not None and ref.is_alive():
                try:
                    result: Any = ref.ask(GetFilesStatus(), timeout=3)
                except (pykka.Timeout, pykka.ActorDeadError):
                    continue
                return {"node": self.config.name, "role": self.ctx.role.role, **result}
        return {"node": self.config.name, "role": self.ctx.role.role, "side": None, "roots": []}

    def op_files_stall(self, args: dict[str, Any]) -> dict[str, Any]:
        """Fault injection: the File Monitor stops reading inotify for ``seconds`` (forces a queue overflow)."""
        try:
            seconds = float(args.get("seconds", 1.0))
        except (TypeError, ValueError):
            raise AdminError(f"seconds: expected a number, got {args.get('seconds')!r}") from None
        if not 0 <= seconds <= 600:
            raise AdminError(f"seconds: expected 0-600, got {seconds:g}")
        ref = self.ctx.directory.lookup("FileMonitor")
        if ref is None or not ref.is_alive():
            raise AdminError("no File Monitor is running here (it runs on the active server)")
        result: Any = ref.ask(StallReaders(seconds), timeout=3)
        return {**result}

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
            security = self._start_security()
        except (NodeStartError, KeyFileError) as exc:
            self.log.error("cannot start node {}: {}", cfg.name, exc)
            self.lock.release()
            raise
        self.ctx.security = security
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
                actor_spec("FileMirror", FileMirror, security=security),
            ],
            "monitors": [
                actor_spec("ModuleMonitor", ModuleMonitor),
                actor_spec("PrimaryMonitor", PrimaryMonitor),
            ],
            "active": [
                actor_spec("InteractionPublisher", InteractionPublisher, security=security),
                actor_spec("FileMonitor", FileMonitor, security=security),
                actor_spec(
                    "DSPublisher", DSPublisher, store=self.store, gate=self.ds_gate, board=self.ds_board, security=security
                ),
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
        specs["backup"].append(actor_spec("InteractionShadow", InteractionShadow, security=security))
        specs["backup"].append(
            actor_spec("DSMirror", DSMirror, store=self.store, board=self.ds_board, security=security)
        )
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
        self.start_http()

    def start_http(self) -> None:
        """The HTTP endpoint ([http]); a port that cannot be bound is logged and the node runs on."""
        http = self.config.http
        self.ctx.metrics.add_collector(node_state_collector(self.ctx))
        if not http.enabled:
            return
        try:
            self.http = HttpEndpoint(self.ctx, http.address, http.port, self.stop_requested.is_set).start()
        except OSError as exc:
            self.log.error(
                "HTTP endpoint not started: cannot listen on {}:{} ({}); the node runs without it "
                "(set [http] port, or enabled = false)",
                http.address,
                http.port,
                exc.strerror or exc,
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
        self.stop_requested.set()
        if self.http is not None:
            self.http.close()
        if self.supervisor is not None:
            try:
                self.supervisor.stop(block=True, timeout=10)
            except (pykka.Timeout, pykka.ActorDeadError):
                pass
        pykka.ActorRegistry.stop_all(block=True, timeout=5)
        if self.authenticator is not None:
            self.authenticator.stop()
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

    def _reload_on_signal(self) -> None:
        self.log.info("received SIGHUP: reloading the clients file")
        try:
            self.op_keys_reload({})
        except AdminError as exc:
            self.log.warning("SIGHUP: {}", exc)

    def run(self) -> int:
        def request_stop(signum: int, frame: Any) -> None:
            self.log.info("received {}, stopping", signal.Signals(signum).name)
            self.stop_requested.set()

        def reload_keys(signum: int, frame: Any) -> None:
            threading.Thread(target=self._reload_on_signal, name="keys-reload", daemon=True).start()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGHUP, reload_keys)
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
