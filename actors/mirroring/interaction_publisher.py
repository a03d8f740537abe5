"""InteractionPublisher (ACTIVE group): the active's live interactions, on ``interaction_port``.

- applications publish operations (``InteractionPublish``) and query (``InteractionQuery``);
- the backup's InteractionShadow opens a session (``ShadowSyncRequest``): it gets a full snapshot
  of what its filter admits, then the stream of changes in order (``ShadowUpdate``), a heartbeat
  with the stream position, and it acknowledges what its shadow store holds (``ShadowAck``);
- a publish with ``wait_backup`` is answered once the backup acknowledged it (or after its
  timeout, saying so); without it, at once, with the backup's lag in the answer.

At start, a data directory holding shadows (this node was the backup) promotes them, once: they
become the live set with ``seqno`` + 1, same ids and ``created_at`` (spec 1040-1052, 1078-1084).
The logic is in :mod:`replication.interactions`; the live set is written through to SQLite.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from actors.runtime.base import Inbound, NodeActor, handles
from actors.runtime.context import NodeContext
from replication.interactions import (
    DEFAULT_LOG_SIZE,
    Interaction,
    InteractionError,
    LiveSet,
    ShadowFilter,
    StreamSession,
    bulk,
    pack_rows,
    settle,
)
from replication.interactions_db import InteractionDB
from transport.codec import REQUEST, Envelope
from transport.endpoint import Endpoint, EndpointOptions, tcp
from transport.messages import (
    ConnectionEvent,
    InteractionList,
    InteractionPublish,
    InteractionPublished,
    InteractionQuery,
    ShadowAck,
    ShadowHeartbeat,
    ShadowSessionUnknown,
    ShadowSnapshot,
    ShadowSyncRequest,
    ShadowUpdate,
    Tick,
)
from transport.security import Security

TICK = 0.2  # waiter timeouts, heartbeats
CHUNK = 2000  # interactions per snapshot chunk
MAX_CHUNK_BYTES = 2 * 1024 * 1024  # under the wire's 4 MiB frame limit
REFREEZE = 10_000  # the live set grew (or shrank) this much: settle() it again
SILENT = 5.0  # a backup session with no acknowledgement (keep-alive every 0.5 s) this long is dropped
DRAIN = 1.5  # at most this long, when stopping, for the backup to confirm what was sent
FLUSH = 0.05  # the live set is written to SQLite this long after a change, in one transaction


@dataclass(frozen=True)
class GetInteractions:
    """Admin / control panel: list (actor-internal, not on the wire)."""

    type: str = ""
    id: str = ""
    limit: int = 0


@dataclass
class _Waiter:
    seq: int
    env: Envelope
    peer: bytes | None
    rev: int
    deadline: float


@dataclass
class _Backup:
    stream: StreamSession
    peer: bytes
    acked: int = -1  # -1: the backup has not yet confirmed the session's snapshot
    counts: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)


def list_reply(
    node: str,
    role: str,
    kind: str,
    items: dict[str, Any],
    q: GetInteractions | InteractionQuery,
    counts: dict[str, int],
    stats: dict[str, Any],
) -> InteractionList:
    """The answer to a query, for the live set and the shadows alike."""
    if q.limit < 0 and not q.id and not q.type:  # the counts only
        return InteractionList(node, role, kind, (), dict(counts), len(items), stats)
    chosen = list(items.values())
    if q.id:
        chosen = [i for i in chosen if i.id == q.id]
    if q.type:
        chosen = [i for i in chosen if i.type == q.type]
    chosen.sort(key=lambda i: (i.created_at, i.id))
    total = len(chosen)
    if q.limit:  # < 0: the counts only
        chosen = chosen[: max(0, q.limit)]
    return InteractionList(node, role, kind, tuple(i.to_dict() for i in chosen), dict(counts), total, stats)


def _chunks(items: list[Interaction], log: Any) -> Iterator[bytes]:
    """Packed rows, CHUNK at a time, halved until each fits in MAX_CHUNK_BYTES; at least one."""
    pending = [items[n : n + CHUNK] for n in range(0, len(items), CHUNK)] or [[]]
    while pending:
        part = pending.pop(0)
        blob = pack_rows(part)
        if len(blob) <= MAX_CHUNK_BYTES or len(part) <= 1:
            if len(blob) > MAX_CHUNK_BYTES:
                log.error(
                    "InteractionRecovery: interaction {} is too large to shadow ({} bytes)",
                    part[0].id,
                    len(blob),
                )
                blob = pack_rows([])
            yield blob
        else:
            half = len(part) // 2
            pending[:0] = [part[:half], part[half:]]


class InteractionPublisher(NodeActor):
    actor_name = "InteractionPublisher"

    def __init__(
        self,
        ctx: NodeContext,
        incarnation: int = 1,
        name: str | None = None,
        security: Security | None = None,
    ) -> None:
        super().__init__(ctx, incarnation, name)
        self.security = security or Security.plain()
        self.db: InteractionDB | None = None
        self.live = LiveSet()
        self.backup: _Backup | None = None
        self.waiters: list[_Waiter] = []
        self.endpoint: Endpoint | None = None
        self.recovered = 0
        self._acks = threading.Condition()
        self._acked: dict[str, int] = {}  # session -> highest acknowledgement seen by the I/O thread
        self.frozen_at = 0  # live interactions when the garbage collector last stopped watching them

    def started(self) -> None:
        self.db = InteractionDB.in_dir(self.ctx.config.data_dir)
        t0 = time.monotonic()
        with bulk():
            items, promoted = self.db.promote()
        self.live = LiveSet(items, log_size=DEFAULT_LOG_SIZE)
        if promoted:
            self.recovered = len(items)
            counts = ", ".join(f"{t}: {n}" for t, n in self.live.counts().items() if n)
            self.log.info(
                "InteractionRecovery: {} shadow interaction(s) became active interactions ({}) in {:.3f} s; "
                "seqno of recovered interactions is now 1 or more",
                len(items),
                counts or "none",
                time.monotonic() - t0,
            )
        elif items:
            self.log.info(
                "InteractionRecovery: {} live interaction(s) reloaded from {}", len(items), self.db.path
            )
        me = self.ctx.config.me
        self.endpoint = self._open_endpoint(tcp(me.address, me.interaction_port))
        self.schedule(TICK, Tick("interactions"))

    def _open_endpoint(self, address: str) -> Endpoint:
        """Like :meth:`NodeActor.open_endpoint`, and the I/O thread also notes the backup's
        acknowledgements, so that :meth:`stopped` can wait for them (its mailbox no longer runs)."""
        ref = self.actor_ref

        def on_message(env: Envelope, peer: bytes | None) -> None:
            if isinstance(env.msg, ShadowAck):
                with self._acks:
                    self._acked[env.msg.session] = max(self._acked.get(env.msg.session, -1), env.msg.seq)
                    self._acks.notify_all()
            if ref.is_alive():
                ref.tell(Inbound(env, peer, "interactions"))

        def on_event(event: ConnectionEvent) -> None:
            if ref.is_alive():
                ref.tell(event)

        endpoint = Endpoint(
            "interactions",
            "server",
            address,
            node=self.ctx.node,
            on_message=on_message,
            on_event=on_event,
            options=EndpointOptions(sndhwm=200_000, rcvhwm=200_000),
            security=self.security,
            context=self.ctx.zmq,
        ).start()
        self._endpoints.append(endpoint)
        self.ctx.endpoints.add(endpoint)
        return endpoint

    def _drain(self) -> None:
        """Stopping (a controlled switch, a stop): give the backup up to DRAIN s to confirm the
        changes already sent, so the shadows it promotes miss none of them."""
        b = self.backup
        if b is None or b.stream.seq <= b.acked:
            return
        session, target, t0 = b.stream.session, b.stream.seq, time.monotonic()
        with self._acks:
            done = self._acks.wait_for(lambda: self._acked.get(session, -1) >= target, timeout=DRAIN)
        if done:
            self.log.info(
                "InteractionRecovery: the backup confirmed the last {} change(s) in {:.3f} s before this node "
                "stopped serving interactions",
                target - max(b.acked, 0),
                time.monotonic() - t0,
            )
        else:
            self.log.warning(
                "InteractionRecovery: the backup did not confirm {} change(s) within {:g} s of this node "
                "stopping; they may be missing from its shadows",
                target - max(self._acked.get(session, b.acked), 0),
                DRAIN,
            )

    def stopped(self) -> None:
        self._drain()
        with self._acks:
            acked = self._acked.get(self.backup.stream.session, -1) if self.backup is not None else -1
        for w in self.waiters:
            if w.seq <= acked:
                self._answer(w, True, "")
            else:
                self._answer(w, False, "the interaction publisher stopped before the backup confirmed")
        self.waiters.clear()
        if self.db is not None:
            self.db.flush(self.live.items)
            self.db.close()
            self.db = None

    # ----------------------------------------------------------------------------- inbound
    @handles(Inbound)
    def on_inbound(self, msg: Inbound) -> None:
        body = msg.env.msg
        if isinstance(body, InteractionPublish):
            self._publish(body, msg)
        elif isinstance(body, InteractionQuery):
            assert self.endpoint is not None
            self.endpoint.reply(msg.env, self._list(body), to=msg.peer)
        elif isinstance(body, ShadowSyncRequest):
            self._sync(body, msg.peer or b"")
        elif isinstance(body, ShadowAck):
            self._ack(body, msg.peer or b"")
        elif msg.env.kind == REQUEST and self.endpoint is not None:
            self.endpoint.reply(
                msg.env,
                InteractionPublished(False, detail=f"the interaction port does not serve {body.TYPE}"),
                to=msg.peer,
            )

    def _publish(self, body: InteractionPublish, msg: Inbound) -> None:
        assert self.endpoint is not None and self.db is not None
        try:
            change = self.live.publish(body.op, body.id, body.data, time.time())
        except InteractionError as exc:
            self.log.warning("refused {} of interaction {!r}: {}", body.op, body.id, exc)
            self.endpoint.reply(msg.env, InteractionPublished(False, self.live.rev, str(exc)), to=msg.peer)
            return
        if self.db.mark(change.id):  # written behind, in batches (and when the actor stops)
            self.schedule(FLUSH, Tick("flush"))
        item = None
        if self.backup is not None:
            item = self.backup.stream.feed(change)
            if item is not None:
                self.endpoint.send(
                    ShadowUpdate(self.backup.stream.session, (item.to_dict(),)), to=self.backup.peer
                )
        lag = self._lag()
        if not body.wait_backup:
            self.endpoint.reply(msg.env, InteractionPublished(True, change.rev, "", False, lag), to=msg.peer)
        elif self.backup is None:
            detail = "no backup is shadowing interactions"
            self.endpoint.reply(
                msg.env, InteractionPublished(True, change.rev, detail, False, lag), to=msg.peer
            )
        elif item is None:
            shown = change.after or change.before
            detail = f"the backup does not shadow this {shown.type if shown is not None else 'interaction'}"
            self.endpoint.reply(
                msg.env, InteractionPublished(True, change.rev, detail, False, lag), to=msg.peer
            )
        else:
            deadline = self.ctx.clock.now() + max(0.0, body.timeout)
            self.waiters.append(_Waiter(item.seq, msg.env, msg.peer, change.rev, deadline))

    def _sync(self, body: ShadowSyncRequest, peer: bytes) -> None:
        assert self.endpoint is not None
        try:
            flt = ShadowFilter.from_dict(body.filter)
        except InteractionError as exc:
            self.log.warning("refused a shadow sync request: {}", exc)
            return
        stream = StreamSession(body.session, flt)
        seq, items = stream.snapshot(self.live)
        self.backup = _Backup(stream, peer)
        for w in self.waiters:  # now in the snapshot: confirmed with the snapshot's acknowledgement
            w.seq = seq
        t0 = time.monotonic()
        blobs = list(_chunks(items, self.log))
        for n, blob in enumerate(blobs):
            final = n == len(blobs) - 1
            self.endpoint.send(ShadowSnapshot(body.session, seq, blob, final, len(items)), to=peer)
        self.log.info(
            "InteractionRecovery: full synchronization for the backup (session {}, {}): {} interaction(s) of {} "
            "sent in {:.3f} s",
            body.session,
            body.reason or "requested",
            len(items),
            ", ".join(sorted(flt.types)) or "no type",
            time.monotonic() - t0,
        )

    def _ack(self, body: ShadowAck, peer: bytes) -> None:
        assert self.endpoint is not None
        b = self.backup
        if b is None or b.stream.session != body.session:
            self.endpoint.send(
                ShadowSessionUnknown(body.session, "no such shadow session on the active"), to=peer
            )
            return
        b.acked = max(b.acked, body.seq)  # -1: a keep-alive during the full sync
        if body.counts:
            b.counts = dict(body.counts)
        b.last_seen = time.monotonic()
        b.peer = peer
        done = [w for w in self.waiters if w.seq <= b.acked]
        if done:
            self.waiters = [w for w in self.waiters if w.seq > b.acked]
            for w in done:
                self._answer(w, True, "")

    def _answer(self, w: _Waiter, shadowed: bool, detail: str) -> None:
        if self.endpoint is not None:
            self.endpoint.reply(
                w.env, InteractionPublished(True, w.rev, detail, shadowed, self._lag()), to=w.peer
            )

    def _lag(self) -> int:
        return 0 if self.backup is None else self.backup.stream.seq - max(self.backup.acked, 0)

    @handles(Tick)
    def on_tick(self, msg: Tick) -> None:
        if msg.name == "flush":
            if self.db is not None:
                self.db.flush(self.live.items)
            return
        now = self.ctx.clock.now()
        late = [w for w in self.waiters if w.deadline <= now]
        if late:
            self.waiters = [w for w in self.waiters if w.deadline > now]
            for w in late:
                self._answer(w, False, "the backup did not confirm the change in time")
        if abs(len(self.live.items) - self.frozen_at) >= REFREEZE:
            self.frozen_at = len(self.live.items)
            settle()
        b = self.backup
        if b is not None and self.endpoint is not None:
            if time.monotonic() - b.last_seen > SILENT:
                self.log.warning(
                    "InteractionRecovery: the backup's shadow session {} sent nothing for {:g} s; dropped "
                    "(it resynchronizes when it comes back)",
                    b.stream.session,
                    SILENT,
                )
                self.backup = None
                for w in self.waiters:
                    self._answer(w, False, "the backup stopped answering before it confirmed the change")
                self.waiters.clear()
            else:
                self.endpoint.send(ShadowHeartbeat(b.stream.session, b.stream.seq), to=b.peer)
        self.schedule(TICK, Tick("interactions"))

    # ------------------------------------------------------------------------------ listing
    def _stats(self) -> dict[str, Any]:
        b = self.backup
        return {
            "rev": self.live.rev,
            "recovered": self.recovered,
            "backup_session": b.stream.session if b else "",
            "backup_types": sorted(b.stream.filter.types) if b else [],
            "backup_mail_filter": b.stream.filter.mail_assigned_only if b else False,
            "backup_counts": dict(b.counts) if b else {},
            "stream_seq": b.stream.seq if b else 0,
            "acked": b.acked if b else 0,
            "lag": self._lag(),
            "waiting": len(self.waiters),
        }

    def _list(self, q: GetInteractions | InteractionQuery) -> InteractionList:
        return list_reply(
            self.ctx.node, self.ctx.role.role, "live", self.live.items, q, self.live.counts(), self._stats()
        )

    @handles(GetInteractions)
    def on_get(self, msg: GetInteractions) -> InteractionList:
        return self._list(msg)


__all__ = ["GetInteractions", "InteractionPublisher", "list_reply"]
