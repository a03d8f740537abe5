"""Two real ``switchover node`` processes on 127.0.0.1, driven through ``switchover admin``."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import NodePair, NodeProc, make_pair, switchover_command, wait_until
from transport.admin_client import AdminCallError


def peer_reachable(node: NodeProc) -> bool:
    result = node.admin_json("actors")
    peer = result.get("peer") or {}
    return bool(peer.get("reachable"))


def actor_rows(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in result["actors"]}


def test_each_node_sees_the_other_within_2_s(two_nodes: NodePair) -> None:
    start = time.monotonic()  # both nodes answer on their admin sockets by now
    for node in two_nodes.nodes:
        # poll in-process (a CLI run costs a few hundred ms); then check through the CLI too
        wait_until(lambda n=node: n.call("actors")["peer"]["reachable"], 2.0 - (time.monotonic() - start), 0.02,
                   f"node {node.name} to see its peer")
    assert time.monotonic() - start < 2.0
    for node in two_nodes.nodes:
        assert peer_reachable(node)
    a, b = (n.admin_json("actors") for n in two_nodes.nodes)
    assert a["node"] == "A" and a["peer"]["name"] == "B"
    assert b["node"] == "B" and b["peer"]["name"] == "A"
    assert a["peer"]["last_seen_ago"] is not None and a["peer"]["last_seen_ago"] < 1.0


def test_admin_actors_lists_the_supervisor_and_its_children(two_nodes: NodePair) -> None:
    for node in two_nodes.nodes:
        result = node.admin_json("actors")
        rows = actor_rows(result)
        assert {"Supervisor", "Admin", "VirtualSwitch"} <= set(rows), sorted(rows)
        for name in ("Supervisor", "Admin", "VirtualSwitch"):
            assert rows[name]["alive"] is True
            assert rows[name]["incarnation"] == 1 and rows[name]["restarts"] == 0
        # the table form works too
        table = node.admin("actors")
        assert table.returncode == 0, table.stderr
        assert "VirtualSwitch" in table.stdout and "Admin" in table.stdout


def test_crashed_virtual_switch_is_back_within_1_s(two_nodes: NodePair) -> None:
    a = two_nodes.a
    done = a.admin("inject", "--crash", "VirtualSwitch")
    assert done.returncode == 0, done.stderr
    crashed_at = time.monotonic()

    def restarted() -> dict[str, Any] | None:
        row = actor_rows(a.call("actors"))["VirtualSwitch"]
        return row if row["alive"] and row["incarnation"] == 2 else None

    row = wait_until(restarted, 1.0, 0.02, "VirtualSwitch incarnation 2")
    assert time.monotonic() - crashed_at < 1.0
    assert row["restarts"] == 1
    assert "crash injected" in row["last_failure"]
    rows = actor_rows(a.admin_json("actors"))  # and through the command line
    assert rows["VirtualSwitch"]["incarnation"] == 2 and rows["VirtualSwitch"]["restarts"] == 1
    assert rows["Admin"]["incarnation"] == 1
    # the new incarnation talks to the peer again
    wait_until(lambda: peer_reachable(a), 5.0, 0.05, "A to see B again after the restart")


def test_admin_ping_round_trips(two_nodes: NodePair) -> None:
    for node in two_nodes.nodes:
        result = node.admin_json("ping")
        assert result["pong"] is True and result["node"] == node.name and result["pid"] == node.pid
        plain = node.admin("ping")
        assert plain.returncode == 0 and "pong: True" in plain.stdout


def test_admin_endpoints_lists_the_endpoints(two_nodes: NodePair) -> None:
    result = two_nodes.a.admin_json("endpoints")
    names = {e["name"] for e in result["endpoints"]}
    assert {"admin", "vswitch.server", "vswitch.peer"} <= names
    vswitch = next(e for e in result["endpoints"] if e["name"] == "vswitch.server")
    assert vswitch["address"] == f"tcp://127.0.0.1:{two_nodes.ports['A'][0]}"


def test_unknown_admin_op_gives_a_clear_error_and_the_node_keeps_serving(two_nodes: NodePair) -> None:
    a = two_nodes.a
    with pytest.raises(AdminCallError) as info:
        a.call("no-such-op")
    text = str(info.value)
    assert "unknown admin operation 'no-such-op'" in text and "ping" in text  # lists the known ones
    # from the command line: argparse refuses it before anything is sent
    cli = a.admin("no-such-op")
    assert cli.returncode != 0 and "no-such-op" in cli.stderr
    # a refused request: the error goes back as is
    refused = a.admin("inject", "--crash", "NoSuchActor")
    assert refused.returncode == 1 and "no running actor named 'NoSuchActor'" in refused.stderr
    assert a.admin_json("ping")["pong"] is True
    assert a.proc is not None and a.proc.poll() is None


def test_sigterm_stops_each_node_cleanly(two_nodes: NodePair) -> None:
    pids = {node.name: node.pid for node in two_nodes.nodes}
    for node in two_nodes.nodes:
        assert node.proc is not None and node.admin_sock.exists()
        node.proc.send_signal(signal.SIGTERM)
    for node in two_nodes.nodes:
        assert node.proc is not None
        try:
            code = node.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"node {node.name} did not stop within 10 s of SIGTERM:\n{node.output()[-3000:]}")
        assert code == 0, f"node {node.name} exited with {code}:\n{node.output()[-3000:]}"
        assert not psutil.pid_exists(pids[node.name])
        assert not node.admin_sock.exists(), f"{node.admin_sock} left behind"
        assert "stopped" in node.output()
    # and nothing else of ours is left: no process still runs either config
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        assert str(two_nodes.a.config) not in cmdline and str(two_nodes.b.config) not in cmdline


def test_admin_without_a_running_node_says_so(tmp_path: Path) -> None:
    done = subprocess.run(
        [*switchover_command(), "admin", "--node", str(tmp_path), "ping"],
        capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert "no node is running" in done.stderr


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda text: text.replace("vswitch_port = ", "vswitch_prot = ", 1), "server_a.vswitch_prot"),
        (lambda text: text.replace('name = "A"', 'name = "C"', 1), "node.name"),
        (lambda text: text.replace("insecure = false", "insecure = 0"), "security.insecure"),
        (lambda text: text.replace("[node]", "[node]\nlog_levl = 'INFO'"), "node.log_levl"),
    ],
)
def test_bad_config_exits_non_zero_naming_the_key(tmp_path: Path, mutate: Any, key: str) -> None:
    pair = make_pair(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text(mutate(pair.a.config.read_text()))
    done = subprocess.run(
        [*switchover_command(), "node", "--config", str(bad)],
        capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
    )
    assert done.returncode != 0
    assert key in done.stderr, done.stderr
    assert "config error" in done.stderr
    assert not (pair.a.data_dir / "admin.sock").exists()


def test_missing_config_file_exits_non_zero(tmp_path: Path) -> None:
    done = subprocess.run(
        [*switchover_command(), "node", "--config", str(tmp_path / "absent.toml")],
        capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
    )
    assert done.returncode != 0
    assert "absent.toml" in done.stderr


def test_admin_json_option_before_the_operation_too(two_nodes: NodePair) -> None:
    done = two_nodes.b.admin("--json", "actors")
    assert done.returncode == 0
    assert isinstance(json.loads(done.stdout)["actors"], list)
