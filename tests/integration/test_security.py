"""Security of a real pair (issue 13): CURVE with per-client keys and rights, checked per request.

Every test runs real node processes secured with CURVE (:class:`~deploy.pair.LocalPair` with
``curve=True``: the server group keypair, an ``operator`` with the admin right, a ``module`` key
the reference modules use), and real clients with their own keys:

- the monitored module connects over CURVE: no spurious switch, and kill -9 of the active's
  module switches ("TS Ping Failure");
- a plain-text client, a client with an unknown key and a client with a revoked key get nothing
  served, and the node logs each with the peer address; a revoked key's open connection is
  refused from its next request after ``keys-reload``;
- a ``monitor``-only operator can run ``ctl status`` and is refused ``ctl switch`` with a clear
  message, by the control panel and by the node itself; ``--immediate`` needs ``admin``;
- a secret key file readable by others stops the node with a message naming it and its mode;
- the admin socket is owner-only in an owner-only directory.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from actors.roles import event_log
from deploy.pair import FAST_PARAMETERS, LocalPair, child_env
from tests.conftest import poll_result, wait_until
from transport.client import Refused, Unreachable, query_state, request_once, who_am_i
from transport.codec import REQUEST, Envelope, decode, encode
from transport.messages import ErrorReply, QueryState, StatusReport, SwitchRequest
from transport.security import Security, load_keypair, load_public, write_keypair

TIMING = {"timing": {"startup_wait": 1.0, "hello_interval": 0.1, "peer_timeout": 1.0}}
# no module in these tests (but the first): the module monitor is patient so only the tests switch
QUIET = {
    "Switchover TS Failure Retry Delay": "3600",
    "Switchover Max TS Failures": "100",
    "Switchover Reconnect Timeout": "60",
}


def vswitch(pair: LocalPair, name: str) -> str:
    text = pair.nodes[name].config.read_text()
    section = "server_a" if name == pair.names[0] else "server_b"
    port = text.split(f"[{section}]")[1].split("vswitch_port = ")[1].split("\n")[0]
    return f"tcp://127.0.0.1:{port}"


def node_log(pair: LocalPair, name: str) -> str:
    path = pair.nodes[name].data_dir / "switchover.log"
    return path.read_text(errors="replace") if path.exists() else ""


def key_security(pair: LocalPair, secret_file: Path) -> Security:
    public, secret = load_keypair(secret_file)
    return Security.client(load_public(pair.keys / "server-group.key"), public, secret)


def start_pair(pair: LocalPair, modules: bool = False) -> None:
    pair.start_node("alpha")
    if modules:
        pair.start_module("alpha")
    wait_until(lambda: pair.role("alpha") == "Primary", 20, message="alpha Primary")
    pair.start_node("beta")
    if modules:
        pair.start_module("beta")
    wait_until(lambda: pair.role("beta") == "Backup", 20, message="beta Backup")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[LocalPair]:
    p = LocalPair(tmp_path / "pair", parameters=dict(QUIET), extra=dict(TIMING), curve=True)
    yield p
    p.stop()


def test_a_curve_pair_with_modules_does_not_switch_by_itself_and_kill_9_of_the_module_switches(
    tmp_path: Path,
) -> None:
    pair = LocalPair(
        tmp_path / "pair",
        parameters=dict(FAST_PARAMETERS),
        extra={"timing": {"startup_wait": 1.0}},
        curve=True,
    )
    try:
        start_pair(pair, modules=True)
        wait_until(
            lambda: "registered with the notifier" in (pair.a.data_dir / "module.stderr").read_text(),
            10,
            message="alpha's module to register over CURVE",
        )
        # before the fix the backup switched on "TS Ping Failure" ~3 s after start: hold 6 s
        deviation = poll_result(lambda: pair.roles() != {"alpha": "Primary", "beta": "Backup"}, 6.0, 0.1)
        assert not deviation, f"roles changed by themselves: {pair.roles()}\n{node_log(pair, 'beta')[-3000:]}"
        pair.signal("alpha", signal.SIGKILL, module=True)
        wait_until(lambda: pair.role("beta") == "Primary", 20, message="beta to take over")
        records = event_log.read(pair.b.data_dir / "events.jsonl")
        assert any(r.new_state == "Primary" and r.reason == "TS Ping Failure" for r in records), records
    finally:
        pair.stop()


def test_plain_text_unknown_and_revoked_clients_get_nothing_and_are_logged_with_their_address(
    pair: LocalPair, tmp_path: Path
) -> None:
    start_pair(pair)
    address = vswitch(pair, "beta")
    with pytest.raises(Unreachable):
        query_state(address, 1.0, Security.plain())
    _, stranger = write_keypair(tmp_path / "stranger", "stranger")
    with pytest.raises(Unreachable):
        query_state(address, 1.0, key_security(pair, stranger))

    watcher = pair.add_client("watcher", "monitor")
    security = key_security(pair, watcher)
    # a connection opened before the key is revoked: served now, refused from the next request
    ctx: zmq.Context[Any] = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    security.apply(sock, server=False)

    def ask(corr: int) -> Any:
        assert sock.poll(5000, zmq.POLLOUT), "not connected"
        sock.send_multipart(encode(Envelope(QueryState("watcher"), "watcher", 0, None, REQUEST, corr)))
        assert sock.poll(5000), "no answer"
        return decode(sock.recv_multipart()).msg

    try:
        assert "watcher" in pair.admin("beta", "keys-reload")["added"]
        sock.connect(address)
        assert isinstance(ask(1), StatusReport)
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "keys", "revoke", "watcher", "--dir", str(pair.keys)],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        os.kill(pair.b.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
        wait_until(
            lambda: "removed or revoked: watcher" in node_log(pair, "beta"), 5, message="SIGHUP reload"
        )
        refused = ask(2)
        assert isinstance(refused, ErrorReply) and "watcher is not authorized" in refused.error
    finally:
        sock.close()
    with pytest.raises(Unreachable):  # and a new connection with it does not even get through
        query_state(address, 1.0, security)

    def logged() -> bool:
        log = node_log(pair, "beta")
        return all(
            text in log
            for text in (
                "refused a connection from 127.0.0.1:",  # plain text: handshake failed, with the port
                "the CURVE handshake failed",
                "refused a connection from 127.0.0.1 to vswitch.server: a key that is not authorized",
                "refused QueryState on vswitch.server from watcher at 127.0.0.1",
                "refused a connection from 127.0.0.1 to vswitch.server: the key of client 'watcher', revoked",
            )
        )

    wait_until(logged, 5, message=f"the refusals in beta's log:\n{node_log(pair, 'beta')[-3000:]}")
    counters = pair.admin("beta", "security")["refused"]
    assert counters["handshake_failed"] >= 1 and counters["handshake_unknown_key"] >= 1
    assert counters["request_refused"] >= 1 and counters["handshake_revoked_key"] >= 1


def test_a_monitor_only_operator_sees_the_status_and_is_refused_the_switch(pair: LocalPair) -> None:
    start_pair(pair)
    watcher = pair.add_client("watcher", "monitor")
    for name in pair.names:
        pair.admin(name, "keys-reload")
    status = pair.ctl("status", key=watcher)
    assert status.returncode == 0, status.stderr
    assert "Checking user privileges for user watcher" in status.stdout
    assert "User watcher lacks the Remote Control right" in status.stdout
    assert "Active:  alpha (connected)" in status.stdout

    switch = pair.ctl("switch", "--yes", key=watcher)
    assert switch.returncode != 0
    assert "switch refused: user watcher lacks the Remote Control right" in switch.stderr
    # the node itself refuses, whatever the client does
    with pytest.raises(Refused, match="user watcher lacks the Remote Control right"):
        request_once(vswitch(pair, "beta"), SwitchRequest("test"), 2.0, key_security(pair, watcher))
    assert pair.roles() == {"alpha": "Primary", "beta": "Backup"}

    operator = pair.client_key("operator")  # admin: includes Remote Control
    me = who_am_i(vswitch(pair, "beta"), 2.0, key_security(pair, operator))
    assert me.user == "operator" and {"admin", "remote-control", "monitor"} <= set(me.rights)
    switch = pair.ctl("switch", "--yes")  # the config's client_key: the operator
    assert switch.returncode == 0, switch.stderr
    assert "Verified user has Remote Control rights" in switch.stdout
    wait_until(lambda: pair.role("beta") == "Primary", 10, message="beta Primary")


def test_immediate_needs_the_admin_right(pair: LocalPair) -> None:
    start_pair(pair)
    pilot = pair.add_client("pilot", "remote-control")
    for name in pair.names:
        pair.admin(name, "keys-reload")
    refused = pair.ctl("switch", "--immediate", key=pilot)
    assert refused.returncode != 0
    assert "/Immediate: Remote Control right not checked; user pilot lacks the Admin right" in refused.stdout
    with pytest.raises(Refused, match="user pilot lacks the Admin right"):
        request_once(vswitch(pair, "beta"), SwitchRequest("test", True), 2.0, key_security(pair, pilot))
    assert pair.roles() == {"alpha": "Primary", "beta": "Backup"}
    done = pair.ctl("switch", "--immediate")  # the operator: admin
    assert done.returncode == 0, done.stderr
    assert "verified user is a master administrator" in done.stdout
    wait_until(lambda: pair.role("beta") == "Primary", 10, message="beta Primary")


def test_a_secret_key_file_readable_by_others_stops_the_node_naming_it(pair: LocalPair) -> None:
    secret = pair.keys / "server-group.key_secret"
    os.chmod(secret, 0o644)
    pair.start_node("alpha")
    proc = pair.a.proc
    assert proc is not None
    assert proc.wait(30) == 2
    output = (pair.a.data_dir / "node.stderr").read_text()
    assert f"secret key file {secret} has mode 0644" in output
    assert f"chmod 600 {secret}" in output


def test_the_admin_socket_is_owner_only(pair: LocalPair) -> None:
    pair.start_node("alpha")
    wait_until(lambda: pair.role("alpha") == "Primary", 20, message="alpha Primary")
    sock = pair.a.data_dir / "admin.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(pair.a.data_dir.stat().st_mode) == 0o700


def test_a_module_without_the_module_right_is_not_registered(pair: LocalPair) -> None:
    start_pair(pair)
    pair.start_module("alpha", key=pair.client_key("operator"))  # admin, but not module
    wait_until(
        lambda: "lacks the Module right" in (pair.a.data_dir / "module.stderr").read_text(),
        10,
        message="the module to be refused",
    )
    assert "registered with the notifier" not in (pair.a.data_dir / "module.stderr").read_text()
