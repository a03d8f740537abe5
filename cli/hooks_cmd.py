"""``switchover hooks list|run``: the node's Commence/Discontinue hooks outside the node process.

``hooks run discontinue --config FILE --if-was-active`` is what the systemd unit runs after the node
process ended (``ExecStopPost``): when the node's event log says it was still Primary (it died
without leaving the role: kill -9, a crash, an OOM kill), its Discontinue hooks run, so the floating
address and the service never stay on a dead node. A node that stopped cleanly already ran them
(its last record is Primary -> Stopping), and nothing runs again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from actors.config import ConfigError, NodeConfig, load_config
from cli.output import error

EVENTS_FILE = "events.jsonl"  # <data_dir>/events.jsonl, written by NodeSupervisor
PRIMARY = "Primary"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hooks", help="list or run the node's Commence/Discontinue hooks (e.g. after it died)")
    ops = p.add_subparsers(dest="hooks_op", required=True)
    ls = ops.add_parser("list", help="the hooks that would run, in order, for each event")
    run = ops.add_parser("run", help="run the hooks of one event now, as the node would")
    run.add_argument("event", choices=("commence", "discontinue"), help="which hooks to run")
    run.add_argument(
        "--if-was-active",
        action="store_true",
        help="run only when the node's event log says it was still Primary when it ended "
        "(for systemd's ExecStopPost); otherwise say so and exit 0",
    )
    run.add_argument(
        "--force", action="store_true", help="run even though the node is running (its admin socket answers)"
    )
    run.add_argument("--reason", default="", help="SWITCHOVER_REASON for the hooks")
    run.add_argument(
        "--peer-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="with --if-was-active: first wait (at most SECONDS) until the peer answers as Primary, so the "
        "address moves without a gap while this server's service still answers; then run the hooks",
    )
    for each in (ls, run):
        each.add_argument(
            "--config", required=True, help="the node's TOML configuration file (hooks dir, data dir)"
        )
        each.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=main)


def last_role(data_dir: Path) -> str | None:
    """The role the node's event log last recorded (None: no record)."""
    from actors.roles import event_log

    records = event_log.read(data_dir / EVENTS_FILE)
    return records[-1].new_state if records else None


def generation_of(data_dir: Path) -> int:
    from actors.roles.generation import GenerationStore

    try:
        return GenerationStore(data_dir / "generation").value
    except (OSError, ValueError) as exc:
        print(f"switchover: {exc}; SWITCHOVER_GENERATION=0", file=sys.stderr)
        return 0


def wait_for_peer(config: str, peer: str, timeout: float) -> str:
    """Poll the peer's VirtualSwitch until it answers as Primary or ``timeout`` s pass; what happened."""
    import time

    from cli.ctl_cmd import servers_of
    from transport.client import Unreachable, query_state

    servers, _, security = servers_of(config)
    address = next(s.address for s in servers if s.name == peer)
    start = time.monotonic()
    last = "no answer"
    while time.monotonic() - start < timeout:
        try:
            role = query_state(address, 0.5, security).role
        except Unreachable as exc:
            role, last = "", str(exc)
        if role == PRIMARY:
            return f"peer {peer} is Primary (after {time.monotonic() - start:.2f} s): running the hooks"
        last = role or last
        time.sleep(0.05)
    return f"peer {peer} not Primary within {timeout:g} s ({last}): running the hooks anyway"


def node_answers(cfg: NodeConfig) -> bool:
    from transport.admin_client import AdminCallError, admin_call

    try:
        return bool(admin_call(cfg.data_dir, "ping", {}, timeout=0.5).get("pong"))
    except AdminCallError:
        return False


def main(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        return error(str(exc))
    from actors.roles.hooks import HookEvent, HookFacts, hook_directory, list_hooks, run_hooks

    if args.hooks_op == "list":
        listed = {e.value: [str(p) for p in list_hooks(hook_directory(cfg.hooks_path, e))] for e in HookEvent}
        if args.json:
            print(json.dumps(listed, indent=2))
        else:
            for event, paths in listed.items():
                print(f"{event}: {', '.join(paths) if paths else '(none)'}")
        return 0
    data = Path(cfg.data_dir)
    if not args.force and node_answers(cfg):
        return error(
            f"node {cfg.name} is running (its admin socket in {data} answers): its hooks are its own to run; "
            "pass --force to run them anyway"
        )
    try:
        role = last_role(data)
    except (OSError, ValueError) as exc:
        # unreadable history: giving the address up is the safe side
        print(f"switchover: cannot read the event log ({exc}); taking the node as active", file=sys.stderr)
        role = PRIMARY
    if args.if_was_active and role != PRIMARY:
        print(
            f"node {cfg.name} was not active when it ended (last recorded role: {role or 'none'}): no hooks run"
        )
        return 0
    if args.if_was_active and args.peer_wait > 0:
        print(wait_for_peer(args.config, cfg.peer.name, args.peer_wait), file=sys.stderr)
    reason = args.reason or (
        "the node process ended while active" if args.if_was_active else f"run by hand ({args.event})"
    )
    facts = HookFacts(
        node=cfg.name,
        role=PRIMARY if args.event == "commence" else "Stopped",
        reason=reason,
        generation=generation_of(data),
        peer=cfg.peer.name,
    )
    results = run_hooks(cfg.hooks_path, args.event, facts, cfg.hooks.timeout)
    if args.json:
        rows = [
            {
                "name": r.name,
                "ok": r.ok,
                "returncode": r.returncode,
                "timed_out": r.timed_out,
                "output": r.output,
            }
            for r in results
        ]
        print(json.dumps({"event": args.event, "node": cfg.name, "hooks": rows}, indent=2))
    else:
        if not results:
            print(f"no {args.event} hooks in {hook_directory(cfg.hooks_path, args.event)}")
        for r in results:
            state = "ok" if r.ok else ("timed out" if r.timed_out else f"FAILED (exit {r.returncode})")
            print(f"{r.name}: {state} in {r.duration:.2f}s")
            if r.output.strip():
                print("  " + r.output.strip().replace("\n", "\n  "))
    failed = [r.name for r in results if not r.ok]
    if failed:
        print(f"switchover: {args.event} hooks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
