"""``switchover node --config FILE``: run one node process."""

from __future__ import annotations

import argparse
import sys

from actors.config import ConfigError, load_config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("node", help="run a node process")
    p.add_argument("--config", required=True, help="the node's TOML configuration file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"switchover node: config error: {exc}", file=sys.stderr)
        return 2
    from actors.node import Node

    try:
        return Node(cfg).run()
    except OSError as exc:
        print(f"switchover node: cannot start: {exc}", file=sys.stderr)
        return 3
