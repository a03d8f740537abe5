"""DSMirror (backup group): keeps this node's DS tree an exact, current copy of the active's.

On start and after every interruption it subscribes to the active's DSPublisher first (resuming from
its store's position when the active still has it), queues what the stream pushes, runs the
compare-and-update when it cannot resume, adopts the result atomically at the revision the stream
started after, applies the queued batches above it, then follows the stream batch by batch (each
atomically, as the same revision). A gap, a compacted position or another history is a typed error
that leads to a compare, never a skip. The logic is in :mod:`replication.ds_sync` and
:mod:`replication.ds_filters`; this actor carries out the I/O.

The node supervisor waits for the first compare before start-up completes, and asks this actor to
drain the stream (:class:`DrainForSwitch`) before a controlled switch.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from actors.runtime.base import Inbound, NodeActor, handles
from actors.runtime.context import NodeContext
from replication.ds_filters import UPGRADE_HIGHER, UPGRADE_LOWER, DSFilter, filter_for
from replication.ds_sync import (
    FILTERED_META,
    Follower,
    StatusBoard,
    TreeCompare,
    discarded_keys,
    unpack_batches,
)
from replication.store import Change, Op, Store, StoreError
from transport.codec import Envelope
from transport.endpoint import EndpointOptions, SendFailed, tcp
from transport.messages import (
    ConnectionEvent,
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
    Tick,
)
from transport.security import Security

ENDPOINT = "ds.link"
TICK_S = 0.5
SILENCE_S = 5.0  # no word from the publisher (heartbeats every 0.5 s) for this long: resubscribe
RETRY_S = 1.0
QUICK_RETRY_S = 0.2  # not connected yet
STARTUP_GRACE_S = 5.0  # not connected to the active's publisher for this long: start-up completes anyway
LAG_SAMPLES = 10_000
COMPARE_WINDOW = 1  # compare requests outstanding at once (4 measured no better on a loaded 2-core box)
COMPARE_HASH_CHUNK = 256  # paths per node-listing request


@dataclass(frozen=True)
class DrainForSwitch:
    """Supervisor -> DSMirror: a controlled switch: drain the stream to the active's last revision."""

    reason: str


@dataclass(frozen=True)
class DrainFinished:
    """DSMirror -> Supervisor: drained (``ok``) or why not."""

    ok: bool
    detail: str


@dataclass(frozen=True)
class _Reply:
    session: int
    kind: str
    future: Future[Envelope]


@dataclass(frozen=True)
class _LocalWrite:
    revision: int
    key: str
    op: str


class DSMirror(NodeActor):
    actor_name = "DSMirror"

    def __init__(
        self,
        ctx: NodeContext,
        incarnation: int = 1,
        name: str | None = None,
        store: Store | None = None,
        board: StatusBoard | None = None,
        security: Security | None = None,
    ) -> None:
        super().__init__(ctx, incarnation, name)
        assert store is not None, "DSMirror needs the node's DS store"
        self.store = store
        self.board = board or StatusBoard()
        self.security = security or Security.plain()
        self.session = 0
        self.state = "connecting"
        self.reason = ""
        self.follower: Follower | None = None
        self.compare: TreeCompare | None = None
        self.filter: DSFilter = DSFilter()
        self.compare_started = 0.0
        self.inflight = 0
        self.first_done = False
        self.fresh = False  # the next subscription must compare (a local write)
        self.own: set[int] = set()  # revisions this actor applies (others are local writes)
        self.last_heard = 0.0
        self.pub_revision = -1
        self.pub_history = ""
        self.lags_ms: deque[float] = deque(maxlen=LAG_SAMPLES)
        self.applied_batches = 0
        self.compares = 0
        self.last_compare: dict[str, Any] = {}
        self.drain_target: int | None = None
        self.drain_reason = ""
        self.retry_token = 0
        self.start_time = 0.0
        self._unsubscribe: Any = None

    # ------------------------------------------------------------------------------ life cycle

    def started(self) -> None:
        self.start_time = self.ctx.clock.now()
        peer = self.ctx.config.peer
        self.endpoint = self.open_endpoint(
            ENDPOINT, "client", tcp(peer.address, peer.ds_port), security=self.security,
            options=EndpointOptions(reconnect_ivl_ms=200, rcvhwm=100_000, sndhwm=1000),
        )
        self._unsubscribe = self.store.subscribe(self._on_store_change)
        self._publish()
        self.schedule(TICK_S, Tick("ds-tick"))
        self._subscribe()

    def stopped(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        epoch, rev = self.store.position()
        behind = max(0, self.pub_revision - rev) if self.pub_history == epoch else None
        self.log.info(
            "DS replication stopped at revision {} of history {}; at its last heartbeat the active was at "
            "revision {} ({} revision(s) behind)", rev, epoch, self.pub_revision,
            "?" if behind is None else behind)
        self.board.update(state="stopped", reason="DS mirror stopped", applied=rev, history=epoch,
                          lag_revisions=behind)
        if self.drain_target is not None:
            self._drain_done(False, "the DS mirror stopped before the drain finished")

    def request_timeout(self) -> float:
        params = self.ctx.server_params
        return params.seconds("Switchover DS Request Timeout") if params is not None else 120.0

    # ----------------------------------------------------------------------------- subscribing

    def _subscribe(self) -> None:
        self.session += 1
        self.follower = None
        self.compare = None
        self._refresh_filter()
        if self.filter.state == "normal" and self.store.get_meta(FILTERED_META) == "1":
            self.fresh = True  # this tree was filtered (upgrade state): only a compare makes it whole
        if self.fresh:
            msg = DSSubscribe(self.session)
        else:
            epoch, rev = self.store.position()
            msg = DSSubscribe(self.session, epoch, rev)
        self.last_heard = self.ctx.clock.now()
        self._request(msg, "subscribe")

    def _request(self, msg: Any, kind: str) -> None:
        session, ref = self.session, self.actor_ref
        fut = self.endpoint.request(msg, timeout=self.request_timeout())
        fut.add_done_callback(lambda f: ref.tell(_Reply(session, kind, f)) if ref.is_alive() else None)

    def _restart(self, reason: str, delay: float = RETRY_S, level: str = "WARNING", failed: bool = True) -> None:
        """Abandon the current session and subscribe again after ``delay``.

        Before the first compare finished, a real failure (the active went away, a request failed)
        completes the start-up anyway: waiting cannot help, and a switch that fell due meanwhile must
        happen. Not being connected yet only counts after :data:`STARTUP_GRACE_S`."""
        self.log.log(level, "DS replication: {}; subscribing again in {:g} s", reason, delay)
        self.session += 1
        self.follower = None
        self.compare = None
        self._set_state("stopped", reason)
        self.retry_token += 1
        self.schedule(delay, Tick("ds-retry", self.retry_token))
        if not self.first_done and (failed or self.ctx.clock.now() - self.start_time > STARTUP_GRACE_S):
            self._first_finished(f"no compare with the active could finish ({reason})")

    @handles(_Reply)
    def on_reply(self, msg: _Reply) -> None:
        if msg.kind == "drain":
            self._on_drain_reply(msg.future)
            return
        if msg.session != self.session:
            return
        try:
            env = msg.future.result()
        except SendFailed:
            self._restart("not connected to the active's DS publisher yet", QUICK_RETRY_S, "DEBUG", failed=False)
            return
        except Exception as exc:
            self._restart(f"{msg.kind} request failed: {type(exc).__name__}: {exc}")
            return
        self.last_heard = self.ctx.clock.now()
        body = env.msg
        if isinstance(body, DSError):
            self._on_error(body, msg.kind)
        elif isinstance(body, DSSubscribed):
            self._on_subscribed(body)
        elif isinstance(body, DSHashReply) and self.compare is not None:
            self.inflight -= 1
            self.compare.on_hashes(body.nodes, body.revision)
            self._next_compare_request()
        elif isinstance(body, DSFetchReply) and self.compare is not None:
            self.inflight -= 1
            self.compare.on_fetched(body.attrs, body.revision)
            self._next_compare_request()
        else:
            self._restart(f"unexpected answer {body.TYPE} to a {msg.kind} request")

    def _on_error(self, err: DSError, kind: str) -> None:
        if err.kind == "not-serving":
            self._restart(f"the peer does not serve DS replication: {err.detail}", RETRY_S, "INFO", failed=False)
            return
        if err.kind == "history" and err.fork >= 0:
            keys = discarded_keys(self.store, err.fork)
            epoch, rev = self.store.position()
            if keys is None:
                self.log.warning("DS writes made on this server after revision {} (history {}, up to revision "
                                 "{}) never reached the active and are DISCARDED; the change log no longer "
                                 "says which keys", err.fork, epoch, rev)
            elif keys:
                self.log.warning("DS writes made on this server after the split (revisions {}..{}) never "
                                 "reached the active and are DISCARDED: {} key(s): {}", err.fork + 1, rev,
                                 len(keys), ", ".join(keys[:200]) + (" ..." if len(keys) > 200 else ""))
        else:
            self.log.info("DS stream cannot resume ({}: {}); comparing trees", err.kind, err.detail)
        self.fresh = True
        self._subscribe()

    def _refresh_filter(self) -> None:
        """The filter follows the role (Backup / Upgrade Higher / Upgrade Lower) and the parameters."""
        before = self.filter.state
        self.filter = filter_for(self.ctx.role.role, self.ctx.server_params)
        if self.filter.state != before:
            self.log.info("DS replication filter: {}", self.filter.state)
            self._publish()

    def _filter_stale(self) -> bool:
        """The role moved to (or out of) an upgrade state since the filter was made."""
        role = self.ctx.role.role
        wanted = role if role in (UPGRADE_HIGHER, UPGRADE_LOWER) else "normal"
        return wanted != self.filter.state

    def _on_subscribed(self, msg: DSSubscribed) -> None:
        self._refresh_filter()
        self.pub_history = msg.history
        self.pub_revision = max(self.pub_revision, msg.revision)
        self.fresh = False
        if msg.resumed:
            if msg.history != self.store.epoch:  # the active continues our history under a new id
                self.own.add(msg.revision)
                self.store.adopt([], msg.history, msg.revision)
            if self.filter.state != "normal" and self.store.get_meta(FILTERED_META) != "1":
                self.store.batch([], meta={FILTERED_META: "1"})
            self.follower = Follower(msg.history, msg.revision, comparing=False)
            self.log.info("DS replication resumed after revision {} of history {}", msg.revision, msg.history)
            self._set_state("streaming", "")
            if not self.first_done:
                self._first_finished()
            self._check_drain()
            return
        self.follower = Follower(msg.history, msg.revision, comparing=True)
        self.compare = TreeCompare(
            self.store, replicate=self.filter.replicate, descend=self.filter.descend,
            filter_attrs=self.filter.merge_attrs if self.filter.attr_exceptions else None,
            hash_chunk=COMPARE_HASH_CHUNK,
        )
        self.inflight = 0
        self.compare_started = time.monotonic()
        self.compares += 1
        self.log.info("DS compare-and-update with the active starts (stream after revision {} of history {})",
                      msg.revision, msg.history)
        self._set_state("comparing", "")
        self._next_compare_request()

    def _next_compare_request(self) -> None:
        """Keep up to COMPARE_WINDOW requests outstanding (the active lists the next paths while this
        node compares the last ones); the compare is done when none is left to send or to wait for."""
        assert self.compare is not None
        while self.inflight < COMPARE_WINDOW:
            req = self.compare.next_request()
            if req is None:
                break
            kind, items = req
            self.inflight += 1
            self._request(DSHashRequest(tuple(items)) if kind == "hash" else DSFetch(tuple(items)), kind)
        if self.inflight == 0:
            self._finish_compare()

    def _finish_compare(self) -> None:
        assert self.compare is not None and self.follower is not None
        if self._filter_stale():
            self.fresh = True
            self._restart(f"the role is now {self.ctx.role.role}: comparing again with its filter", 0.0, "INFO",
                          failed=False)
            return
        cmp, fol = self.compare, self.follower
        self.compare = None
        try:
            ops = cmp.ops()
            self.own.add(fol.base)
            self.store.adopt(ops, fol.history, fol.base)
            filtered = "1" if self.filter.state != "normal" else "0"
            if self.store.get_meta(FILTERED_META) != filtered:
                self.store.batch([], meta={FILTERED_META: filtered})
            queued = fol.compared()
            for rev, batch in queued:
                self._apply(rev, batch)
        except StoreError as exc:
            self._restart(f"cannot apply the compare's result: {exc}")
            return
        took = time.monotonic() - self.compare_started
        stats = cmp.stats.as_dict()
        self.last_compare = {"duration_s": round(took, 3), "at": time.time(), "revision": fol.base,
                             "queued_applied": len(queued), **stats}
        self.log.info(
            "DS compare-and-update finished in {:.3f} s: {} node(s) listed in {} request(s), {} key(s) fetched, "
            "{} set, {} deleted, {} local key(s) kept; then {} queued batch(es) applied; following the stream "
            "from revision {}", took, stats["paths_listed"], stats["hash_requests"], stats["keys_fetched"],
            stats["keys_set"], stats["keys_deleted"], stats["skipped_local"], len(queued), self.store.revision)
        self._set_state("streaming", "")
        if not self.first_done:
            self._first_finished()
        self._check_drain()

    def _first_finished(self, problem: str = "") -> None:
        self.first_done = True
        if not self.ctx.role.starting_up or self.ctx.supervisor is None:
            return
        if problem:
            self.log.warning("start-up completes without a finished DS compare: {}", problem)
        else:
            self.log.info("DS tree in step with the active ({}): start-up complete",
                          "compared" if self.compares else "resumed")
        self.ctx.supervisor.tell(Tick("startup-complete"))

    # ---------------------------------------------------------------------------------- stream

    def _apply(self, rev: int, ops: list[Op]) -> None:
        if self._filter_stale():
            self._refresh_filter()
        mine = self.filter.ops(ops, self.store.children, self.store.get) if self.filter != DSFilter() else ops
        self.own.add(rev)
        self.store.apply_replicated(mine, rev)
        self.applied_batches += 1

    @handles(Inbound)
    def on_inbound(self, msg: Inbound) -> None:
        body = msg.env.msg
        if isinstance(body, DSBatches):
            self._on_batches(body)
        elif isinstance(body, DSHeartbeat):
            self._on_heartbeat(body)
        elif isinstance(body, DSError):
            if self.follower is not None:
                self.fresh = True
                self._restart(f"the active ended the stream: {body.kind}: {body.detail}", 0.0, "INFO",
                              failed=False)

    def _on_batches(self, msg: DSBatches) -> None:
        fol = self.follower
        if fol is None or msg.session != self.session:
            return
        self.last_heard = self.ctx.clock.now()
        self.pub_revision = max(self.pub_revision, msg.last)
        try:
            ready, gap = fol.accept(msg.first, msg.last, unpack_batches(msg.batches))
        except (ValueError, TypeError) as exc:
            self._restart(f"a pushed batch could not be read: {exc}")
            return
        try:
            for rev, ops in ready:
                self._apply(rev, ops)
        except StoreError as exc:
            self.fresh = True
            self._restart(f"cannot apply a replicated batch: {exc}", 0.0)
            return
        if ready:
            lag = max(0.0, (time.time() - msg.committed_at) * 1000.0)
            self.lags_ms.append(lag)
            if lag > 50.0:
                self.log.debug("slow DS apply: revisions {}..{} applied {:.1f} ms after their commit", msg.first,
                               msg.last, lag)
        if gap is not None:
            self._restart(gap, 0.0, failed=False)
            return
        self._check_drain()

    def _on_heartbeat(self, msg: DSHeartbeat) -> None:
        if msg.session != self.session or self.follower is None:
            return
        self.last_heard = self.ctx.clock.now()
        self.pub_revision = max(self.pub_revision, msg.revision)
        self.pub_history = msg.history
        if msg.history != self.follower.history:  # e.g. its publisher restarted: a continuing history
            self._restart(f"the active's history changed to {msg.history}", 0.0, "INFO", failed=False)
            return
        gap = self.follower.heartbeat(msg.revision)
        if gap is not None:
            self._restart(gap, 0.0, failed=False)  # resume from what was applied

    def _on_store_change(self, change: Change) -> None:
        """Store subscriber (any thread): a change this actor did not apply is a local write."""
        if change.revision in self.own:
            return
        ref = self.actor_ref
        if ref.is_alive():
            ref.tell(_LocalWrite(change.revision, change.key, change.op))

    @handles(_LocalWrite)
    def on_local_write(self, msg: _LocalWrite) -> None:
        if msg.revision in self.own:
            return
        if self.fresh and self.follower is None:
            return  # a compare is already on its way
        local = not self.filter.replicate(msg.key)
        if local:
            self.log.info("local change of {} (revision {}) on the backup: kept (not replicated); "
                          "realigning the DS position by a compare", msg.key, msg.revision)
        else:
            self.log.warning("local change of {} (revision {}) on the backup: the compare that follows "
                             "overwrites it with the active's value", msg.key, msg.revision)
        self.fresh = True
        self._restart(f"local write of {msg.key}", 0.0, "INFO", failed=False)

    @handles(ConnectionEvent)
    def on_connection_event(self, event: ConnectionEvent) -> None:
        if event.kind == "disconnected" and (self.follower is not None or self.compare is not None):
            self._restart(f"connection to the active's DS publisher ({event.address}) lost", QUICK_RETRY_S)
        elif event.kind == "disconnected" and not self.first_done:
            # the active went away while the first subscription was in flight: start-up must not wait
            # for an answer that cannot come (a switch that fell due meanwhile is carried out)
            self._first_finished(f"connection to the active's DS publisher ({event.address}) lost")

    # ----------------------------------------------------------------------------------- drain

    @handles(DrainForSwitch)
    def on_drain(self, msg: DrainForSwitch) -> None:
        self.drain_reason = msg.reason
        self.drain_target = -1  # asked; the active's answer sets the revision
        self.log.info("controlled switch: asking the active to stop DS writes and draining the stream")
        lease = self.request_timeout() + self.ctx.config.timing.discontinue_timeout + 5.0
        session, ref = self.session, self.actor_ref
        fut = self.endpoint.request(DSDrain(msg.reason, lease), timeout=self.request_timeout())
        fut.add_done_callback(lambda f: ref.tell(_Reply(session, "drain", f)) if ref.is_alive() else None)
        self.schedule(self.request_timeout(), Tick("drain-timeout"))

    def _on_drain_reply(self, future: Future[Envelope]) -> None:
        if self.drain_target is None:
            return
        try:
            body = future.result().msg
        except Exception as exc:
            self._drain_done(False, f"the drain request failed: {type(exc).__name__}: {exc}")
            return
        if isinstance(body, DSError):
            self._drain_done(False, f"the active refused the drain: {body.detail}")
        elif isinstance(body, DSDrained):
            self._on_drained(body)
        else:
            self._drain_done(False, f"unexpected answer {body.TYPE} to the drain request")

    def _on_drained(self, msg: DSDrained) -> None:
        if self.drain_target is None:
            return
        if self.follower is None or msg.history != self.follower.history:
            self._drain_done(False, f"the active is on history {msg.history}, this backup follows "
                             f"{self.follower.history if self.follower else 'nothing yet'}")
            return
        self.drain_target = msg.revision
        self._check_drain()

    def _check_drain(self) -> None:
        if self.drain_target is None or self.drain_target < 0 or self.follower is None:
            return
        if self.compare is None and self.store.revision >= self.drain_target:
            self._drain_done(True, f"applied every DS change up to revision {self.drain_target}")

    def _drain_done(self, ok: bool, detail: str) -> None:
        self.drain_target = None
        if ok:
            self.log.info("controlled switch: DS stream drained: {}", detail)
        else:
            self.log.warning("controlled switch: DS stream NOT drained: {}", detail)
        if self.ctx.supervisor is not None:
            self.ctx.supervisor.tell(DrainFinished(ok, detail))

    # ---------------------------------------------------------------------------------- timers

    @handles(Tick)
    def on_tick(self, msg: Tick) -> None:
        if msg.name == "ds-retry":
            if msg.token == self.retry_token and self.follower is None and self.compare is None:
                self._subscribe()
        elif msg.name == "drain-timeout":
            if self.drain_target is not None:
                self._drain_done(False, f"not drained within {self.request_timeout():g} s "
                                 "(Switchover DS Request Timeout)")
        elif msg.name == "ds-tick":
            self.schedule(TICK_S, Tick("ds-tick"))
            now = self.ctx.clock.now()
            if not self.first_done and now - self.start_time > STARTUP_GRACE_S and not self.endpoint.connected:
                # the active went away before its publisher ever answered (no disconnect to see): a
                # request in flight would wait out Switchover DS Request Timeout; start-up must not
                self._first_finished(f"not connected to the active's DS publisher within {STARTUP_GRACE_S:g} s")
            if self.follower is not None:
                epoch, rev = self.store.position()
                self.endpoint.send(DSAck(self.session, epoch, rev))
                if now - self.last_heard > SILENCE_S:
                    self._restart(f"no word from the active's DS publisher for {SILENCE_S:g} s")
            if self.compare is None:
                self._refresh_filter()
            if len(self.own) > 4096:
                floor = self.store.revision - 1024
                self.own = {r for r in self.own if r > floor}
            self._publish()

    # ---------------------------------------------------------------------------------- status

    def _set_state(self, state: str, reason: str) -> None:
        self.state, self.reason = state, reason
        self._publish()

    def _publish(self) -> None:
        epoch, rev = self.store.position()
        lags = sorted(self.lags_ms)
        behind = max(0, self.pub_revision - rev) if self.pub_history == epoch and self.pub_revision >= 0 else None
        self.board.replace(
            side="backup",
            state=self.state,
            reason=self.reason,
            history=epoch,
            applied=rev,
            active_revision=self.pub_revision,
            lag_revisions=behind,
            lag_ms_p50=round(lags[len(lags) // 2], 3) if lags else None,
            lag_ms_p99=round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 3) if lags else None,
            lag_ms_last=round(self.lags_ms[-1], 3) if self.lags_ms else None,
            applied_batches=self.applied_batches,
            compares=self.compares,
            last_compare=self.last_compare,
            filter=self.filter.state,
            started_up=self.first_done,
        )
