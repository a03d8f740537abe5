"""The ``switchover`` command and its subcommands."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from importlib import metadata

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
]


def package_version() -> str:
    """The installed package's version (its metadata: setup.cfg ``version``)."""
    try:
        return metadata.version("switchover")
    except metadata.PackageNotFoundError:
        return "(not installed: no package metadata)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchover",
        description="High-availability pair: an active and a backup server that switch over.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of:")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


#: the exit code of a command whose reader went away (``switchover ctl history | head``), as a
#: command killed by SIGPIPE would give
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; its exit code. A closed output pipe ends it quietly (no traceback)."""
    try:
        args = build_parser().parse_args(argv)
        code: int = args.func(args)
        sys.stdout.flush()  # a broken pipe shows here, inside the handler, not at interpreter exit
        return code
    except BrokenPipeError:
        # the reader (head, less, grep -q) has gone: stop writing. Point stdout at /dev/null so the
        # interpreter's final flush of what is still buffered does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
