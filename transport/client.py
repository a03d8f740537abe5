"""Small synchronous clients of a node's VirtualSwitch port, for the control panel,
scripts (Query Backup) and applications (Commence/Discontinue events)."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from transport.codec import REQUEST, DecodeError, Envelope, decode, encode
from transport.messages import (
    CommandReply,
    ErrorReply,
    Message,
    QueryState,
    RoleEvent,
    StatusReport,
    Subscribe,
    WhoAmI,
    WhoAmIReply,
)
from transport.security import Security

_ids = itertools.count(1)


class Unreachable(ConnectionError):
    """The node did not answer in time (or answered garbage); the text says which."""


class Refused(Unreachable):
    """The node answered with an error: the request was refused (e.g. the key lacks the right)."""


def request_once(
    address: str, msg: Message, timeout: float = 2.0, security: Security | None = None, sender: str = "ctl"
) -> Message:
    """One request on a fresh DEALER socket; the reply message, or :class:`Unreachable`."""
    ctx: zmq.Context[Any] = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    (security or Security.plain()).apply(sock, server=False)
    try:
        sock.connect(address)
        corr = (os.getpid() << 20) + next(_ids)
        sock.send_multipart(encode(Envelope(msg, sender, 0, None, REQUEST, corr)))
        deadline_ms = int(timeout * 1000)
        while sock.poll(deadline_ms):
            try:
                env = decode(sock.recv_multipart())
            except DecodeError as exc:
                raise Unreachable(f"{address} answered a malformed frame: {exc}") from None
            if env.corr == corr:
                if isinstance(env.msg, ErrorReply):
                    raise Refused(f"{address} refused {msg.TYPE}: {env.msg.error}")
                return env.msg
        raise Unreachable(f"{address} did not answer {msg.TYPE} within {timeout:g} s")
    finally:
        sock.close()


def query_state(address: str, timeout: float = 2.0, security: Security | None = None) -> StatusReport:
    reply = request_once(address, QueryState("ctl"), timeout, security)
    if not isinstance(reply, StatusReport):
        raise Unreachable(f"{address} answered {reply.TYPE} to QueryState")
    return reply


def who_am_i(address: str, timeout: float = 2.0, security: Security | None = None) -> WhoAmIReply:
    """The name and rights the node gives this client's key."""
    reply = request_once(address, WhoAmI(), timeout, security)
    if not isinstance(reply, WhoAmIReply):
        raise Unreachable(f"{address} answered {reply.TYPE} to WhoAmI")
    return reply


def is_backup(address: str, timeout: float = 2.0, security: Security | None = None) -> bool:
    """The spec's Query Backup tool: is the node at ``address`` running as a backup?"""
    role = query_state(address, timeout, security).role
    return role in ("Backup", "Reconnecting", "Upgrade Higher", "Upgrade Lower")


class RoleEventSubscription:
    """Receive Commence/Discontinue events of the local node in a background thread.

    The subscription is renewed every ``renew`` seconds, so it survives node restarts.
    """

    def __init__(
        self,
        address: str,
        on_event: Callable[[RoleEvent], None],
        renew: float = 3.0,
        security: Security | None = None,
        name: str = "app",
    ) -> None:
        self.address = address
        self.on_event = on_event
        self.renew = renew
        self.security = security or Security.plain()
        self.name = name
        self._stop = threading.Event()
        self.subscribed = threading.Event()  # set when the node first confirmed the subscription
        self.refused = ""  # the node's refusal, when this client's key may not subscribe
        self._thread = threading.Thread(target=self._run, name=f"role-events-{name}", daemon=True)

    def start(self) -> RoleEventSubscription:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        ctx: zmq.Context[Any] = zmq.Context.instance()
        sock: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
        sock.linger = 0
        self.security.apply(sock, server=False)
        sock.connect(self.address)
        try:
            while not self._stop.is_set():
                try:
                    frames = encode(Envelope(Subscribe(self.name), self.name, 0, None, REQUEST, 0))
                    sock.send_multipart(frames, flags=zmq.NOBLOCK)
                except zmq.Again:
                    pass  # not connected yet: try again at the next renewal
                renew_at = time.monotonic() + self.renew
                while time.monotonic() < renew_at and not self._stop.is_set():
                    if not sock.poll(200):
                        continue
                    try:
                        env = decode(sock.recv_multipart())
                    except DecodeError:
                        continue
                    if isinstance(env.msg, RoleEvent):
                        self.on_event(env.msg)
                    elif isinstance(env.msg, ErrorReply):
                        self.refused = env.msg.error
                    elif isinstance(env.msg, CommandReply) and env.msg.ok:
                        self.subscribed.set()
        finally:
            sock.close()
