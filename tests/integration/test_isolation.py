"""Isolation step-down (issue 16) with a real node process on loopback.

Loopback never loses its carrier, so the probe path is exercised: the active hears no backup (the
peer is not started, or is killed) and its own network check (THE local-network rule: here the
NetTest, a reserved class-E address that never answers) fails, so it steps down, runs its Discontinue
hooks and says why. When the NetTest is changed to one that answers (127.0.0.1) the check passes, it
renegotiates on port 3633 and, the peer never having switched, becomes Primary again. With the node
policy ``keep-serving`` the same situation keeps it Primary.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.roles import event_log
from deploy.pair import FAST_PARAMETERS, LocalPair
from tests.conftest import wait_until

DEAD_NETTEST = "240.0.0.1"  # reserved (class E): never answers


def make(tmp_path: Path, policy: str) -> LocalPair:
    params = dict(FAST_PARAMETERS)
    params["Switchover NetTest A"] = DEAD_NETTEST
    extra = {"timing": {"startup_wait": 1.0}, "roles": {"isolation": policy}}
    return LocalPair(tmp_path / policy, parameters=params, extra=extra)


@pytest.fixture
def pairs(tmp_path: Path) -> Iterator[list[LocalPair]]:
    made: list[LocalPair] = []
    try:
        yield made
    finally:
        for pair in made:
            pair.stop()


def hook(pair: LocalPair, name: str, kind: str) -> Path:
    out = pair.nodes[name].data_dir / f"{kind}.out"
    d = pair.nodes[name].data_dir / "hooks" / f"{kind}.d"
    d.mkdir(parents=True, exist_ok=True)
    script = d / "10-record"
    script.write_text(f'#!/bin/sh\necho "$(date +%s.%N) $SWITCHOVER_REASON" >> "{out}"\n')
    script.chmod(0o755)
    return out


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def log(pair: LocalPair, name: str) -> str:
    path = pair.nodes[name].data_dir / "switchover.log"
    return path.read_text(errors="replace") if path.exists() else ""


def test_an_isolated_active_steps_down_and_resumes_when_its_network_returns(
    tmp_path: Path, pairs: list[LocalPair]
) -> None:
    pair = make(tmp_path, "step-down")
    pairs.append(pair)
    commence, discontinue = hook(pair, "alpha", "commence"), hook(pair, "alpha", "discontinue")
    pair.start_node("alpha")
    wait_until(lambda: pair.role("alpha") == "Stepped Down", 20, 0.05, "alpha to step down")
    text = log(pair, "alpha")
    assert "isolated from the network and from the backup: stepping down" in text
    assert "own network check failed" in text
    wait_until(lambda: len(lines(discontinue)) == 1, 10, 0.05, "the Discontinue hook")
    assert lines(discontinue)[0].split(maxsplit=1)[1] == "Isolated from the Network and from the Backup"
    status = pair.ctl("status")
    assert "alpha: Stepped Down" in status.stdout, status.stdout + status.stderr
    assert "isolation policy: step-down" in status.stdout

    # the network returns: the check passes, it renegotiates and (nobody took over) is Primary again
    pair.admin("alpha", "param.set", {"name": "Switchover NetTest A", "value": "127.0.0.1", "local": True})
    wait_until(lambda: pair.role("alpha") == "Primary", 20, 0.05, "alpha to be Primary again")
    assert "Network is back after stepping down: renegotiating" in log(pair, "alpha")
    wait_until(lambda: len(lines(commence)) == 2, 10, 0.05, "two Commence hooks")
    assert len(lines(discontinue)) == 1  # exactly once per role change
    records = event_log.read(pair.nodes["alpha"].data_dir / "events.jsonl")
    states = [(r.old_state, r.new_state) for r in records]
    assert ("Primary", "Stepped Down") in states and ("Stepped Down", "Init") in states
    assert states[-1] == ("Init", "Primary")


def test_keep_serving_policy_stays_primary_and_ctl_status_says_so(tmp_path: Path, pairs: list[LocalPair]) -> None:
    pair = make(tmp_path, "keep-serving")
    pairs.append(pair)
    pair.start_node("alpha")
    wait_until(
        lambda: "keeping serving (isolation policy keep-serving" in log(pair, "alpha"),
        20, 0.05, "alpha to report it is isolated but keeps serving",
    )
    assert pair.role("alpha") == "Primary"
    status = pair.ctl("status")
    assert "isolation policy: keep-serving" in status.stdout, status.stdout + status.stderr


def test_a_backup_loss_alone_does_not_step_down(tmp_path: Path, pairs: list[LocalPair]) -> None:
    """The backup dies but the active's own network check passes: it keeps serving."""
    params = dict(FAST_PARAMETERS)
    params["Switchover NetTest A"] = "127.0.0.1"
    pair = LocalPair(tmp_path / "ok", parameters=params, extra={"timing": {"startup_wait": 1.0}})
    pairs.append(pair)
    pair.start_node("alpha")
    wait_until(lambda: pair.role("alpha") == "Primary", 20, 0.05, "alpha Primary")
    pair.start_node("beta")
    wait_until(lambda: pair.role("beta") == "Backup", 20, 0.05, "beta Backup")
    since = len(log(pair, "alpha"))
    pair.signal("beta", signal.SIGKILL)
    # well past the peer silence and several checks: still Primary, the checks passed
    wait_until(lambda: log(pair, "alpha")[since:].count("NetTestReached") >= 3, 20, 0.05, "three passing checks")
    assert pair.role("alpha") == "Primary"
    assert "stepping down" not in log(pair, "alpha")
