"""``switchover param list|get|set|unset``: the switchover server parameters of a running node.

Requests go to the node's admin socket as ``param.<op>`` (served by
:func:`replication.ds_admin.handle_param`). Names are case-insensitive and may be given unquoted
(``param get Switchover TS Timeout``); for ``set`` the last word is the value unless the name is quoted
(``param set "CustomMirrorDir" "+/srv/a; /srv/b"``). Values are validated by the node before anything is
written; on the backup, writes need ``--local``.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.markup import escape

from cli.output import add_node_options, error, on_every_operation, print_json, print_table
from replication.params import CATALOG, find_param
from transport.admin_client import AdminCallError, admin_call

WRITE_OPS = ("set", "unset")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("param", help="list, read and set the switchover server parameters of a running node")
    add_node_options(p)
    ops = p.add_subparsers(dest="param_op", required=True)
    q = ops.add_parser("list", help="every parameter: effective value, stored value, default, range, dynamic")
    q.add_argument("--set", dest="only_set", action="store_true", help="only the parameters that are set")
    q = ops.add_parser("get", help="one parameter in detail")
    q.add_argument("name", nargs="+", help="parameter name (quotes optional)")
    q = ops.add_parser("set", help="validate and set a parameter")
    q.add_argument("words", nargs="+", metavar="NAME VALUE", help="parameter name then value")
    q = ops.add_parser("unset", help="remove a parameter (its default applies)")
    q.add_argument("name", nargs="+", help="parameter name (quotes optional)")
    on_every_operation(ops, add_node_options)
    for name, leaf in ops.choices.items():
        if name in WRITE_OPS:
            leaf.add_argument(
                "--local",
                action="store_true",
                help="on the backup: change this server only (overwritten by replication)",
            )
    p.set_defaults(func=run)


def split_name_value(words: list[str]) -> tuple[str, str]:
    """Split ``param set`` words into (name, value).

    Two words are name and value. With more, the longest leading run of words that is a catalog name
    (case-insensitive) is the name and the rest, joined by spaces, the value.
    """
    if len(words) < 2:
        raise ValueError("param set needs a NAME and a VALUE (quote a value with spaces or ';')")
    if len(words) == 2:
        return words[0], words[1]
    folded = {n.casefold() for n in CATALOG}
    for cut in range(len(words) - 1, 0, -1):
        name = " ".join(words[:cut])
        if name.casefold() in folded:
            return name, " ".join(words[cut:])
    raise ValueError(
        f"no server parameter name at the start of {' '.join(words)!r}; quote the name "
        f'(e.g. param set "Switchover TS Timeout" 10)'
    )


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    op = args.param_op
    req: dict[str, Any] = {}
    if op in WRITE_OPS and getattr(args, "local", False):
        req["local"] = True
    if op in ("get", "unset"):
        req["name"] = " ".join(args.name)
    elif op == "set":
        name, value = split_name_value(args.words)
        req.update(name=name, value=value)
    return req


def run(args: argparse.Namespace) -> int:
    try:
        request = build_request(args)
        if "name" in request:
            request["name"] = find_param(request["name"]).name  # a local check gives the nicer message
        result = admin_call(args.node, f"param.{args.param_op}", request, timeout=args.timeout)
    except (AdminCallError, ValueError) as exc:  # ParamError is a ValueError
        return error(str(exc))
    if result.get("warning"):
        Console(stderr=True).print(f"[yellow]note:[/yellow] {escape(result['warning'])}", highlight=False)
    if args.json:
        print_json(result)
        return 0
    show(args.param_op, result, only_set=getattr(args, "only_set", False))
    return 0


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "Yes" if v else "No"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else str(v)
    if isinstance(v, list):
        return "; ".join(str(x) for x in v)
    if isinstance(v, dict):
        return ";".join(f"{k}({', '.join(a)})" for k, a in v.items())
    return str(v)


def show(op: str, result: dict[str, Any], only_set: bool = False) -> None:
    """Print a ``param.<op>`` result for a person."""
    if op == "list":
        rows = []
        for r in result["params"]:
            if only_set and r["stored"] is None:
                continue
            value = _text(r["value"])
            if r["resolved"] != r["value"]:
                value += f" (= {_text(r['resolved'])})"
            if r.get("problem"):
                value += " (!)"
            stored = "" if r["stored"] is None else r["stored"]
            rows.append([r["name"], value, stored, r["default"], r["range"], "yes" if r["dynamic"] else "no"])
        print_table(
            "switchover server parameters",
            ["name", "effective", "stored", "default", "range", "dynamic"],
            rows,
        )
        problems = [r for r in result["params"] if r.get("problem")]
        for r in problems:
            print(f"(!) {r['problem']}")
        for u in result.get("unknown", []):
            hint = f" - did you mean {u['suggestion']!r}?" if u.get("suggestion") else ""
            print(f"unknown parameter {u['name']!r} = {u['stored']!r}{hint}")
        return
    r = result
    lines = [
        ("name", r["name"]),
        ("effective value", _text(r["value"])),
        ("resolved", _text(r["resolved"]) if r["resolved"] != r["value"] else ""),
        ("stored", "(not set)" if r["stored"] is None else repr(r["stored"])),
        ("default", r["default"] or "(empty)"),
        ("range", r["range"]),
        ("dynamic", "yes (takes effect immediately)" if r["dynamic"] else "no (takes effect after restart)"),
        ("problem", r.get("problem") or ""),
    ]
    if op == "get":
        lines += [
            ("type", r["type"]),
            ("special", r.get("special") or ""),
            ("inherits", r.get("inherits") or ""),
            ("key", r.get("key", "")),
            ("spec lines", r.get("spec_lines", "")),
            ("description", r.get("description", "")),
        ]
    if op in WRITE_OPS:
        lines.append(("revision", "" if r.get("revision") is None else str(r["revision"])))
    if op == "unset" and not r.get("was_set"):
        lines.append(("note", "it was not set"))
    print_table(r["name"], ["field", "value"], [[k, v] for k, v in lines if v != ""])
