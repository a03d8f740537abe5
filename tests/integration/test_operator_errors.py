"""Operator mistakes against real ``switchover`` processes (issue 9, defect 5): each is refused with
a clear one-line message and the documented exit code, and nothing of a running node is touched."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import NodePair, NodeProc, make_pair, switchover_command, wait_until


def run_switchover(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*switchover_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def wait_answering(node: NodeProc, timeout: float = 10.0) -> None:
    def ready() -> bool:
        assert node.proc is not None
        if node.proc.poll() is not None:
            pytest.fail(f"node {node.name} exited with {node.proc.returncode}:\n{node.output()[-3000:]}")
        return node.admin_sock.exists() and bool(node.call("ping", timeout=0.5).get("pong"))

    wait_until(ready, timeout, 0.02, f"node {node.name} to answer on its admin socket")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[NodePair]:
    """Configs for A and B; the test starts what it needs; everything started is stopped after."""
    the_pair = make_pair(tmp_path)
    try:
        yield the_pair
    finally:
        for node in the_pair.nodes:
            node.close()


def test_second_node_on_a_data_directory_in_use_refuses_and_touches_nothing(pair: NodePair) -> None:
    a = pair.a
    a.start()
    wait_answering(a)
    wait_until(lambda: a.call("status")["role"] == "Primary", 15, 0.05, "A (alone) to become Primary")
    events = a.data_dir / "events.jsonl"
    history = events.read_bytes()
    assert history, "A recorded its start-up in its history"
    sock_inode = a.admin_sock.stat().st_ino
    log_before = (a.data_dir / "switchover.log").read_text()

    second = run_switchover("node", "--config", str(a.config))

    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr  # one clear line, no traceback
    assert f"in use by node process {a.pid}" in lines[0], lines[0]
    assert str(a.data_dir) in lines[0]
    # the running node is untouched: same admin socket (not deleted and re-created), still answering,
    # the same history, and nothing of the second process in its log file
    assert a.admin_sock.exists() and a.admin_sock.stat().st_ino == sock_inode
    assert a.call("ping")["pid"] == a.pid
    assert events.read_bytes() == history
    log_after = (a.data_dir / "switchover.log").read_text()
    assert log_after.startswith(log_before)
    assert log_after.count("starting node A") == 1
    assert a.call("status")["role"] == "Primary"
    assert (a.data_dir / "node.lock").read_text().strip() == str(a.pid)


def test_the_lock_goes_with_the_process_so_a_restart_after_kill_9_works(pair: NodePair) -> None:
    a = pair.a
    a.start()
    wait_answering(a)
    a.kill()  # SIGKILL: no clean-up at all, the lock file stays with the dead PID in it
    assert (a.data_dir / "node.lock").exists()
    a.start()
    wait_answering(a)
    assert a.call("ping")["pid"] == a.pid


def test_port_in_use_at_start_exits_non_zero_naming_the_port(pair: NodePair) -> None:
    vswitch_port = pair.ports["A"][0]
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", vswitch_port))
        squatter.listen()
        done = run_switchover("node", "--config", str(pair.a.config))
    assert done.returncode not in (0, None), done.stderr
    assert f"127.0.0.1:{vswitch_port}" in done.stderr and "vswitch_port" in done.stderr, done.stderr
    assert "Address already in use" in done.stderr
    assert "Traceback" not in done.stderr
    assert not pair.a.admin_sock.exists()
    # and the lock was given back: the node starts once the port is free
    pair.a.start()
    wait_answering(pair.a)


def config_with(pair: NodePair, old: str, new: str) -> Path:
    text = pair.a.config.read_text()
    assert old in text
    bad = pair.a.config.with_name("bad.toml")
    bad.write_text(text.replace(old, new, 1))
    return bad


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        (
            'log_level = "DEBUG"',
            'log_level = "DEBUG"\n\n[parameters]\n"Switchover Reconect Timeout" = "30"',
            (
                "parameters.Switchover Reconect Timeout",
                "unknown server parameter",
                "Switchover Reconnect Timeout",
            ),
        ),
        (
            'log_level = "DEBUG"',
            'log_level = "DEBUG"\n\n[parameters]\n"Completely Made Up" = "1"',
            ("parameters.Completely Made Up", "unknown server parameter", "param list"),
        ),
        (
            'log_level = "DEBUG"',
            'log_level = "DEBUG"\n\n[parameters]\n"Switchover Reconnect Timeout" = "soon"',
            ("parameters.Switchover Reconnect Timeout", "'soon' is not valid"),
        ),
        ('address = "127.0.0.1"', 'address = "127.0.0.300"', ("server_a.address", "127.0.0.300")),
        ('address = "127.0.0.1"', 'address = "host name with spaces"', ("server_a.address", "host name")),
        ('address = "127.0.0.1"', 'address = ""', ("server_a.address",)),
    ],
)
def test_config_errors_exit_2_with_one_line(
    pair: NodePair, old: str, new: str, words: tuple[str, ...]
) -> None:
    done = run_switchover("node", "--config", str(config_with(pair, old, new)))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("switchover node: config error: "), done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert not pair.a.data_dir.exists()  # refused before anything was created
