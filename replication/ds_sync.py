"""DS tree replication logic (issue 10): pure, no sockets, no threads, no clocks of its own.

The backup's DSMirror follows the ZeroMQ guide's Clone pattern:

1. subscribe to the active's change stream first and queue what arrives (:class:`Follower`);
2. compare-and-update the tree top-down by subtree hashes (:class:`TreeCompare`, sans-I/O: it says
   which request to send next and is fed the replies), descending only into subtrees whose hashes
   differ and fetching only the keys whose attributes differ;
3. adopt the result atomically at the revision the stream started after, apply the queued batches
   above it (dropping what the snapshot already holds), then follow the stream.

A position is ``(history id, revision)``. The publisher side decides with :func:`resolve_start`
whether a position can be resumed; a gap, a compacted position or a different history is a typed
error that leads back to step 2, never a silent skip.

Batches are idempotent "assignments" (set attributes, delete attribute, delete subtree): replaying a
batch the compare already saw yields the same tree, which is why applying every queued batch above
the subscription point after a compare that read the tree at slightly different times is correct.
"""

from __future__ import annotations

import functools
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any

from msgpack import packb, unpackb

from replication.store import (
    Compacted,
    DeleteAttrOp,
    DeleteOp,
    Op,
    SetOp,
    Store,
    child_key,
)

__all__ = [
    "FILTERED_META",
    "HASH_PREFIX",
    "CompareStats",
    "Follower",
    "PositionError",
    "TreeCompare",
    "WriteGate",
    "attrs_digest",
    "discarded_keys",
    "fetch_attrs",
    "hash_nodes",
    "pack_batches",
    "resolve_start",
    "unpack_batches",
]

_MASK128 = (1 << 128) - 1
FILTERED_META = "ds.filtered"  # store metadata: "1" while this replica follows through an upgrade filter
HASH_PREFIX = 16  # bytes of a child's subtree hash sent in a node listing (2**-128 collision odds)


# ------------------------------------------------------------------------------------------- wire data
def attrs_digest(attrs: Mapping[str, Sequence[str]]) -> bytes:
    """A digest of a key's own attributes (canonical: names sorted, value order kept)."""
    return blake2b(packb(sorted((k, list(v)) for k, v in attrs.items())), digest_size=16).digest()


BUCKETS = 64  # a node with more than BUCKET_MIN children is listed as bucket digests first
BUCKET_MIN = 128
_BUCKET_SEP = "\x00"  # "path\x00n" asks for the children in bucket n (a DS key never holds NUL)


def bucket_of(name: str) -> int:
    return zlib.crc32(name.encode()) & (BUCKETS - 1)


_from_big = functools.partial(int.from_bytes, byteorder="big")


def split_buckets(kids: Iterable[tuple[str, bytes]]) -> list[list[tuple[str, bytes]]]:
    parts: list[list[tuple[str, bytes]]] = [[] for _ in range(BUCKETS)]
    crc, mask = zlib.crc32, BUCKETS - 1
    for name, h in kids:
        parts[crc(name.encode()) & mask].append((name, h))
    return parts


def bucket_digests(parts: list[list[tuple[str, bytes]]]) -> list[bytes]:
    """Per bucket, the sum modulo 2**128 of its children's subtree hashes (``b""`` when empty): as in the
    store's accumulators, order does not matter and each hash already covers its child's name. Each side
    computes them from its own full hashes."""
    return [(sum(_from_big(h) for _, h in p) & _MASK128).to_bytes(16, "big") if p else b"" for p in parts]


ListingCache = dict[tuple[str, str], list[list[tuple[str, bytes]]]]


def hash_nodes(store: Store, paths: Iterable[str], cache: ListingCache | None = None) -> bytes:
    """The active's answer to a hash request, msgpack ``{path: entry}``:

    * ``[attrs digest, subtree hash, [[child, hash prefix, 1 if it has children else 0], ...]]``;
    * for a node with more than :data:`BUCKET_MIN` children ``[attrs digest, subtree hash, None,
      [bucket digest, ...]]`` instead; ``"path\x00n"`` then lists the children in bucket ``n``:
      ``[[child, hash prefix, has children], ...]``;
    * ``None`` for a missing path.

    ``cache`` (kept by the caller across requests) holds the bucketed children of wide nodes by
    ``(key, subtree hash)``: the same subtree hash means the same children.
    """
    cache = {} if cache is None else cache
    out: dict[str, Any] = {}
    listed: list[tuple[str, list[list[Any]]]] = []  # bucket listings: their "has children" flags come last
    for path in paths:
        if _BUCKET_SEP in path:
            key, _, b = path.partition(_BUCKET_SEP)
            digest = store.subtree_hash(key)
            parts = cache.get((key, digest or ""))
            if parts is None:
                parts = split_buckets((n, h) for n, h, _ in store.child_info(key, has_children=False))
                _remember(cache, (key, digest or ""), parts)
            entries: list[list[Any]] = [[name, h[:HASH_PREFIX], 0] for name, h in parts[int(b) % BUCKETS]]
            listed.append((key, entries))
            out[path] = entries
            continue
        node = store.node(path)
        if node is None:
            out[path] = None
            continue
        head = [attrs_digest(node[0]), bytes.fromhex(node[1])]
        kids = store.child_info(path, has_children=False)
        if len(kids) > BUCKET_MIN:
            parts = split_buckets((n, h) for n, h, _ in kids)
            _remember(cache, (path, node[1]), parts)
            out[path] = [*head, None, bucket_digests(parts)]
        else:
            flagged = store.child_info(path)
            out[path] = [*head, [[name, h[:HASH_PREFIX], n] for name, h, n in flagged]]
    if listed:
        parents = store.with_children(child_key(k, str(e[0])) for k, es in listed for e in es)
        for k, es in listed:
            for e in es:
                if child_key(k, str(e[0])) in parents:
                    e[2] = 1
    return packb(out)


def _remember(cache: ListingCache, key: tuple[str, str], parts: list[list[tuple[str, bytes]]]) -> None:
    if len(cache) >= 1024:
        cache.pop(next(iter(cache)))
    cache[key] = parts


def fetch_attrs(store: Store, keys: Iterable[str]) -> bytes:
    return packb({k: store.get(k) for k in keys})


def pack_batches(batches: Sequence[tuple[int, Sequence[Sequence[Any]]]]) -> bytes:
    return packb([[rev, [list(op) for op in ops]] for rev, ops in batches])


def unpack_batches(raw: bytes) -> list[tuple[int, list[Op]]]:
    out: list[tuple[int, list[Op]]] = []
    for rev, ops in unpackb(raw):
        out.append((int(rev), [_to_op(o) for o in ops]))
    return out


def _to_op(raw: Sequence[Any]) -> Op:
    kind, key, attrs = raw
    if kind == "set":
        return SetOp(key, attrs)
    if kind == "delete_attr":
        return DeleteAttrOp(key, next(iter(attrs)))
    if kind == "delete":
        return DeleteOp(key)
    raise ValueError(f"unknown DS operation {kind!r} in a replicated batch (expected set, delete_attr, delete)")


# ---------------------------------------------------------------------------------- publisher side
class PositionError(Exception):
    """A stream cannot start where asked; ``kind`` names why (the DSError kind)."""

    def __init__(self, kind: str, detail: str, fork: int = -1) -> None:
        super().__init__(detail)
        self.kind = kind
        self.fork = fork


def resolve_start(history: str, revision: int, current: tuple[str, int], floor: int,
                  previous: Sequence[tuple[str, int]]) -> int:
    """The revision a stream asked for at ``(history, revision)`` starts after, or :class:`PositionError`.

    ``current`` is the store's ``(epoch, revision)``, ``floor`` its change-log floor and ``previous``
    the histories it continues (:meth:`Store.previous_histories`): a reader of one of those resumes
    if it did not go past the revision where that history ended (else it forked: ``history`` error
    with the fork point).
    """
    epoch, rev = current
    if history != epoch:
        for old, end in previous:
            if old == history:
                if revision > end:
                    raise PositionError("history", f"position ({history}, {revision}) went past the end of "
                                        f"that history at revision {end}: its later writes never reached "
                                        f"this server", fork=end)
                break
        else:
            raise PositionError("history", f"history {history} is not this server's ({epoch}) nor one it "
                                "continues")
    if revision > rev:
        raise PositionError("ahead", f"revision {revision} is ahead of this server's {rev}")
    if revision < floor:
        raise PositionError("compacted", str(Compacted(revision, floor)))
    return revision


class WriteGate:
    """Stops DS writes on the active for a controlled switch (a lease, so a lost switch unfreezes).

    Writers call :meth:`check` under :attr:`lock` before they commit; :meth:`freeze` takes the same
    lock, so once it returns no write is in progress and none starts until :meth:`thaw` or the lease
    ends (``now`` is injectable for tests).
    """

    def __init__(self, now: Callable[[], float]) -> None:
        self.lock = threading.RLock()
        self._now = now
        self._until = 0.0
        self.reason = ""

    def freeze(self, lease: float, reason: str) -> None:
        with self.lock:
            self._until = self._now() + lease
            self.reason = reason

    def thaw(self) -> None:
        with self.lock:
            self._until = 0.0
            self.reason = ""

    def frozen(self) -> bool:
        with self.lock:
            return self._now() < self._until

    def check(self) -> str | None:
        """``None`` if writes may go on, else why not."""
        with self.lock:
            if self._now() < self._until:
                return (f"refused: DS writes are stopped on this server for a controlled switch "
                        f"({self.reason}); make the change on the new active server")
            return None


def discarded_keys(store: Store, fork: int) -> list[str] | None:
    """Keys this store changed after revision ``fork`` (writes a new active never got), or ``None``
    when its change log no longer covers them."""
    try:
        changes = store.changes_since(fork) if fork <= store.revision else []
    except Compacted:
        return None
    return sorted({c.key for c in changes})


# ---------------------------------------------------------------------------------------- compare
@dataclass
class CompareStats:
    hash_requests: int = 0
    paths_listed: int = 0
    fetch_requests: int = 0
    keys_fetched: int = 0
    keys_set: int = 0
    keys_deleted: int = 0
    attrs_removed: int = 0
    bytes_in: int = 0
    skipped_local: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _always(key: str) -> bool:
    return True


@dataclass
class TreeCompare:
    """Top-down compare of the local store with a remote tree, sans-I/O.

    Drive it: ``req = c.next_request()`` gives ``("hash", paths)``, ``("fetch", keys)`` or ``None``
    (done: :meth:`ops` is the update). Feed replies with :meth:`on_hashes` / :meth:`on_fetched`.
    ``replicate(key)`` says whether a key follows the active (``False``: a local parameter, or
    filtered by an upgrade state: never set or deleted here); ``descend(key)`` whether anything
    under it may. ``filter_attrs(key, remote, mine)`` gives the attributes to keep (an upgrade state
    keeps some of this node's own).
    """

    local: Store
    replicate: Callable[[str], bool] = _always
    descend: Callable[[str], bool] = _always
    filter_attrs: Callable[[str, dict[str, list[str]], dict[str, list[str]] | None],
                           dict[str, list[str]]] | None = None
    hash_chunk: int = 256
    fetch_chunk: int = 2000
    stats: CompareStats = field(default_factory=CompareStats)

    def __post_init__(self) -> None:
        self._to_list: deque[str] = deque(["/"])
        self._to_fetch: deque[str] = deque()
        self._fetched: dict[str, dict[str, list[str]] | None] = {}
        self._leaf: set[str] = set()  # fetched keys that have no children on the active
        self._deletes: set[str] = set()
        self._local_parts: dict[str, list[list[tuple[str, bytes]]]] = {}
        self.remote_revision = -1

    # ---------------------------------------------------------------------------------- driving
    def next_request(self) -> tuple[str, list[str]] | None:
        if self._to_fetch and (len(self._to_fetch) >= self.fetch_chunk or not self._to_list):
            keys = [self._to_fetch.popleft() for _ in range(min(self.fetch_chunk, len(self._to_fetch)))]
            self.stats.fetch_requests += 1
            return ("fetch", keys)
        if self._to_list:
            paths = [self._to_list.popleft() for _ in range(min(self.hash_chunk, len(self._to_list)))]
            self.stats.hash_requests += 1
            return ("hash", paths)
        return None

    @property
    def done(self) -> bool:
        return not self._to_list and not self._to_fetch

    def _fetch(self, key: str) -> None:
        if self.replicate(key) and key not in self._fetched:
            self._fetched[key] = None
            self._to_fetch.append(key)
        elif not self.replicate(key):
            self.stats.skipped_local += 1

    def _delete(self, key: str) -> None:
        if self.replicate(key):
            self._deletes.add(key)
        else:
            self.stats.skipped_local += 1

    def on_hashes(self, raw: bytes, revision: int = -1) -> None:
        self.stats.bytes_in += len(raw)
        self.remote_revision = max(self.remote_revision, revision)
        nodes: dict[str, Any] = unpackb(raw)
        for path, info in nodes.items():
            self.stats.paths_listed += 1
            if _BUCKET_SEP in path:
                key, _, b = path.partition(_BUCKET_SEP)
                parts = self._local_parts.get(key)
                if parts is None:
                    parts = split_buckets((n, h) for n, h, _ in self.local.child_info(key, has_children=False))
                    self._local_parts[key] = parts
                self._children(key, info, dict(parts[int(b) % BUCKETS]))
                continue
            mine = self.local.node(path)
            if info is None:
                if mine is not None:
                    self._delete(path)
                continue
            digest, subtree, kids = info[:3]
            if mine is not None and bytes.fromhex(mine[1]) == subtree:
                continue
            if mine is None or attrs_digest(mine[0]) != digest:
                self._fetch(path)
            local = self.local.child_info(path, has_children=False) if mine is not None else []
            if kids is not None:
                self._children(path, kids, {n: h for n, h, _ in local})
                continue
            parts = split_buckets((n, h) for n, h, _ in local)
            self._local_parts[path] = parts  # the bucket listings that follow use them
            mine_buckets = bucket_digests(parts)
            for i, (theirs, ours) in enumerate(zip(info[3], mine_buckets, strict=True)):
                if theirs != ours:
                    self._to_list.append(f"{path}{_BUCKET_SEP}{i}")

    def _children(self, path: str, kids: list[Any], local_kids: dict[str, bytes]) -> None:
        remote_names = set()
        for name, h, n in kids:
            remote_names.add(name)
            key = child_key(path, name)
            lh = local_kids.get(name)
            if lh is not None and lh[:len(h)] == h:
                continue
            if not self.descend(key):
                continue
            if n == 0:
                self._leaf.add(key)
                self._fetch(key)
            else:
                self._to_list.append(key)
        for name in local_kids:
            if name not in remote_names:
                key = child_key(path, name)
                if not self.descend(key):
                    continue
                if self.replicate(key):
                    self._delete(key)
                else:
                    self._to_list.append(key)

    def on_fetched(self, raw: bytes, revision: int = -1) -> None:
        self.stats.bytes_in += len(raw)
        self.remote_revision = max(self.remote_revision, revision)
        got: dict[str, Any] = unpackb(raw)
        for key, attrs in got.items():
            self._fetched[key] = attrs
            self.stats.keys_fetched += 1

    # ----------------------------------------------------------------------------------- result
    def ops(self) -> list[Op]:
        """The update: deletes first, then the fetched keys' attributes (exactly the active's)."""
        out: list[Op] = []
        deletes = sorted(self._deletes | {k for k, a in self._fetched.items() if a is None
                                          and self.local.exists(k)})
        kept: list[str] = []
        for k in deletes:
            if kept and (k.startswith(kept[-1] + "/") or kept[-1] == "/"):
                continue
            kept.append(k)
        out += [DeleteOp(k) for k in kept]
        self.stats.keys_deleted = len(kept)
        for key in sorted(k for k, a in self._fetched.items() if a is not None):
            attrs: dict[str, list[str]] = self._fetched[key] or {}
            mine = self.local.get(key)
            if self.filter_attrs is not None:
                attrs = self.filter_attrs(key, attrs, mine)
            if mine is not None and mine == attrs and key not in self._leaf:
                continue
            if mine != attrs:
                out.append(SetOp(key, attrs))
                self.stats.keys_set += 1
                for name in (mine or {}):
                    if name not in attrs:
                        out.append(DeleteAttrOp(key, name))
                        self.stats.attrs_removed += 1
            if key in self._leaf and mine is not None:
                for name in self.local.children(key):  # the active has none below it
                    ck = child_key(key, name)
                    if self.replicate(ck):
                        out.append(DeleteOp(ck))
                        self.stats.keys_deleted += 1
        return out


# --------------------------------------------------------------------------------------- following
@dataclass
class Follower:
    """Stream bookkeeping of one subscription: queue while comparing, then apply in revision order.

    ``base`` is the revision the stream starts after. While comparing, batches are queued; after the
    compare (adopted at ``base``) :meth:`ready` returns the queued batches above ``base`` in order. A
    batch that does not follow the last one (``expected``) is a gap: :meth:`accept` says so and the
    caller resubscribes from its last applied position.
    """

    history: str
    base: int
    comparing: bool
    queue: list[tuple[int, list[Op]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.expected = self.base + 1  # the next revision the stream must deliver
        self.hb_prev = -1  # the publisher's revision at the previous heartbeat

    def accept(self, first: int, last: int,
               batches: list[tuple[int, list[Op]]]) -> tuple[list[tuple[int, list[Op]]], str | None]:
        """Take a pushed message covering revisions ``first..last`` (a revision without operations on
        the active's side has no batch); returns those to apply now (none while comparing) and a gap
        message when the message does not follow the last one."""
        if last < self.expected:
            return [], None  # already held (a duplicate after a resubscription): drop it
        if first > self.expected:
            return [], f"gap in the DS change stream: expected revision {self.expected}, got {first}"
        ready: list[tuple[int, list[Op]]] = []
        for rev, ops in batches:
            if rev < self.expected:
                continue
            if self.comparing:
                self.queue.append((rev, ops))
            else:
                ready.append((rev, ops))
        self.expected = last + 1
        return ready, None

    def heartbeat(self, revision: int) -> str | None:
        """The publisher's revision at a heartbeat. Everything committed before the previous heartbeat
        was pushed before this one: if it has not arrived, it was lost (a full queue): a gap message."""
        previous, self.hb_prev = self.hb_prev, revision
        if previous >= 0 and self.expected - 1 < previous:
            return f"batches up to revision {previous} never arrived (last received {self.expected - 1})"
        return None

    def compared(self) -> list[tuple[int, list[Op]]]:
        """The compare finished (adopted at ``base``): the queued batches above it, in order."""
        self.comparing = False
        out = [(r, o) for r, o in self.queue if r > self.base]
        self.queue.clear()
        return out


# ------------------------------------------------------------------------------------- visible state
class StatusBoard:
    """The replication state a node shows (admin ``ds.replication``, ``ctl status``): written by the
    DSMirror / DSPublisher, read by anyone (thread-safe, copies out)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {"side": "none", "state": "stopped", "reason": "not started"}

    def update(self, **fields: Any) -> None:
        with self._lock:
            self._data.update(fields)

    def replace(self, **fields: Any) -> None:
        with self._lock:
            self._data = dict(fields)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._data)


def replication_warning(status: Mapping[str, Any]) -> str | None:
    """The control panel's warning when a backup's DS changes are not replicating, else ``None``."""
    if not status or status.get("side") != "backup":
        return None
    state = status.get("state")
    if state == "stopped":
        return (f"The backup server has detected that DS (configuration) replication from the primary has "
                f"stopped: {status.get('reason') or 'no reason given'}.")
    if state == "comparing" and status.get("compares", 0) > 1 and status.get("reason"):
        return f"DS replication is resynchronising: {status.get('reason')}."
    return None
