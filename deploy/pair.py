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

from actors.config import SERVER_PORTS

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
    http_port: int = 0  # its HTTP endpoint (/health, /primary, /backup, /metrics)
    extra_args: list[str] = field(default_factory=list)


@dataclass
class LocalPair:
    """Two nodes (``alpha`` = server A, ``beta`` = server B) on 127.0.0.1 under ``base``."""

    base: Path
    parameters: dict[str, str] = field(default_factory=dict)
    release: dict[str, str] = field(default_factory=dict)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    names: tuple[str, str] = ("alpha", "beta")
    security: dict[str, Any] | None = None  # the [security] table; default: see ``curve``
    address: str = "127.0.0.1"
    # CURVE (the default) with keys made under base/keys: the group keypair, an "operator" (admin)
    # that the configs name as client_key (ctl), and a "module" key the modules run with.
    # False: plain text (the nodes warn about it at every start).
    curve: bool = True

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.keys = self.base / "keys"
        if self.security is not None and self.security.get("insecure"):
            self.curve = False
        if self.security is None and self.curve:
            self.security = make_keys(self.keys)
        n = len(SERVER_PORTS)
        ports = free_ports(2 * n + 2)
        http_ports = dict(zip(self.names, ports[2 * n :], strict=True))
        servers = {
            table: {
                "name": name,
                "address": self.address,
                **dict(zip(SERVER_PORTS, ports[i * n : (i + 1) * n], strict=True)),
            }
            for i, (table, name) in enumerate((("server_a", self.names[0]), ("server_b", self.names[1])))
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
                    {**self.extra, "http": {"port": http_ports[name], **self.extra.get("http", {})}},
                    self.release.get(name, "1.0.0"),
                    security=self.security,
                )
            )
            self.nodes[name] = PairNode(name, cfg, data, http_port=http_ports[name])

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

    def security_for(self, client: str = "operator") -> Any:
        """The :class:`~transport.security.Security` of a client of this pair (plain text if it is)."""
        from transport.security import Security, client_security

        if not self.curve:
            return Security.plain()
        return client_security(
            False, str(self.keys / "server-group.key_secret"), str(self.client_key(client))
        )

    def client_key(self, client: str) -> Path:
        """The secret key file of a client made by :func:`make_keys` (or ``add_client``)."""
        return self.keys / "clients.d" / f"{client}.key_secret"

    def add_client(self, client: str, rights: str) -> Path:
        """``switchover keys add-client`` into this pair's keys directory; the secret key file."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli.main",
                "keys",
                "add-client",
                client,
                "--rights",
                rights,
                "--dir",
                str(self.keys),
            ],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=30,
        )
        if done.returncode != 0:
            raise RuntimeError(f"keys add-client {client} failed: {done.stderr}")
        return self.client_key(client)

    def start_module(self, name: str, module: str = "TsServer", key: Path | None = None) -> PairNode:
        node = self.nodes[name]
        if key is None and self.curve and self.client_key("module").exists():
            key = self.client_key("module")
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
                    *(["--key", str(key)] if key is not None else []),
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
        self, *args: str, input_text: str | None = None, timeout: float = 30.0, key: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        with_key = ["--key", str(key)] if key is not None else []
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "ctl", "--config", str(self.a.config), *with_key, *args],
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


DEFAULT_CLIENTS = (("operator", "admin"), ("module", "module,app"), ("app", "app"))


def make_keys(
    keys: Path, clients: tuple[tuple[str, str], ...] = DEFAULT_CLIENTS, client_key: str = "operator"
) -> dict[str, Any]:
    """The server group keypair and ``clients`` (name, rights) under ``keys``, as ``switchover
    keys`` makes them (by default an ``operator`` with the admin right and a ``module`` key with
    module and app). Returns the [security] table: the group key, and ``client_key`` as the local
    tools' key. Keys made before are kept (a pair's nodes share them)."""
    from transport.auth import Client, load_clients, parse_rights, save_clients
    from transport.security import GROUP_KEY_NAME, load_public, write_keypair

    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    group = keys / f"{GROUP_KEY_NAME}.key_secret"
    if not group.exists():
        write_keypair(keys, GROUP_KEY_NAME)
    known = load_clients(keys / "clients.toml")
    for client, rights in clients:
        if client not in known:
            pub, _ = write_keypair(keys / "clients.d", client)
            known[client] = Client(client, load_public(pub).decode(), parse_rights(rights))
    save_clients(keys / "clients.toml", known.values())
    return {"group_key": str(group), "client_key": str(keys / "clients.d" / f"{client_key}.key_secret")}


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
