"""Client side of a node's admin socket: one request, one reply, with a timeout."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import zmq

from transport.codec import REQUEST, DecodeError, Envelope, decode, encode
from transport.messages import AdminReply, AdminRequest

ADMIN_SOCKET = "admin.sock"


def admin_address(data_dir: str | Path) -> str:
    """The admin socket of the node whose data directory is ``data_dir``."""
    return f"ipc://{Path(data_dir).resolve() / ADMIN_SOCKET}"


class AdminCallError(Exception):
    """The node could not be reached, or it refused the request; the text says which and why."""


def admin_call(
    node_dir: str, op: str, args: dict[str, Any] | None = None, timeout: float = 5.0
) -> dict[str, Any]:
    sock_path = Path(node_dir) / ADMIN_SOCKET
    if not sock_path.exists():
        raise AdminCallError(f"no node is running in {node_dir} (no {sock_path})")
    ctx: zmq.Context[Any] = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(admin_address(node_dir))
        corr = os.getpid()
        sock.send_multipart(encode(Envelope(AdminRequest(op, args or {}), "cli", 0, None, REQUEST, corr)))
        if not sock.poll(int(timeout * 1000)):
            raise AdminCallError(f"node in {node_dir} did not answer {op!r} within {timeout:g} s")
        try:
            env = decode(sock.recv_multipart())
        except DecodeError as exc:
            raise AdminCallError(f"node in {node_dir} sent a malformed reply: {exc}") from None
    finally:
        sock.close()
    reply = env.msg
    if not isinstance(reply, AdminReply):
        raise AdminCallError(f"node in {node_dir} answered {reply.TYPE}, expected AdminReply")
    if not reply.ok:
        raise AdminCallError(reply.error)
    return reply.result
