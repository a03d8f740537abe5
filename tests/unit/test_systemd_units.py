"""The shipped systemd units: the keys an operator relies on, and every switchover command line in
them parses with the real CLI parser (a renamed option would otherwise break only on a real server)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from cli.main import build_parser

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


def unit(name: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current = ""
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
            continue
        key, _, value = line.partition("=")
        sections[current][key] = value
    return sections


@pytest.mark.parametrize("name", ["switchover.service", "switchover-module.service"])
def test_units_restart_on_failure_and_their_commands_parse(name: str) -> None:
    u = unit(name)
    assert u["Service"]["Restart"] == "on-failure"
    assert u["Install"]["WantedBy"] == "multi-user.target"
    for key in ("ExecStart", "ExecStopPost"):
        if key in u["Service"]:
            argv = shlex.split(u["Service"][key])
            assert argv[0] == "/usr/local/bin/switchover"
            build_parser(argv[1:]).parse_args(argv[1:])  # SystemExit on a bad command line


def test_the_node_unit_gives_the_address_up_after_the_node_died() -> None:
    service = unit("switchover.service")["Service"]
    assert shlex.split(service["ExecStopPost"])[1:5] == ["hooks", "run", "discontinue", "--if-was-active"]
    assert service["KillMode"] == "mixed"  # SIGTERM to the node only; its hooks are not killed with it
    assert "--config" in service["ExecStart"] and "--config" in service["ExecStopPost"]
