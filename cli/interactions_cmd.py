"""``switchover interactions list|show``: the live interactions of the active, or the shadows of
the backup, through the node's admin socket."""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import datetime
from typing import Any

from actors.config import load_config
from cli.output import add_node_options, error, on_every_operation, print_json, print_table
from deploy.pair import child_env
from replication.interactions import TYPES
from transport.admin_client import AdminCallError, admin_call
from transport.interactions_client import InteractionsClient


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


# ---- `switchover demo --interactions`: interactions surviving the demo's switch
DEMO_PARAMETERS = {
    "Chat Interaction Recovery Enabled": "1",
    "Mail Interaction Recovery Enabled": "1",
    "Callback Interaction Recovery Enabled": "1",
}


def _demo_list(pair: Any, name: str, title: str) -> None:
    print(f"\n=== {title} ===", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "interactions", "list", "--node", str(pair.nodes[name].data_dir)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=30,
    )
    print(done.stdout.rstrip() or done.stderr.rstrip(), flush=True)


def demo_before_switch(pair: Any, active: str, backup: str) -> None:
    """A few chats, an email and a callback on the active, confirmed by the backup; its shadows."""
    me = load_config(pair.nodes[active].config).me
    with InteractionsClient(
        f"tcp://{me.address}:{me.interaction_port}", pair.security_for("app"), name="demo"
    ) as client:
        for n in range(1, 4):
            client.create(f"chat-{n}", "chat", queue="Support")
            client.append(f"chat-{n}", "customer", f"hello, this is customer {n}")
            client.update(f"chat-{n}", state="connected", agent="alice")
            client.append(f"chat-{n}", "alice", "hi! how can I help?", wait_backup=True)
        client.create("mail-1", "mail", queue="alice", agent="alice", wait_backup=True)
        client.create("callback-1", "callback", queue="Callbacks", wait_backup=True)
    _demo_list(pair, backup, f"interactions: the shadows on the backup {backup}")


def demo_after_switch(pair: Any, new_active: str) -> None:
    """The interactions on the new active: the recovered ones, seqno 1, original created time."""
    me = load_config(pair.nodes[new_active].config).me
    with InteractionsClient(
        f"tcp://{me.address}:{me.interaction_port}", pair.security_for("app"), name="demo"
    ) as client:
        client.append("chat-1", "alice", "still here after the switch")
    _demo_list(pair, new_active, f"interactions: recovered on the new active {new_active} (seqno 1)")
