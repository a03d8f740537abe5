"""DSPublisher (active group, port ``ds_port``, 3636): serves the backup's DSMirror.

- ``DSHashRequest`` / ``DSFetch``: node listings (attribute digest, subtree hash, child hashes) and
  attributes of keys, for the compare-and-update;
- ``DSSubscribe``: a change stream after a position ``(history id, revision)``; a position it cannot
  continue is answered with a typed ``DSError`` (history, compacted, ahead), never a silent skip;
  every committed batch is then pushed once, in revision order (``DSBatches``), with a heartbeat
  every half second carrying the current position;
- ``DSDrain``: a controlled switch stops DS writes (through the node's :class:`WriteGate`, for a
  lease) and answers the last committed revision, which the backup applies before taking over.

On start it begins a new history id that continues the store's (Store.new_history): a reader of the
old one resumes where it was, unless it went past it (it then reports its discarded writes).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from actors.runtime.base import Inbound, NodeActor, handles
from actors.runtime.context import NodeContext
from replication.ds_sync import (
    FILTERED_META,
    ListingCache,
    PositionError,
    StatusBoard,
    WriteGate,
    fetch_attrs,
    hash_nodes,
    pack_batches,
    resolve_start,
)
from replication.store import Change, Store, StoreError
from transport.codec import REQUEST
from transport.endpoint import Endpoint, EndpointOptions, tcp
from transport.messages import (
    DSAck,
    DSBatches,
    DSDrain,
    DSDrained,
    DSError,
    DSFetch,
    DSFetchReply,
    DSHashReply,
    DSHashRequest,
    DSHeartbeat,
    DSSubscribe,
    DSSubscribed,
    ErrorReply,
    Tick,
)
from transport.security import Security

ENDPOINT = "ds.publisher"
HEARTBEAT_S = 0.5
SUBSCRIBER_TTL_S = 10.0  # a subscriber not heard from (DSAck) for this long is dropped
MAX_OPS_PER_MESSAGE = 5000
KEEP_REVISIONS = 200_000  # change-log revisions kept for resuming streams (older ones are compacted)
COMPACT_EVERY_S = 60.0


@dataclass(frozen=True)
class _Flush:
    """Committed batches are waiting in the publisher's queue (actor-internal)."""


@dataclass
class _Subscriber:
    identity: bytes
    session: int
    last_sent: int
    last_seen: float
    acked: int = 0
    node: str = ""


@dataclass
class _Pending:
    lock: threading.Lock = field(default_factory=threading.Lock)
    batches: deque[tuple[int, list[list[Any]], float]] = field(default_factory=deque)
    parts: list[list[Any]] = field(default_factory=list)
    flush_told: bool = False


class DSPublisher(NodeActor):
    actor_name = "DSPublisher"

    def __init__(
        self,
        ctx: NodeContext,
        incarnation: int = 1,
        name: str | None = None,
        store: Store | None = None,
        gate: WriteGate | None = None,
        board: StatusBoard | None = None,
        security: Security | None = None,
    ) -> None:
        super().__init__(ctx, incarnation, name)
        assert store is not None, "DSPublisher needs the node's DS store"
        self.store = store
        self.gate = gate or WriteGate(time.monotonic)
        self.security = security or Security.plain()
        self.board = board or StatusBoard()
        self.subs: dict[bytes, _Subscriber] = {}
        self.pending = _Pending()
        self.endpoint: Endpoint | None = None
        self._unsubscribe: Any = None
        self._last_compact = 0.0
        self.listings: ListingCache = {}  # wide nodes' children by (key, subtree hash), across requests

    # ------------------------------------------------------------------------------ life cycle

    def started(self) -> None:
        self.gate.thaw()
        old = self.store.position()
        if self.store.get_meta(FILTERED_META) == "1":
            # this tree followed an active through an upgrade-state filter: it is not that history
            new = self.store.new_history(continues=False)
            self.store.batch([], meta={FILTERED_META: "0"})
            self.log.info("DS history {} starts at revision {} (this tree was replicated through an upgrade "
                          "filter: a backup compares)", new, old[1])
        else:
            new = self.store.new_history()
            self.log.info("DS history {} continues {} at revision {}: a backup of it resumes from there",
                          new, old[0], old[1])
        self._unsubscribe = self.store.subscribe(self._on_commit)
        me = self.ctx.config.me
        self.endpoint = self.open_endpoint(
            ENDPOINT, "server", tcp(me.address, me.ds_port), security=self.security,
            options=EndpointOptions(sndhwm=100_000, rcvhwm=100_000),
        )
        self.schedule(HEARTBEAT_S, Tick("heartbeat"))
        self.board.replace(side="active", state="publishing", reason="", **self.status())

    def stopped(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.board.replace(side="active", state="stopped", reason="DS publisher stopped", **self.status())

    # ----------------------------------------------------------------- commits (writer thread)

    def _on_commit(self, change: Change) -> None:
        """Store subscriber: group a batch's changes; tell the actor once per burst."""
        p = self.pending
        with p.lock:
            if change.op == "reset":
                p.batches.append((change.revision, [["reset", "/", {}]], time.time()))
            else:
                p.parts.append([change.op, change.key, change.attrs])
                if change.index == change.count - 1:
                    p.batches.append((change.revision, p.parts, time.time()))
                    p.parts = []
            if p.flush_told or not p.batches:
                return
            p.flush_told = True
        if self.actor_ref.is_alive():
            self.actor_ref.tell(_Flush())

    @handles(_Flush)
    def on_flush(self, msg: _Flush) -> None:
        p = self.pending
        with p.lock:
            batches = list(p.batches)
            p.batches.clear()
            p.flush_told = False
        if not batches:
            return
        if any(ops and ops[0][0] == "reset" for _, ops, _ in batches):
            epoch, rev = self.store.position()
            self.log.warning("DS history was reset (new history {}): every backup resynchronises", epoch)
            for sub in list(self.subs.values()):
                self._send(sub, DSError("history", "the active's DS history was reset", epoch, rev))
            self.subs.clear()
            return
        epoch = self.store.epoch
        for sub in list(self.subs.values()):
            self._push(sub, epoch, [(r, o, t) for r, o, t in batches if r > sub.last_sent])

    def _push(self, sub: _Subscriber, epoch: str, batches: list[tuple[int, list[list[Any]], float]]) -> None:
        if not batches:
            return
        if batches[0][0] != sub.last_sent + 1:  # cannot happen (commit order); never leave a hole
            self._catch_up(sub, epoch)
            return
        chunk: list[tuple[int, list[list[Any]], float]] = []
        size = 0
        for item in batches:
            chunk.append(item)
            size += len(item[1])
            if size >= MAX_OPS_PER_MESSAGE:
                self._send_chunk(sub, epoch, chunk)
                chunk, size = [], 0
        if chunk:
            self._send_chunk(sub, epoch, chunk)

    def _send_chunk(self, sub: _Subscriber, epoch: str, chunk: list[tuple[int, list[list[Any]], float]]) -> None:
        raw = pack_batches([(r, o) for r, o, _ in chunk])
        self._send(sub, DSBatches(sub.session, epoch, sub.last_sent + 1, chunk[-1][0], raw, chunk[-1][2]))
        sub.last_sent = chunk[-1][0]

    def _catch_up(self, sub: _Subscriber, epoch: str) -> None:
        """Send the change log after ``sub.last_sent`` (a resumed stream), in whole batches."""
        while True:
            changes = self.store.changes_since(sub.last_sent, limit=MAX_OPS_PER_MESSAGE)
            if not changes:
                return
            grouped: dict[int, list[list[Any]]] = {}
            for c in changes:
                grouped.setdefault(c.revision, []).append([c.op, c.key, c.attrs])
            now = time.time()
            self._send_chunk(sub, epoch, [(r, o, now) for r, o in grouped.items()])

    def _send(self, sub: _Subscriber, msg: Any) -> None:
        if self.endpoint is not None:
            self.endpoint.send(msg, to=sub.identity)

    # ------------------------------------------------------------------------------- requests

    @handles(Inbound)
    def on_inbound(self, msg: Inbound) -> None:
        env, body = msg.env, msg.env.msg
        endpoint = self.endpoint
        if endpoint is None or msg.peer is None:
            return
        if isinstance(body, DSAck):
            sub = self.subs.get(msg.peer)
            if sub is not None and sub.session == body.session:
                sub.last_seen = self.ctx.clock.now()
                sub.acked = body.revision
            return
        if env.kind != REQUEST:
            return
        if self.ctx.role.role != "Primary" and not isinstance(body, DSDrain):
            endpoint.reply(env, DSError("not-serving", f"{self.ctx.node} is {self.ctx.role.role}, not the "
                                        "active server"), to=msg.peer)
            return
        try:
            if isinstance(body, DSHashRequest):
                epoch, rev = self.store.position()
                nodes = hash_nodes(self.store, body.paths, self.listings)
                endpoint.reply(env, DSHashReply(epoch, rev, nodes), to=msg.peer)
            elif isinstance(body, DSFetch):
                epoch, rev = self.store.position()
                endpoint.reply(env, DSFetchReply(epoch, rev, fetch_attrs(self.store, body.keys)), to=msg.peer)
            elif isinstance(body, DSSubscribe):
                self._subscribe(body, msg.peer, env, endpoint)
            elif isinstance(body, DSDrain):
                self._drain(body, msg.peer, env, endpoint)
            else:
                endpoint.reply(env, ErrorReply(f"the DS publisher does not serve {body.TYPE}", body.TYPE),
                               to=msg.peer)
        except (StoreError, ValueError) as exc:
            self.log.warning("DS request {} from {} refused: {}", body.TYPE, env.sender, exc)
            endpoint.reply(env, DSError("bad-request", str(exc)), to=msg.peer)

    def _subscribe(self, body: DSSubscribe, peer: bytes, env: Any, endpoint: Endpoint) -> None:
        epoch, rev = self.store.position()
        if not body.history:
            start, resumed = rev, False
        else:
            try:
                start = resolve_start(body.history, body.revision, (epoch, rev), self.store.log_floor,
                                      self.store.previous_histories())
            except PositionError as exc:
                self.log.info("DS stream for {} cannot start at ({}, {}): {} ({})", env.sender, body.history,
                              body.revision, exc.kind, exc)
                endpoint.reply(env, DSError(exc.kind, str(exc), epoch, rev, exc.fork), to=peer)
                return
            resumed = True
        for identity, other in list(self.subs.items()):
            if other.node == env.sender and identity != peer:
                del self.subs[identity]  # the same backup reconnected under a new identity
        sub = _Subscriber(peer, body.session, start, self.ctx.clock.now(), start, env.sender)
        self.subs[peer] = sub
        endpoint.reply(env, DSSubscribed(body.session, epoch, start, resumed), to=peer)
        self.log.info("DS stream for {} starts after revision {} of history {} ({})", env.sender, start, epoch,
                      f"resumed from ({body.history}, {body.revision})" if resumed else "after a compare")
        self._catch_up(sub, epoch)

    def _drain(self, body: DSDrain, peer: bytes, env: Any, endpoint: Endpoint) -> None:
        if self.ctx.role.role != "Primary":
            endpoint.reply(env, DSError("not-serving", f"{self.ctx.node} is {self.ctx.role.role}"), to=peer)
            return
        lease = max(1.0, min(float(body.lease), 600.0))
        self.gate.freeze(lease, body.reason)  # waits for a write in progress; none starts after it
        epoch, rev = self.store.position()
        self.log.warning("DS writes stopped for a controlled switch ({}): last committed revision {} of "
                         "history {}; the backup drains to it (lease {:g} s)", body.reason, rev, epoch, lease)
        self.on_flush(_Flush())  # push what is committed before answering
        endpoint.reply(env, DSDrained(epoch, rev), to=peer)

    # --------------------------------------------------------------------------------- timers

    @handles(Tick)
    def on_tick(self, msg: Tick) -> None:
        if msg.name != "heartbeat":
            return
        now = self.ctx.clock.now()
        epoch, rev = self.store.position()
        for identity, sub in list(self.subs.items()):
            if now - sub.last_seen > SUBSCRIBER_TTL_S:
                self.log.info("DS stream for {} dropped: not heard from for {:g} s", sub.node, SUBSCRIBER_TTL_S)
                del self.subs[identity]
                continue
            self._send(sub, DSHeartbeat(sub.session, epoch, rev, time.time()))
        if now - self._last_compact > COMPACT_EVERY_S:
            self._last_compact = now
            floor = rev - KEEP_REVISIONS
            if floor > self.store.log_floor:
                self.store.compact(floor)
        self.schedule(HEARTBEAT_S, Tick("heartbeat"))
        self.board.replace(side="active", state="publishing", reason="", **self.status())

    def status(self) -> dict[str, Any]:
        epoch, rev = self.store.position()
        return {
            "history": epoch,
            "revision": rev,
            "writes_stopped": self.gate.frozen(),
            "subscribers": [
                {"node": s.node, "session": s.session, "sent": s.last_sent, "acked": s.acked,
                 "lag_revisions": rev - s.acked}
                for s in self.subs.values()
            ],
        }
