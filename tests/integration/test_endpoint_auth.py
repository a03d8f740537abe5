"""Access control in :class:`transport.endpoint.Endpoint` with pyzmq's ZAP authenticator, in one
process over real TCP sockets: the client's name arrives with each message, rights are checked
per message type, a refused request is answered with the reason, nothing else is delivered."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from actors.runtime.base import NodeActor
from actors.runtime.clock import RealClock
from actors.runtime.context import NodeContext
from tests.conftest import wait_until
from transport.auth import GROUP_USER, AccessControl, Client, PairAuthenticator, Right, save_clients
from transport.codec import Envelope
from transport.endpoint import Endpoint, EndpointOptions, RequestTimeout, SendFailed
from transport.messages import (
    CommandReply,
    ErrorReply,
    Hello,
    Message,
    QueryState,
    SwitchRequest,
)
from transport.security import Security

TIMEOUT = 5.0


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.group = zmq.curve_keypair()
        self.watcher = zmq.curve_keypair()
        save_clients(
            tmp_path / "clients.toml",
            [Client("watcher", self.watcher[0].decode(), frozenset({Right.MONITOR}))],
        )
        self.access = AccessControl(self.group[0].decode(), tmp_path / "clients.toml")
        self.auth = PairAuthenticator(self.ctx, self.access)
        self.auth.start()
        self.inbox: queue.Queue[Envelope] = queue.Queue()
        self.endpoints: list[Endpoint] = []

        def on_message(env: Envelope, peer: bytes | None) -> None:
            self.inbox.put(env)
            if env.kind == 1:
                self.server.reply(env, CommandReply(True, f"hello {env.user}"), to=peer)

        self.server = self.add(
            Endpoint(
                "test.server",
                "server",
                "tcp://127.0.0.1:*",
                node="n",
                on_message=on_message,
                security=Security.curve_group(*self.group, access=self.access),
                context=self.ctx,
            )
        )

    def add(self, endpoint: Endpoint) -> Endpoint:
        self.endpoints.append(endpoint.start())
        return endpoint

    def client(self, security: Security, identity: bytes | None = None) -> Endpoint:
        return self.add(
            Endpoint(
                "test.client",
                "client",
                self.server.bound_address,
                node="c",
                on_message=lambda env, peer: None,
                security=security,
                context=self.ctx,
                options=EndpointOptions(immediate=False),
                identity=identity,
            )
        )

    def ask(self, client: Endpoint, msg: Message, timeout: float = TIMEOUT) -> Message:
        return client.request(msg, timeout=timeout).result(timeout + 1).msg

    def close(self) -> None:
        for e in self.endpoints:
            e.stop()
        self.auth.stop()
        self.ctx.term()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def test_the_client_name_travels_with_each_request(world: World) -> None:
    client = world.client(Security.client(world.group[0], *world.watcher))
    assert world.ask(client, QueryState("me")) == CommandReply(True, "hello watcher")
    env = world.inbox.get(timeout=TIMEOUT)
    assert env.user == "watcher" and env.peer_address == "127.0.0.1"


def test_the_group_key_is_the_peer_node_with_every_right(world: World) -> None:
    client = world.client(Security.curve_group(*world.group))
    assert world.ask(client, SwitchRequest("peer")) == CommandReply(True, f"hello {GROUP_USER}")
    client.send(Hello("peer", "Backup", 1, "1", 0.0))
    assert world.inbox.get(timeout=TIMEOUT).user == GROUP_USER  # the request
    assert isinstance(world.inbox.get(timeout=TIMEOUT).msg, Hello)


def test_a_request_beyond_the_rights_is_answered_with_the_reason_and_not_delivered(world: World) -> None:
    client = world.client(Security.client(world.group[0], *world.watcher))
    reply = world.ask(client, SwitchRequest("watcher"))
    assert reply == ErrorReply("user watcher lacks the Remote Control right", "SwitchRequest")
    client.send(Hello("fake-peer", "Primary", 99, "1", 0.0))  # node-to-node only: dropped
    assert world.ask(client, QueryState("me")) == CommandReply(True, "hello watcher")
    delivered = [world.inbox.get(timeout=TIMEOUT)]
    assert [type(e.msg) for e in delivered] == [QueryState] and world.inbox.empty()
    assert world.server.stats.refused == 2


def test_an_unknown_key_gets_nothing_until_it_is_authorized_and_reloaded(
    world: World, tmp_path: Path
) -> None:
    stranger = zmq.curve_keypair()
    client = world.client(Security.client(world.group[0], *stranger))
    with pytest.raises((RequestTimeout, SendFailed)):  # no answer, or no connection to send on
        world.ask(client, QueryState("me"), timeout=0.5)
    assert world.access.counters["handshake_unknown_key"] >= 1 and world.inbox.empty()
    clients = [*world.access.clients(), Client("stranger", stranger[0].decode(), frozenset({Right.MONITOR}))]
    save_clients(tmp_path / "clients.toml", clients)
    assert world.access.reload()["added"] == ["stranger"]
    # the endpoint retries a refused handshake at its reconnect interval
    answer = wait_until(lambda: world.ask(client, QueryState("me"), timeout=0.5), 10, 0.1)
    assert answer == CommandReply(True, "hello stranger")


class _Opener(NodeActor):
    actor_name = "Opener"

    def started(self) -> None:
        self.tcp = self.open_endpoint("opener.server", "server", "tcp://127.0.0.1:*")
        self.ipc = self.open_endpoint("opener.ipc", "server", f"ipc://{self.ctx.config}/x.sock")


def test_an_actor_s_tcp_endpoints_get_the_node_s_security_by_default(world: World, tmp_path: Path) -> None:
    """New server sockets (replication) are CURVE and rights-checked without passing anything."""
    node_security = Security.curve_group(*world.group, access=world.access)
    ctx = NodeContext(
        node="n", clock=RealClock(), config=str(tmp_path), zmq=world.ctx, security=node_security
    )
    ref = _Opener.start(ctx)
    try:
        wait_until(lambda: len(ctx.endpoints.all()) == 2, message="the actor to open both endpoints")
        endpoints = {e.name: e for e in ctx.endpoints.all()}
        assert endpoints["opener.server"].security is node_security
        assert endpoints["opener.ipc"].security.insecure  # a local socket: its file mode protects it
    finally:
        ref.stop()
        ctx.clock.stop()  # type: ignore[attr-defined]
