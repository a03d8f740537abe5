"""The admin socket: every node answers ``AdminRequest``s on ``ipc://<data dir>/admin.sock``.

Operations are plain functions ``args -> result dict`` registered by name (``actors``,
``ping``, ``inject``, ``ds.get``...). A function raises :class:`AdminError` for a request it
refuses; the message goes back to the operator as is. Any other exception is logged and
answered as an internal error: a bad request never takes the admin socket down.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors.runtime.base import Inbound, NodeActor, handles
from actors.runtime.context import NodeContext
from transport.admin_client import ADMIN_SOCKET, admin_address
from transport.codec import REQUEST
from transport.endpoint import Endpoint
from transport.messages import AdminReply, AdminRequest

AdminOp = Callable[[dict[str, Any]], dict[str, Any]]


class AdminError(Exception):
    """A refused admin request; the text tells the operator what was wrong."""


class AdminServer(NodeActor):
    actor_name = "Admin"

    def __init__(
        self,
        ctx: NodeContext,
        incarnation: int = 1,
        name: str | None = None,
        ops: dict[str, AdminOp] | None = None,
    ) -> None:
        super().__init__(ctx, incarnation, name)
        self.ops = ops or {}
        self.endpoint: Endpoint | None = None

    def started(self) -> None:
        path = Path(self.ctx.config.data_dir) / ADMIN_SOCKET
        # Whoever can connect is the master administrator: owner only. The directory first, so
        # nobody else can reach the socket in the moment between bind and chmod.
        os.chmod(path.parent, 0o700)
        path.unlink(missing_ok=True)  # a socket file left by a crashed process
        self.endpoint = self.open_endpoint("admin", "server", admin_address(self.ctx.config.data_dir))
        os.chmod(path, 0o600)

    def stopped(self) -> None:
        (Path(self.ctx.config.data_dir) / ADMIN_SOCKET).unlink(missing_ok=True)

    @handles(Inbound)
    def on_inbound(self, msg: Inbound) -> None:
        env = msg.env
        if env.kind != REQUEST or self.endpoint is None:
            return
        if not isinstance(env.msg, AdminRequest):
            reply = AdminReply(False, error=f"expected an AdminRequest, got {env.msg.TYPE}")
        else:
            reply = self.run(env.msg)
        self.endpoint.reply(env, reply, to=msg.peer)

    def run(self, request: AdminRequest) -> AdminReply:
        op = self.ops.get(request.op)
        if op is None:
            known = ", ".join(sorted(self.ops))
            return AdminReply(False, error=f"unknown admin operation {request.op!r}; known: {known}")
        try:
            return AdminReply(True, result=op(dict(request.args)))
        except AdminError as exc:
            self.log.warning("admin {} refused: {}", request.op, exc)
            return AdminReply(False, error=str(exc))
        except Exception as exc:
            self.log.exception("admin {} failed", request.op)
            return AdminReply(False, error=f"internal error in {request.op}: {type(exc).__name__}: {exc}")
