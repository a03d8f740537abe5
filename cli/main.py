"""The ``switchover`` command and its subcommands."""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand name -> module with register(subparsers); a module missing here is a packaging bug.
# Only the module of the command being run is imported (``ctl status`` must not pay for the
# actor runtime, rich or the lab): see :func:`command_of`.
COMMANDS = {
    "node": "cli.node_cmd",
    "admin": "cli.admin_cmd",
    "ctl": "cli.ctl_cmd",
    "module": "cli.module_cmd",
    "demo": "cli.demo_cmd",
    "ds": "cli.ds_cmd",
    "param": "cli.param_cmd",
    "keys": "cli.keys_cmd",
    "lab": "cli.lab_cmd",
    "hooks": "cli.hooks_cmd",
}


def command_of(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option), if known."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv`` naming a known command, only that command's module is imported
    (every module otherwise, so that ``--help`` and a mistyped command list them all)."""
    parser = argparse.ArgumentParser(
        prog="switchover",
        description="High-availability pair: an active and a backup server that switch over.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    wanted = None if argv is None else command_of(argv)
    for name, module in COMMANDS.items():
        if wanted is None or name == wanted:
            importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
