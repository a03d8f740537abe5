"""The fast CLI paths import only what they need: ``ctl status`` and ``admin status`` never load the
actor runtime, rich, loguru, psutil, SQLite or prometheus-client (structural, not timed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import node_config_text, server_ports

HEAVY = ("pykka", "loguru", "psutil", "rich", "sqlite3", "prometheus_client", "icmplib", "actors.runtime")

PROBE = """
import json, sys
from cli.main import main
code = main(sys.argv[1:])
heavy = sorted({m.split('.')[0] if not m.startswith('actors.') else 'actors.runtime'
                for m in sys.modules if m.split('.')[0] in HEAVY or m.startswith('actors.runtime')})
print(json.dumps({"code": code, "heavy": heavy, "cli": sorted(m for m in sys.modules if m.startswith('cli.'))}))
"""


def run_probe(*argv: str) -> dict[str, object]:
    code = f"HEAVY = {HEAVY!r}\n{PROBE}"
    done = subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture
def config(tmp_path: Path) -> Path:
    ports_a, ports_b = server_ports()
    path = tmp_path / "A.toml"
    path.write_text(node_config_text("A", tmp_path / "dataA", ports_a, ports_b))
    return path


def test_ctl_status_imports_nothing_heavy(config: Path) -> None:
    result = run_probe("ctl", "--config", str(config), "--json", "--timeout", "0.2", "status")
    assert result["code"] == 1  # nobody answers: the view is printed, then the exit code says so
    assert result["heavy"] == []
    assert result["cli"] == ["cli.ctl_cmd", "cli.main", "cli.output"]  # no other subcommand module


def test_admin_status_imports_nothing_heavy(tmp_path: Path) -> None:
    result = run_probe("admin", "--node", str(tmp_path), "status")
    assert result["code"] == 1  # nobody runs there: a clear error, after the imports
    assert result["heavy"] == []
    assert result["cli"] == ["cli.admin_cmd", "cli.main", "cli.output"]


def test_the_probe_sees_heavy_modules_where_they_are_needed(tmp_path: Path) -> None:
    """``ctl history`` draws a rich table and reads event records: the probe must notice."""
    ports_a, ports_b = server_ports()
    path = tmp_path / "A.toml"
    path.write_text(node_config_text("A", tmp_path / "dataA", ports_a, ports_b))
    result = run_probe("ctl", "--config", str(path), "--timeout", "0.2", "history")
    assert result["code"] == 1  # nobody answers
    assert "loguru" in result["heavy"]  # the event records it reads
    result = run_probe("param", "--node", str(tmp_path), "list")
    assert "sqlite3" in result["heavy"]  # the catalog beside the DS store  # type: ignore[operator]
