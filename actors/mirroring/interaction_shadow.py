"""InteractionShadow (BACKUP group): the backup's shadows of the active's interactions.

It connects to the active's InteractionPublisher (the peer's ``interaction_port``) and keeps a
shadow of every interaction its filter admits: the per-type ``... Interaction Recovery Enabled``
parameters and ``Mail Interaction Recovery Filter Enabled``, read through ServerParams and
followed live (no restart). A full synchronization runs when the backup starts, when the link
comes back, after a gap in the stream, and when a type is enabled or the mail filter is turned
on (spec 915-935). The shadows are inert; they are kept in SQLite in the data directory, where
the InteractionPublisher of this node finds and promotes them if it becomes active.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from actors.mirroring.interaction_publisher import GetInteractions, list_reply
from actors.runtime.base import Inbound, NodeActor, handles
from actors.runtime.context import NodeContext
from replication.interactions import (
    ALL_PARAMS,
    InteractionError,
    ShadowFilter,
    ShadowStore,
    StreamGap,
    StreamItem,
    bulk,
    unpack_rows,
)
from replication.interactions_db import InteractionDB
from transport.endpoint import Endpoint, EndpointOptions, tcp
from transport.messages import (
    ConnectionEvent,
    InteractionList,
    ShadowAck,
    ShadowHeartbeat,
    ShadowSessionUnknown,
    ShadowSnapshot,
    ShadowSyncRequest,
    ShadowUpdate,
    Tick,
)
from transport.security import Security

TICK = 0.5  # keep-alive acknowledgement, sync retry
SYNC_RETRY = 2.0  # a full sync with no snapshot chunk for this long (link up) is asked again
FLUSH = 0.05  # shadows are written to SQLite this long after a change, in one transaction


@dataclass(frozen=True)
class _ParamsChanged:
    name: str


class InteractionShadow(NodeActor):
    actor_name = "InteractionShadow"

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
        self.store = ShadowStore()
        self.endpoint: Endpoint | None = None
        self.sync_started = 0.0
        self.sync_progress = 0.0  # the request, or the last snapshot chunk received
        self.sync_reason = ""
        self.syncs = 0
        self.applied = 0
        self.duplicates = 0
        self.gaps = 0
        self.connected = False
        self._unsubscribe: list[Callable[[], None]] = []
        self.apply_times: deque[float] = deque(maxlen=20_000)  # seconds per update, in this actor
        # seconds from the active applying a change (its wall clock) to this shadow applying it
        self.stream_delays: deque[float] = deque(maxlen=20_000)

    def started(self) -> None:
        self.db = InteractionDB.in_dir(self.ctx.config.data_dir)
        self.store = ShadowStore(self._filter())
        params = self.ctx.server_params
        if params is not None:
            ref = self.actor_ref
            self._unsubscribe.append(
                params.subscribe(
                    ALL_PARAMS, lambda ch: ref.tell(_ParamsChanged(ch.name)) if ref.is_alive() else None
                )
            )
        peer = self.ctx.config.peer
        self.endpoint = self.open_endpoint(
            "interactions.shadow",
            "client",
            tcp(peer.address, peer.interaction_port),
            security=self.security,
            options=EndpointOptions(reconnect_ivl_ms=500, sndhwm=200_000, rcvhwm=200_000),
        )
        # the sync request goes when the link is up (ConnectionEvent), or at the retry tick
        self.store.begin_sync("")
        self.sync_started = self.sync_progress = time.monotonic()
        self.sync_reason = "the backup started"
        self.schedule(TICK, Tick("shadow"))

    def stopped(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self.db is not None:
            self.db.flush(self.store.items)  # during a full sync these are still the previous shadows
            self.db.close()
            self.db = None

    def _filter(self) -> ShadowFilter:
        params = self.ctx.server_params
        if params is None:
            return ShadowFilter()
        return ShadowFilter.from_flags(params.flag)

    # --------------------------------------------------------------------------- full sync
    def _full_sync(self, reason: str) -> None:
        session = f"{self.ctx.node}-{uuid.uuid4().hex[:12]}"
        self.store.begin_sync(session)
        self.sync_started = self.sync_progress = time.monotonic()
        self.sync_reason = reason
        self.log.info(
            "InteractionRecovery: full synchronization of {} interactions with the active ({}; session {})",
            ", ".join(sorted(self.store.filter.types)) or "no",
            reason,
            session,
        )
        if self.endpoint is not None:
            self.endpoint.send(ShadowSyncRequest(session, self.store.filter.to_dict(), reason))

    @handles(Inbound)
    def on_inbound(self, msg: Inbound) -> None:
        body = msg.env.msg
        if isinstance(body, ShadowSnapshot):
            self._snapshot(body)
        elif isinstance(body, ShadowUpdate):
            self._update(body)
        elif isinstance(body, ShadowHeartbeat):
            if body.session == self.store.session and not self.store.syncing and body.seq > self.store.seq:
                self._gap(StreamGap(self.store.seq + 1, body.seq, body.session), "a heartbeat")
        elif isinstance(body, ShadowSessionUnknown):
            if body.session == self.store.session and not self.store.syncing:
                self._full_sync(f"the active does not know session {body.session}: {body.detail}")

    def _snapshot(self, body: ShadowSnapshot) -> None:
        if body.session != self.store.session or not self.store.syncing:
            return  # an older session's
        self.sync_progress = time.monotonic()
        try:
            with bulk():
                self.store.add_snapshot(unpack_rows(body.rows))
        except InteractionError as exc:
            self.log.warning("InteractionRecovery: bad snapshot chunk ({}); starting over", exc)
            self._full_sync("a bad snapshot chunk")
            return
        if not body.final:
            return
        try:
            result = self.store.finish_sync(body.seq)
        except StreamGap as gap:
            self._gap(gap, "the updates queued during the full sync")
            return
        assert self.db is not None
        with bulk():
            self.db.replace_all(self.store.items.values(), "shadow")
        self.syncs += 1
        self.applied += len(result.applied)
        counts = ", ".join(f"{t}: {n}" for t, n in self.store.counts().items() if n)
        self.log.info(
            "InteractionRecovery: full synchronization complete: {} shadow interaction(s) ({}) in {:.3f} s, "
            "{} queued update(s) applied after it",
            len(self.store.items),
            counts or "none",
            time.monotonic() - self.sync_started,
            len(result.applied),
        )
        self._ack()

    def _update(self, body: ShadowUpdate) -> None:
        if body.session != self.store.session:
            return
        t0 = time.perf_counter()
        try:
            self._apply_update(body)
        finally:
            self.apply_times.append(time.perf_counter() - t0)

    def _apply_update(self, body: ShadowUpdate) -> None:
        touched: set[str] = set()
        try:
            for raw in body.items:
                result = self.store.apply(StreamItem.from_dict(raw))
                self.duplicates += result.duplicates
                self.applied += len(result.applied)
                touched.update(i.id for i in result.applied)
                now = time.time()
                self.stream_delays.extend(now - i.now for i in result.applied if i.now > 0)
        except StreamGap as gap:
            self._persist(touched)
            self._gap(gap, "an update")
            return
        except InteractionError as exc:
            self._persist(touched)
            self.log.warning("InteractionRecovery: an update could not be applied ({}); resynchronizing", exc)
            self._full_sync(f"an update could not be applied: {exc}")
            return
        self._persist(touched)
        if not self.store.syncing:
            self._ack()

    def _persist(self, ids: set[str]) -> None:
        """Written behind, in one transaction every FLUSH s (and when the actor stops): a shadow is
        held once it is in the store; the file is what this node promotes if it becomes active."""
        if self.db is None:
            return
        for iid in ids:
            if self.db.mark(iid):
                self.schedule(FLUSH, Tick("flush"))

    def _gap(self, gap: StreamGap, where: str) -> None:
        self.gaps += 1
        self.log.warning("InteractionRecovery: gap in the interaction stream seen in {}: {}", where, gap)
        self._full_sync("a gap in the stream")

    def _ack(self, counts: bool = False) -> None:
        if self.endpoint is not None:
            self.endpoint.send(
                ShadowAck(self.store.session, self.store.seq, self.store.counts() if counts else {})
            )

    # ------------------------------------------------------------------------------ events
    @handles(ConnectionEvent)
    def on_connection_event(self, event: ConnectionEvent) -> None:
        self.log.debug("{}: {} {}", event.endpoint, event.kind, event.address)
        if event.kind in ("disconnected", "closed"):
            self.connected = False
        # the request is sent once the ZMTP handshake is done: sent at "connected", it can be dropped
        if event.kind == "handshake":
            self.connected = True
            self._full_sync(
                "the link to the active's interaction port came back" if self.syncs else "the backup started"
            )

    @handles(_ParamsChanged)
    def on_params_changed(self, msg: _ParamsChanged) -> None:
        new = self._filter()
        if new == self.store.filter:
            return
        resync, dropped = self.store.set_filter(new)
        self._persist(set(dropped))
        self.log.info(
            "InteractionRecovery: {} changed; shadowing {} (mail filter {}); {} shadow(s) removed",
            msg.name,
            ", ".join(sorted(new.types)) or "nothing",
            "on" if new.mail_assigned_only else "off",
            len(dropped),
        )
        if resync:
            self._full_sync(f"{msg.name} was enabled")

    @handles(Tick)
    def on_tick(self, msg: Tick) -> None:
        if msg.name == "flush":
            if self.db is not None:
                self.db.flush(self.store.items)
            return
        # a lost request or snapshot chunk: ask again (while the link is down, "connected" will)
        if self.store.syncing and self.connected and time.monotonic() - self.sync_progress > SYNC_RETRY:
            self._full_sync(f"no snapshot chunk for {SYNC_RETRY:g} s ({self.sync_reason})")
        elif not self.store.syncing:
            self._ack(counts=True)  # keep-alive: the active answers an unknown session
        elif self.connected and self.store.session and self.endpoint is not None:
            # still alive while a long full sync runs (seq -1: nothing of the new session held yet)
            self.endpoint.send(ShadowAck(self.store.session, -1))
        self.schedule(TICK, Tick("shadow"))

    @handles(GetInteractions)
    def on_get(self, msg: GetInteractions) -> InteractionList:
        stats = {
            "session": self.store.session,
            "syncing": self.store.syncing,
            "seq": self.store.seq,
            "full_syncs": self.syncs,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "gaps": self.gaps,
            "apply_ms": _percentiles(self.apply_times),
            "stream_delay_ms": _percentiles(self.stream_delays),
            "types": sorted(self.store.filter.types),
            "mail_assigned_only": self.store.filter.mail_assigned_only,
        }
        return list_reply(
            self.ctx.node, self.ctx.role.role, "shadow", self.store.items, msg, self.store.counts(), stats
        )


def _percentiles(times: deque[float]) -> dict[str, float]:
    if not times:
        return {}
    ms = sorted(t * 1000 for t in times)
    return {p: round(ms[min(len(ms) - 1, int(q * len(ms)))], 3) for p, q in (("p50", 0.5), ("p99", 0.99))} | {
        "max": round(ms[-1], 3),
        "n": len(ms),
    }


__all__ = ["InteractionShadow"]
