"""Operator mistakes against real ``switchover`` processes (issue 9, defect 5): each is refused with
a clear one-line message and the documented exit code, and nothing of a running node is touched."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# ------------------------------------------------------------------------------- ctl (the control panel)


def test_ctl_status_and_history_exit_non_zero_when_no_node_answers(pair: NodePair) -> None:
    config = str(pair.a.config)
    status = run_switchover("ctl", "--config", config, "status", "--timeout", "0.5")
    assert status.returncode == 1, status.stdout + status.stderr
    assert "not connected" in status.stdout  # the view is still printed
    assert "no server answered" in status.stderr and "Traceback" not in status.stderr
    as_json = run_switchover("ctl", "--config", config, "status", "--json", "--timeout", "0.5")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["active"] is None
    history = run_switchover("ctl", "--config", config, "history", "--timeout", "0.5")
    assert history.returncode == 1, history.stdout + history.stderr
    assert "no server answered" in history.stderr and "Traceback" not in history.stderr


def test_ctl_history_limit_prints_that_many_rows(pair: NodePair) -> None:
    for node in pair.nodes:
        node.start()
    pair.wait_ready()
    config = str(pair.a.config)
    wait_until(lambda: pair.b.call("status")["role"] == "Backup", 20, 0.05, "B to become Backup")

    def rows(*extra: str) -> list[dict[str, Any]]:
        done = run_switchover("ctl", "--config", config, "history", "--json", *extra)
        assert done.returncode == 0, done.stderr
        result: list[dict[str, Any]] = json.loads(done.stdout)
        return result

    # start-up gives one row per server; a switch adds one more per server
    switched = run_switchover("ctl", "--config", config, "switch", "--yes")
    assert switched.returncode == 0, switched.stdout + switched.stderr
    wait_until(lambda: pair.b.call("status")["role"] == "Primary", 20, 0.05, "B to become Primary")

    def at_least_three() -> list[dict[str, Any]] | None:
        found = rows()
        return found if len(found) >= 3 else None

    everything = wait_until(at_least_three, 10, 0.2, "3 history rows")
    assert len(rows("--limit", "1")) == 1
    two = rows("--limit", "2")
    assert len(two) == 2
    assert two == everything[-2:]  # the most recent ones
    table = run_switchover("ctl", "--config", config, "history", "--limit", "1")
    assert table.returncode == 0, table.stderr
    assert sum(" -> " in line for line in table.stdout.splitlines()) == 1
    refused = run_switchover("ctl", "--config", config, "history", "--limit", "0")
    assert refused.returncode == 2 and "--limit" in refused.stderr
    # ``ctl history | head``: the table into a pipe nobody reads any more
    assert_quiet_broken_pipe(run_into_a_closed_pipe("ctl", "--config", config, "history"))


def run_into_a_closed_pipe(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``switchover ARGV`` with stdout a pipe whose reader is already gone (``| head`` after it
    read its line): every write fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [*switchover_command(), *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    finally:
        os.close(write_end)


def assert_quiet_broken_pipe(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 128 + signal.SIGPIPE, done.stderr


@pytest.mark.parametrize(
    "args", [("keys", "generate", "{keys}"), ("ctl", "{config}", "status", "--timeout", "0.3")]
)
def test_no_broken_pipe_traceback_when_the_reader_has_gone(pair: NodePair, args: tuple[str, ...]) -> None:
    fields = {"config": f"--config={pair.a.config}", "keys": f"--dir={pair.a.config.parent / 'fresh-keys'}"}
    assert_quiet_broken_pipe(run_into_a_closed_pipe(*(a.format(**fields) for a in args)))


# ---------------------------------------------------------------------------------------- demo


def test_demo_runs_and_says_what_became_of_its_files(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # its temporary directory goes under tmp_path
    done = subprocess.run(
        [*switchover_command(), "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    made = [p for p in tmp_path.iterdir() if p.name.startswith("switchover-demo-")]
    assert last.startswith("demo files removed (") and "--keep-files" in last, last
    assert made == [], f"left behind: {made}"
    assert str(tmp_path / "switchover-demo-") in last
