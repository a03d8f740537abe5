"""``switchover node --config FILE``: run one node process."""

from __future__ import annotations

import argparse
import sys

from actors.config import ConfigError, load_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("node", help="run a node process")
    p.add_argument("--config", required=True, help="the node's TOML configuration file")
    p.add_argument(
        "--force-backup",
        action="store_true",
        help="start as backup and wait for a primary; never become active at start-up (/ForceBackup)",
    )
    p.add_argument(
        "--manual-switch-only",
        action="store_true",
        help="a backup that never switches by itself, only on a control panel switch (/ManualSwitchOnly)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"switchover node: config error: {exc}", file=sys.stderr)
        return 2
    from actors.node import Node, NodeStartError
    from actors.runtime.data_lock import DataDirInUse
    from transport.security import KeyFileError

    try:
        return Node(cfg, force_backup=args.force_backup, manual_switch_only=args.manual_switch_only).run()
    except KeyFileError as exc:
        print(f"switchover node: cannot start: {exc}", file=sys.stderr)
        return 2
    except DataDirInUse as exc:
        print(f"switchover node: refused: {exc}", file=sys.stderr)
        return 2
    except (NodeStartError, OSError) as exc:
        print(f"switchover node: cannot start: {exc}", file=sys.stderr)
        return 3
