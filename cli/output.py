"""Printing for the CLI: readable tables by default, JSON with ``--json``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def stdout_console(**kwargs: Any) -> Console:
    """The rich console for a command's output. A closed output pipe is left to ``cli.main`` (the one
    place that handles it) instead of rich exiting on its own. rich is imported here, not at the top:
    commands that print no table stay fast."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True  # drop what is still buffered
            raise BrokenPipeError("stdout reader has gone")

    return _Console(**kwargs)


def add_node_options(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    """``--node``, ``--json``, ``--timeout`` for commands that talk to one node's admin socket.

    Added to the command and (with ``suppress``) to each operation, so they work before or after
    the operation: ``param --json list`` as well as ``param list --json``.
    """
    d = argparse.SUPPRESS
    p.add_argument(
        "--node",
        default=d if suppress else os.environ.get("SWITCHOVER_NODE", "."),
        help="the node's data directory (default: $SWITCHOVER_NODE or .)",
    )
    p.add_argument(
        "--json", action="store_true", default=d if suppress else False, help="print JSON for scripts"
    )
    p.add_argument(
        "--timeout", type=float, default=d if suppress else 5.0, help="seconds to wait for the node"
    )


def on_every_operation(
    ops: argparse._SubParsersAction, add: Callable[[argparse.ArgumentParser, bool], None]
) -> None:
    """Give each operation parser the command's common options (suppressed defaults)."""
    for leaf in ops.choices.values():
        add(leaf, True)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console  # imported here: commands that print no table stay fast
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    stdout_console(width=max(120, Console().width)).print(table)


def error(message: str) -> int:
    print(f"switchover: {message}", file=sys.stderr)
    return 1
