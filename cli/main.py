"""The ``switchover`` command and its subcommands."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
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
    "interactions": "cli.interactions_cmd",
    "app": "cli.app_cmd",
}


def package_version() -> str:
    """The installed package's version (its metadata: setup.cfg ``version``)."""
    from importlib import metadata
    try:
        return metadata.version("switchover")
    except metadata.PackageNotFoundError:
        return "(not installed: no package metadata)"


class VersionAction(argparse.Action):
    """``--version``: the package version, read from its metadata only when asked for."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"{parser.prog} {package_version()}")
        parser.exit()


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
    parser.add_argument("--version", action=VersionAction, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of:")
    wanted = None if argv is None else command_of(argv)
    for name, module in COMMANDS.items():
        if wanted is None or name == wanted:
            importlib.import_module(module).register(sub)
    return parser


#: the exit code of a command whose reader went away (``switchover ctl history | head``), as a
#: command killed by SIGPIPE would give
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; its exit code. A closed output pipe ends it quietly (no traceback)."""
    try:
        argv = sys.argv[1:] if argv is None else argv
        args = build_parser(argv).parse_args(argv)
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
