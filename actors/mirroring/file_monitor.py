"""The File Monitor (active side, ``active`` group): watches the mirrored directories with inotify and
serves the backup's FileMirror on ``file_port``.

- The backup subscribes (:class:`FileSubscribe` with its mode); the monitor computes the roots from its
  own server parameters (:func:`replication.mirror_sets.mirror_roots`), watches the continuous ones and
  answers :class:`FileRoots`. A change of CustomMirrorDir re-computes them and pushes the new set.
- Each watched root has its own inotify instance read by its own thread, which posts batches of events
  to this actor; :class:`replication.file_events.EventInterpreter` says what they mean. Changes are
  pushed to the subscriber in order, numbered per root (``seq``) within this monitor's ``epoch``.
- A queue overflow, a lost watch or the root itself going away rescans the root: watches are re-added
  and a ``rescan`` change tells the backup to compare manifests again (counted and logged).
- Manifests (paged) and file content (chunks at an offset: the backup drives the flow) are served from
  disk; a path that leaves its root is refused.
- Health checks write the token to a canary file in ``<data_dir>/files-canary``, mirrored like any root.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inotify_simple import INotify

from actors.mirroring.file_io import HashCache, entry_of, scan, walk
from actors.runtime.base import Inbound, NodeActor, handles
from actors.runtime.context import NodeContext
from replication.file_events import WATCH_MASK, Change, Ev, EventInterpreter, Rescan
from replication.mirror_sets import (
    CANARY_ROOT,
    Entry,
    MirrorRoot,
    Mode,
    PathRefused,
    When,
    local_root,
    mirror_roots,
    safe_local_path,
)
from replication.params import ParamChange
from transport.codec import REQUEST
from transport.endpoint import Endpoint, EndpointOptions, tcp
from transport.messages import (
    ErrorReply,
    FileBatchReply,
    FileBatchRequest,
    FileChange,
    FileChunkReply,
    FileChunkRequest,
    FileHealthCheck,
    FileHealthReply,
    FileManifestReply,
    FileManifestRequest,
    FileRoots,
    FileSubscribe,
    ManifestRow,
    Message,
)
from transport.security import Security

CANARY_FILE = "canary"
MAX_CHUNK = 2 * 1024 * 1024
READ_TIMEOUT_MS = 100
MOVE_PAIR_WAIT = 0.05
INLINE_LIMIT = 64 * 1024  # files up to this size travel inside their change


def canary_dir(data_dir: str) -> Path:
    return Path(data_dir) / "files-canary"


def canary_root() -> MirrorRoot:
    return MirrorRoot(CANARY_ROOT, False, When.CONTINUOUS, (), (), "health-check canary")


def node_local_root(cfg: Any, root_id: str) -> Path:
    """Where a root lives on this node (the canary in the data directory, the rest under [mirror] root)."""
    if root_id == CANARY_ROOT:
        return canary_dir(cfg.data_dir)
    return local_root(cfg.mirror.root, root_id)


# ------------------------------------------------------------------------- internal messages


@dataclass(frozen=True)
class _Batch:
    """inotify events of one root, from its reader thread."""

    root: str
    token: int
    events: tuple[Ev, ...]


@dataclass(frozen=True)
class _ReaderFailed:
    root: str
    token: int
    error: str


@dataclass(frozen=True)
class _Flush:
    """Debounce and unpaired-rename timer."""


@dataclass(frozen=True)
class _ParamsChanged:
    name: str


@dataclass(frozen=True)
class GetFilesStatus:
    """Admin: the per-root state of this node's file mirroring actor."""


@dataclass(frozen=True)
class StallReaders:
    """Admin/test: stop reading inotify for ``seconds`` (the kernel queue fills and overflows)."""

    seconds: float


@dataclass
class _Watched:
    root: MirrorRoot
    top: Path
    interp: EventInterpreter
    token: int
    ino: INotify | None = None
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    seq: int = 0
    pushed: int = 0
    rescans: int = 0
    overflow_rescans: int = 0
    last_change: float = 0.0
    error: str = ""


class FileMonitor(NodeActor):
    actor_name = "FileMonitor"

    def __init__(
        self,
        ctx: NodeContext,
        incarnation: int = 1,
        name: str | None = None,
        security: Security | None = None,
    ) -> None:
        super().__init__(ctx, incarnation, name)
        self.security = security or Security.plain()
        self.epoch = f"{ctx.node}-{incarnation}-{uuid.uuid4().hex[:8]}"
        self.endpoint: Endpoint | None = None
        self.subscriber: bytes | None = None
        self.subscriber_node = ""
        self.mode = Mode.NORMAL
        self.roots: dict[str, MirrorRoot] = {}
        self.watched: dict[str, _Watched] = {}
        self.hashes = HashCache()
        self.scans: dict[str, tuple[int, int, list[ManifestRow]]] = {}
        self.scan_ids = 0
        self.tokens = 0
        self.stall_until = 0.0
        self.flush_armed = False
        self.debounce = float(ctx.config.mirror.debounce)
        self._unsubscribe: Any = None

    # -------------------------------------------------------------------------- life cycle

    def started(self) -> None:
        me = self.ctx.config.me
        self.endpoint = self.open_endpoint(
            "files",
            "server",
            tcp(me.address, me.file_port),
            security=self.security,
            options=EndpointOptions(sndhwm=100_000, rcvhwm=10_000, linger_ms=1000),
        )
        canary_dir(self.ctx.config.data_dir).mkdir(parents=True, exist_ok=True)
        if self.ctx.server_params is not None:
            notify = self.on_own_thread(lambda change: self._on_params(change))
            self._unsubscribe = self.ctx.server_params.subscribe(["CustomMirrorDir"], notify)
        self.log.info("File Monitor serving on port {} (epoch {})", me.file_port, self.epoch)

    def _on_params(self, change: ParamChange) -> None:
        self.actor_ref.tell(_ParamsChanged(change.name))

    def stopped(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for w in self.watched.values():
            w.stop.set()
        for w in self.watched.values():
            if w.thread is not None:
                w.thread.join(1.0)
        self._drain()
        for w in list(self.watched.values()):
            self._unwatch(w)
        self.watched.clear()

    def _drain(self) -> None:
        """On the way out (a controlled switch stops this actor): push what the kernel still holds and
        the files waiting for quiet, so the backup gets every change closed before the switch. The
        endpoint lingers to send them."""
        if self.subscriber is None:
            return
        now = time.monotonic()
        for w in list(self.watched.values()):
            if w.ino is None:
                continue
            try:
                events = [Ev(e.wd, e.mask, e.cookie, e.name) for e in w.ino.read(timeout=0)]
            except OSError:
                events = []
            outputs = w.interp.process(events, now)
            outputs += w.interp.expire_moves()
            outputs += w.interp.due(float("inf"))
            try:
                self._handle(w, outputs)
            except Exception:
                self.log.exception("File Monitor: could not push the last changes of {}", w.root.id)

    # ------------------------------------------------------------------------------- roots

    def _compute_roots(self) -> dict[str, MirrorRoot]:
        roots: list[MirrorRoot] = []
        if self.ctx.server_params is not None:
            roots = list(mirror_roots(self.ctx.server_params, self.mode))
        roots.append(canary_root())
        return {r.id: r for r in roots}

    def _apply_roots(self) -> bool:
        """Watch the continuous roots of the current set; True when the set changed."""
        new = self._compute_roots()
        changed = new != self.roots
        self.roots = new
        for rid in list(self.watched):
            if rid not in new or new[rid] != self.watched[rid].root or new[rid].when is not When.CONTINUOUS:
                self.log.info("no longer watching {}", rid)
                self._unwatch(self.watched.pop(rid))
        for rid, root in new.items():
            if root.when is When.CONTINUOUS and rid not in self.watched:
                self._watch(root)
        return changed

    def _watch(self, root: MirrorRoot) -> None:
        top = node_local_root(self.ctx.config, root.id)
        self.tokens += 1
        w = _Watched(root, top, EventInterpreter(root, self.debounce), self.tokens)
        self.watched[root.id] = w
        try:
            w.ino = INotify()
        except OSError as exc:
            w.error = f"cannot create an inotify instance: {exc}"
            self.log.error("File Monitor: {} for {}", w.error, root.id)
            return
        self._add_tree(w, "")
        ref, ino, stop, token, rid = self.actor_ref, w.ino, w.stop, w.token, root.id

        def read() -> None:
            while not stop.is_set():
                if time.monotonic() < self.stall_until:
                    stop.wait(0.05)  # test hook: let the kernel queue fill
                    continue
                try:
                    events = ino.read(timeout=READ_TIMEOUT_MS)
                except OSError as exc:
                    if not stop.is_set():
                        ref.tell(_ReaderFailed(rid, token, str(exc)))
                    return
                if events and not stop.is_set():
                    ref.tell(_Batch(rid, token, tuple(Ev(e.wd, e.mask, e.cookie, e.name) for e in events)))

        w.thread = threading.Thread(target=read, name=f"inotify {root.id}", daemon=True)
        w.thread.start()
        self.log.info(
            "watching {} ({}, {}) in {}: {} directories",
            root.id,
            "recursive" if root.recursive else "flat",
            root.source,
            top,
            len(w.interp.watches),
        )

    def _unwatch(self, w: _Watched) -> None:
        w.stop.set()
        if w.thread is not None:
            w.thread.join(1.0)
        if w.ino is not None:
            w.ino.close()
            w.ino = None

    def _add_tree(self, w: _Watched, rel: str) -> list[str]:
        """Watch ``rel`` and (recursive roots) every directory below it; the paths found under it."""
        assert w.ino is not None
        found: list[str] = []
        dirs = [rel]
        try:
            wd = w.ino.add_watch(str(w.top / rel) if rel else str(w.top), WATCH_MASK)
            w.interp.watch_added(wd, rel)
        except OSError as exc:
            if not rel:
                w.error = f"cannot watch {w.top}: {exc.strerror}"
                self.log.warning("File Monitor: {}", w.error)
            return found
        if not rel:
            w.error = ""
        sub = w.top / rel if rel else w.top
        for path, d in walk(sub, w.root if not rel else _shifted(w.root, rel)):
            full = f"{rel}/{path}" if rel else path
            found.append(full)
            if d.is_dir(follow_symlinks=False):
                dirs.append(full)
                try:
                    wd = w.ino.add_watch(str(w.top / full), WATCH_MASK)
                    w.interp.watch_added(wd, full)
                except OSError:
                    pass  # deleted meanwhile: its parent's event says so
        return found

    # ------------------------------------------------------------------------------ events

    @handles(_Batch)
    def on_batch(self, msg: _Batch) -> None:
        w = self.watched.get(msg.root)
        if w is None or w.token != msg.token:
            return
        self._handle(w, w.interp.process(list(msg.events), time.monotonic()))
        self._arm_flush()

    @handles(_ReaderFailed)
    def on_reader_failed(self, msg: _ReaderFailed) -> None:
        w = self.watched.get(msg.root)
        if w is None or w.token != msg.token:
            return
        w.error = f"reading inotify failed: {msg.error}"
        self.log.error("File Monitor: {} for {}; watching it again", w.error, msg.root)
        self._unwatch(self.watched.pop(msg.root))
        self._watch(w.root)
        self._rescan(self.watched[msg.root], Rescan(w.error))

    def _arm_flush(self) -> None:
        if self.flush_armed:
            return
        if any(w.interp.dirty or w.interp.pending for w in self.watched.values()):
            self.flush_armed = True
            self.schedule(min(self.debounce, MOVE_PAIR_WAIT) or 0.01, _Flush())

    @handles(_Flush)
    def on_flush(self, msg: _Flush) -> None:
        self.flush_armed = False
        now = time.monotonic()
        for w in list(self.watched.values()):
            out: list[Change | Rescan] = []
            if w.interp.pending:
                out += w.interp.expire_moves()
            out += w.interp.due(now)
            self._handle(w, out)
        self._arm_flush()

    def _handle(self, w: _Watched, outputs: list[Change | Rescan]) -> None:
        if w.interp.unwatch and w.ino is not None:
            for wd in w.interp.unwatch:
                try:
                    w.ino.rm_watch(wd)
                except OSError:
                    pass
            w.interp.unwatch.clear()
        for out in outputs:
            if isinstance(out, Rescan):
                self._rescan(w, out)
                continue
            self._change(w, out)

    def _change(self, w: _Watched, ch: Change) -> None:
        if ch.kind == "write" or ch.kind == "meta":
            e = entry_of(w.top, ch.path, None)
            if e is None:
                return  # gone again: its delete follows
            if e.type == "dir":
                self._push(w, "meta", ch.path, entry=e)
            elif e.type == "link":
                self._push(w, "link", ch.path, entry=e)
            elif ch.kind == "write" and e.size <= INLINE_LIMIT:
                self._push(w, "write", ch.path, entry=e, data=_small_content(w.top / ch.path, e))
            else:
                self._push(w, ch.kind, ch.path, entry=e)
        elif ch.kind == "delete":
            self.hashes.forget(str(w.top / ch.path))
            self._push(w, "delete", ch.path)
        elif ch.kind == "rename":
            self.hashes.forget(str(w.top / ch.path))
            self._push(w, "rename", ch.path, ch.new_path)
        elif ch.kind == "newdir":
            e = entry_of(w.top, ch.path, None)
            if e is None or e.type != "dir":
                return
            self._push(w, "mkdir", ch.path, entry=e)
            for rel in self._add_tree(w, ch.path):
                sub = entry_of(w.top, rel, None)
                if sub is not None:
                    kind = {"dir": "mkdir", "link": "link"}.get(sub.type, "write")
                    data = (
                        _small_content(w.top / rel, sub)
                        if kind == "write" and sub.size <= INLINE_LIMIT
                        else None
                    )
                    self._push(w, kind, rel, entry=sub, data=data)

    def _rescan(self, w: _Watched, why: Rescan) -> None:
        w.rescans += 1
        if why.overflow:
            w.overflow_rescans += 1
        self.log.warning(
            "File Monitor: {} under {}: rescanning the root (rescans {}, after overflow {})",
            why.reason,
            w.root.id,
            w.rescans,
            w.overflow_rescans,
        )
        w.interp.reset()
        if w.ino is not None:
            self._add_tree(w, "")
        self._push(w, "rescan", "", why.reason)

    def _push(
        self,
        w: _Watched,
        kind: str,
        path: str,
        new_path: str = "",
        entry: Entry | None = None,
        data: bytes | None = None,
    ) -> None:
        w.seq += 1
        w.pushed += 1
        w.last_change = time.time()
        if self.subscriber is None or self.endpoint is None:
            return
        row = entry.as_row() if entry is not None else None
        self.endpoint.send(
            FileChange(w.root.id, self.epoch, w.seq, kind, path, new_path, row, time.time(), data),
            to=self.subscriber,
        )

    @handles(_ParamsChanged)
    def on_params_changed(self, msg: _ParamsChanged) -> None:
        if self.subscriber is None:
            return
        if self._apply_roots():
            self.log.info("{} changed: mirroring {}", msg.name, ", ".join(self.roots))
            self._send(self._roots_message(), self.subscriber)

    # ------------------------------------------------------------------------------ serving

    def _roots_message(self) -> FileRoots:
        return FileRoots(self.epoch, tuple(r.as_dict() for r in self.roots.values()))

    def _send(self, msg: Message, to: bytes) -> None:
        if self.endpoint is not None:
            self.endpoint.send(msg, to=to)

    @handles(Inbound)
    def on_inbound(self, msg: Inbound) -> None:
        env, body, ep = msg.env, msg.env.msg, self.endpoint
        if ep is None or env.kind != REQUEST:
            return
        reply: Message
        if self.ctx.role.role != "Primary":
            reply = ErrorReply(f"{self.ctx.node} is {self.ctx.role.role}, not serving files", body.TYPE)
        elif isinstance(body, FileSubscribe):
            reply = self._subscribe(body, msg.peer)
        elif isinstance(body, FileManifestRequest):
            reply = self._manifest(body)
        elif isinstance(body, FileChunkRequest):
            reply = self._chunk(body)
        elif isinstance(body, FileBatchRequest):
            reply = self._batch(body)
        elif isinstance(body, FileHealthCheck):
            reply = self._health(body)
        else:
            reply = ErrorReply(f"the File Monitor does not serve {body.TYPE}", body.TYPE)
        ep.reply(env, reply, to=msg.peer)

    def _subscribe(self, body: FileSubscribe, peer: bytes | None) -> FileRoots:
        try:
            mode = Mode(body.mode)
        except ValueError:
            mode = Mode.NORMAL
            self.log.warning("FileSubscribe from {}: unknown mode {!r}; using normal", body.node, body.mode)
        if mode is not self.mode:
            self.mode = mode
        self.subscriber, self.subscriber_node = peer, body.node
        self._apply_roots()
        self.log.info(
            "{} subscribed to file changes ({} mode): {}",
            body.node,
            self.mode,
            ", ".join(self.roots) or "nothing",
        )
        return self._roots_message()

    def _manifest(self, body: FileManifestRequest) -> FileManifestReply:
        root = self.roots.get(body.root)
        if root is None:
            return FileManifestReply(
                body.root, self.epoch, 0, 0, 0, 0, (), f"{body.root} is not a mirrored root"
            )
        cached = self.scans.get(body.root)
        if body.scan == 0 or cached is None or cached[0] != body.scan:
            w = self.watched.get(body.root)
            seq = w.seq if w is not None else 0
            top = node_local_root(self.ctx.config, root.id)
            if not top.is_dir():
                # never an empty manifest for a missing directory: the backup would delete its copy
                error = f"{top} is not a directory on {self.ctx.node}"
                return FileManifestReply(body.root, self.epoch, 0, 0, 0, 0, (), error)
            entries = scan(top, root, self.hashes if body.hashes else None)
            self.scan_ids += 1
            cached = (self.scan_ids, seq, [entries[k].as_row() for k in sorted(entries)])
            self.scans[body.root] = cached
        scan_id, seq, rows = cached
        limit = max(1, min(body.limit, 5000))
        page = tuple(rows[body.offset : body.offset + limit])
        if body.offset + limit >= len(rows):
            self.scans.pop(body.root, None)
        return FileManifestReply(body.root, self.epoch, scan_id, seq, body.offset, len(rows), page)

    def _chunk(self, body: FileChunkRequest) -> FileChunkReply:
        def fail(error: str) -> FileChunkReply:
            return FileChunkReply(body.root, body.path, body.offset, b"", 0, 0, 0, error)

        root = self.roots.get(body.root)
        if root is None:
            return fail(f"{body.root} is not a mirrored root")
        top = node_local_root(self.ctx.config, root.id)
        try:
            path = safe_local_path(top, body.path)
        except PathRefused as exc:
            self.log.warning(
                "File Monitor: refused a content request for {} in {}: {}", body.path, root.id, exc
            )
            return fail(f"refused: {exc}")
        if not root.includes(body.path):
            return fail(f"{body.path} is not mirrored under {root.id}")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            return fail(f"cannot open: {exc.strerror}")
        try:
            st = os.fstat(fd)
            data = os.pread(fd, max(0, min(body.length, MAX_CHUNK)), body.offset)
        except OSError as exc:
            return fail(f"cannot read: {exc.strerror}")
        finally:
            os.close(fd)
        return FileChunkReply(
            body.root, body.path, body.offset, data, st.st_size, st.st_mtime_ns, st.st_mode & 0o7777
        )

    def _batch(self, body: FileBatchRequest) -> FileBatchReply:
        root = self.roots.get(body.root)
        files: list[dict[str, Any]] = []
        budget = 2 * 1024 * 1024
        resolved: dict[str, str] = {}  # directories resolved once per batch
        for rel in body.paths:
            row: dict[str, Any] = {
                "path": rel,
                "data": None,
                "size": 0,
                "mtime_ns": 0,
                "mode": 0,
                "error": "",
            }
            files.append(row)
            if root is None:
                row["error"] = f"{body.root} is not a mirrored root"
                continue
            top = node_local_root(self.ctx.config, root.id)
            try:
                path = safe_local_path(top, rel, resolved)
            except PathRefused as exc:
                self.log.warning(
                    "File Monitor: refused a content request for {} in {}: {}", rel, root.id, exc
                )
                row["error"] = f"refused: {exc}"
                continue
            if not root.includes(rel):
                row["error"] = f"{rel} is not mirrored under {root.id}"
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as exc:
                row["error"] = f"cannot open: {exc.strerror}"
                continue
            try:
                st = os.fstat(fd)
                row.update(size=st.st_size, mtime_ns=st.st_mtime_ns, mode=st.st_mode & 0o7777)
                if st.st_size <= min(INLINE_LIMIT, budget):
                    data = os.pread(fd, st.st_size + 1, 0)
                    if len(data) == st.st_size:
                        row["data"] = data
                        budget -= len(data)
            except OSError as exc:
                row["error"] = f"cannot read: {exc.strerror}"
            finally:
                os.close(fd)
        return FileBatchReply(body.root, tuple(files))

    def _health(self, body: FileHealthCheck) -> FileHealthReply:
        for w in self.watched.values():
            if w.error and w.ino is not None and w.thread is not None:
                self._add_tree(w, "")
                if not w.error:
                    self._rescan(w, Rescan(f"{w.top} can be watched again"))
        seqs = {rid: w.seq for rid, w in self.watched.items()}
        problems = [f"{rid}: {w.error}" for rid, w in self.watched.items() if w.error]
        dead = [rid for rid, w in self.watched.items() if w.thread is not None and not w.thread.is_alive()]
        problems += [f"{rid}: inotify reader stopped" for rid in dead]
        try:
            target = canary_dir(self.ctx.config.data_dir) / CANARY_FILE
            with open(target, "w") as f:
                f.write(body.token)
        except OSError as exc:
            problems.append(f"cannot write the canary file: {exc.strerror}")
        return FileHealthReply(not problems, self.epoch, seqs, "; ".join(problems))

    # -------------------------------------------------------------------------------- admin

    @handles(GetFilesStatus)
    def on_status(self, msg: GetFilesStatus) -> dict[str, Any]:
        rows = []
        for rid, root in self.roots.items():
            w = self.watched.get(rid)
            rows.append(
                {
                    "root": rid,
                    "when": str(root.when),
                    "recursive": root.recursive,
                    "source": root.source,
                    "state": ("error" if w.error else "watching") if w is not None else "served on request",
                    "directories": len(w.interp.watches) if w is not None else 0,
                    "seq": w.seq if w is not None else 0,
                    "changes": w.pushed if w is not None else 0,
                    "rescans": w.rescans if w is not None else 0,
                    "overflow_rescans": w.overflow_rescans if w is not None else 0,
                    "last_change": w.last_change if w is not None else None,
                    "error": w.error if w is not None else "",
                }
            )
        return {
            "side": "active",
            "actor": self.name,
            "epoch": self.epoch,
            "subscriber": self.subscriber_node,
            "roots": rows,
        }

    @handles(StallReaders)
    def on_stall(self, msg: StallReaders) -> dict[str, Any]:
        self.stall_until = time.monotonic() + max(0.0, msg.seconds)
        if msg.seconds > 0:
            self.log.warning(
                "File Monitor: inotify reading stalled for {:g} s (fault injection)", msg.seconds
            )
        else:
            self.log.info("File Monitor: inotify reading resumed")
        return {"stalled": msg.seconds}


def _small_content(path: Path, e: Entry) -> bytes | None:
    """The content of a small file if it still is what ``e`` says (else the backup asks for it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        data = os.pread(fd, INLINE_LIMIT + 1, 0)
        st = os.fstat(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) != st.st_size or st.st_mtime_ns != e.mtime_ns or st.st_size != e.size:
        return None
    return data


def _shifted(root: MirrorRoot, rel: str) -> MirrorRoot:
    """The root as seen from its subdirectory ``rel`` (for scanning a new directory)."""
    inner = tuple(d[len(rel) + 1 :] for d in root.excluded_dirs if d.startswith(rel + "/"))
    return MirrorRoot(root.path, root.recursive, root.when, root.exceptions, inner, root.source)
