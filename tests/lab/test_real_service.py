"""A real service (nginx) behind the floating address, protected by the switchover pair in the lab
(deploy/lab/real_service.py): a client on the service LAN requesting every 20 ms is served again after
nginx is killed on the active, and loses nothing when the active's node process is killed; afterwards
exactly one server holds the address. (The side-by-side comparison with keepalived, 3 runs of every
fault, is the benchmark ``python -m deploy.lab.real_service``.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deploy.lab.real_service import RECOVERY_WAIT, Bench


@pytest.fixture
def bench(lab_prereqs: None, tmp_path: Path) -> Bench:
    return Bench(tmp_path, f"solt{os.getpid()}r")


def test_nginx_killed_on_the_active_is_served_by_the_backup(bench: Bench) -> None:
    r = bench.run_one("switchover", "service-kill", 1)
    assert r.downtime is not None and r.downtime < RECOVERY_WAIT, r
    assert r.holders_after == ["b"] and r.served_by_after == "server-b", r


def test_active_node_killed_loses_no_request_and_leaves_the_address_on_one_server(bench: Bench) -> None:
    r = bench.run_one("switchover", "node-kill", 2)
    assert r.failed == 0 and r.requests > 50, r
    assert r.holders_after == ["b"] and r.served_by_after == "server-b", r
