"""The DS tree store: a hierarchical registry of keys with multi-valued attributes, in SQLite.

Model
-----
* A **key** is a POSIX-like absolute path (``/Config/Users/alice``, ``/Server/Parameters/Switchover TS
  Timeout``); segments may contain spaces. ``/`` is the root and always exists. Parents are implicit:
  writing ``/a/b/c`` creates ``/a`` and ``/a/b`` (with no attributes) when they are missing.
* Each key has **attributes**: ``name -> list of strings`` (multi-valued, value order is kept).
* Writes are **batches** of typed operations (:class:`SetOp`, :class:`DeleteAttrOp`, :class:`DeleteOp`),
  applied atomically in one SQLite transaction. A single ``set``/``delete`` is a batch of one.
* Every committed batch gets the next **revision** (one per batch, strictly increasing, durable, never
  reused even across :meth:`Store.reset`). Each operation of the batch is appended to the **change log**
  as a :class:`Change` (revision, op, key, attrs, index and count within the batch).
  :meth:`Store.changes_since` returns exactly the changes after a revision, in order;
  :meth:`Store.compact` drops old log rows, and reading below the compacted point raises
  :class:`Compacted` (never a silent gap).
* The store has a random **epoch** id, persisted, that changes when its history is replaced
  (:meth:`Store.reset`, ``import_json(..., reset_history=True)``). A reader holding ``(epoch, revision)``
  can tell a resumable stream from a new one.
* Every key keeps a **subtree hash** ``BLAKE2b(name || accumulator || canonical own attributes)``; the
  canonical attributes are msgpack ``[[name, [values...]], ...]`` with names sorted and value order kept,
  and the accumulator is the sum modulo 2**256 of the children's subtree hashes (each of which covers
  the child's name): an order-independent hash of the set of (child name, child subtree). Changing a
  child updates its parent's accumulator in O(1), so a write costs O(depth) hash updates whatever the
  fan-out, and two trees compare top-down in O(differences x depth) with :meth:`Store.subtree_hash` and
  :meth:`Store.child_hashes` (:func:`iter_diff` does it for two local stores).
* Subscribers (:meth:`Store.subscribe`) receive every committed change, in revision order, after commit.

Storage: table ``nodes`` (path, parent, name, attrs, acc, hash; indexed by parent for children),
table ``changes`` (one row per revision: the batch's operations as msgpack), table ``meta`` (epoch,
revision, log floor, schema, clean-shutdown flag, durability mode of the last run, user metadata such as
replication cursors).

Durability
----------
The database runs in WAL mode. ``durability="normal"`` (the default) sets ``synchronous=NORMAL``: a
commit appends to the WAL without waiting for an fsync, and the WAL is fsynced at each checkpoint. A
committed revision survives a crash of the process (kill -9 included: the WAL is in the kernel's page
cache), but a power cut or kernel crash may roll back the last commits. That is detected: a store that
was not closed cleanly starts a **new epoch** when reopened (losing the tail of the history would
otherwise let revision numbers be reused for different changes), so replication readers resynchronise
by hash comparison instead of trusting a stream that may have a hole. It is the default because one
fsync per commit caps single writes at a few thousand per second on ordinary disks (about 3,000/s with a
300 us fsync) while a pair already keeps a copy of the tree on the peer and recovers an epoch change.
``durability="full"`` (``synchronous=FULL``) fsyncs the WAL at every commit, so a revision the store has
returned survives a power cut too; choose it where losing the last commits of a machine matters more
than write throughput. The mode of each run is recorded: what decides a new epoch is the mode of the run
that did not close cleanly (one in ``full`` mode lost nothing), whatever the mode it is reopened in.

Checkpoints (copying the WAL back into the database) run on a background thread with its own connection
(:class:`_Checkpointer`), not inside the commits of the writer; SQLite's own automatic checkpoint stays
on with a higher threshold as a backstop. The WAL file grows to a few tens of MiB under sustained writes.

Performance notes
-----------------
A batch validates its operations, loads every key it touches and their ancestors in a few sorted
``IN (...)`` lookups (none for keys under a parent that does not exist), applies the operations in
memory, then settles the hashes bottom-up: each changed node, ancestors included, is packed, hashed and
written once per batch, deepest first, with one ``executemany`` for new rows and one for updated rows.
The change log row is the validated operations packed once. A batch of 1,000 operations or more pauses
the cyclic garbage collector (its objects are freed by reference counting).

Threading
---------
One connection (``check_same_thread=False``) guarded by one re-entrant lock; every public method is
thread-safe. Subscribers run outside the lock, one delivering thread at a time, in commit order: a
commit whose thread finds another thread delivering returns at once and that thread delivers it (so a
subscriber that waits on an actor which writes to the store cannot deadlock). A subscriber may read or
write the store (a write from inside a callback is delivered after the current change has reached every
subscriber). A subscriber that raises is logged and skipped.
"""

from __future__ import annotations

import collections
import gc
import operator
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from hashlib import blake2b as _blake2b
from pathlib import Path
from typing import Any, Literal, cast

from loguru import logger
from msgpack import Packer
from msgpack import packb as _packb
from msgpack import unpackb as _unpackb

__all__ = [
    "DB_FILENAME",
    "EXPORT_FORMAT",
    "Change",
    "Compacted",
    "DeleteAttrOp",
    "DeleteOp",
    "EpochChanged",
    "InvalidAttrs",
    "InvalidImport",
    "InvalidKey",
    "Op",
    "RevisionAhead",
    "SetOp",
    "Store",
    "StoreError",
    "child_key",
    "iter_diff",
    "join_key",
    "parent_key",
    "split_key",
    "validate_key",
]

DB_FILENAME = "ds.sqlite3"
EXPORT_FORMAT = "switchover-ds/1"
SCHEMA_VERSION = "2"  # 2: change log rows hold msgpack

_MOD = 1 << 256
_ZERO_ACC = bytes(32)
_ZERO_ACC_BA = bytearray(_ZERO_ACC)  # bound as a parameter (SQLite copies it); never modified
_HASH_BYTES = 32


# --------------------------------------------------------------------------------------------- errors
class StoreError(Exception):
    """Base class of the store's own errors."""


class InvalidKey(ValueError):
    """A key is not a valid DS path; the message says what was wrong and what is expected."""


class InvalidAttrs(ValueError):
    """Attributes are not a mapping of non-empty names to lists of strings."""


class InvalidImport(ValueError):
    """An import document is not in the export format."""


class Compacted(StoreError):
    """The change log no longer holds every change after the requested revision."""

    def __init__(self, requested: int, floor: int) -> None:
        self.requested = requested
        self.floor = floor
        super().__init__(
            f"changes after revision {requested} were compacted: the change log only covers changes after "
            f"revision {floor}; resynchronise by comparing trees (subtree hashes) or from an export"
        )


class RevisionAhead(StoreError):
    """The requested revision is beyond this store's current revision (another history?)."""

    def __init__(self, requested: int, current: int) -> None:
        self.requested = requested
        self.current = current
        super().__init__(
            f"revision {requested} is ahead of this store's current revision {current}; "
            f"the reader follows a different history (check the epoch) and must resynchronise"
        )


class EpochChanged(StoreError):
    """The reader's epoch is not the store's: its revision numbers mean nothing here."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"store epoch is {actual}, not {expected}: its history was reset; resynchronise from scratch"
        )


# ----------------------------------------------------------------------------------------------- keys
def validate_key(key: object) -> str:
    """Return ``key`` if it is a valid DS path, else raise :class:`InvalidKey` explaining why."""
    if (type(key) is str and key[:1] == "/" and key[-1:] != "/" and "//" not in key and "/." not in key
            and "\x00" not in key):
        return key  # fast path: absolute, no empty segment, no segment starting with '.'
    expected = "expected an absolute path like '/Config/Users/alice'"
    if not isinstance(key, str):
        raise InvalidKey(f"DS key must be a string, got {type(key).__name__} {key!r}; {expected}")
    if key == "/":
        return key
    if not key.startswith("/"):
        raise InvalidKey(f"DS key {key!r} is not absolute: it must start with '/'; {expected}")
    if "\x00" in key:
        raise InvalidKey(f"DS key {key!r} contains a NUL character, which is not allowed; {expected}")
    if key.endswith("/"):
        raise InvalidKey(f"DS key {key!r} ends with '/' (an empty last segment); {expected} without it")
    for seg in key[1:].split("/"):
        if seg == "":
            raise InvalidKey(f"DS key {key!r} has an empty segment ('//'); {expected}")
        if seg in (".", ".."):
            raise InvalidKey(f"DS key {key!r} has a {seg!r} segment, which is not allowed; {expected}")
    return key


def split_key(key: str) -> list[str]:
    """Segments of a valid key; ``[]`` for the root."""
    return [] if key == "/" else key[1:].split("/")


def join_key(segments: Iterable[str]) -> str:
    """Inverse of :func:`split_key` (segments are validated through the resulting key)."""
    return validate_key("/" + "/".join(segments))


def parent_key(key: str) -> str | None:
    """Parent of a valid key; ``None`` for the root."""
    if key == "/":
        return None
    i = key.rfind("/")
    return "/" if i == 0 else key[:i]


def child_key(key: str, name: str) -> str:
    """The key of child ``name`` under ``key`` (validated)."""
    return validate_key(("" if key == "/" else key) + "/" + name)


def _depth(key: str) -> int:
    return 0 if key == "/" else key.count("/")


def _name(key: str) -> str:
    return "" if key == "/" else key[key.rfind("/") + 1 :]


def _validate_attrs(attrs: object, key: str) -> dict[str, list[str]]:
    if type(attrs) is dict:  # fast path for the common case; anything unusual takes the checked path
        fast: dict[str, list[str]] = {}
        for name, values in attrs.items():
            if type(name) is not str or not name or "\x00" in name or type(values) is not list:
                break
            for v in values:
                if type(v) is not str:
                    break
            else:
                fast[name] = values.copy()
                continue
            break
        else:
            return fast
    if not isinstance(attrs, Mapping):
        raise InvalidAttrs(f"attributes for {key} must be a mapping of name -> list of strings, "
                           f"got {type(attrs).__name__}")
    out: dict[str, list[str]] = {}
    for name, values in attrs.items():
        if not isinstance(name, str) or name == "" or "\x00" in name:
            raise InvalidAttrs(f"attribute name {name!r} on {key} must be a non-empty string without NUL")
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            raise InvalidAttrs(
                f"attribute {name!r} on {key} must be a list of strings (multi-valued), got "
                f"{type(values).__name__} {values!r}; write [{values!r}] for a single value"
            )
        vals = list(values)
        for v in vals:
            if not isinstance(v, str):
                raise InvalidAttrs(f"attribute {name!r} on {key} has a non-string value {v!r}")
        out[name] = vals
    return out


# ------------------------------------------------------------------------------------------ operations
@dataclass(frozen=True)
class SetOp:
    """Set the given attributes of ``key`` (others are left as they are); creates the key if missing."""

    key: str
    attrs: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class DeleteAttrOp:
    """Remove one attribute of ``key`` (no-op if the key or attribute is missing)."""

    key: str
    name: str


@dataclass(frozen=True)
class DeleteOp:
    """Delete ``key`` and everything below it (no-op if missing). Deleting ``/`` empties the tree."""

    key: str


Op = SetOp | DeleteAttrOp | DeleteOp
OpName = Literal["set", "delete_attr", "delete", "reset"]


@dataclass(frozen=True)
class Change:
    """One committed operation, as stored in the change log and delivered to subscribers.

    ``attrs`` is the attributes set (``op == "set"``), ``{name: []}`` for ``"delete_attr"``, and ``{}``
    for ``"delete"`` and ``"reset"``. ``index``/``count`` place the change inside its batch (all changes
    of a batch share one revision); a replica applies a revision once it has all ``count`` changes.
    ``"reset"`` means the history was replaced (new epoch): every key may have changed.
    """

    revision: int
    op: OpName
    key: str
    attrs: Mapping[str, Sequence[str]]
    index: int = 0
    count: int = 1

    def to_op(self) -> Op:
        """The operation that replays this change on another store."""
        if self.op == "set":
            return SetOp(self.key, {k: list(v) for k, v in self.attrs.items()})
        if self.op == "delete_attr":
            return DeleteAttrOp(self.key, next(iter(self.attrs)))
        if self.op == "delete":
            return DeleteOp(self.key)
        raise ValueError("a 'reset' change has no operation: resynchronise the whole tree")

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "op": self.op, "key": self.key,
                "attrs": {k: list(v) for k, v in self.attrs.items()},
                "index": self.index, "count": self.count}


# Internal validated op, which is also its change-log form: ("set", key, attrs), ("delete_attr", key,
# {name: []}) or ("delete", key, {}). The attrs dict and its lists are the store's own copies.
_IOp = tuple[str, str, dict[str, list[str]]]


def _normalize_op(op: object) -> _IOp:
    if isinstance(op, SetOp):
        key = validate_key(op.key)
        return ("set", key, _validate_attrs(op.attrs, key))
    if isinstance(op, DeleteAttrOp):
        key = validate_key(op.key)
        if not isinstance(op.name, str) or op.name == "" or "\x00" in op.name:
            raise InvalidAttrs(f"attribute name {op.name!r} on {key} must be a non-empty string without NUL")
        return ("delete_attr", key, {op.name: []})
    if isinstance(op, DeleteOp):
        return ("delete", validate_key(op.key), {})
    raise TypeError(f"not a store operation: {op!r} (expected SetOp, DeleteAttrOp or DeleteOp)")


def _normalize_ops(ops: Iterable[object]) -> list[_IOp]:
    """Validate operations into their internal form (the common :class:`SetOp` with inlined checks)."""
    out: list[_IOp] = []
    append = out.append
    for op in ops:
        if type(op) is not SetOp:
            append(_normalize_op(op))
            continue
        key = op.key
        if (type(key) is not str or key[:1] != "/" or key[-1:] == "/" or "//" in key or "/." in key
                or "\x00" in key):
            key = validate_key(key)  # the root, a segment starting with '.', or an error to explain
        append(("set", key, _validate_attrs(op.attrs, key)))
    return out


# -------------------------------------------------------------------------------------------- hashing
def _pack(attrs: Mapping[str, Sequence[str]]) -> bytes:
    """Canonical bytes of attributes (also the stored form): msgpack of ``[[name, [values...]], ...]``
    with names sorted and value order kept."""
    return _packb(sorted(attrs.items()))


def _unpack(raw: bytes) -> dict[str, list[str]]:
    return dict(_unpackb(raw))


_EMPTY = _pack({})
_HASHER = _blake2b(digest_size=_HASH_BYTES, person=b"ds-node")  # copied: cheaper than a new one per node


def _node_hash(name: str, attrs_raw: bytes, acc: int) -> bytes:
    """Subtree hash of a node: its name, canonical attributes and children accumulator.

    The accumulator is the sum modulo 2**256 of the children's subtree hashes (as integers); since a
    hash covers the child's name, the sum is an order-independent hash of the set of (name, subtree).
    ``BLAKE2b-256(person="ds-node"; name || 0x00 || accumulator (32 bytes, big-endian) || attributes)``;
    :meth:`_Batch.finish` computes the same inline.
    """
    h = _HASHER.copy()
    h.update(b"%s\x00%s%s" % (name.encode(), acc.to_bytes(32, "big"), attrs_raw))
    return h.digest()


def _contrib(node_hash: bytes) -> int:
    return int.from_bytes(node_hash, "big")


class _Node:
    """A node loaded into, or created by, a batch.

    ``raw``/``acc_raw``/``base`` are the node's stored attributes, accumulator and subtree hash; ``raw``
    and ``base`` are ``None`` for a node that has no row (created in this batch). ``base`` is also what
    the parent's stored accumulator counts for this node. ``attrs`` is decoded from ``raw`` only when an
    operation changes it (``shared``: it is still the payload of the operation that created the node).
    ``delta`` sums the changes of the children's hashes (and removals) until
    :meth:`_Batch.finish` settles the accumulator to ``(acc_raw + delta) mod 2**256``.
    """

    __slots__ = ("acc_raw", "attrs", "base", "delta", "dirty", "key", "raw", "shared")

    def __init__(self, key: str, raw: bytes | None, acc_raw: bytes, base: bytes | None) -> None:
        self.key = key
        self.raw = raw
        self.acc_raw = acc_raw
        self.base = base
        self.attrs: dict[str, list[str]] | None = None
        self.shared = False  # attrs is an operation's payload (also logged): copy it before changing it
        self.delta = 0
        self.dirty = False


# --------------------------------------------------------------------------------------------- store
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nodes (
    path   TEXT PRIMARY KEY,
    parent TEXT,
    name   TEXT NOT NULL,
    attrs  BLOB NOT NULL,  -- msgpack [[name, [values]], ...], names sorted (see _pack)
    acc    BLOB NOT NULL,
    hash   BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nodes_by_parent ON nodes(parent, name);
CREATE TABLE IF NOT EXISTS changes (
    rev INTEGER PRIMARY KEY,  -- one row per committed batch
    cnt INTEGER NOT NULL,     -- number of operations in the batch
    ops BLOB NOT NULL         -- msgpack list of [op, key, attrs]
);
"""

Subscriber = Callable[[Change], None]


class _Checkpointer:
    """Checkpoints the WAL from a background thread, on its own connection, off the commit path.

    SQLite's automatic checkpoint runs inside the commit that crosses its threshold: that commit then
    copies the WAL into the database and syncs both files, a latency spike every few hundred small
    writes and a large share of a big batch. Here the writer only counts what it wrote (:meth:`wrote`,
    a rough page count) and past :attr:`THRESHOLD` wakes a thread that runs a PASSIVE checkpoint, which
    never blocks the writer (WAL readers and writers work alongside a checkpointer).

    SQLite starts the WAL over from its beginning when a write finds it fully checkpointed, which
    happens at the first pause in the writes. Under sustained writes the commits made during a
    checkpoint always leave a few frames behind and the WAL keeps growing until SQLite's own automatic
    checkpoint, kept on at :attr:`BACKSTOP` pages (40 MiB), runs inline: one commit in 10,000 pages
    takes about 10 ms, where SQLite's default threshold costs several ms every 1,000 pages. Making the
    WAL start over sooner would mean blocking the writer for a checkpoint's two fsyncs more often (tried:
    not better).
    The thread starts on the first request and stops in :meth:`close`.
    """

    THRESHOLD = 1000  # pages written since the last request (SQLite's own default threshold)
    BACKSTOP = 10_000  # the writer's wal_autocheckpoint

    def __init__(self, path: Path, synchronous: str) -> None:
        self.path = path
        self.synchronous = synchronous
        self._written = 0
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.runs = 0  # checkpoints done, and the last one's (busy, WAL frames, frames checkpointed)
        self.last: tuple[int, int, int] | None = None

    def wrote(self, pages: int) -> None:
        """Called by the writer (under the store lock) after each commit."""
        self._written += pages
        if self._written < self.THRESHOLD or self._stop:
            return
        self._written = 0
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"ds-checkpoint {self.path.name}",
                                            daemon=True)
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            logger.warning("DS store {}: no background checkpoints ({}); SQLite checkpoints when the WAL "
                           "reaches {} pages", self.path, exc, self.BACKSTOP)
            return
        try:
            conn.execute(f"PRAGMA synchronous={self.synchronous}")  # how a checkpoint syncs
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stop:
                    return
                try:
                    self.last = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.runs += 1
                except sqlite3.Error as exc:
                    logger.warning("DS store {}: background checkpoint failed: {}", self.path, exc)
        finally:
            conn.close()

    def close(self) -> None:
        """Stop the thread (waiting for a running checkpoint) and close its connection."""
        self._stop = True
        if self._thread is not None:
            self._wake.set()
            self._thread.join()
            self._thread = None


class Store:
    """A DS tree in one SQLite file. Open with ``Store(path)`` or ``Store.open_dir(data_dir)``.

    ``path`` may be a file or a directory (then :data:`DB_FILENAME` inside it). ``durability`` is
    explained in the module documentation; ``cache_mib`` sizes SQLite's page cache.
    """

    def __init__(self, path: str | os.PathLike[str], *,
                 durability: Literal["full", "normal"] = "normal", cache_mib: int = 16) -> None:
        p = Path(path)
        if p.is_dir():
            p = p / DB_FILENAME
        if durability not in ("full", "normal"):
            raise ValueError(f"durability must be 'full' or 'normal', got {durability!r}")
        self.path = p
        self.durability = durability
        self._synchronous = "FULL" if durability == "full" else "NORMAL"
        self._cache_kib = max(1, int(cache_mib)) * 1024
        self._lock = threading.RLock()
        self._deliver_lock = threading.Lock()
        self._tls = threading.local()
        self._pending: collections.deque[Change] = collections.deque()
        self._subs: dict[int, Subscriber] = {}
        self._sub_seq = 0
        self._closed = False
        self._pack: Callable[[Any], bytes] = Packer().pack  # reused under the lock (packb makes one per call)
        self._checkpointer = _Checkpointer(p, self._synchronous)
        try:
            self._conn = sqlite3.connect(str(p), check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open DS store {p}: {exc} (does the directory exist and is it "
                             f"writable?)") from None
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StoreError(f"cannot use DS store {p}: {exc}") from None
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def open_dir(cls, data_dir: str | os.PathLike[str], **kw: Any) -> Store:
        """Open (creating it if needed) the store of a node's data directory."""
        d = Path(data_dir)
        d.mkdir(parents=True, exist_ok=True)
        return cls(d / DB_FILENAME, **kw)

    # ----------------------------------------------------------------------------------- lifecycle
    def _setup(self) -> None:
        c = self._conn
        mode = c.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"cannot put {self.path} in WAL mode (got {mode!r})")
        c.execute(f"PRAGMA synchronous={self._synchronous}")
        c.execute(f"PRAGMA wal_autocheckpoint={_Checkpointer.BACKSTOP}")  # see _Checkpointer
        c.execute("PRAGMA foreign_keys=OFF")
        c.execute("PRAGMA temp_store=MEMORY")
        c.execute(f"PRAGMA cache_size=-{self._cache_kib}")  # page cache; a bigger batch spills into the WAL
        c.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    c.execute(stmt)
            meta = dict(c.execute("SELECT k, v FROM meta").fetchall())
            if not meta:
                meta = {"schema": SCHEMA_VERSION, "epoch": uuid.uuid4().hex, "revision": "0",
                        "log_floor": "0", "clean": "1"}
                c.executemany("INSERT INTO meta(k, v) VALUES (?, ?)", list(meta.items()))
                c.execute(
                    "INSERT INTO nodes(path, parent, name, attrs, acc, hash) VALUES ('/', NULL, '', ?, ?, ?)",
                    (_EMPTY, _ZERO_ACC, _node_hash("", _EMPTY, 0)),
                )
            if meta.get("schema") != SCHEMA_VERSION:
                raise StoreError(f"{self.path}: DS store schema {meta.get('schema')!r} is not supported "
                                 f"(this version reads schema {SCHEMA_VERSION})")
            # The mode of the last run decides whether it may have lost its newest commits (stores written
            # before the mode was recorded: the mode of this run, as before).
            last_mode = meta.get("durability", self.durability)
            if last_mode == "normal" and meta.get("clean") != "1":
                # The last run may have lost its newest commits (power loss): never reuse revisions silently.
                meta["epoch"] = uuid.uuid4().hex
                c.execute("UPDATE meta SET v=? WHERE k='epoch'", (meta["epoch"],))
                c.execute("DELETE FROM meta WHERE k='history.prev'")  # its tail may be lost
                logger.warning("DS store {} was not closed cleanly; starting a new epoch {} so that readers "
                               "resynchronise", self.path, meta["epoch"])
            c.executemany("INSERT OR REPLACE INTO meta(k, v) VALUES (?, ?)",
                          [("clean", "0"), ("durability", self.durability)])
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        self._epoch = meta["epoch"]
        self._revision = int(meta["revision"])
        self._floor = int(meta["log_floor"])

    def close(self) -> None:
        """Close the database (marks a clean shutdown). Further calls raise."""
        with self._lock:
            if self._closed:
                return
            try:
                self._conn.execute("UPDATE meta SET v='1' WHERE k='clean'")
            except sqlite3.Error as exc:
                logger.warning("DS store {}: cannot mark clean shutdown: {}", self.path, exc)
            self._checkpointer.close()  # before the last connection, which checkpoints the WAL away
            self._conn.close()
            self._closed = True

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"DS store {self.path} is closed")

    # ------------------------------------------------------------------------------------ metadata
    @property
    def epoch(self) -> str:
        """Random id of this store's history; changes on :meth:`reset` / history-replacing import."""
        with self._lock:
            return self._epoch

    @property
    def revision(self) -> int:
        """Revision of the last committed batch (0 for a new store)."""
        with self._lock:
            return self._revision

    @property
    def log_floor(self) -> int:
        """``changes_since(r)`` works for ``r >= log_floor`` (older changes were compacted)."""
        with self._lock:
            return self._floor

    def position(self) -> tuple[str, int]:
        """``(epoch, revision)`` read together."""
        with self._lock:
            return self._epoch, self._revision

    def get_meta(self, name: str) -> str | None:
        """A user metadata value (e.g. a replication cursor) written with ``batch(..., meta=...)``."""
        with self._lock:
            self._check_open()
            row = self._conn.execute("SELECT v FROM meta WHERE k=?", ("user." + name,)).fetchone()
            return None if row is None else str(row[0])

    # --------------------------------------------------------------------------------------- reads
    def get(self, key: str) -> dict[str, list[str]] | None:
        """Attributes of ``key`` (``{}`` if it has none), or ``None`` if the key does not exist."""
        key = validate_key(key)
        with self._lock:
            self._check_open()
            row = self._conn.execute("SELECT attrs FROM nodes WHERE path=?", (key,)).fetchone()
        return None if row is None else _unpack(row[0])

    def exists(self, key: str) -> bool:
        key = validate_key(key)
        with self._lock:
            self._check_open()
            return self._conn.execute("SELECT 1 FROM nodes WHERE path=?", (key,)).fetchone() is not None

    def children(self, key: str) -> list[str]:
        """Names of the children of ``key``, sorted (``[]`` for a leaf or a missing key)."""
        key = validate_key(key)
        with self._lock:
            self._check_open()
            rows = self._conn.execute("SELECT name FROM nodes WHERE parent=? ORDER BY name",
                                      (key,)).fetchall()
        return [r[0] for r in rows]

    def subtree_hash(self, key: str = "/") -> str | None:
        """Hex subtree hash of ``key``, or ``None`` if the key does not exist."""
        key = validate_key(key)
        with self._lock:
            self._check_open()
            row = self._conn.execute("SELECT hash FROM nodes WHERE path=?", (key,)).fetchone()
        return None if row is None else bytes(row[0]).hex()

    def child_hashes(self, key: str) -> dict[str, str]:
        """``{child name: hex subtree hash}`` of the children of ``key`` (for top-down comparison)."""
        key = validate_key(key)
        with self._lock:
            self._check_open()
            rows = self._conn.execute("SELECT name, hash FROM nodes WHERE parent=? ORDER BY name",
                                      (key,)).fetchall()
        return {r[0]: bytes(r[1]).hex() for r in rows}

    def child_info(self, key: str, has_children: bool = True) -> list[tuple[str, bytes, int]]:
        """``[(child name, subtree hash, 1 if it has children else 0)]`` of the children of ``key``,
        by name (a remote compare's node listing); without ``has_children`` the flag is -1 (cheaper)."""
        key = validate_key(key)
        with self._lock:
            self._check_open()
            if not has_children:
                rows = self._conn.execute("SELECT name, hash, -1 FROM nodes WHERE parent=? ORDER BY name",
                                          (key,)).fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT n.name, n.hash, EXISTS(SELECT 1 FROM nodes c WHERE c.parent=n.path) FROM nodes n "
                    "WHERE n.parent=? ORDER BY n.name", (key,)).fetchall()
        return [(r[0], bytes(r[1]), int(r[2])) for r in rows]

    def with_children(self, keys: Iterable[str]) -> set[str]:
        """Those of ``keys`` that have at least one child."""
        wanted = [validate_key(k) for k in keys]
        out: set[str] = set()
        with self._lock:
            self._check_open()
            for i in range(0, len(wanted), 500):
                part = wanted[i : i + 500]
                out.update(r[0] for r in self._conn.execute(
                    f"SELECT DISTINCT parent FROM nodes WHERE parent IN ({','.join('?' * len(part))})", part))
        return out

    def node(self, key: str) -> tuple[dict[str, list[str]], str] | None:
        """``(attrs, hex subtree hash)`` of ``key`` read together, or ``None``."""
        key = validate_key(key)
        with self._lock:
            self._check_open()
            row = self._conn.execute("SELECT attrs, hash FROM nodes WHERE path=?", (key,)).fetchone()
        return None if row is None else (_unpack(row[0]), bytes(row[1]).hex())

    def walk(self, key: str = "/") -> list[tuple[str, dict[str, list[str]]]]:
        """Every ``(key, attrs)`` of the subtree at ``key`` (itself included), parents before children."""
        key = validate_key(key)
        with self._lock:
            self._check_open()
            rows = self._subtree_rows(key)
        rows.sort(key=lambda r: split_key(r[0]))
        return [(r[0], _unpack(r[1])) for r in rows]

    def count(self, key: str = "/") -> int:
        """Number of keys in the subtree at ``key`` (itself included; 0 if missing)."""
        key = validate_key(key)
        with self._lock:
            self._check_open()
            if key == "/":
                return int(self._conn.execute("SELECT count(*) FROM nodes").fetchone()[0])
            lo, hi = key + "/", key + "0"
            return int(self._conn.execute(
                "SELECT count(*) FROM nodes WHERE path=? OR (path>=? AND path<?)", (key, lo, hi)
            ).fetchone()[0])

    def _subtree_rows(self, key: str) -> list[tuple[str, bytes]]:
        if key == "/":
            return [(r[0], r[1]) for r in self._conn.execute("SELECT path, attrs FROM nodes")]
        lo, hi = key + "/", key + "0"  # '0' is the character after '/'
        return [(r[0], r[1]) for r in self._conn.execute(
            "SELECT path, attrs FROM nodes WHERE path=? OR (path>=? AND path<?)", (key, lo, hi))]

    # -------------------------------------------------------------------------------------- writes
    def set(self, key: str, attrs: Mapping[str, Sequence[str]]) -> int:
        """Set the given attributes of ``key`` (creating it and its parents). Returns the revision."""
        return self.batch([SetOp(key, attrs)])

    def delete_attr(self, key: str, name: str) -> int:
        return self.batch([DeleteAttrOp(key, name)])

    def delete(self, key: str) -> int:
        """Delete ``key`` recursively. Returns the revision."""
        return self.batch([DeleteOp(key)])

    def batch(self, ops: Iterable[Op], *, meta: Mapping[str, str] | None = None) -> int:
        """Apply ``ops`` atomically as one revision; returns it (the current revision if ``ops`` is empty).

        ``ops`` may be any iterable (it is consumed inside the transaction). Every op is validated; an
        invalid op raises and nothing of the batch is written. ``meta`` stores user metadata values
        (see :meth:`get_meta`) in the same transaction, e.g. a replication cursor.
        """
        with self._lock:
            self._check_open()
            changes = self._apply(ops, meta)
            if changes:
                self._pending.extend(changes)
            rev = self._revision
        self._deliver()
        return rev

    def _apply(self, ops: Iterable[Op], meta: Mapping[str, str] | None,
               pre: Callable[[], None] | None = None, log: bool = True,
               at: int | None = None) -> list[Change]:
        # A big batch pauses the cyclic garbage collector: it allocates a few objects per operation, all
        # freed by reference counting (no cycles), which would otherwise make the collector run over and
        # over and promote them (a full collection per 10,000 operations: 15-20% of the batch's time).
        gc_paused = isinstance(ops, Sized) and len(ops) >= _GC_PAUSE_OPS and _pause_gc()
        try:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                if pre is not None:
                    pre()
                applied = _normalize_ops(ops)  # consumed inside the transaction
                if not gc_paused and len(applied) >= _GC_PAUSE_OPS:
                    gc_paused = _pause_gc()
                if meta:
                    c.executemany("INSERT OR REPLACE INTO meta(k, v) VALUES (?, ?)",
                                  [("user." + str(k), str(v)) for k, v in meta.items()])
                if not applied and pre is None and at is None:
                    c.execute("COMMIT" if meta else "ROLLBACK")
                    return []
                b = _Batch(c, self._pack)
                b.prefetch(applied)
                b.apply(applied)
                b.finish()
                rev = self._revision + 1 if at is None else at
                n = len(applied)
                if log:  # the internal form of the operations is their log form
                    c.execute("INSERT INTO changes(rev, cnt, ops) VALUES (?, ?, ?)",
                              (rev, n, self._pack(applied)))
                c.execute("UPDATE meta SET v=? WHERE k='revision'", (str(rev),))
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
            self._revision = rev
            self._checkpointer.wrote(b.rows + 3)
            if not self._subs:
                return []
            # the validated attrs are the store's own copies, unused once committed: no copy needed
            return [Change(rev, cast(OpName, kind), key, payload, i, n)
                    for i, (kind, key, payload) in enumerate(applied)]
        finally:
            if gc_paused:
                gc.enable()

    # -------------------------------------------------------------------------------- change log
    def changes_since(self, revision: int, *, limit: int | None = None,
                      epoch: str | None = None) -> list[Change]:
        """Every change with a revision greater than ``revision``, in order.

        With ``limit``, at most about ``limit`` changes, always ending on a whole batch (a revision is
        never split, so the result may exceed ``limit`` by the rest of its last batch). Raises
        :class:`Compacted` if changes after ``revision`` were compacted, :class:`RevisionAhead` if
        ``revision`` is beyond the current one, :class:`EpochChanged` if ``epoch`` is given and differs.
        """
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise ValueError(f"revision must be an integer >= 0, got {revision!r}")
        with self._lock:
            self._check_open()
            if epoch is not None and epoch != self._epoch:
                raise EpochChanged(epoch, self._epoch)
            if revision > self._revision:
                raise RevisionAhead(revision, self._revision)
            if revision < self._floor:
                raise Compacted(revision, self._floor)
            if limit is not None and limit < 1:
                raise ValueError(f"limit must be >= 1, got {limit}")
            rows: list[tuple[int, int, bytes]] = []
            total = 0
            for row in self._conn.execute("SELECT rev, cnt, ops FROM changes WHERE rev>? ORDER BY rev",
                                          (revision,)):
                rows.append(row)
                total += row[1]
                if limit is not None and total >= limit:
                    break
        out: list[Change] = []
        for rev, cnt, ops_raw in rows:
            for i, (op, key, attrs) in enumerate(_unpackb(ops_raw)):
                out.append(Change(rev, op, key, attrs, i, cnt))
        return out

    def compact(self, below_rev: int) -> int:
        """Drop change-log rows of revisions below ``below_rev``; returns the new :attr:`log_floor`.

        Afterwards ``changes_since(r)`` raises :class:`Compacted` for ``r < below_rev - 1``.
        """
        with self._lock:
            self._check_open()
            target = min(int(below_rev), self._revision + 1) - 1
            if target <= self._floor:
                return self._floor
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute("DELETE FROM changes WHERE rev<=?", (target,))
                c.execute("UPDATE meta SET v=? WHERE k='log_floor'", (str(target),))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            self._floor = target
            return target

    # ------------------------------------------------------------------- replication (issue 10)
    # A replica follows another store's history: it takes that store's epoch (the *history id*) and
    # revision numbers, so that after a switch the new active keeps numbering on and the former active
    # can resume (or compare cheaply) from where it was. Promotion starts a new history and remembers
    # where the previous one ended (Redis PSYNC2's replication id + offset).

    def adopt(self, ops: Iterable[Op], epoch: str, revision: int) -> int:
        """Apply ``ops`` (the result of a compare-and-update) atomically and take the position
        ``(epoch, revision)`` of the store they were compared with. The local change log is emptied
        (its numbering was another history's) and starts at ``revision``. Subscribers get the
        changes with ``revision``. Returns ``revision``.
        """
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise ValueError(f"revision must be an integer >= 0, got {revision!r}")
        if not isinstance(epoch, str) or not epoch:
            raise ValueError(f"epoch must be a non-empty string, got {epoch!r}")
        with self._lock:
            self._check_open()
            c = self._conn

            def take_position() -> None:
                c.execute("DELETE FROM changes")
                c.executemany("INSERT OR REPLACE INTO meta(k, v) VALUES (?, ?)",
                              [("epoch", epoch), ("log_floor", str(revision)), ("history.prev", "")])

            changes = self._apply(ops, None, pre=take_position, log=False, at=revision)
            self._epoch = epoch
            self._floor = revision
            self._pending.extend(changes)
        self._deliver()
        return revision

    def apply_replicated(self, ops: Iterable[Op], revision: int, epoch: str | None = None) -> int:
        """Apply one batch of the followed history as exactly ``revision`` (logged as such).

        ``revision`` must be above the current one (a replica applies each batch once, in order) and
        ``epoch``, when given, must be this store's: otherwise :class:`RevisionAhead` /
        :class:`EpochChanged` style errors tell the caller to resynchronise.
        """
        with self._lock:
            self._check_open()
            if epoch is not None and epoch != self._epoch:
                raise EpochChanged(epoch, self._epoch)
            if isinstance(revision, bool) or not isinstance(revision, int) or revision <= self._revision:
                raise StoreError(f"replicated revision {revision!r} is not above this store's revision "
                                 f"{self._revision}: each batch is applied once, in order")
            changes = self._apply(ops, None, at=revision)
            self._pending.extend(changes)
        self._deliver()
        return revision

    def new_history(self, keep: int = 16, continues: bool = True) -> str:
        """Start a new history id (epoch) continuing the revision numbering, and remember that the
        previous one ended at the current revision: readers of the old history up to that revision
        resume on the new one (see :meth:`previous_histories`). With ``continues=False`` nothing is
        remembered (this tree is not what the old history says). Returns the new epoch."""
        with self._lock:
            self._check_open()
            prev = [(self._epoch, self._revision), *self._previous()][:keep] if continues else []
            new_epoch = uuid.uuid4().hex
            text = ";".join(f"{e}:{r}" for e, r in prev)
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany("INSERT OR REPLACE INTO meta(k, v) VALUES (?, ?)",
                              [("epoch", new_epoch), ("history.prev", text)])
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            self._epoch = new_epoch
            return new_epoch

    def previous_histories(self) -> list[tuple[str, int]]:
        """``[(epoch, last revision)]`` of the histories this one continues, newest first."""
        with self._lock:
            self._check_open()
            return self._previous()

    def _previous(self) -> list[tuple[str, int]]:
        row = self._conn.execute("SELECT v FROM meta WHERE k='history.prev'").fetchone()
        out: list[tuple[str, int]] = []
        for item in (row[0] if row else "").split(";"):
            if item:
                e, _, r = item.partition(":")
                out.append((e, int(r)))
        return out

    # ------------------------------------------------------------------------------ history reset
    def reset(self) -> int:
        """Empty the tree and the change log and start a new epoch. Returns the new revision.

        Revision numbers keep increasing (never reused); subscribers get one ``"reset"`` change.
        """
        with self._lock:
            self._check_open()
            changes = self._reset_and_apply([])
            self._pending.extend(changes)
            rev = self._revision
        self._deliver()
        return rev

    def _reset_and_apply(self, ops: Iterable[Op]) -> list[Change]:
        c = self._conn
        new_epoch = uuid.uuid4().hex
        old_rev = self._revision

        def wipe() -> None:
            # The new history starts at the next revision; the import (if any) is its snapshot, not logged.
            c.execute("DELETE FROM nodes WHERE path<>'/'")
            c.execute("UPDATE nodes SET attrs=?, acc=?, hash=? WHERE path='/'",
                      (_EMPTY, _ZERO_ACC, _node_hash("", _EMPTY, 0)))
            c.execute("DELETE FROM changes")
            c.execute("UPDATE meta SET v=? WHERE k='epoch'", (new_epoch,))
            c.execute("UPDATE meta SET v=? WHERE k='log_floor'", (str(old_rev + 1),))
            c.execute("DELETE FROM meta WHERE k='history.prev'")  # a reset continues no history

        self._apply(ops, None, pre=wipe, log=False)
        rev = self._revision
        self._epoch = new_epoch
        self._floor = rev
        return [Change(rev, "reset", "/", {}, 0, 1)]

    # --------------------------------------------------------------------------- export / import
    def export_json(self, key: str = "/") -> dict[str, Any]:
        """The subtree at ``key`` as a JSON-able document (see :meth:`import_json`)."""
        key = validate_key(key)
        with self._lock:
            self._check_open()
            rows = self._subtree_rows(key)
            epoch, rev = self._epoch, self._revision
        if not rows:
            raise KeyError(f"no such DS key: {key}")
        root: dict[str, Any] = {}
        nodes: dict[str, dict[str, Any]] = {}
        for path, attrs_raw in sorted(rows, key=lambda r: _depth(r[0])):
            n: dict[str, Any] = {"attrs": _unpack(attrs_raw), "children": {}}
            nodes[path] = n
            if path == key:
                root = n
            else:
                parent = parent_key(path)
                assert parent is not None
                nodes[parent]["children"][_name(path)] = n
        _sort_children(root)
        return {"format": EXPORT_FORMAT, "key": key, "epoch": epoch, "revision": rev, "tree": root}

    def import_json(self, data: Mapping[str, Any], at_key: str = "/", *, merge: bool = False,
                    reset_history: bool = False) -> int:
        """Place an exported tree at ``at_key`` in one batch; returns the revision.

        By default the subtree at ``at_key`` is replaced (deleted, then written). With ``merge`` the
        document's attributes are set over the existing subtree. With ``reset_history`` (only for
        ``at_key == "/"``) the whole store, change log included, is replaced and a new epoch starts.
        """
        at_key = validate_key(at_key)
        tree = data.get("tree", data) if isinstance(data, Mapping) else None
        if not isinstance(tree, Mapping):
            raise InvalidImport("import document must be a JSON object with a 'tree' node "
                                f"(format {EXPORT_FORMAT!r}, as written by export)")
        fmt = data.get("format")
        if fmt is not None and fmt != EXPORT_FORMAT:
            raise InvalidImport(f"import document format is {fmt!r}; expected {EXPORT_FORMAT!r}")
        ops: list[Op] = []
        _tree_ops(tree, at_key, ops)
        if reset_history:
            if at_key != "/" or merge:
                raise ValueError("reset_history replaces the whole store: "
                                 "use it with at_key '/' and without merge")
            with self._lock:
                self._check_open()
                changes = self._reset_and_apply(ops)
                self._pending.extend(changes)
                rev = self._revision
            self._deliver()
            return rev
        if not merge:
            ops.insert(0, DeleteOp(at_key))
        return self.batch(ops)

    # ---------------------------------------------------------------------------------- checking
    def verify(self) -> list[str]:
        """Recompute every hash from scratch and compare with the stored ones. Returns problems found."""
        with self._lock:
            self._check_open()
            rows = self._conn.execute("SELECT path, parent, name, attrs, acc, hash FROM nodes").fetchall()
        problems: list[str] = []
        by_path = {r[0]: r for r in rows}
        kids: dict[str, list[str]] = collections.defaultdict(list)
        for r in rows:
            if r[0] != "/":
                if r[1] != parent_key(r[0]) or r[2] != _name(r[0]):
                    problems.append(f"{r[0]}: parent/name columns are inconsistent")
                if r[1] not in by_path:
                    problems.append(f"{r[0]}: parent {r[1]} is missing")
                kids[r[1]].append(r[0])
        computed: dict[str, bytes] = {}
        for path in sorted(by_path, key=_depth, reverse=True):
            acc = 0
            for k in kids.get(path, []):
                acc = (acc + _contrib(computed[k])) % _MOD
            attrs_raw = _pack(_unpack(by_path[path][3]))
            if attrs_raw != by_path[path][3]:
                problems.append(f"{path}: stored attributes are not in canonical form")
            computed[path] = _node_hash(_name(path), attrs_raw, acc)
            if computed[path] != bytes(by_path[path][5]) or acc != int.from_bytes(by_path[path][4], "big"):
                problems.append(f"{path}: stored subtree hash does not match its content")
        return problems

    # -------------------------------------------------------------------------------- subscribers
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(change)`` for every committed change, in order. Returns an unsubscribe function."""
        with self._lock:
            self._sub_seq += 1
            token = self._sub_seq
            self._subs[token] = callback

        def unsubscribe() -> None:
            with self._lock:
                self._subs.pop(token, None)

        return unsubscribe

    def _deliver(self) -> None:
        """Deliver pending changes to subscribers, one deliverer at a time, in commit order.

        Never blocks on another thread's delivery: if one is running it delivers our changes too (a
        subscriber waiting on an actor that writes to the store cannot deadlock). The re-check after
        releasing the delivery lock closes the window in which a change queued by a thread that found
        the lock taken could be left undelivered.
        """
        if getattr(self._tls, "delivering", False):
            return  # a subscriber wrote to the store: the outer delivery loop delivers it next
        while True:
            if not self._deliver_lock.acquire(blocking=False):
                return  # the running deliverer will deliver it
            self._tls.delivering = True
            try:
                while True:
                    with self._lock:
                        if not self._pending:
                            break
                        change = self._pending.popleft()
                        subs = list(self._subs.values())
                    for cb in subs:
                        try:
                            cb(change)
                        except Exception:
                            logger.exception(
                                "DS store subscriber {!r} failed on change r{} {} {}; continuing",
                                cb, change.revision, change.op, change.key)
            finally:
                self._tls.delivering = False
                self._deliver_lock.release()
            with self._lock:
                if not self._pending:
                    return


def _sort_children(node: dict[str, Any]) -> None:
    kids = node["children"]
    node["children"] = {k: kids[k] for k in sorted(kids)}
    for child in node["children"].values():
        _sort_children(child)


def _tree_ops(node: Mapping[str, Any], key: str, out: list[Op]) -> None:
    if not isinstance(node, Mapping):
        raise InvalidImport(f"{key}: a tree node must be an object with 'attrs' and 'children'")
    unknown = set(node) - {"attrs", "children"}
    if unknown:
        raise InvalidImport(f"{key}: unexpected field(s) {sorted(unknown)} in a tree node "
                            f"(expected 'attrs' and 'children')")
    attrs = node.get("attrs", {})
    try:
        out.append(SetOp(key, _validate_attrs(attrs, key)))
    except InvalidAttrs as exc:
        raise InvalidImport(str(exc)) from None
    children = node.get("children", {})
    if not isinstance(children, Mapping):
        raise InvalidImport(f"{key}: 'children' must be an object of name -> node")
    for name, child in children.items():
        try:
            ck = child_key(key, name)
        except InvalidKey as exc:
            raise InvalidImport(f"child name {name!r} under {key}: {exc}") from None
        if "/" in name:
            raise InvalidImport(f"child name {name!r} under {key} contains '/'")
        _tree_ops(child, ck, out)


class _Batch:
    """Applies validated operations inside an open transaction; hashes are settled once in :meth:`finish`.

    ``cache`` maps every key looked at to its node (``None``: does not exist, or deleted in this batch);
    :meth:`prefetch` fills it for every key of the batch and all their ancestors in a few queries, so
    the operations then run in memory. ``dirty`` lists the nodes to settle and write. ``kids`` (built on
    the first delete) indexes cached keys by parent so that a delete can forget the cached descendants
    of the deleted key without scanning the whole cache.
    """

    _CHUNK = 512  # keys per "IN (...)" lookup, a power of 2 (SQLite allows 999 parameters before 3.32)

    def __init__(self, conn: sqlite3.Connection, pack: Callable[[Any], bytes]) -> None:
        self.c = conn
        self.pack = pack
        self.cache: dict[str, _Node | None] = {}
        self.kids: dict[str, set[str]] | None = None
        self.dirty: list[_Node] = []
        self.rows = 0  # rows written by finish (and deletes): a rough measure of the pages touched

    def _put(self, key: str, node: _Node | None) -> None:
        # Always (re-)index: a key cached as missing may be created after a delete forgot its parent's
        # children, and a delete of that parent must then find it (or it would be written, orphaned).
        if self.kids is not None and key != "/":
            self.kids.setdefault(key.rpartition("/")[0] or "/", set()).add(key)
        self.cache[key] = node

    # ------------------------------------------------------------------------------------- loading
    def prefetch(self, ops: Sequence[_IOp]) -> None:
        """Load every key the operations touch and all their ancestors, in a few sorted lookups.

        A big batch looks its ancestors up first: a key whose parent does not exist does not exist
        either, so a batch of new keys under a new parent needs no lookup of its own keys.
        """
        keys = {op[1] for op in ops}
        anc: set[str] = set()
        add = anc.add
        for k in keys:
            while k != "/":
                k = k.rpartition("/")[0] or "/"
                if k in anc:
                    break
                add(k)
        cache = self.cache
        if len(keys) + len(anc) <= self._CHUNK:
            self._fetch([k for k in keys | anc if k not in cache])
            return
        self._fetch([k for k in anc if k not in cache])
        rest: list[str] = []
        for k in keys:
            if k in cache:
                continue  # also an ancestor of another key: already fetched
            if cache[k.rpartition("/")[0] or "/"] is None:
                cache[k] = None
            else:
                rest.append(k)
        self._fetch(rest)

    def _fetch(self, keys: list[str]) -> None:
        """Look ``keys`` (not cached yet) up, in key order for locality; missing ones cache ``None``."""
        cache = self.cache
        for k in keys:
            cache[k] = None
        keys.sort()
        execute, chunk = self.c.execute, self._CHUNK
        for i in range(0, len(keys), chunk):
            part = keys[i : i + chunk]
            size = 1 << (len(part) - 1).bit_length()  # a few statement sizes, all kept prepared
            part += part[-1:] * (size - len(part))  # padded with a repeated key: IN ignores it
            for path, raw, acc, h in execute(_select_nodes_sql(size), part):
                cache[path] = _Node(path, raw, acc, h)

    def load(self, key: str) -> _Node | None:
        try:
            return self.cache[key]
        except KeyError:
            pass
        row = self.c.execute("SELECT attrs, acc, hash FROM nodes WHERE path=?", (key,)).fetchone()
        node = None if row is None else _Node(key, row[0], row[1], row[2])
        self._put(key, node)
        return node

    def create(self, key: str) -> _Node:
        """A new node for ``key`` (known not to exist), with its missing ancestors."""
        missing = [key]
        k = key
        while True:
            i = k.rfind("/")
            k = k[:i] if i else "/"
            if self.load(k) is not None:
                break
            missing.append(k)
        dirty = self.dirty
        node = None
        for k in reversed(missing):
            node = _Node(k, None, _ZERO_ACC, None)
            node.attrs = {}
            node.dirty = True
            dirty.append(node)
            self._put(k, node)
        assert node is not None
        return node

    # ------------------------------------------------------------------------------------ applying
    @staticmethod
    def _own_attrs(node: _Node) -> dict[str, list[str]]:
        """The node's attributes, decoded and safe to change."""
        attrs = node.attrs
        if attrs is None:
            attrs = node.attrs = _unpack(cast(bytes, node.raw))
        elif node.shared:
            attrs = node.attrs = attrs.copy()
            node.shared = False
        return attrs

    def apply(self, ops: Sequence[_IOp]) -> None:
        cache, dirty = self.cache, self.dirty
        for kind, key, payload in ops:
            if kind == "set":
                try:
                    node = cache[key]
                except KeyError:
                    node = self.load(key)
                if node is not None:
                    self._own_attrs(node).update(payload)
                    if not node.dirty:
                        node.dirty = True
                        dirty.append(node)
                    continue
                if self.kids is None and cache.get(key.rpartition("/")[0] or "/") is not None:
                    node = _Node(key, None, _ZERO_ACC, None)  # the common case, inline: the parent exists
                    node.dirty = True
                    dirty.append(node)
                    cache[key] = node
                else:
                    node = self.create(key)
                node.attrs = payload  # shared with the log until changed again (see _own_attrs)
                node.shared = True
            elif kind == "delete_attr":
                found = self.load(key)
                if found is None:
                    continue
                attrs = self._own_attrs(found)
                name = next(iter(payload))
                if name in attrs:
                    del attrs[name]
                    if not found.dirty:
                        found.dirty = True
                        dirty.append(found)
            else:
                self.delete(key)

    def _forget_below(self, key: str) -> None:
        if self.kids is None:
            self.kids = {}
            for k in self.cache:
                if k != "/":
                    self.kids.setdefault(cast(str, parent_key(k)), set()).add(k)
        stack = list(self.kids.pop(key, ()))
        while stack:
            k = stack.pop()
            self.cache[k] = None
            stack.extend(self.kids.pop(k, ()))

    def _touch(self, node: _Node) -> None:
        if not node.dirty:
            node.dirty = True
            self.dirty.append(node)

    def delete(self, key: str) -> None:
        node = self.load(key)
        if node is None:
            return
        self._forget_below(key)
        self.rows += 1
        if key == "/":
            self.c.execute("DELETE FROM nodes WHERE path<>'/'")
            node.attrs = {}
            node.delta = -int.from_bytes(node.acc_raw, "big")  # no children left: the accumulator is 0
            self._touch(node)
            return
        pnode = self.load(cast(str, parent_key(key)))
        assert pnode is not None
        if node.base is not None:
            pnode.delta -= int.from_bytes(node.base, "big")
            self._touch(pnode)
        self.c.execute("DELETE FROM nodes WHERE path=? OR (path>=? AND path<?)", (key, key + "/", key + "0"))
        self.cache[key] = None

    # ------------------------------------------------------------------------------------ settling
    def finish(self) -> None:
        """Settle hashes bottom-up and write the changed nodes.

        Dirty nodes are grouped by depth and settled deepest first, so every node (ancestors
        included) is packed, hashed and written once per batch, after all its children: a changed
        child adds the difference of its hash to its parent's ``delta`` and makes the parent dirty.
        Blobs are bound as ``bytearray`` (the sqlite3 module binds ``bytes`` through its adapter
        lookup, about twice as slow).
        """
        cache = self.cache
        levels: dict[int, list[_Node]] = {}
        for node in self.dirty:
            key = node.key
            if cache.get(key) is node:  # not deleted since
                levels.setdefault(key.count("/") if key != "/" else 0, []).append(node)
        inserts: list[tuple[str, str, str, bytearray, bytearray, bytearray]] = []
        updates: list[tuple[bytearray, bytearray, bytearray, str]] = []
        pack, copy, from_bytes, zero, mod = self.pack, _HASHER.copy, int.from_bytes, _ZERO_ACC, _MOD
        zero_ba = _ZERO_ACC_BA
        last_parent, pnode = "", None  # siblings come in runs: look their parent up once per run
        for depth in range(max(levels, default=-1), -1, -1):
            for node in levels.get(depth, ()):
                attrs = node.attrs
                old_raw = node.raw
                raw = cast(bytes, old_raw) if attrs is None else pack(sorted(attrs.items()))
                acc_b = node.acc_raw
                if node.delta:
                    acc = (from_bytes(acc_b, "big") + node.delta) % mod
                    acc_b = acc.to_bytes(32, "big") if acc else zero
                if old_raw is not None and raw == old_raw and acc_b == node.acc_raw:
                    continue  # unchanged
                key = node.key
                parent, _, name = key.rpartition("/")  # parent "" for "/x" (and for the root)
                h = copy()
                h.update(name.encode())
                h.update(b"\x00")
                h.update(acc_b)
                h.update(raw)
                new_hash = h.digest()
                if old_raw is None:  # no row yet (the root always has one)
                    inserts.append((key, parent or "/", name, bytearray(raw),
                                    zero_ba if acc_b is zero else bytearray(acc_b), bytearray(new_hash)))
                else:
                    updates.append((bytearray(raw), zero_ba if acc_b is zero else bytearray(acc_b),
                                    bytearray(new_hash), key))
                base = node.base
                if new_hash == base or key == "/":
                    continue
                parent = parent or "/"
                if parent != last_parent or pnode is None:
                    pnode = cache.get(parent) or self.load(parent)
                    assert pnode is not None
                    last_parent = parent
                if base is None:
                    pnode.delta += from_bytes(new_hash, "big")
                else:
                    pnode.delta += from_bytes(new_hash, "big") - from_bytes(base, "big")
                if not pnode.dirty:
                    pnode.dirty = True
                    levels.setdefault(depth - 1, []).append(pnode)
        c = self.c
        if inserts:
            c.executemany(_INSERT_NODE_SQL, inserts)
        if updates:
            if len(updates) > 64:
                updates.sort(key=_by_path)  # B-tree order: each page visited once
            c.executemany(_UPDATE_NODE_SQL, updates)
        self.rows += len(inserts) + len(updates)


_GC_PAUSE_OPS = 1000  # batches of at least this many operations pause the cyclic GC (see Store._apply)


def _pause_gc() -> bool:
    """Disable the cyclic garbage collector if it is enabled; ``True`` if the caller must re-enable it."""
    if gc.isenabled():
        gc.disable()
        return True
    return False


_INSERT_NODE_SQL = "INSERT INTO nodes(path, parent, name, attrs, acc, hash) VALUES (?, ?, ?, ?, ?, ?)"
_UPDATE_NODE_SQL = "UPDATE nodes SET attrs=?, acc=?, hash=? WHERE path=?"
_SELECT_NODES_SQL: dict[int, str] = {}
_by_path = operator.itemgetter(3)


def _select_nodes_sql(n: int) -> str:
    sql = _SELECT_NODES_SQL.get(n)
    if sql is None:
        sql = _SELECT_NODES_SQL[n] = (f"SELECT path, attrs, acc, hash FROM nodes WHERE path IN "
                                      f"({','.join('?' * n)})")
    return sql


def iter_diff(a: Store, b: Store, key: str = "/") -> Iterator[str]:
    """Keys under ``key`` whose own attributes or existence differ between ``a`` and ``b`` (top-down)."""
    na, nb = a.node(key), b.node(key)
    if na is None and nb is None:
        return
    if na is None or nb is None:
        yield key
        return
    if na[1] == nb[1]:
        return
    if na[0] != nb[0]:
        yield key
    ha, hb = a.child_hashes(key), b.child_hashes(key)
    for name in sorted(set(ha) | set(hb)):
        if ha.get(name) != hb.get(name):
            yield from iter_diff(a, b, child_key(key, name))
