"""Applications' interaction API: publish to the local node's InteractionPublisher (its
``interaction_port``, served while the node is active) and get the recovered interactions
after a switch, on Commence or by query.

    client = InteractionsClient("tcp://127.0.0.1:3638")
    client.create("chat-1", "chat", queue="Support")
    client.append("chat-1", "customer", "hello", wait_backup=True)   # answered once the backup holds it
    client.query(type="chat").items

:class:`RecoveryListener` calls back with the node's interactions each time the node commences
(becomes active): the recovered ones have ``seqno`` >= 1 and their original ``created_at``.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import zmq

from transport.client import RoleEventSubscription, Unreachable
from transport.codec import REQUEST, DecodeError, Envelope, decode, encode
from transport.messages import (
    InteractionList,
    InteractionPublish,
    InteractionPublished,
    InteractionQuery,
    Message,
    RoleEvent,
)
from transport.security import Security

_ids = itertools.count(1)


class InteractionRefused(ValueError):
    """The active refused the operation; the text is its reason."""


class InteractionsClient:
    """A persistent connection to one node's interaction port (thread-safe, one request at a time)."""

    def __init__(
        self, address: str, security: Security | None = None, name: str = "app", timeout: float = 5.0
    ) -> None:
        self.address = address
        self.name = name
        self.timeout = timeout
        self._lock = threading.Lock()
        ctx: zmq.Context[Any] = zmq.Context.instance()
        self._sock: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
        self._sock.linger = 0
        # only to a live connection: a request is never held back and applied later, after the
        # caller was told it timed out
        self._sock.setsockopt(zmq.IMMEDIATE, 1)
        (security or Security.plain()).apply(self._sock, server=False)
        self._sock.connect(address)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> InteractionsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ requests
    def _send(self, msg: Message) -> int:
        corr = (os.getpid() << 24) + next(_ids)
        frames = encode(Envelope(msg, self.name, 0, None, REQUEST, corr))
        try:
            self._sock.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            if not self._sock.poll(int(self.timeout * 1000), zmq.POLLOUT):
                raise Unreachable(
                    f"{self.address} is not accepting connections (is the node active?)"
                ) from None
            self._sock.send_multipart(frames, flags=zmq.NOBLOCK)
        return corr

    def _collect(self, corrs: Sequence[int], timeout: float, what: str) -> dict[int, Message]:
        wanted, got = set(corrs), {}
        deadline = time.monotonic() + timeout
        while wanted:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(int(left * 1000) + 1):
                raise Unreachable(f"{self.address} did not answer {what} within {timeout:g} s")
            try:
                env = decode(self._sock.recv_multipart())
            except DecodeError as exc:
                raise Unreachable(f"{self.address} answered a malformed frame: {exc}") from None
            if env.corr in wanted:
                wanted.discard(env.corr)
                got[env.corr] = env.msg
        return got

    def request(self, msg: Message, timeout: float | None = None) -> Message:
        with self._lock:
            corr = self._send(msg)
            return self._collect([corr], timeout or self.timeout, msg.TYPE)[corr]

    # ------------------------------------------------------------------------------- publish
    def publish(
        self,
        op: str,
        iid: str,
        data: dict[str, Any] | None = None,
        wait_backup: bool = False,
        timeout: float = 5.0,
    ) -> InteractionPublished:
        msg = InteractionPublish(op, iid, dict(data or {}), wait_backup, timeout)
        reply = self.request(msg, (timeout if wait_backup else 0.0) + self.timeout)
        return _checked(reply, op, iid)

    def publish_many(
        self, ops: Iterable[tuple[str, str, dict[str, Any]]], wait_backup: bool = False, timeout: float = 30.0
    ) -> list[InteractionPublished]:
        """Pipelined: send them all, then collect the answers (in the order given)."""
        with self._lock:
            sent = [
                (self._send(InteractionPublish(op, iid, dict(d), wait_backup, timeout)), op, iid)
                for op, iid, d in ops
            ]
            replies = self._collect([c for c, _, _ in sent], timeout + self.timeout, f"{len(sent)} publishes")
        return [_checked(replies[c], op, iid) for c, op, iid in sent]

    def create(
        self,
        iid: str,
        type: str,
        queue: str = "",
        agent: str = "",
        state: str = "queued",
        attributes: dict[str, Any] | None = None,
        created_at: float | None = None,
        wait_backup: bool = False,
    ) -> InteractionPublished:
        data: dict[str, Any] = {"type": type, "queue": queue, "agent": agent, "state": state}
        if attributes:
            data["attributes"] = attributes
        if created_at is not None:
            data["created_at"] = created_at
        return self.publish("create", iid, data, wait_backup)

    def update(self, iid: str, wait_backup: bool = False, **fields: Any) -> InteractionPublished:
        return self.publish("update", iid, fields, wait_backup)

    def append(self, iid: str, author: str, text: str, wait_backup: bool = False) -> InteractionPublished:
        return self.publish("append", iid, {"author": author, "text": text}, wait_backup)

    def transfer(
        self, iid: str, queue: str, agent: str = "", wait_backup: bool = False
    ) -> InteractionPublished:
        return self.publish("transfer", iid, {"queue": queue, "agent": agent}, wait_backup)

    def disconnect(self, iid: str, wait_backup: bool = False) -> InteractionPublished:
        return self.publish("disconnect", iid, {}, wait_backup)

    # --------------------------------------------------------------------------------- query
    def query(
        self, type: str = "", iid: str = "", limit: int = 0, timeout: float | None = None
    ) -> InteractionList:
        reply = self.request(InteractionQuery(type, iid, limit), timeout)
        if not isinstance(reply, InteractionList):
            raise Unreachable(f"{self.address} answered {reply.TYPE} to InteractionQuery")
        return reply


def _checked(reply: Message, op: str, iid: str) -> InteractionPublished:
    if not isinstance(reply, InteractionPublished):
        raise Unreachable(f"the interaction port answered {reply.TYPE} to {op} of {iid}")
    if not reply.ok:
        raise InteractionRefused(reply.detail)
    return reply


class RecoveryListener:
    """Calls ``on_recovered(InteractionList)`` whenever the local node commences (becomes active),
    with its interactions (recovered ones have ``seqno`` >= 1)."""

    def __init__(
        self,
        vswitch_address: str,
        interaction_address: str,
        on_recovered: Callable[[InteractionList], None],
        security: Security | None = None,
        name: str = "app",
        renew: float = 1.0,
    ) -> None:
        self.interaction_address = interaction_address
        self.on_recovered = on_recovered
        self.security = security
        self.name = name
        self.events = RoleEventSubscription(vswitch_address, self._on_event, renew, security, name)

    def start(self) -> RecoveryListener:
        self.events.start()
        return self

    def stop(self) -> None:
        self.events.stop()

    def _on_event(self, event: RoleEvent) -> None:
        if event.event != "commence":
            return
        client = InteractionsClient(self.interaction_address, self.security, self.name)
        try:
            deadline = time.monotonic() + 30.0
            while True:
                try:
                    listing = client.query(timeout=2.0)
                    break
                except Unreachable:
                    if time.monotonic() > deadline:
                        raise
            self.on_recovered(listing)
        finally:
            client.close()
