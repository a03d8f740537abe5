"""``switchover ctl``: the control panel. It talks to both servers' VirtualSwitch port."""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from actors.config import ConfigError, load_config
from actors.roles.event_log import EventRecord, merge_histories
from cli.output import error, on_every_operation, print_json, print_table
from transport.client import Unreachable, query_state, request_once
from transport.messages import (
    CommandReply,
    HistoryReply,
    HistoryRequest,
    RejoinRequest,
    StatusReport,
    SwitchRequest,
)
from transport.security import Security

BACKUP_ROLES = ("Backup", "Reconnecting", "Upgrade Higher", "Upgrade Lower")


@dataclass(frozen=True)
class Server:
    name: str
    address: str  # tcp://host:port of its VirtualSwitch


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ctl", help="control panel: status, switch, rejoin, history, query-backup")
    ctl_options(p)
    ops = p.add_subparsers(dest="ctl_op", required=True)
    ops.add_parser("status", help="both servers, their roles, the pair's state and recent messages")
    sw = ops.add_parser("switch", help="switch over to the backup")
    sw.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    sw.add_argument("--immediate", action="store_true", help="switch without asking and exit (/Immediate)")
    sw.add_argument(
        "--wait", type=float, default=15.0, help="seconds to wait for the backup to become active"
    )
    rj = ops.add_parser(
        "rejoin", help="make a stale (or halted) server renegotiate its role and become backup"
    )
    rj.add_argument("--server", help="server name (default: the stale one)")
    rj.add_argument("--wait", type=float, default=15.0, help="seconds to wait for the server to take a role")
    hist = ops.add_parser("history", help="both servers' state changes in time order, with reasons")
    hist.add_argument(
        "--limit", type=positive_int, default=200, help="print the last N state changes (default 200)"
    )
    qb = ops.add_parser("query-backup", help="exit 0 when the local server (or --server) is the backup")
    qb.add_argument("--server", help="server name (default: the config's own node)")
    on_every_operation(ops, ctl_options)
    p.set_defaults(func=run)


ISOLATION_MEANING = {
    "step-down": "an active cut off from the backup and from its network stops serving",
    "keep-serving": "an isolated active keeps serving, as the specification says",
}


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def nobody_answered(states: dict[str, StatusReport | str]) -> str | None:
    """The error when no server answered at all (None when at least one did)."""
    if any(isinstance(s, StatusReport) for s in states.values()):
        return None
    return "no server answered: " + "; ".join(f"{n}: {s}" for n, s in states.items())


def ctl_options(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    """``--config``, ``--json``, ``--timeout``: accepted before or after the operation."""
    d = argparse.SUPPRESS
    p.add_argument(
        "--config",
        default=d if suppress else os.environ.get("SWITCHOVER_CONFIG"),
        help="a node config naming both servers (or set SWITCHOVER_CONFIG)",
    )
    p.add_argument(
        "--json", action="store_true", default=d if suppress else False, help="print JSON for scripts"
    )
    p.add_argument(
        "--timeout", type=float, default=d if suppress else 2.0, help="seconds to wait for each server"
    )


def servers_of(config_path: str | None) -> tuple[list[Server], str, Security]:
    if not config_path:
        raise ConfigError("no configuration: pass --config FILE or set SWITCHOVER_CONFIG")
    cfg = load_config(config_path)
    security = (
        Security.plain()
        if cfg.security.insecure
        else Security.curve_group(cfg.security.public_key.encode(), cfg.security.secret_key.encode())
    )
    servers = [Server(s.name, f"tcp://{s.address}:{s.vswitch_port}") for s in (cfg.server_a, cfg.server_b)]
    return servers, cfg.name, security


def poll_both(servers: list[Server], timeout: float, security: Security) -> dict[str, StatusReport | str]:
    def ask(server: Server) -> StatusReport | str:
        try:
            return query_state(server.address, timeout, security)
        except Unreachable as exc:
            return str(exc)

    with ThreadPoolExecutor(len(servers)) as pool:
        return dict(zip((s.name for s in servers), pool.map(ask, servers), strict=True))


def pair_state(active: StatusReport | None, backup: StatusReport | None) -> str:
    if active is None or backup is None or active.release == backup.release:
        return "Active"
    return backup.role if backup.role.startswith("Upgrade") else "Upgrade"


def status_view(states: dict[str, StatusReport | str]) -> dict[str, Any]:
    reports = {n: s for n, s in states.items() if isinstance(s, StatusReport)}
    active = next((r for r in reports.values() if r.role == "Primary"), None)
    backup = next((r for r in reports.values() if r.role in BACKUP_ROLES), None)
    servers = {
        name: (
            {"connected": True, **asdict(s)}
            if isinstance(s, StatusReport)
            else {"connected": False, "error": s}
        )
        for name, s in states.items()
    }
    primaries = [r.node for r in reports.values() if r.role == "Primary"]
    view: dict[str, Any] = {
        "active": active.node if active else None,
        "backup": backup.node if backup else None,
        "pair_state": pair_state(active, backup),
        "mode": None
        if backup is None
        else (
            "manual switch only"
            if backup.manual_switch_only or backup.role.startswith("Upgrade")
            else "auto-switch"
        ),
        "primary_version": active.release if active else None,
        "backup_version": backup.release if backup else None,
        "generation": max((r.generation for r in reports.values()), default=0),
        "replication": backup.replication if backup else None,
        "servers": servers,
        "warnings": [],
    }
    if len(primaries) > 1:
        view["warnings"].append(f"more than one primary: {', '.join(primaries)}")
    if backup is not None and backup.replication == "stopped":
        view["warnings"].append(
            "The backup server has detected that file replication from the primary has stopped."
        )
    if active is None:
        view["warnings"].append("no active server")
    return view


def print_status(view: dict[str, Any]) -> None:
    def conn(name: str | None) -> str:
        if name is None:
            return "(none)"
        return f"{name} ({'connected' if view['servers'][name]['connected'] else 'NOT CONNECTED'})"

    print(f"Active:  {conn(view['active'])}")
    print(f"Backup:  {conn(view['backup'])}")
    print(f"State:   {view['pair_state']}")
    if view["mode"]:
        print(f"Backup server is running in {view['mode']} mode.")
    if view["primary_version"]:
        print(f"Primary server version: {view['primary_version']}")
    if view["backup_version"]:
        print(f"Backup server version: {view['backup_version']}")
    print(f"Generation: {view['generation']}")
    for name, s in view["servers"].items():
        if s["connected"]:
            print(f"  {name}: {s['role']}, generation {s['generation']}, release {s['release']}")
            if s.get("isolation"):
                print(f"    isolation policy: {s['isolation']} ({ISOLATION_MEANING.get(s['isolation'], '?')})")
        else:
            print(f"  {name}: not connected ({s['error']})")
    for warning in view["warnings"]:
        print(f"WARNING: {warning}")
    lines: list[str] = []
    for name, s in view["servers"].items():
        lines += [f"[{name}] {m}" for m in s.get("messages", ())[-8:]]
    if lines:
        print("Status Messages:")
        for line in lines:
            print(f"  {line}")


def wait_for(
    servers: list[Server], name: str, roles: tuple[str, ...], timeout: float, security: Security
) -> StatusReport | None:
    server = next(s for s in servers if s.name == name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            report = query_state(server.address, 1.0, security)
            if report.role in roles:
                return report
        except Unreachable:
            pass
        time.sleep(0.1)
    return None


def do_switch(args: argparse.Namespace, servers: list[Server], security: Security) -> int:
    states = poll_both(servers, args.timeout, security)
    view = status_view(states)
    backup = view["backup"]
    if backup is None:
        return error(
            "no backup server to switch to; "
            + "; ".join(f"{n}: {s if isinstance(s, str) else s.role}" for n, s in states.items())
        )
    if not (args.yes or args.immediate):
        prompt = "Are you sure you wish to initiate Switchover to backup?"
        if view["replication"] == "stopped":
            prompt += "\nFile replication from the primary may not be running."
        try:
            answer = input(f"{prompt} [yes/no] ").strip().lower()
        except (EOFError, KeyboardInterrupt):
            print()
            return error("no answer to the confirmation: switchover cancelled (pass --yes to skip it)")
        if answer not in ("y", "yes"):
            print("Switchover cancelled.")
            return 1
    server = next(s for s in servers if s.name == backup)
    try:
        reply = request_once(
            server.address,
            SwitchRequest(f"ctl on {os.uname().nodename}", args.immediate),
            args.timeout,
            security,
        )
    except Unreachable as exc:
        return error(str(exc))
    if not isinstance(reply, CommandReply) or not reply.ok:
        detail = reply.detail if isinstance(reply, CommandReply) else reply.TYPE
        return error(f"switch refused by {backup}: {detail}")
    print(f"{backup}: {reply.detail}")
    if args.immediate:
        return 0
    report = wait_for(servers, backup, ("Primary",), args.wait, security)
    if report is None:
        return error(f"{backup} did not become active within {args.wait:g} s")
    print(f"{backup} is now active (generation {report.generation})")
    return 0


def do_rejoin(args: argparse.Namespace, servers: list[Server], security: Security) -> int:
    name = args.server
    if name is None:
        states = poll_both(servers, args.timeout, security)
        stale = [
            n
            for n, s in states.items()
            if isinstance(s, StatusReport) and s.role in ("Inactive", "Stopping", "Error")
        ]
        if not stale:
            return error("no stale server to rejoin; name one with --server")
        name = stale[0]
    server = next((s for s in servers if s.name == name), None)
    if server is None:
        return error(f"unknown server {name!r}; servers: {', '.join(s.name for s in servers)}")
    try:
        reply = request_once(server.address, RejoinRequest("ctl"), args.timeout, security)
    except Unreachable as exc:
        return error(str(exc))
    if not isinstance(reply, CommandReply) or not reply.ok:
        return error(
            f"rejoin refused by {name}: {reply.detail if isinstance(reply, CommandReply) else reply.TYPE}"
        )
    print(f"{name}: {reply.detail}")
    report = wait_for(servers, name, (*BACKUP_ROLES, "Primary"), args.wait, security)
    if report is None:
        return error(f"{name} did not take a role within {args.wait:g} s")
    print(f"{name} is now {report.role}")
    return 0


def do_history(args: argparse.Namespace, servers: list[Server], security: Security) -> int:
    own: dict[str, list[EventRecord]] = {}
    copies: dict[str, list[EventRecord]] = {}
    failures: list[str] = []
    for server in servers:
        try:
            reply = request_once(server.address, HistoryRequest(args.limit), args.timeout, security)
        except Unreachable as exc:
            print(f"warning: {exc}", file=sys.stderr)
            failures.append(f"{server.name}: {exc}")
            continue
        if isinstance(reply, HistoryReply):
            own[reply.node] = [EventRecord.from_dict(r) for r in reply.records]
            for r in reply.peer_records:
                rec = EventRecord.from_dict(r)
                copies.setdefault(rec.node, []).append(rec)
    if len(failures) == len(servers):
        return error("no server answered: " + "; ".join(failures))
    histories = list(own.values()) + [recs for node, recs in copies.items() if node not in own]
    merged = merge_histories(histories)[-args.limit :]  # each server sends its last N: keep the last N of all
    if args.json:
        print_json([r.to_dict() for r in merged])
        return 0
    rows = [
        [
            datetime.fromtimestamp(r.epoch).strftime("%m-%d %H:%M:%S.%f")[:-3],
            r.node,
            f"{r.old_state} -> {r.new_state}",
            r.reason or r.event,
            r.generation,
            r.verdict.split(" (")[0],
        ]
        for r in merged
    ]
    print_table("switchover history", ["time", "server", "change", "reason / event", "gen", "verdict"], rows)
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        servers, local, security = servers_of(args.config)
    except ConfigError as exc:
        return error(str(exc))
    if args.ctl_op == "status":
        states = poll_both(servers, args.timeout, security)
        view = status_view(states)
        print_json(view) if args.json else print_status(view)
        nobody = nobody_answered(states)
        return error(nobody) if nobody else 0
    if args.ctl_op == "switch":
        return do_switch(args, servers, security)
    if args.ctl_op == "rejoin":
        return do_rejoin(args, servers, security)
    if args.ctl_op == "history":
        return do_history(args, servers, security)
    name = args.server or local
    server = next((s for s in servers if s.name == name), None)
    if server is None:
        return error(f"unknown server {name!r}")
    try:
        report = query_state(server.address, args.timeout, security)
    except Unreachable as exc:
        print(f"{name}: unreachable: {exc}", file=sys.stderr)
        return 2
    backup = report.role in BACKUP_ROLES
    if args.json:
        print_json({"server": name, "role": report.role, "backup": backup})
    else:
        print(f"{name} is {'the backup' if backup else 'not the backup'} ({report.role})")
    return 0 if backup else 1
