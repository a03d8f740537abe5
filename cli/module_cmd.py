"""``switchover module run|watch``: the reference module, and a sidecar for any service."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from loguru import logger

from actors.config import ConfigError, load_config, tool_security
from actors.runtime.logs import configure_logging
from transport.client import RoleEventSubscription, Unreachable, is_backup
from transport.messages import RoleEvent
from transport.module import ProcessHealth, own_process, run_module
from transport.security import Security


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("module", help="run a monitored module, or a sidecar that answers for a service")
    ops = p.add_subparsers(dest="module_op", required=True)
    for op, text in (
        ("run", "the reference module: answers Diagnostic Pings with its own PID"),
        ("watch", "answer for an existing service while its process lives and its check passes"),
    ):
        q = ops.add_parser(op, help=text)
        q.add_argument("--name", default="TsServer", help="module name (Switchover Monitoring)")
        q.add_argument(
            "--config",
            default=os.environ.get("SWITCHOVER_CONFIG"),
            help="this node's config (the local Notifier's address and port)",
        )
        q.add_argument("--notifier", help="tcp://host:port of the local Notifier (instead of --config)")
        q.add_argument("--pidfile-out", help="write this module's own PID here")
        q.add_argument(
            "--key",
            help="this module's secret key file (default: $SWITCHOVER_KEY, [security] client_key, the group key)",
        )
        if op == "watch":
            what = q.add_mutually_exclusive_group(required=True)
            what.add_argument("--pidfile", help="the service's PID file")
            what.add_argument("--pid", type=int, help="the service's PID")
            what.add_argument("--health-cmd", help="a command that exits 0 while the service is healthy")
            q.add_argument(
                "--check-interval", type=float, default=2.0, help="seconds between two health checks"
            )
        q.set_defaults(func=run)


def addresses(args: argparse.Namespace) -> tuple[str, str | None, Security]:
    """The local Notifier's address, the local VirtualSwitch's when a config is given, and the
    node's security settings (with this module's key)."""
    if args.notifier and not args.config:
        return str(args.notifier), None, Security.plain()
    if not args.config:
        raise ConfigError("pass --config FILE (or SWITCHOVER_CONFIG) or --notifier tcp://HOST:PORT")
    cfg = load_config(args.config)
    security = tool_security(cfg, args.key)
    if args.notifier:
        return str(args.notifier), None, security
    vswitch = f"tcp://{cfg.me.address}:{cfg.me.vswitch_port}"
    return f"tcp://{cfg.me.address}:{cfg.me.notifier_port}", vswitch, security


def follow_role(vswitch: str, name: str, security: Security) -> RoleEventSubscription:
    """Like an application would: ask whether this server is the backup, then hear of each switch."""
    try:
        backup = is_backup(vswitch, security=security)
        logger.info("{}: this server is {}", name, "the backup" if backup else "not the backup")
    except Unreachable as exc:
        logger.info("{}: cannot ask the local node yet ({})", name, exc)

    def on_event(event: RoleEvent) -> None:
        logger.warning(
            "{}: {} event: the node is now {} (generation {}, reason: {})",
            name,
            event.event.capitalize(),
            event.role,
            event.generation,
            event.reason or "-",
        )

    return RoleEventSubscription(vswitch, on_event, name=name, security=security).start()


def run(args: argparse.Namespace) -> int:
    try:
        address, vswitch, security = addresses(args)
    except ConfigError as exc:
        print(f"switchover module: config error: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.name, "INFO")
    if args.pidfile_out:
        Path(args.pidfile_out).write_text(f"{os.getpid()}\n")
    health = own_process
    if args.module_op == "watch":
        health = ProcessHealth(
            pid=args.pid, pidfile=args.pidfile, health_cmd=args.health_cmd, interval=args.check_interval
        )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    subscription = follow_role(vswitch, args.name, security) if vswitch else None
    try:
        run_module(address, args.name, health, stop, security=security)
    finally:
        if subscription is not None:
            subscription.stop()
    return 0
