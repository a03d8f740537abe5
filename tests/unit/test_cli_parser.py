"""The ``switchover`` command line: every option and subcommand is documented, ``--version`` works."""

from __future__ import annotations

import argparse
import re
import shutil
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from cli import demo_cmd
from cli.main import build_parser, main


def walk(parser: argparse.ArgumentParser, path: str = "switchover") -> Iterator[tuple[str, argparse.Action]]:
    """Every action of ``parser`` and of its subcommands, with the command path it belongs to."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{path} {name}", argparse.Action([], name, help=helps.get(name))
                yield from walk(sub, f"{path} {name}")
        else:
            yield path, action


ACTIONS = list(walk(build_parser()))


def test_the_walk_reaches_the_nested_subcommands() -> None:
    paths = {path for path, _ in ACTIONS}
    assert {"switchover ctl history", "switchover node", "switchover demo"} <= paths
    assert len(ACTIONS) > 50


def test_every_option_and_subcommand_has_help_text() -> None:
    missing = sorted(
        f"{path}: {'/'.join(action.option_strings) or action.dest}"
        for path, action in ACTIONS
        if not (isinstance(action.help, str) and action.help.strip() and action.help != argparse.SUPPRESS)
    )
    assert missing == [], "options and subcommands without help text:\n" + "\n".join(missing)


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"switchover {version('switchover')}"
    assert re.fullmatch(r"switchover \d+\.\d+\.\d+\S*", out)


@pytest.mark.parametrize(
    ("argv", "ok", "kept"),
    [
        ([], True, False),
        (["--keep-files"], True, True),
        (["--keep"], True, True),
        ([], False, True),  # a failed demo keeps its logs
    ],
)
def test_demo_removes_a_temporary_directory_unless_asked_and_says_so(
    tmp_path: Path, argv: list[str], ok: bool, kept: bool
) -> None:
    args = build_parser().parse_args(["demo", *argv])
    base = tmp_path / "switchover-demo-x"
    (base / "alpha").mkdir(parents=True)
    line = demo_cmd.finish(base, demo_cmd.keep_files(args, ok))
    assert base.exists() is kept
    assert str(base) in line
    assert ("kept in" in line) is kept and ("removed" in line) is not kept


def test_demo_never_removes_a_directory_of_the_operator(tmp_path: Path) -> None:
    args = build_parser().parse_args(["demo", "--dir", str(tmp_path / "mine")])
    (tmp_path / "mine").mkdir()
    assert "kept in" in demo_cmd.finish(tmp_path / "mine", demo_cmd.keep_files(args, True))
    assert (tmp_path / "mine").is_dir()
    shutil.rmtree(tmp_path / "mine")
