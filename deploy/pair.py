"""Generate the configuration of a two-node pair and run it as local processes.

Used by ``switchover demo``, the integration tests and the benchmarks: one place that knows
how to write both configs and start, wait for and stop the node and module processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def child_env() -> dict[str, str]:
    """The environment for node/module/ctl processes: this checkout's code, whatever pip points at."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# A tight but legal profile for fast tests on loopback: the spec's floors still hold
# (TS Timeout >= 5 s); everything without a floor is short.
FAST_PARAMETERS: dict[str, str] = {
    "Switchover TS Timeout": "5",
    "Switchover TS Failure Retry Delay": "0.2",
    "Switchover Max TS Failures": "2",
    "Switchover Primary Monitor Ping Delay": "0.1",
    "Switchover Primary Monitor Timeout": "0.3",
    "Switchover Primary Monitor Retry Count": "1",
    "Switchover Primary Monitor Retry Ping Delay": "0.05",
    "Switchover Reconnect Timeout": "2",
    "Switchover Unreachable Primary Ping Delay": "1",
    "Switchover NetTest Timeout": "0.2",
}


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that were free a moment ago on 127.0.0.1."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(
    node: str,
    data_dir: Path,
    servers: dict[str, dict[str, Any]],
    parameters: dict[str, str],
    extra: dict[str, dict[str, Any]] | None = None,
    release: str = "1.0.0",
    log_level: str = "INFO",
    security: dict[str, Any] | None = None,
) -> str:
    lines = [
        "[node]",
        f"name = {_toml_value(node)}",
        f"data_dir = {_toml_value(str(data_dir))}",
        f"release = {_toml_value(release)}",
        f"log_level = {_toml_value(log_level)}",
        "",
    ]
    for key in ("server_a", "server_b"):
        lines.append(f"[{key}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in servers[key].items()]
        lines.append("")
    lines += [
        "[security]",
        *(f"{k} = {_toml_value(v)}" for k, v in (security or {"insecure": True}).items()),
        "",
    ]
    if parameters:
        lines.append("[parameters]")
        lines += [f"{_toml_value(k)} = {_toml_value(v)}" for k, v in parameters.items()]
        lines.append("")
    for table, values in (extra or {}).items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        lines.append("")
    return "\n".join(lines)


@dataclass
class PairNode:
    name: str
    config: Path
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    module: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)


@dataclass
class LocalPair:
    """Two nodes (``alpha`` = server A, ``beta`` = server B) on 127.0.0.1 under ``base``."""

    base: Path
    parameters: dict[str, str] = field(default_factory=dict)
    release: dict[str, str] = field(default_factory=dict)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    names: tuple[str, str] = ("alpha", "beta")
    security: dict[str, Any] | None = None  # the [security] table; default plain text
    address: str = "127.0.0.1"

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        ports = free_ports(8)
        servers = {
            "server_a": {
                "name": self.names[0],
                "address": self.address,
                "vswitch_port": ports[0],
                "notifier_port": ports[1],
                "notifier_aux_port": ports[2],
                "ds_port": ports[6],
            },
            "server_b": {
                "name": self.names[1],
                "address": self.address,
                "vswitch_port": ports[3],
                "notifier_port": ports[4],
                "notifier_aux_port": ports[5],
                "ds_port": ports[7],
            },
        }
        self.nodes: dict[str, PairNode] = {}
        for name in self.names:
            data = self.base / name
            data.mkdir(parents=True, exist_ok=True)
            cfg = self.base / f"{name}.toml"
            cfg.write_text(
                render_config(
                    name,
                    data,
                    servers,
                    self.parameters,
                    self.extra,
                    self.release.get(name, "1.0.0"),
                    security=self.security,
                )
            )
            self.nodes[name] = PairNode(name, cfg, data)

    @property
    def a(self) -> PairNode:
        return self.nodes[self.names[0]]

    @property
    def b(self) -> PairNode:
        return self.nodes[self.names[1]]

    def start_node(self, name: str, *args: str) -> PairNode:
        node = self.nodes[name]
        with open(node.data_dir / "node.stderr", "ab") as log:
            node.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "node", "--config", str(node.config), *args],
                stdout=log,
                stderr=log,
                start_new_session=True,
                env=child_env(),
            )
        return node

    def start_module(self, name: str, module: str = "TsServer") -> PairNode:
        node = self.nodes[name]
        with open(node.data_dir / "module.stderr", "ab") as log:
            node.module = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cli.main",
                    "module",
                    "run",
                    "--name",
                    module,
                    "--config",
                    str(node.config),
                ],
                stdout=log,
                stderr=log,
                start_new_session=True,
                env=child_env(),
            )
        return node

    def admin(
        self, name: str, op: str, args: dict[str, Any] | None = None, timeout: float = 3.0
    ) -> dict[str, Any]:
        from transport.admin_client import admin_call

        return admin_call(str(self.nodes[name].data_dir), op, args or {}, timeout)

    def role(self, name: str) -> str | None:
        from transport.admin_client import AdminCallError

        try:
            return str(self.admin(name, "status", timeout=1.0)["role"])
        except AdminCallError:
            return None

    def roles(self) -> dict[str, str | None]:
        return {n: self.role(n) for n in self.names}

    def ctl(
        self, *args: str, input_text: str | None = None, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "ctl", "--config", str(self.a.config), *args],
            capture_output=True,
            text=True,
            env=child_env(),
            input=input_text,
            timeout=timeout,
        )

    def signal(self, name: str, sig: int, module: bool = False) -> None:
        node = self.nodes[name]
        proc = node.module if module else node.proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, sig)

    def stop(self) -> None:
        for node in self.nodes.values():
            for proc in (node.module, node.proc):
                if proc is not None and proc.poll() is None:
                    try:
                        os.kill(proc.pid, signal.SIGCONT)
                        proc.terminate()
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=5)


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``predicate`` until it returns a truthy value; raise TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(interval)
