"""A ``param set`` on a node reaches its running monitors without a restart (issue 9, defect 1).

Real processes: a pair on 127.0.0.1 with a TsServer module beside the primary; the backup's monitors
are asked through the ``monitors`` admin op which values they use.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.pair import LocalPair
from tests.conftest import poll_result, wait_until

TIMING = {"timing": {"hello_interval": 0.1, "peer_timeout": 1.0, "startup_wait": 1.0}}


@pytest.fixture
def watched_pair(tmp_path: Path) -> Iterator[LocalPair]:
    pair = LocalPair(tmp_path / "pair", parameters={"Switchover TS Timeout": "6"}, extra=TIMING)
    try:
        pair.start_module("alpha")
        pair.start_node("alpha")
        wait_until(lambda: pair.role("alpha") == "Primary", 20, 0.05, "alpha to be Primary")
        pair.start_node("beta")
        wait_until(lambda: pair.role("beta") == "Backup", 20, 0.05, "beta to be Backup")
        yield pair
    finally:
        pair.stop()


def monitor_values(pair: LocalPair, monitor: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        report = pair.admin("beta", "monitors")["monitors"].get(monitor)
        return report if report and report.get("params") else None

    report: dict[str, Any] | None = poll_result(ready, 10)
    assert report, f"beta's {monitor} did not report its parameters"
    return report


def test_a_param_set_reaches_the_running_monitors_without_a_restart(watched_pair: LocalPair) -> None:
    pair = watched_pair
    module = monitor_values(pair, "ModuleMonitor")
    primary = monitor_values(pair, "PrimaryMonitor")
    assert module["params"]["Switchover TS Timeout"] == 6.0
    assert primary["params"]["Switchover Primary Monitor Timeout"] == 3.0  # 0 = half the TS Timeout
    assert primary["params"]["Switchover Primary Monitor Ping Delay"] == 1.0  # 0 = 1 s

    pair.admin("beta", "param.set", {"name": "Switchover Max TS Failures", "value": "4", "local": True})
    pair.admin("beta", "param.set", {"name": "Switchover TS Timeout", "value": "8", "local": True})
    pair.admin("beta", "param.set", {"name": "Switchover Primary Monitor Retry Count", "value": "7",
                                     "local": True})

    def applied() -> tuple[dict[str, Any], dict[str, Any]] | None:
        m = monitor_values(pair, "ModuleMonitor")
        p = monitor_values(pair, "PrimaryMonitor")
        done = (m["params"]["Switchover Max TS Failures"] == 4 and m["params"]["Switchover TS Timeout"] == 8.0
                and "Switchover Primary Monitor Retry Count" in p["pending_restart"])
        return (m, p) if done else None

    got = poll_result(applied, 10)
    assert got, f"the changes did not reach beta's monitors: {pair.admin('beta', 'monitors')}"
    module, primary = got
    assert primary["params"]["Switchover Primary Monitor Timeout"] == 4.0  # follows the TS Timeout live
    assert primary["params"]["Switchover Primary Monitor Retry Count"] == 2  # static: after a restart
    assert pair.role("beta") == "Backup" and module["running"]
