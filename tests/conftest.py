"""Shared test helpers and fixtures.

- :func:`wait_until` polls a predicate with a deadline: the one place in the test suite that sleeps
  (a short ``interval`` between polls). Tests never sleep to wait for something to happen.
- :func:`free_tcp_ports` hands out loopback TCP ports that nothing listens on.
- ``two_nodes``: two real ``switchover node`` processes (A and B) on 127.0.0.1 with their own
  ports and data directories under ``tmp_path``; both are always terminated at teardown.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# --------------------------------------------------------------------------------------- polling


def _poll(predicate: Callable[[], Any], timeout: float, interval: float) -> tuple[Any, BaseException | None]:
    """Call ``predicate`` every ``interval`` s until it returns something truthy or ``timeout`` s pass;
    the last result and the last exception it raised (exceptions count as "not yet").

    The one place in the tests that sleeps: the pause between two polls.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
        except Exception as exc:  # not ready yet; shown if it never becomes ready
            result, last_error = None, exc
        if result or time.monotonic() >= deadline:
            return result, last_error
        time.sleep(interval)  # the one allowed sleep: the pause between two polls


def wait_until(
    predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01, message: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` s pass (fails).

    Exceptions raised by the predicate count as "not yet"; the last one is shown on failure.
    """
    result, last_error = _poll(predicate, timeout, interval)
    if not result:
        detail = f"; last error: {last_error!r}" if last_error is not None else ""
        pytest.fail(f"timed out after {timeout:g} s waiting for {message or predicate!r}{detail}")
    return result


def poll_result(predicate: Callable[[], Any], timeout: float, interval: float = 0.01) -> Any:
    """Like :func:`wait_until` but returns the last (falsy) value instead of failing at the deadline."""
    return _poll(predicate, timeout, interval)[0]


# ---------------------------------------------------------------------------------------- ports


def free_tcp_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture
def free_port() -> int:
    return free_tcp_ports(1)[0]


@pytest.fixture
def free_ports() -> Callable[[int], list[int]]:
    return free_tcp_ports


# ------------------------------------------------------------------------------------- processes


def switchover_command() -> list[str]:
    """The ``switchover`` console script of this interpreter (or ``python -m cli.main``)."""
    script = Path(sys.executable).parent / "switchover"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "cli.main"]


def node_config_text(name: str, data_dir: Path, ports_a: list[int], ports_b: list[int], **extra: str) -> str:
    """A TOML config for node ``name`` of an A/B pair on 127.0.0.1 (plain text transport)."""
    lines = [
        "[node]",
        f'name = "{name}"',
        f'data_dir = "{data_dir}"',
        'log_level = "DEBUG"',
    ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    for table, srv, ports in (("server_a", "A", ports_a), ("server_b", "B", ports_b)):
        lines += [
            "",
            f"[{table}]",
            f'name = "{srv}"',
            'address = "127.0.0.1"',
            f"vswitch_port = {ports[0]}",
            f"notifier_port = {ports[1]}",
            f"notifier_aux_port = {ports[2]}",
            *([f"ds_port = {ports[3]}"] if len(ports) > 3 else []),
        ]
    lines += ["", "[security]", "insecure = true"]
    lines += ["", "[timing]", "hello_interval = 0.1", "peer_timeout = 1.0"]
    return "\n".join(lines) + "\n"


@dataclass
class NodeProc:
    """One running ``switchover node`` process and how to talk to it."""

    name: str
    config: Path
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    _log_file: Any = field(default=None, repr=False)

    def start(self) -> NodeProc:
        self._log_file = open(self.log, "ab")  # closed in close()
        self.proc = subprocess.Popen(
            [*switchover_command(), "node", "--config", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def admin_sock(self) -> Path:
        return self.data_dir / "admin.sock"

    def admin(self, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        """Run ``switchover admin --node DIR ARGS...`` and return the completed process."""
        return subprocess.run(
            [*switchover_command(), "admin", "--node", str(self.data_dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def admin_json(self, op: str, *args: str) -> dict[str, Any]:
        """``switchover admin --node DIR OP ARGS... --json`` parsed; fails the test on a non-zero exit."""
        done = self.admin(op, *args, "--json")
        assert done.returncode == 0, f"admin {op} failed ({done.returncode}): {done.stderr}"
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def call(self, op: str, args: dict[str, Any] | None = None, timeout: float = 2.0) -> dict[str, Any]:
        """The same request in-process (fast, for polling)."""
        from transport.admin_client import admin_call

        return admin_call(str(self.data_dir), op, args, timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL if it did not stop; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)

    def close(self) -> None:
        try:
            self.terminate()
        finally:
            self.kill()
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None


@dataclass
class NodePair:
    a: NodeProc
    b: NodeProc
    ports: dict[str, list[int]]

    @property
    def nodes(self) -> tuple[NodeProc, NodeProc]:
        return (self.a, self.b)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Until both admin sockets answer a ping (fails early if a process exits)."""
        for node in self.nodes:

            def ready(n: NodeProc = node) -> bool:
                assert n.proc is not None
                if n.proc.poll() is not None:
                    pytest.fail(f"node {n.name} exited with {n.proc.returncode}:\n{n.output()[-3000:]}")
                return n.admin_sock.exists() and bool(n.call("ping", timeout=0.5).get("pong"))

            wait_until(ready, timeout, 0.02, f"node {node.name} to answer on its admin socket")


def make_pair(root: Path) -> NodePair:
    """Write configs for A and B under ``root`` (not started)."""
    ports = free_tcp_ports(8)
    ports_a, ports_b = ports[:3] + ports[6:7], ports[3:6] + ports[7:]
    nodes = []
    for name in ("A", "B"):
        data = root / f"data{name}"
        cfg = root / f"{name}.toml"
        cfg.write_text(node_config_text(name, data, ports_a, ports_b))
        nodes.append(NodeProc(name, cfg, data, root / f"{name}.log"))
    return NodePair(nodes[0], nodes[1], {"A": ports_a, "B": ports_b})


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[NodePair]:
    """Nodes A and B running as real processes, ready (admin socket answers); always stopped after."""
    pair = make_pair(tmp_path)
    try:
        for node in pair.nodes:
            node.start()
        pair.wait_ready()
        yield pair
    finally:
        for node in pair.nodes:
            node.close()
