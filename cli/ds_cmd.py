"""``switchover ds get|ls|set|rm|tree|export|import``: read and edit a running node's DS tree.

Requests go to the node's admin socket as ``ds.<op>`` (served by :func:`replication.ds_admin.handle_ds`).
Writes on the backup are refused unless ``--local`` is given (the change then applies to that server
only and is overwritten by replication).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from cli.output import add_node_options, error, on_every_operation, print_json, print_table, stdout_console
from transport.admin_client import AdminCallError, admin_call

WRITE_OPS = ("set", "rm", "import")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ds", help="read and edit the DS tree (configuration registry) of a running node")
    add_node_options(p)
    ops = p.add_subparsers(dest="ds_op", required=True)

    q = ops.add_parser("get", help="the attributes and children of a key")
    q.add_argument("key", help="DS path, e.g. '/Config/Users/alice'")
    q = ops.add_parser("ls", help="the children of a key, with attribute and child counts")
    q.add_argument("key", nargs="?", default="/", help="DS path (default: the root '/')")
    q.add_argument("--limit", type=int, default=1000, help="list at most this many children")
    q = ops.add_parser(
        "set", help="set attributes of a key (creating it); NAME=VALUE, repeat NAME for a list of values"
    )
    q.add_argument("key", help="DS path of the key to set, e.g. '/Config/Users/alice'")
    q.add_argument(
        "assignments", nargs="+", metavar="NAME=VALUE", help="attribute assignments; repeat NAME for a list"
    )
    q = ops.add_parser("rm", help="delete a key and everything below it, or one attribute with --attr")
    q.add_argument("key", help="DS path of the key to delete")
    q.add_argument("--attr", help="remove only this attribute")
    q.add_argument("--force", action="store_true", help="allow deleting '/' (the whole tree)")
    q = ops.add_parser("tree", help="the subtree of a key")
    q.add_argument("key", nargs="?", default="/", help="DS path (default: the root '/')")
    q.add_argument("--depth", type=int, help="levels below KEY to show")
    q.add_argument(
        "--max-nodes", type=int, default=10_000, help="show at most this many keys (default 10000)"
    )
    q = ops.add_parser("export", help="the subtree of a key as a JSON document (for backups and seeding)")
    q.add_argument("key", nargs="?", default="/", help="DS path (default: the root '/')")
    q.add_argument("-o", "--output", help="write to this file instead of standard output")
    q = ops.add_parser(
        "import", help="replace (or --merge into) the subtree at --at with an exported document"
    )
    q.add_argument("file", help="JSON file written by 'ds export' ('-' for standard input)")
    q.add_argument("--at", default=None, help="where to place it (default: the key it was exported from)")
    q.add_argument(
        "--merge", action="store_true", help="set the document's attributes over the existing subtree"
    )
    on_every_operation(ops, add_node_options)
    for name, leaf in ops.choices.items():
        if name in WRITE_OPS:
            leaf.add_argument(
                "--local",
                action="store_true",
                help="on the backup: change this server only (overwritten by replication)",
            )
    p.set_defaults(func=run)


def parse_assignments(items: list[str]) -> dict[str, list[str]]:
    """``["a=1", "a=2", "b=x"]`` -> ``{"a": ["1", "2"], "b": ["x"]}``."""
    attrs: dict[str, list[str]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"{item!r} is not NAME=VALUE (quote names or values with spaces)")
        attrs.setdefault(name, []).append(value)
    return attrs


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    """The request arguments for ``ds.<op>`` (raises ValueError for unusable command-line input)."""
    op = args.ds_op
    req: dict[str, Any] = {}
    if op in WRITE_OPS and getattr(args, "local", False):
        req["local"] = True
    if op == "get":
        req["key"] = args.key
    elif op == "ls":
        req.update(key=args.key, limit=args.limit)
    elif op == "set":
        req.update(key=args.key, attrs=parse_assignments(args.assignments))
    elif op == "rm":
        req["key"] = args.key
        if args.attr:
            req["attr"] = args.attr
        if args.force:
            req["force"] = True
    elif op == "tree":
        req.update(key=args.key, max_nodes=args.max_nodes)
        if args.depth is not None:
            req["depth"] = args.depth
    elif op == "export":
        req["key"] = args.key
    elif op == "import":
        try:
            text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
        except OSError as exc:
            raise ValueError(f"cannot read {args.file}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{args.file} is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{args.file} is not an export document (a JSON object)")
        req.update(data=data, key=args.at or data.get("key") or "/", merge=args.merge)
    return req


def run(args: argparse.Namespace) -> int:
    try:
        request = build_request(args)
        result = admin_call(args.node, f"ds.{args.ds_op}", request, timeout=args.timeout)
    except (AdminCallError, ValueError) as exc:
        return error(str(exc))
    if result.get("warning"):
        Console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(result['warning'])}", highlight=False)
    if args.ds_op == "export":
        return _write_export(args, result["data"])
    if args.json:
        print_json(result)
        return 0
    show(args.ds_op, result)
    return 0


def _write_export(args: argparse.Namespace, data: dict[str, Any]) -> int:
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            return error(f"cannot write {args.output}: {exc.strerror}")
        print(f"exported {data.get('key')} (revision {data.get('revision')}) to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def show(op: str, result: dict[str, Any]) -> None:
    """Print a ``ds.<op>`` result for a person."""
    if op == "get":
        rows = [
            [name, "\n".join(values) if values else "(no values)"] for name, values in result["attrs"].items()
        ]
        print_table(result["key"], ["attribute", "values"], rows)
        kids = result.get("children") or []
        print(
            f"{len(kids)} child key(s)"
            + (": " + ", ".join(kids[:20]) + (" ..." if len(kids) > 20 else "") if kids else "")
        )
    elif op == "ls":
        rows = [[c["name"], c["attrs"], c["children"]] for c in result["children"]]
        print_table(result["key"], ["name", "attributes", "children"], rows)
        if result.get("truncated"):
            print(f"(showing {len(rows)} of {result['total']}; use --limit)")
    elif op == "tree":
        tree = _rich_tree(result["tree"])
        stdout_console().print(tree)
        if result.get("truncated"):
            print(f"(truncated at {result['nodes']} keys; use --depth or --max-nodes)")
    elif op == "set":
        print(f"set {result['key']} (revision {result['revision']})")
    elif op == "rm":
        what = (
            f"attribute {result['attr']!r} of {result['key']}"
            if result.get("attr")
            else f"{result['key']} ({result['removed']} key(s))"
        )
        print(f"removed {what} (revision {result['revision']})")
    elif op == "import":
        print(f"imported into {result['key']}: {result['keys']} key(s) now (revision {result['revision']})")
    else:
        print_json(result)


def _rich_tree(node: dict[str, Any]) -> Tree:
    def label(n: dict[str, Any]) -> str:
        attrs = n.get("attrs") or {}
        shown = ", ".join(f"{k}={'|'.join(v)}" for k, v in list(attrs.items())[:4])
        more = " ..." if len(attrs) > 4 else ""
        return f"[bold]{escape(n['name'])}[/bold]" + (f"  [dim]{escape(shown)}{more}[/dim]" if shown else "")

    def add(t: Tree, n: dict[str, Any]) -> None:
        for child in n.get("children", []):
            add(t.add(label(child), highlight=False), child)

    root = Tree(label(node) if node else "(empty)", highlight=False)
    if node:
        add(root, node)
    return root
