"""The backup's monitors in a real pair on 127.0.0.1 (issue 9).

- Defect 1: a ``param set`` on a node reaches its running monitors without a restart (the ``monitors``
  admin op says which values each monitor uses).
- Defect 4: a pair without a registered module does not ping-pong. Before the fix the backup took over
  about 3 s after start (every ping of the absent module was rejected) and each ``ctl rejoin``
  swapped the roles again.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.pair import LocalPair
from tests.conftest import poll_result, wait_until

TIMING = {"timing": {"hello_interval": 0.1, "peer_timeout": 1.0, "startup_wait": 1.0}}
NOT_REGISTERED = "monitored module TsServer is not registered on the active"


def started(pair: LocalPair, module: bool) -> LocalPair:
    """alpha Primary (with a TsServer module beside it when ``module``), then beta Backup."""
    if module:
        pair.start_module("alpha")
    pair.start_node("alpha")
    wait_until(lambda: pair.role("alpha") == "Primary", 20, 0.05, "alpha to be Primary")
    pair.start_node("beta")
    wait_until(lambda: pair.role("beta") == "Backup", 20, 0.05, "beta to be Backup")
    return pair


@pytest.fixture
def new_pair(tmp_path: Path) -> Iterator[Any]:
    pairs: list[LocalPair] = []

    def make(parameters: dict[str, str], module: bool) -> LocalPair:
        pair = LocalPair(tmp_path / f"pair{len(pairs)}", parameters=parameters, extra=TIMING)
        pairs.append(pair)
        return started(pair, module)

    try:
        yield make
    finally:
        for pair in pairs:
            pair.stop()


def monitor_report(pair: LocalPair, monitor: str, node: str = "beta") -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        report = pair.admin(node, "monitors")["monitors"].get(monitor)
        return report if report and report.get("params") else None

    report: dict[str, Any] | None = poll_result(ready, 10)
    assert report, f"{node}'s {monitor} did not report its parameters"
    return report


def registered(pair: LocalPair, node: str) -> bool:
    """Whether ``node``'s ModuleMonitor has seen the module registered on the active."""
    return bool(monitor_report(pair, "ModuleMonitor", node)["module_registered_on_active"])


def hold(pair: LocalPair, roles: dict[str, str], seconds: float) -> None:
    """Poll the roles for ``seconds``: they must not change (the bounded observation of these tests)."""
    def changed() -> str | None:
        now = pair.roles()
        return None if now == roles else f"roles changed: {now}"

    found = poll_result(changed, seconds, 0.1)  # the shared poll: returns early on the first change
    assert found is None, found


# ------------------------------------------------------------------------------ defect 1


def test_a_param_set_reaches_the_running_monitors_without_a_restart(new_pair: Any) -> None:
    pair = new_pair({"Switchover TS Timeout": "6"}, module=True)
    module = monitor_report(pair, "ModuleMonitor")
    primary = monitor_report(pair, "PrimaryMonitor")
    assert module["params"]["Switchover TS Timeout"] == 6.0
    assert primary["params"]["Switchover Primary Monitor Timeout"] == 3.0  # 0 = half the TS Timeout
    assert primary["params"]["Switchover Primary Monitor Ping Delay"] == 1.0  # 0 = 1 s

    pair.admin("beta", "param.set", {"name": "Switchover Max TS Failures", "value": "4", "local": True})
    pair.admin("beta", "param.set", {"name": "Switchover TS Timeout", "value": "8", "local": True})
    pair.admin("beta", "param.set", {"name": "Switchover Primary Monitor Retry Count", "value": "7",
                                     "local": True})

    def applied() -> tuple[dict[str, Any], dict[str, Any]] | None:
        m = monitor_report(pair, "ModuleMonitor")
        p = monitor_report(pair, "PrimaryMonitor")
        done = (m["params"]["Switchover Max TS Failures"] == 4 and m["params"]["Switchover TS Timeout"] == 8.0
                and "Switchover Primary Monitor Retry Count" in p["pending_restart"])
        return (m, p) if done else None

    got = poll_result(applied, 10)
    assert got, f"the changes did not reach beta's monitors: {pair.admin('beta', 'monitors')}"
    module, primary = got
    assert primary["params"]["Switchover Primary Monitor Timeout"] == 4.0  # follows the TS Timeout live
    assert primary["params"]["Switchover Primary Monitor Retry Count"] == 2  # static: after a restart
    assert pair.role("beta") == "Backup" and module["running"]


# ------------------------------------------------------------------------------ defect 4


def test_a_pair_without_a_module_keeps_its_roles_and_switches_once_a_registered_module_goes(
    new_pair: Any,
) -> None:
    # TS Timeout at its minimum (5 s) so that a module that registers is seen within 5 s; the retry
    # delay and failure count stay at their defaults (before the fix: a switch about 3 s after start)
    pair = new_pair({"Switchover TS Timeout": "5"}, module=False)
    wait_until(lambda: registered(pair, "beta") is False, 10, 0.05, "beta to see TsServer is not registered")
    hold(pair, {"alpha": "Primary", "beta": "Backup"}, 4.0)  # the default module parameters switched after about 3 s before the fix
    status = pair.ctl("status")
    assert NOT_REGISTERED in status.stdout, status.stdout
    # the backup's worst-case detection times for these parameters (issue 14): TS Timeout 5 s, so the
    # primary monitor timeout is 2.5 s and the heartbeat (4 s) + NetTest timeout (1 s) caps host loss;
    # Reconnect Timeout 30 s; module crash: 3 retry delays of 1 s (the notifier sees the exit at once)
    assert (
        "Failure detection, detection time (worst case): host loss 5.00 s, node crash 30.00 s, "
        "node freeze 34.00 s, module crash 3.00 s"
    ) in status.stdout, status.stdout
    assert NOT_REGISTERED in (pair.b.data_dir / "switchover.log").read_text(errors="replace")

    # a module that registers is monitored: when it goes, the backup takes over
    pair.start_module("alpha")
    wait_until(lambda: registered(pair, "beta"), 20, 0.05, "beta to see alpha's TsServer answer")
    pair.signal("alpha", signal.SIGKILL, module=True)
    wait_until(lambda: pair.role("beta") == "Primary", 20, 0.05, "beta to take over")
    # the new active has no module registered: alpha, made a backup again, does not take over again
    wait_until(lambda: pair.role("alpha") == "Inactive", 20, 0.05, "alpha to step down")
    rejoin = pair.ctl("rejoin", "--server", "alpha")
    assert rejoin.returncode == 0, rejoin.stdout + rejoin.stderr
    wait_until(lambda: pair.role("alpha") == "Backup", 20, 0.05, "alpha to rejoin as Backup")
    wait_until(lambda: registered(pair, "alpha") is False, 10, 0.05, "alpha to see no TsServer on beta")
    hold(pair, {"alpha": "Backup", "beta": "Primary"}, 4.0)
