"""``switchover ctl``: the control panel. It talks to both servers' VirtualSwitch port."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.config import ConfigError, load_config, tool_security
from actors.monitoring.detection_time import STATUS_PREFIX as DETECTION_PREFIX
from cli.output import error, on_every_operation, print_json
from transport.admin_client import AdminCallError, admin_call
from transport.client import Unreachable, query_state, request_once, who_am_i
from transport.messages import (
    CommandReply,
    HistoryReply,
    HistoryRequest,
    InteractionList,
    InteractionQuery,
    RejoinRequest,
    StatusReport,
    SwitchRequest,
)
from transport.security import Security

if TYPE_CHECKING:
    from actors.roles.event_log import EventRecord

BACKUP_ROLES = ("Backup", "Reconnecting", "Upgrade Higher", "Upgrade Lower")


@dataclass(frozen=True)
class Server:
    name: str
    address: str  # tcp://host:port of its VirtualSwitch


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ctl", help="control panel: status, switch, rejoin, history, query-backup")
    ctl_options(p)
    ops = p.add_subparsers(dest="ctl_op", required=True)
    st = ops.add_parser("status", help="both servers, their roles, the pair's state and recent messages")
    st.add_argument(
        "--watch",
        action="store_true",
        help="refresh until Ctrl-C: a live view on a terminal, repeated output otherwise "
        "(with --json: one JSON object per line per refresh)",
    )
    st.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes with --watch")
    st.add_argument("--count", type=int, default=0, help="with --watch: stop after N refreshes (0: never)")
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
        "--limit", type=positive_int, default=200, help="print the last N state changes (default 200)",
    )
    hist.add_argument(
        "--png",
        metavar="FILE",
        help="also draw the timeline (one lane per server, coloured by role) into FILE",
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
    p.add_argument(
        "--key",
        default=d if suppress else None,
        help="your secret key file (default: $SWITCHOVER_KEY, [security] client_key, the group key)",
    )


def servers_of(config_path: str | None, key: str | None = None) -> tuple[list[Server], str, Security]:
    if not config_path:
        raise ConfigError("no configuration: pass --config FILE or set SWITCHOVER_CONFIG")
    cfg = load_config(config_path, check_parameters=False)  # the node checks them; ctl needs addresses
    security = tool_security(cfg, key)
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
        "ds_replication": ds_replication_view(active, backup),
        "detection": detection_line(backup),
        "servers": servers,
        "warnings": [],
    }
    if len(primaries) > 1:
        view["warnings"].append(f"more than one primary: {', '.join(primaries)}")
    if backup is not None and backup.replication == "stopped":
        view["warnings"].append(
            "The backup server has detected that file replication from the primary has stopped."
        )
    if backup is not None:
        ds_warning = backup.ds.get("warning")  # the backup words it (replication.ds_sync.replication_warning)
        if ds_warning:
            view["warnings"].append(ds_warning)
    if active is None:
        view["warnings"].append("no active server")
    return view


def detection_line(backup: StatusReport | None) -> str | None:
    """The backup's latest worst-case detection times (its primary monitor reports them when it starts
    and when a parameter changes), without the time stamp."""
    if backup is None:
        return None
    for message in reversed(backup.messages):
        at = message.find(DETECTION_PREFIX)
        if at >= 0:
            return message[at:]
    return None


def user_view(
    servers: list[Server], view: dict[str, Any], timeout: float, security: Security
) -> dict[str, Any] | None:
    """Who this key is, and its rights, as the backup (else any connected server) sees it."""
    order = [view["backup"], view["active"], *(s.name for s in servers)]
    for name in order:
        server = next((s for s in servers if s.name == name), None)
        if server is None or not view["servers"][server.name]["connected"]:
            continue
        try:
            me = who_am_i(server.address, timeout, security)
        except Unreachable:
            continue
        return {"name": me.user, "rights": list(me.rights), "secured": me.secured}
    return None


def local_files_status(config_path: str | None, timeout: float) -> dict[str, Any] | None:
    """File mirroring per root, from the local node's admin socket (the backup's FileMirror or the
    active's File Monitor); ``None`` when this machine runs no node of the pair."""
    if not config_path:
        return None
    try:
        cfg = load_config(config_path, check_parameters=False)
        return admin_call(cfg.data_dir, "files.status", {}, timeout=timeout)
    except (ConfigError, AdminCallError, OSError):
        return None


def _ago(stamp: float | None) -> str:
    return "never" if stamp is None else f"{max(0.0, time.time() - stamp):.1f}s ago"


def print_files(files: dict[str, Any] | None) -> None:
    from cli.output import print_table  # rich: only when there is a table to print

    if not files or not files.get("side"):
        return
    if files["side"] == "backup":
        print(f"File replication ({files['node']}, backup): {files['state']}", end="")
        print(f" - {files['reason']}" if files.get("reason") else "")
        rows = [
            [
                r["root"],
                r["when"],
                r["state"],
                r["files"],
                r["bytes"],
                "-" if r["lag"] is None else f"{r['lag'] * 1000:.0f} ms",
                _ago(r["last_success"]),
                r["overflow_rescans"],
                r["reason"],
            ]
            for r in files["roots"]
        ]
        headers = [
            "root",
            "when",
            "state",
            "files",
            "bytes",
            "lag",
            "last success",
            "overflow rescans",
            "note",
        ]
    else:
        print(f"File Monitor ({files['node']}, active), subscriber: {files.get('subscriber') or 'none'}")
        rows = [
            [
                r["root"],
                r["when"],
                r["state"],
                r["changes"],
                _ago(r["last_change"]),
                r["overflow_rescans"],
                r["error"],
            ]
            for r in files["roots"]
        ]
        headers = ["root", "when", "state", "changes", "last change", "overflow rescans", "error"]
    print_table("mirrored directories", headers, rows)


def ds_replication_view(active: StatusReport | None, backup: StatusReport | None) -> dict[str, Any] | None:
    """The backup's DS replication (issue 10): state, position, lag, last compare."""
    if backup is None:
        return None
    ds = dict(backup.ds)
    if not ds:
        return {"state": "unknown", "reason": "the backup does not report DS replication"}
    compare = ds.get("last_compare") or {}
    return {
        "state": ds.get("state"),
        "reason": ds.get("reason") or "",
        "history": ds.get("history"),
        "applied": ds.get("applied", ds.get("revision")),
        "active_revision": (active.ds.get("revision") if active is not None and active.ds
                            else ds.get("active_revision")),
        "lag_revisions": ds.get("lag_revisions"),
        "lag_ms": ds.get("lag_ms_last"),
        "lag_ms_p99": ds.get("lag_ms_p99"),
        "filter": ds.get("filter"),
        "last_compare": {k: compare.get(k) for k in ("duration_s", "paths_listed", "keys_fetched", "keys_set",
                                                        "keys_deleted", "skipped_local")} if compare else None,
    }


def ds_replication_lines(ds: dict[str, Any] | None) -> list[str]:
    if ds is None:
        return []
    state = ds["state"] + (f" ({ds['reason']})" if ds.get("reason") else "")
    out = [f"DS replication: {state}"]
    if ds.get("history"):
        lag = ds.get("lag_revisions")
        ms = ds.get("lag_ms")
        out.append(f"  applied revision {ds.get('applied')} of history {str(ds['history'])[:12]}, active at "
              f"{ds.get('active_revision')}; lag {'?' if lag is None else lag} revision(s)"
              + ("" if ms is None else f", {ms:.1f} ms"))
    cmp = ds.get("last_compare")
    if cmp:
        out.append(f"  last compare: {cmp['duration_s']} s, {cmp['paths_listed']} node(s) listed, "
              f"{cmp['keys_fetched']} key(s) fetched, {cmp['keys_set']} set, {cmp['keys_deleted']} deleted")
    return out


def status_text(view: dict[str, Any]) -> str:
    """The control panel's view as text: the one rendering used by ``status`` and ``status --watch``."""
    out: list[str] = []
    user = view.get("user")
    if user is not None:
        privileges, _ = privilege_lines(
            user["name"], tuple(user["rights"]), user["secured"], False, view["active"]
        )
        if user["secured"] and view["active"] and "remote-control" not in user["rights"]:
            privileges[-1] += " (status only: switch and rejoin are refused)"
        out += privileges

    def conn(name: str | None) -> str:
        if name is None:
            return "(none)"
        return f"{name} ({'connected' if view['servers'][name]['connected'] else 'NOT CONNECTED'})"

    out += [
        f"Active:  {conn(view['active'])}",
        f"Backup:  {conn(view['backup'])}",
        f"State:   {view['pair_state']}",
    ]
    if view["mode"]:
        out.append(f"Backup server is running in {view['mode']} mode.")
    if view["primary_version"]:
        out.append(f"Primary server version: {view['primary_version']}")
    if view["backup_version"]:
        out.append(f"Backup server version: {view['backup_version']}")
    out.append(f"Generation: {view['generation']}")
    if view.get("replication"):
        out.append(f"Replication: {view['replication']}")
    out += ds_replication_lines(view.get("ds_replication"))
    if view.get("detection"):
        out.append(f"Failure detection, {view['detection']}")
    for name, s in view["servers"].items():
        if s["connected"]:
            out.append(f"  {name}: {s['role']}, generation {s['generation']}, release {s['release']}")
            if s.get("isolation"):
                out.append(f"    isolation policy: {s['isolation']} ({ISOLATION_MEANING.get(s['isolation'], '?')})")
        else:
            out.append(f"  {name}: not connected ({s['error']})")
    out += [f"WARNING: {warning}" for warning in view["warnings"]]
    lines: list[str] = []
    for name, s in view["servers"].items():
        lines += [f"[{name}] {m}" for m in s.get("messages", ())[-8:]]
    if lines:
        out.append("Status Messages:")
        out += [f"  {line}" for line in lines]
    out += interactions_lines(view.get("interactions"))
    return "\n".join(out)


def print_status(view: dict[str, Any]) -> None:
    print(status_text(view))
    print_files(view.get("files"))


def watch_status(args: argparse.Namespace, servers: list[Server], security: Security) -> int:
    """``status --watch``: poll both servers every ``--interval`` s until Ctrl-C (or ``--count``)."""
    interval = max(0.1, args.interval)

    def views() -> Iterator[dict[str, Any]]:
        n = 0
        while not args.count or n < args.count:
            started = time.monotonic()
            yield collect_status(args, servers, security)[1]
            n += 1
            if not args.count or n < args.count:
                time.sleep(max(0.0, interval - (time.monotonic() - started)))

    def header() -> str:
        return (
            f"switchover control panel  {time.strftime('%H:%M:%S')}  (every {interval:g} s; Ctrl-C to stop)"
        )

    try:
        if args.json:
            for view in views():
                print(json.dumps({"time": time.time(), **view}, sort_keys=True, default=str), flush=True)
        elif sys.stdout.isatty():
            from rich.live import Live  # only the live view needs rich
            from rich.text import Text

            with Live(Text("polling..."), auto_refresh=False, transient=False) as live:
                for view in views():
                    live.update(Text(f"{header()}\n\n{status_text(view)}"), refresh=True)
        else:
            for view in views():
                print(f"{header()}\n{status_text(view)}\n", flush=True)
    except KeyboardInterrupt:
        pass
    return 0


# ---- interaction shadowing (issue 12): counts per type, live on the active and shadowed on the backup
def interactions_view(
    config_path: str, active: str | None, timeout: float, security: Security
) -> dict[str, Any] | None:
    """The active's interaction counts and its backup's shadow counts (None: no active to ask)."""
    if active is None:
        return None
    cfg = load_config(config_path, check_parameters=False)
    srv = cfg.server_a if cfg.server_a.name == active else cfg.server_b
    try:
        reply = request_once(
            f"tcp://{srv.address}:{srv.interaction_port}", InteractionQuery(limit=-1), timeout, security
        )
    except Unreachable as exc:
        return {"error": str(exc)}
    if not isinstance(reply, InteractionList):
        return {"error": f"{active} answered {reply.TYPE} to InteractionQuery"}
    stats = reply.stats
    return {
        "live": reply.counts,
        "shadowed": stats.get("backup_counts", {}),
        "lag": stats.get("lag", 0),
        "backup_connected": bool(stats.get("backup_session")),
    }


def interactions_lines(view: dict[str, Any] | None) -> list[str]:
    if view is None:
        return []
    if "error" in view:
        return [f"Interactions: not available ({view['error']})"]
    types = [t for t in view["live"] if view["live"][t] or view["shadowed"].get(t)]
    out = ["Interactions (live on the active / shadowed on the backup):"]
    out += [f"  {t}: {view['live'][t]} / {view['shadowed'].get(t, 0)}" for t in types] or ["  none"]
    if not view["backup_connected"]:
        out.append("  no backup is shadowing interactions")
    elif view["lag"]:
        out.append(f"  backup lag: {view['lag']} change(s)")
    return out


def collect_status(
    args: argparse.Namespace, servers: list[Server], security: Security
) -> tuple[dict[str, StatusReport | str], dict[str, Any]]:
    """Both servers' reports and the control panel's view of them, with every section (the user's
    rights, interactions, ...): the one collection used by ``status`` and ``status --watch``."""
    states = poll_both(servers, args.timeout, security)
    view = status_view(states)
    view["user"] = user_view(servers, view, args.timeout, security)
    view["interactions"] = interactions_view(args.config, view["active"], args.timeout, security)
    view["files"] = local_files_status(args.config, args.timeout)
    return states, view


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


def privilege_lines(
    user: str, rights: tuple[str, ...], secured: bool, immediate: bool, primary: str | None
) -> tuple[list[str], bool]:
    """The control panel's privilege lines (spec lines 1850, 1943-1955) and whether to go on.

    With ``--immediate`` the Remote Control right is not checked (the node requires the master
    administrator, the Admin right); neither is it when there is no primary server.
    """
    if not secured:
        return ["Plain text (security.insecure): user privileges are not checked"], True
    lines = [f"Checking user privileges for user {user}"]
    if immediate:
        ok = "admin" in rights
        lines.append(
            "/Immediate: Remote Control right not checked; "
            + ("verified user is a master administrator" if ok else f"user {user} lacks the Admin right")
        )
        return lines, ok
    if primary is None:
        lines.append("No primary server: Remote Control right not checked")
        return lines, True
    if "remote-control" in rights:
        lines.append("Verified user has Remote Control rights")
        return lines, True
    lines.append(f"User {user} lacks the Remote Control right")
    return lines, False


def check_privileges(
    server: Server, view: dict[str, Any], args: argparse.Namespace, security: Security
) -> bool:
    try:
        me = who_am_i(server.address, args.timeout, security)
    except Unreachable as exc:
        error(f"cannot check user privileges on {server.name}: {exc}")
        return False
    lines, ok = privilege_lines(me.user, me.rights, me.secured, args.immediate, view["active"])
    for line in lines:
        print(line)
    if view["active"]:
        print(f"Potential Primary: {view['active']}")
    print(f"Potential Backup: {server.name}")
    if not ok:
        need = "Admin" if args.immediate else "Remote Control"
        error(f"switch refused: user {me.user} lacks the {need} right")
    return ok


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
    if not check_privileges(server, view, args, security):
        return 1
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
    from actors.roles.event_log import EventRecord, merge_histories  # not on the status path
    from cli.output import print_table

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
    if args.png:
        drawn = draw_history(merged, servers, args.png)
        print(f"timeline of {len(merged)} state changes drawn into {drawn}", file=sys.stderr)
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


def draw_history(records: list[EventRecord], servers: list[Server], path: str) -> Path:
    """The merged history drawn by the lab's timeline drawer: lane A and lane B (server A and B of the
    config), each coloured by the role the server entered at each record, up to now."""
    from deploy.lab.checks import History, Sample, Transition
    from deploy.lab.timeline import render_png

    letter = {servers[0].name: "a", servers[1].name: "b"}
    now = time.time()
    t0 = min((r.epoch for r in records), default=now - 1.0)
    history = History(t0=t0, t_end=max(now, t0 + 1.0))
    for r in records:
        node = letter.get(r.node, r.node)
        history.samples.append(Sample(r.epoch, node, r.new_state, r.generation, r.reason or r.event))
        history.transitions.append(
            Transition(r.epoch, node, r.old_state, r.new_state, r.reason or "", r.generation, r.event)
        )
    names = f"A = {servers[0].name}, B = {servers[1].name}"
    return render_png(history, Path(path), title=f"switchover history ({names})")


def run(args: argparse.Namespace) -> int:
    try:
        servers, local, security = servers_of(args.config, args.key)
    except ConfigError as exc:
        return error(str(exc))
    if args.ctl_op == "status" and args.watch:
        return watch_status(args, servers, security)
    if args.ctl_op == "status":
        states, view = collect_status(args, servers, security)
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
