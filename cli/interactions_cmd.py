"""``switchover interactions list|show``: the live interactions of the active, or the shadows of
the backup, through the node's admin socket."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from cli.output import add_node_options, error, on_every_operation, print_json, print_table
from replication.interactions import TYPES
from transport.admin_client import AdminCallError, admin_call


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "interactions", help="live interactions on the active, shadow interactions on the backup"
    )
    add_node_options(p)
    ops = p.add_subparsers(dest="interactions_op", required=True)
    ls = ops.add_parser("list", help="a table of the interactions, with counts per type")
    ls.add_argument("--type", choices=TYPES, help="only this type")
    ls.add_argument("--limit", type=int, default=100, help="at most this many rows (0: all)")
    show = ops.add_parser("show", help="one interaction with its transcript")
    show.add_argument("id", help="the interaction id")
    on_every_operation(ops, add_node_options)
    p.set_defaults(func=run)


def when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def counts_line(counts: dict[str, Any]) -> str:
    return ", ".join(f"{t}: {n}" for t, n in counts.items() if n) or "none"


def run(args: argparse.Namespace) -> int:
    query: dict[str, Any] = {}
    if args.interactions_op == "list":
        query = {"type": args.type or "", "limit": args.limit}
    else:
        query = {"id": args.id}
    try:
        got = admin_call(args.node, "interactions", query, timeout=args.timeout)
    except AdminCallError as exc:
        return error(str(exc))
    if args.interactions_op == "show":
        if not got["items"]:
            return error(f"no {got['kind']} interaction {args.id!r} on {got['node']}")
        item = got["items"][0]
        if args.json:
            print_json(item)
            return 0
        print(f"{item['id']} ({item['type']}, {got['kind']} on {got['node']})")
        for key in ("state", "queue", "agent", "seqno"):
            print(f"  {key}: {item[key]}")
        print(f"  created: {when(item['created_at'])}  updated: {when(item['updated_at'])}")
        for k, v in sorted(item["attributes"].items()):
            print(f"  attribute {k}: {v}")
        print(f"  transcript ({len(item['transcript'])} message(s)):")
        for m in item["transcript"]:
            print(f"    [{when(m['at'])}] {m['author']}: {m['text']}")
        return 0
    if args.json:
        print_json(got)
        return 0
    kind = {"live": "live interactions", "shadow": "shadow interactions (inert until a switch)"}.get(
        got["kind"], "no interaction service running"
    )
    rows = [
        (
            i["id"],
            i["type"],
            i["state"],
            i["queue"],
            i["agent"],
            when(i["created_at"]),
            len(i["transcript"]),
            i["seqno"],
        )
        for i in got["items"]
    ]
    title = f"{got['node']} ({got['role']}): {kind}"
    print_table(title, ["id", "type", "state", "queue", "agent", "created", "messages", "seqno"], rows)
    shown = f" (showing {len(rows)} of {got['total']})" if len(rows) < got["total"] else ""
    print(f"{got['total']} interaction(s){shown}; by type: {counts_line(got['counts'])}")
    stats = got.get("stats", {})
    if got["kind"] == "live" and stats.get("backup_session"):
        print(
            f"backup shadows: {counts_line(stats.get('backup_counts', {}))}; "
            f"lag {stats.get('lag', 0)} change(s)"
        )
    elif got["kind"] == "shadow":
        print(
            f"shadowing: {', '.join(stats.get('types', [])) or 'nothing'}"
            f"{' (emails assigned to an agent only)' if stats.get('mail_assigned_only') else ''}; "
            f"full syncs {stats.get('full_syncs', 0)}, {'syncing now' if stats.get('syncing') else 'in sync'}"
        )
    return 0
