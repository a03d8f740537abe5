"""A pair without a registered module does not ping-pong (issue 9, defect 4).

Two real ``switchover node`` processes with the default module parameters and no TsServer module.
Before the fix the backup took over about 3 s after start (every ping of the absent module was
rejected) and each ``ctl rejoin`` swapped the roles again.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.pair import LocalPair
from tests.conftest import wait_until

TIMING = {"timing": {"hello_interval": 0.1, "peer_timeout": 1.0, "startup_wait": 1.0}}
NOT_REGISTERED = "monitored module TsServer is not registered on the active"


@pytest.fixture
def bare_pair(tmp_path: Path) -> Iterator[LocalPair]:
    # TS Timeout at its minimum (5 s) so that a module that registers is seen within 5 s; the retry
    # delay and failure count stay at their defaults (before the fix: a switch about 3 s after start)
    pair = LocalPair(tmp_path / "pair", parameters={"Switchover TS Timeout": "5"}, extra=TIMING)
    try:
        pair.start_node("alpha")
        wait_until(lambda: pair.role("alpha") == "Primary", 20, 0.05, "alpha to be Primary")
        pair.start_node("beta")
        wait_until(lambda: pair.role("beta") == "Backup", 20, 0.05, "beta to be Backup")
        yield pair
    finally:
        pair.stop()


def module_registered(pair: LocalPair, node: str = "beta") -> bool | None:
    report = pair.admin(node, "monitors")["monitors"].get("ModuleMonitor")
    return None if report is None else bool(report["module_registered_on_active"])


def hold(pair: LocalPair, seconds: float) -> None:
    """Poll the roles for ``seconds``: they must not change (the bounded observation of this test)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        roles = pair.roles()
        assert roles == {"alpha": "Primary", "beta": "Backup"}, f"roles changed: {roles}"
        time.sleep(0.1)


def test_a_pair_without_a_module_keeps_its_roles_and_switches_once_a_registered_module_goes(
    bare_pair: LocalPair,
) -> None:
    pair = bare_pair
    wait_until(lambda: module_registered(pair) is False, 10, 0.05, "beta to see TsServer is not registered")
    hold(pair, 4.0)  # the default module parameters switched after about 3 s before the fix
    status = pair.ctl("status")
    assert NOT_REGISTERED in status.stdout, status.stdout
    assert NOT_REGISTERED in (pair.b.data_dir / "switchover.log").read_text(errors="replace")

    # a module that registers is monitored: when it goes, the backup takes over
    pair.start_module("alpha")
    wait_until(lambda: module_registered(pair) is True, 20, 0.05, "beta to see alpha's TsServer answer")
    pair.signal("alpha", signal.SIGKILL, module=True)
    wait_until(lambda: pair.role("beta") == "Primary", 20, 0.05, "beta to take over")
    # the new active has no module registered: alpha, made a backup again, does not take over again
    wait_until(lambda: pair.role("alpha") == "Inactive", 20, 0.05, "alpha to step down")
    rejoin = pair.ctl("rejoin", "--server", "alpha")
    assert rejoin.returncode == 0, rejoin.stdout + rejoin.stderr
    wait_until(lambda: pair.role("alpha") == "Backup", 20, 0.05, "alpha to rejoin as Backup")
    wait_until(lambda: module_registered(pair, "alpha") is False, 10, 0.05, "alpha to see no TsServer on beta")
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        assert pair.roles() == {"alpha": "Backup", "beta": "Primary"}, "the pair swapped again"
        time.sleep(0.1)
