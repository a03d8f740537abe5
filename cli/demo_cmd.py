"""``switchover demo``: a two-node pair with its reference module on this machine.

It starts server A (alpha) and server B (beta) on 127.0.0.1 with a fast parameter profile,
a reference ``TsServer`` module beside each, shows the control panel status, performs a
manual switch, shows the status again, and (unless ``--keep``) stops everything.

Its files (configs, data directories, logs) go to a new temporary directory that is removed at
the end, unless ``--keep-files`` or ``--keep`` is given, the demo fails (the logs are kept to read),
or ``--dir`` names the place (a directory of yours is never removed). The last line says which.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from cli.interactions_cmd import DEMO_PARAMETERS, demo_after_switch, demo_before_switch
from deploy.pair import FAST_PARAMETERS, LocalPair, wait_until


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run a two-node pair with its reference module on this machine")
    p.add_argument("--dir", help="where to put configs and data (default: a new temporary directory)")
    p.add_argument(
        "--keep", action="store_true", help="keep the pair running until Ctrl-C (and keep its files)"
    )
    p.add_argument(
        "--keep-files",
        action="store_true",
        help="keep the configs, data and logs after the demo (default: remove the temporary directory)",
    )
    p.add_argument(
        "--insecure", action="store_true", help="run plain text (no CURVE keys; the nodes warn about it)"
    )
    p.add_argument(
        "--crash-module",
        action="store_true",
        help="after the manual switch, kill -9 the active's module and show the automatic switch",
    )
    p.add_argument(
        "--interactions",
        action="store_true",
        help="also show chats, emails and callbacks surviving the switch",
    )
    p.set_defaults(func=run)


def show(pair: LocalPair, title: str) -> None:
    print(f"\n=== {title} ===", flush=True)
    out = pair.ctl("status")
    print(out.stdout.rstrip() or out.stderr.rstrip(), flush=True)


def keep_files(args: argparse.Namespace, ok: bool) -> bool:
    """Whether the demo's directory stays: a --dir of the operator's always does, a temporary one
    with --keep/--keep-files, or when the demo failed (its logs say why)."""
    return bool(args.dir or args.keep or args.keep_files or not ok)


def finish(base: Path, keep: bool) -> str:
    """Remove the demo directory unless it is kept; the line that tells the operator which."""
    if keep:
        return f"demo files kept in {base} (configs, data directories, logs)"
    shutil.rmtree(base, ignore_errors=True)
    return f"demo files removed ({base}); pass --keep-files to keep them"


def run(args: argparse.Namespace) -> int:
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="switchover-demo-"))
    pair = LocalPair(base, parameters={**FAST_PARAMETERS, **(DEMO_PARAMETERS if args.interactions else {})}, curve=not args.insecure)
    print(f"pair configs and data in {base}")
    if not args.insecure:
        print(
            f"CURVE keys in {pair.keys}: the server group keypair, an 'operator' (admin: the configs' "
            "client_key, used by ctl) and a 'module' key the modules use; see `switchover keys list "
            f"--dir {pair.keys}`"
        )
    for name in pair.names:
        hooks = pair.nodes[name].data_dir / "hooks"
        for kind in ("commence", "discontinue"):
            (hooks / f"{kind}.d").mkdir(parents=True, exist_ok=True)
            script = hooks / f"{kind}.d" / "10-announce"
            script.write_text(
                '#!/bin/sh\necho "[hook] $SWITCHOVER_NODE: $SWITCHOVER_EVENT as $SWITCHOVER_ROLE '
                '(generation $SWITCHOVER_GENERATION, reason: $SWITCHOVER_REASON)" '
                f">> {base}/hooks.log\n"
            )
            script.chmod(0o755)
    try:
        a, b = pair.names
        pair.start_node(a)
        pair.start_module(a)
        wait_until(lambda: pair.role(a) == "Primary", 20, what=f"{a} to become Primary")
        pair.start_node(b)
        pair.start_module(b)
        wait_until(lambda: pair.role(b) == "Backup", 20, what=f"{b} to become Backup")
        show(pair, "the pair is up")
        if args.interactions:
            demo_before_switch(pair, a, b)
        print("\n=== ctl switch --yes ===", flush=True)
        out = pair.ctl("switch", "--yes")
        print(out.stdout.rstrip(), out.stderr.rstrip(), flush=True)
        show(pair, "after the switch")
        if args.interactions:
            demo_after_switch(pair, b)
        print(f"\n=== ctl rejoin (the stale {a} becomes the backup) ===", flush=True)
        print(pair.ctl("rejoin").stdout.rstrip(), flush=True)
        if args.crash_module:
            print(f"\n=== kill -9 of {b}'s module: the backup detects it and takes over ===", flush=True)
            pair.signal(b, signal.SIGKILL, module=True)
            wait_until(lambda: pair.role(a) == "Primary", 60, what=f"{a} to take over")
        show(pair, "final status")
        print("\n=== ctl history ===", flush=True)
        print(pair.ctl("history").stdout.rstrip(), flush=True)
        hooks_log = base / "hooks.log"
        if hooks_log.exists():
            print("\n=== hooks that ran ===\n" + hooks_log.read_text().rstrip(), flush=True)
        if args.keep:
            print(f"\npair running; try: switchover ctl --config {pair.a.config} status   (Ctrl-C stops it)")
            stop = threading.Event()
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            stop.wait()
    except TimeoutError as exc:
        print(f"demo failed: {exc}; logs in {base}/*/node.stderr")
        code = 1
    else:
        code = 0
    finally:
        pair.stop()
    print(f"\n{finish(base, keep_files(args, code == 0))}", flush=True)
    return code
