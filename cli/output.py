"""Printing for the CLI: readable tables by default, JSON with ``--json``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table


class SubcommandsWithCommonOptions:
    """Wraps ``add_subparsers()`` so that the parent's options (``--json``, ``--timeout``, ...) are
    also accepted after the operation: ``ctl status --json`` as well as ``ctl --json status``."""

    def __init__(self, subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
        self.subparsers = subparsers
        self.parent = parent

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser = self.subparsers.add_parser(name, **kwargs)
        for action in self.parent._actions:
            if action.option_strings and action.dest != "help":
                kw: dict[str, Any] = {"dest": action.dest, "default": argparse.SUPPRESS, "help": action.help}
                if action.nargs == 0:
                    kw["action"] = "store_true" if action.const is True else "store_const"
                    if kw["action"] == "store_const":
                        kw["const"] = action.const
                else:
                    kw["type"] = action.type
                parser.add_argument(*action.option_strings, **kw)
        return parser


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console(width=max(120, Console().width)).print(table)


def error(message: str) -> int:
    print(f"switchover: {message}", file=sys.stderr)
    return 1
