"""The ``switchover`` command and its subcommands."""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules, each with register(subparsers); a module missing here is a packaging bug.
COMMANDS = [
    "cli.node_cmd",
    "cli.admin_cmd",
    "cli.ctl_cmd",
    "cli.module_cmd",
    "cli.demo_cmd",
    "cli.ds_cmd",
    "cli.param_cmd",
    "cli.keys_cmd",
    "cli.lab_cmd",
    "cli.interactions_cmd",
    "cli.app_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchover",
        description="High-availability pair: an active and a backup server that switch over.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
