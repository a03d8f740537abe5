"""Applications: Query Backup and Commence/Discontinue events; and a pair secured with CURVE."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import zmq

from deploy.pair import LocalPair, wait_until
from transport.client import RoleEventSubscription, Unreachable, is_backup, query_state
from transport.messages import RoleEvent
from transport.security import Security, client_security

# No module runs in these tests: make the module monitor patient so only the tests switch.
QUIET = {
    "Switchover TS Failure Retry Delay": "3600",
    "Switchover Max TS Failures": "100",
    "Switchover Reconnect Timeout": "60",
}
TIMING = {"timing": {"startup_wait": 1.0, "hello_interval": 0.1, "peer_timeout": 1.0}}


def vswitch(pair: LocalPair, name: str) -> str:
    text = pair.nodes[name].config.read_text()
    section = "server_a" if name == pair.names[0] else "server_b"
    port = text.split(f"[{section}]")[1].split("vswitch_port = ")[1].split("\n")[0]
    return f"tcp://127.0.0.1:{port}"


def start_pair(pair: LocalPair) -> None:
    pair.start_node("alpha")
    wait_until(lambda: pair.role("alpha") == "Primary", 20, what="alpha Primary")
    pair.start_node("beta")
    wait_until(lambda: pair.role("beta") == "Backup", 20, what="beta Backup")


@pytest.fixture
def pair(tmp_path: Path):
    p = LocalPair(tmp_path / "pair", parameters=dict(QUIET), extra=dict(TIMING))
    yield p
    p.stop()


def test_query_backup_answers_for_each_node_and_follows_a_switch(pair: LocalPair) -> None:
    start_pair(pair)
    app = pair.security_for("module")  # the pair's key with the app right
    assert is_backup(vswitch(pair, "beta"), security=app) is True
    assert is_backup(vswitch(pair, "alpha"), security=app) is False
    assert pair.ctl("switch", "--yes").returncode == 0
    wait_until(lambda: not is_backup(vswitch(pair, "beta"), security=app), 10, what="beta no longer backup")
    assert query_state(vswitch(pair, "alpha"), security=app).role == "Inactive"


def test_subscribed_applications_hear_commence_and_discontinue(pair: LocalPair) -> None:
    start_pair(pair)
    heard: dict[str, list[RoleEvent]] = {"alpha": [], "beta": []}
    arrived = threading.Event()

    def listener(name: str):
        def on_event(event: RoleEvent) -> None:
            heard[name].append(event)
            if heard["alpha"] and heard["beta"]:
                arrived.set()

        return on_event

    subs = [
        RoleEventSubscription(
            vswitch(pair, n), listener(n), renew=0.5, name=f"app-{n}", security=pair.security_for("module")
        ).start()
        for n in ("alpha", "beta")
    ]
    try:
        assert all(s.subscribed.wait(5) for s in subs), "the nodes did not confirm the subscriptions"
        assert pair.ctl("switch", "--yes").returncode == 0
        assert arrived.wait(10), f"events heard: {heard}"
    finally:
        for s in subs:
            s.stop()
    (commence,) = [e for e in heard["beta"] if e.event == "commence"]
    assert (commence.node, commence.role, commence.reason) == ("beta", "Primary", "Manual Switchover")
    (discontinue,) = [e for e in heard["alpha"] if e.event == "discontinue"]
    assert (discontinue.node, discontinue.role) == ("alpha", "Inactive")
    assert commence.generation == discontinue.generation + 1


def test_a_pair_secured_with_curve_works_and_refuses_plain_text_clients(tmp_path: Path) -> None:
    pair = LocalPair(tmp_path / "pair", parameters=dict(QUIET), extra=dict(TIMING), curve=True)
    try:
        start_pair(pair)
        group = pair.keys / "server-group.key_secret"
        operator = client_security(False, str(group), str(pair.client_key("operator")))
        assert query_state(vswitch(pair, "beta"), 2.0, operator).role == "Backup"
        with pytest.raises(Unreachable):
            query_state(vswitch(pair, "beta"), 1.0, Security.plain())
        other_public, other_secret = zmq.curve_keypair()
        with pytest.raises(Unreachable):
            query_state(vswitch(pair, "beta"), 1.0, Security.curve_group(other_public, other_secret))
        status = pair.ctl("status", "--json")
        assert '"active": "alpha"' in status.stdout and '"backup": "beta"' in status.stdout
    finally:
        pair.stop()
