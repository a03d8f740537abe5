"""Fuzz a CURVE node's ports (bounded, hypothesis): random bytes, and random mutations of a
well-formed ZMTP 3.0 CURVE handshake (greeting + HELLO), against the VirtualSwitch, Notifier main
and aux ports of a running node. The node must not crash, must not grow without bound, and must
keep serving a client with a valid key."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploy.pair import LocalPair
from tests.conftest import wait_until
from transport.client import query_state
from transport.security import client_security

TIMING = {"timing": {"startup_wait": 0.5}}


def greeting(mechanism: bytes = b"CURVE") -> bytes:
    return (
        b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + mechanism.ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
    )


def hello_command(body: bytes) -> bytes:
    """A CURVE HELLO: version, 72 bytes padding, client transient key, short nonce, signature box."""
    payload = (
        b"\x05HELLO"
        + b"\x01\x00"
        + b"\x00" * 72
        + body[:32].ljust(32, b"\x01")
        + body[32:40].ljust(8, b"\x02")
    )
    payload += body[40:120].ljust(80, b"\x03")
    return b"\x04" + bytes([len(payload)]) + payload


class Node:
    def __init__(self, tmp: Path) -> None:
        self.pair = LocalPair(tmp / "pair", extra=dict(TIMING), curve=True)
        self.pair.start_node("alpha")
        wait_until(lambda: self.pair.role("alpha") == "Primary", 20, message="alpha Primary")
        text = self.pair.a.config.read_text().split("[server_a]")[1].split("[server_b]")[0]
        self.ports = [
            int(text.split(f"{key} = ")[1].split("\n")[0])
            for key in ("vswitch_port", "notifier_port", "notifier_aux_port")
        ]
        assert self.pair.a.proc is not None
        self.proc = psutil.Process(self.pair.a.proc.pid)
        group = self.pair.keys / "server-group.key_secret"
        self.security = client_security(False, str(group), str(self.pair.client_key("operator")))

    def send(self, port: int, data: bytes) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            try:
                s.sendall(data)
                s.settimeout(0.02)
                s.recv(4096)
            except OSError:
                pass  # reset or nothing to read: both fine

    def serves(self) -> bool:
        return query_state(f"tcp://127.0.0.1:{self.ports[0]}", 2.0, self.security).role == "Primary"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = Node(tmp_path_factory.mktemp("fuzz"))
    try:
        yield n
    finally:
        n.pair.stop()


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for index, value in edits:
        out[index % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(port=st.integers(0, 2), data=st.binary(max_size=300))
def test_random_bytes_do_not_hurt_the_node(node: Node, port: int, data: bytes) -> None:
    node.send(node.ports[port], data)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    port=st.integers(0, 2),
    body=st.binary(min_size=0, max_size=120),
    edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 266)),
    mechanism=st.sampled_from([b"CURVE", b"NULL", b"PLAIN", b"CURVEX"]),
)
def test_mutated_curve_handshakes_do_not_hurt_the_node(
    node: Node, port: int, body: bytes, edits: list[tuple[int, int]], cut: int | None, mechanism: bytes
) -> None:
    node.send(node.ports[port], mutate(greeting(mechanism) + hello_command(body), edits, cut))


def test_after_the_fuzzing_the_node_serves_and_has_not_grown(node: Node) -> None:
    before = node.proc.memory_info().rss
    for i in range(300):
        node.send(node.ports[i % 3], greeting() + hello_command(bytes([i % 256]) * 120))
    assert node.proc.is_running() and node.proc.status() != psutil.STATUS_ZOMBIE
    assert node.serves()
    grown = node.proc.memory_info().rss - before
    assert grown < 30 * 1024 * 1024, f"the node grew by {grown / 1e6:.1f} MB over 300 bad handshakes"
    assert node.pair.admin("alpha", "security")["refused"].get("handshake_failed", 0) > 0
