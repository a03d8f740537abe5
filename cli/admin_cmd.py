"""``switchover admin --node DIR actors|ping|endpoints|status|monitors|replication|inject|keys-reload|security|files.status|files.stall``."""

from __future__ import annotations

import argparse
from typing import Any

from cli.output import add_node_options, error, on_every_operation, print_json, print_table
from transport.admin_client import AdminCallError, admin_call


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("admin", help="inspect a running node and inject faults through its admin socket")
    add_node_options(p)
    ops = p.add_subparsers(dest="admin_op", required=True)
    ops.add_parser("actors", help="each actor with its state")
    ops.add_parser("ping", help="round-trip to the node")
    ops.add_parser("endpoints", help="each ZeroMQ endpoint with its faults and counters")
    ops.add_parser("status", help="the node's role and generation")
    ops.add_parser("monitors", help="the parameter values the running monitors use (backup only)")
    ops.add_parser(
        "keys-reload", help="read the clients file again (added keys connect, revoked are refused)"
    )
    ops.add_parser("security", help="authorized clients and refusal counters")
    ops.add_parser(
        "files.status", help="file mirroring per root (FileMirror on the backup, File Monitor on the active)"
    )
    stall = ops.add_parser(
        "files.stall", help="fault injection: the File Monitor stops reading inotify for N s"
    )
    stall.add_argument("--seconds", type=float, default=1.0, help="0 resumes at once")
    ops.add_parser("replication", help="DS replication: state, position, lag, last compare (op ds.replication)")
    inj = ops.add_parser("inject", help="set or clear an endpoint's fault hooks, or crash an actor")
    inj.add_argument("--endpoint", help="endpoint name (see 'admin endpoints')")
    inj.add_argument(
        "--drop-all", action="store_true", help="drop every message through the endpoint (both ways)"
    )
    inj.add_argument(
        "--drop-fraction", type=float, default=0.0, help="drop this fraction (0-1) of the messages through it"
    )
    inj.add_argument(
        "--delay-ms", type=float, default=0.0, help="delay every message through it by this many milliseconds"
    )
    inj.add_argument("--cut", action="store_true", help="disconnect a client endpoint until cleared")
    inj.add_argument("--clear", action="store_true", help="clear the endpoint's faults")
    inj.add_argument("--clear-all", action="store_true", help="clear the faults of every endpoint")
    inj.add_argument("--crash", metavar="ACTOR", help="make the named actor fail (tests the supervisor)")
    on_every_operation(ops, add_node_options)
    p.set_defaults(func=run)


def _inject_args(args: argparse.Namespace) -> dict[str, Any]:
    if args.crash:
        return {"crash": args.crash}
    if args.clear_all:
        return {"clear_all": True}
    if not args.endpoint:
        raise AdminCallError("inject needs --endpoint NAME, --clear-all or --crash ACTOR")
    faults: dict[str, Any] = {}
    if not args.clear:
        faults = {
            "drop_all": args.drop_all,
            "drop_fraction": args.drop_fraction,
            "delay_ms": args.delay_ms,
            "cut": args.cut,
        }
    return {"endpoint": args.endpoint, "faults": faults}


def run(args: argparse.Namespace) -> int:
    try:
        request = _inject_args(args) if args.admin_op == "inject" else {}
        if args.admin_op == "files.stall":
            request = {"seconds": args.seconds}
        op = "ds.replication" if args.admin_op == "replication" else args.admin_op
        result = admin_call(args.node, op, request, timeout=args.timeout)
    except AdminCallError as exc:
        return error(str(exc))
    if args.json:
        print_json(result)
        return 0
    if args.admin_op == "replication":
        for key, value in result.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items())
            print(f"{key}: {value}")
        return 0
    if args.admin_op == "actors":
        rows = [
            [
                a["name"],
                "alive" if a["alive"] else "DOWN",
                a["incarnation"],
                a["restarts"],
                a["mailbox"],
                f"{a['uptime']:.1f}s",
                a["last_failure"],
            ]
            for a in result["actors"]
        ]
        print_table(
            f"node {result['node']} ({result['role']})",
            ["actor", "state", "incarnation", "restarts", "mailbox", "uptime", "last failure"],
            rows,
        )
        peer = result.get("peer")
        if peer:
            seen = "never" if peer["last_seen_ago"] is None else f"{peer['last_seen_ago']:.1f}s ago"
            print(
                f"peer {peer['name']}: {'reachable' if peer['reachable'] else 'UNREACHABLE'}, "
                f"role {peer['role']}, generation {peer['generation']}, last seen {seen}"
            )
    elif args.admin_op == "endpoints":
        rows = [
            [
                e["name"],
                e["role"],
                e["address"],
                e["connected"],
                ", ".join(f"{k}={v}" for k, v in e["faults"].items() if v),
                e["stats"]["sent"],
                e["stats"]["received"],
                e["stats"]["decode_errors"],
            ]
            for e in result["endpoints"]
        ]
        print_table(
            "endpoints",
            ["name", "role", "address", "connected", "faults", "sent", "received", "decode errors"],
            rows,
        )
    elif args.admin_op == "files.status":
        from cli.ctl_cmd import print_files

        print_files(result)
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0
