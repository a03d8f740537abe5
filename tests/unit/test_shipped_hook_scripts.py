"""The shipped shell hooks run by the node's own hook runner (actors/roles/hooks.py).

``systemd_unit.sh`` is run with a recording ``systemctl`` first on PATH (no systemd in the test
machine): the test checks which command it runs for each event and its errors; the lab test covers
the floating-address hook for real.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from actors.roles.hooks import HookEvent, HookFacts, run_hooks

HOOKS = Path(__file__).resolve().parents[2] / "deploy" / "hooks"
FACTS = HookFacts(node="A", role="Primary", reason="Manual Switchover", generation=7, peer="B")
RECORDING_SYSTEMCTL = '#!/bin/sh\necho "$@" >> "{log}"\nexit ${{SYSTEMCTL_EXIT:-0}}\n'


def install(tmp_path: Path, script: str) -> Path:
    hooks = tmp_path / "hooks"
    for kind in ("commence", "discontinue"):
        (hooks / f"{kind}.d").mkdir(parents=True, exist_ok=True)
        shutil.copy(HOOKS / script, hooks / f"{kind}.d" / "50-hook")
    return hooks


@pytest.fixture
def systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir, log = tmp_path / "bin", tmp_path / "systemctl.log"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(RECORDING_SYSTEMCTL.format(log=log))
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SWITCHOVER_UNIT_CONF", str(tmp_path / "none.conf"))
    return log


def test_systemd_unit_hook_starts_on_commence_and_stops_on_discontinue(
    tmp_path: Path, systemctl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = install(tmp_path, "systemd_unit.sh")
    monkeypatch.setenv("SWITCHOVER_UNIT", "nginx.service php-fpm.service")
    [started] = run_hooks(hooks, HookEvent.COMMENCE, FACTS, 10)
    [stopped] = run_hooks(hooks, HookEvent.DISCONTINUE, FACTS, 10)
    assert started.ok and stopped.ok, (started, stopped)
    assert systemctl.read_text().splitlines() == [
        "start nginx.service php-fpm.service",
        "stop nginx.service php-fpm.service",
    ]
    assert "start nginx.service php-fpm.service: done" in started.output


def test_systemd_unit_hook_reads_its_conf_file_and_reports_failures(
    tmp_path: Path, systemctl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "unit.conf"
    conf.write_text("# the protected service\nSWITCHOVER_UNIT=redis-server.service\n")
    monkeypatch.setenv("SWITCHOVER_UNIT_CONF", str(conf))
    monkeypatch.setenv("SYSTEMCTL_EXIT", "5")
    [result] = run_hooks(install(tmp_path, "systemd_unit.sh"), HookEvent.COMMENCE, FACTS, 10)
    assert (
        result.returncode == 5
        and "systemctl start redis-server.service failed with status 5" in result.output
    )
    assert systemctl.read_text() == "start redis-server.service\n"


def test_systemd_unit_hook_without_a_unit_says_what_to_set(tmp_path: Path, systemctl: Path) -> None:
    [result] = run_hooks(install(tmp_path, "systemd_unit.sh"), HookEvent.COMMENCE, FACTS, 10)
    assert result.returncode == 2 and "SWITCHOVER_UNIT is not set" in result.output
    assert not systemctl.exists()


def test_template_runs_as_shipped(tmp_path: Path) -> None:
    hooks = install(tmp_path, "template.sh")
    [commence] = run_hooks(hooks, HookEvent.COMMENCE, FACTS, 10)
    [discontinue] = run_hooks(hooks, HookEvent.DISCONTINUE, FACTS, 10)
    assert commence.ok and "commence on A (generation 7): Manual Switchover" in commence.output
    assert discontinue.ok and "discontinue on A, now Primary" in discontinue.output
