"""The FileMirror (backup side, ``backup`` group): keeps this node's copy of the active's mirrored
directories.

- Subscribes to the active's File Monitor (``file_port``) with this backup's mode and gets the roots.
- Each root is first *synchronised*: its manifest is compared with the local copy
  (:func:`replication.mirror_sets.plan_sync`) and what differs is pulled; changes pushed meanwhile are
  buffered and applied after. Once-only roots (Handler Path, InitialMirrorDir) stop there, bounded
  by ``[mirror] initial_sync_timeout``; continuous roots then apply pushed changes in order.
- A gap in a root's sequence numbers, a ``rescan`` from the monitor or a restarted monitor (new
  epoch) synchronises the root again.
- Content comes in chunks (``[mirror] chunk_size``), at most ``[mirror] window`` requests in flight,
  written at their offsets into a temp file in the target directory, fsync-ed, given mode and mtime,
  then renamed over the target: never a half file, never a whole large file in memory. A request
  that times out is asked again from its offset (the transfer resumes when the link is back).
- Paths that would leave the root are refused and logged; symlinks are kept only when their target
  stays inside the root. A full disk or a permission error stops that root with the reason.
- Health: every ``Switchover File Monitor Health Check Interval`` s a check with ``... Timeout``; the
  monitor writes a token into its canary file and the check passes only when that change arrived
  here too. A failure, a stopped root or a restarted monitor sets the node's replication state to
  ``stopped`` ("The backup server has detected that file replication from the primary has stopped.")
  and writes an event-log entry.
"""

from __future__ import annotations

import errno
import os
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from actors.mirroring.file_io import (
    finish_file,
    remove_tree,
    scan,
    start_writeback,
    sync_filesystem,
    temp_path,
)
from actors.mirroring.file_monitor import CANARY_FILE, GetFilesStatus, canary_dir, node_local_root
from actors.roles.event_log import EventRecord
from actors.roles.node_supervisor import MonitorVerdict
from actors.roles.state_machine import Event, Facts
from actors.runtime.base import Inbound, NodeActor, handles
from actors.runtime.context import NodeContext
from replication.file_health import CheckResult, Seq, check_verdict, overall_state, seq_verdict
from replication.mirror_sets import (
    CANARY_ROOT,
    Entry,
    MirrorRoot,
    PathRefused,
    When,
    check_relative,
    initial_sync_failure,
    mode_of_role,
    plan_sync,
    safe_local_path,
    symlink_allowed,
)
from transport.codec import Envelope
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
    Message,
)
from transport.security import Security

STOPPED_WARNING = "The backup server has detected that file replication from the primary has stopped."
RETRY_DELAY = 0.5
MAX_RETRIES = 40
BATCH_FILE_LIMIT = 64 * 1024  # files up to this size are fetched many at once during a comparison
BATCH_FILES = 256
BATCH_BYTES = 1024 * 1024
FATAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}

# ------------------------------------------------------------------------------ internal messages


@dataclass(frozen=True)
class _Reply:
    tag: tuple[Any, ...]
    future: Future[Envelope]


@dataclass(frozen=True)
class _Tick:
    name: str
    token: int = 0


@dataclass(frozen=True)
class _Retry:
    job: int
    offset: int


class _Stop(Exception):
    """A root cannot go on (disk full, permission): stop it with this reason."""


@dataclass
class _Root:
    root: MirrorRoot
    top: Path
    state: str = "new"  # syncing, running, done (once-only roots), stopped
    reason: str = ""
    seq: int = 0
    gen: int = 0  # bumped on each synchronisation: stale replies are ignored
    rows: list[Entry] = field(default_factory=list)
    base_seq: int = 0
    buffer: list[FileChange] = field(default_factory=list)
    queue: deque[FileChange] = field(default_factory=deque)
    jobs: set[int] = field(default_factory=set)
    want_sync: str = ""
    files: int = 0
    bytes: int = 0
    refused: int = 0
    rescans: int = 0
    overflow_rescans: int = 0
    last_success: float | None = None
    lag: float | None = None
    synced_at: float | None = None
    sync_started: float | None = None
    sync_seconds: float | None = None  # how long the last manifest comparison and its copies took
    manifest_error: str = ""
    counted_rescan: int = 0  # the last rescan change counted (it may arrive while synchronising)
    batches: deque[tuple[str, ...]] = field(default_factory=deque)  # small files to ask for, in groups
    batches_out: int = 0


@dataclass
class _Job:
    id: int
    root: str
    path: str
    final: Path
    tmp: Path
    fd: int
    at: float
    size: int = -1
    mtime_ns: int = 0
    mode: int = 0o644
    next_offset: int = 0
    received: int = 0
    outstanding: set[int] = field(default_factory=set)
    retries: int = 0
    expected: int = 0  # the size the change announced (until the first chunk tells the real one)


class FileMirror(NodeActor):
    actor_name = "FileMirror"

    def __init__(
        self,
        ctx: NodeContext,
        incarnation: int = 1,
        name: str | None = None,
        security: Security | None = None,
    ) -> None:
        super().__init__(ctx, incarnation, name)
        self.security = security or Security.plain()
        m = ctx.config.mirror
        self.chunk = int(m.chunk_size)
        self.request_timeout = float(m.request_timeout)
        self.window = int(m.window)
        self.endpoint: Endpoint | None = None
        self.epoch = ""
        self.roots: dict[str, _Root] = {}
        self.jobs: dict[int, _Job] = {}
        self.in_flight = 0
        self.job_ids = 0
        self.subscribed = False
        self.subscribing = False
        self.once_done: set[str] = set()
        self.health_ok = True
        self.health_reason = ""
        self.health_token = ""
        self.health_reply: FileHealthReply | None = None
        self.health_tokens = 0
        self.state = "starting"
        self.started_mono = time.monotonic()
        self.initial_failed = False

    # ---------------------------------------------------------------------------- life cycle

    def started(self) -> None:
        peer = self.ctx.config.peer
        self.endpoint = self.open_endpoint(
            "files.client",
            "client",
            tcp(peer.address, peer.file_port),
            security=self.security,
            options=EndpointOptions(reconnect_ivl_ms=200, sndhwm=100_000, rcvhwm=100_000, immediate=False),
        )
        canary_dir(self.ctx.config.data_dir).mkdir(parents=True, exist_ok=True)
        self._subscribe()
        self.schedule(self.ctx.config.mirror.initial_sync_timeout, _Tick("initial-deadline"))
        self.schedule(self.ctx.config.mirror.full_scan_interval, _Tick("full-scan"))
        self._schedule_health()
        self._publish_state()

    def stopped(self) -> None:
        for job in list(self.jobs.values()):
            self._drop_job(job)
        self.ctx.role = replace(self.ctx.role, replication="unknown")

    # ------------------------------------------------------------------------------ requests

    def _request(self, msg: Message, tag: tuple[Any, ...], timeout: float | None = None) -> None:
        assert self.endpoint is not None
        fut = self.endpoint.request(msg, timeout if timeout is not None else self.request_timeout)
        ref = self.actor_ref
        fut.add_done_callback(lambda f: ref.tell(_Reply(tag, f)) if ref.is_alive() else None)

    @handles(_Reply)
    def on_reply(self, msg: _Reply) -> None:
        kind = msg.tag[0]
        try:
            body: Message | None = msg.future.result().msg
            error = ""
        except Exception as exc:
            body, error = None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(body, ErrorReply):
            error = body.error
            body = None
        handler: Callable[[tuple[Any, ...], Any, str], None] = getattr(self, f"_on_{kind}")
        handler(msg.tag, body, error)

    # ---------------------------------------------------------------------------- subscribing

    def _subscribe(self) -> None:
        if self.subscribing:
            return
        if self.ctx.role.role == "Init":
            self.schedule(0.1, _Tick("subscribe"))  # the role (and so the mode) is being published
            return
        self.subscribing = True
        mode = mode_of_role(self.ctx.role.role)
        self._request(FileSubscribe(str(mode), self.ctx.node), ("subscribe",), timeout=3.0)

    def _on_subscribe(self, tag: tuple[Any, ...], body: Any, error: str) -> None:
        self.subscribing = False
        if not isinstance(body, FileRoots):
            self.log.debug("FileMirror: no subscription yet ({}); trying again", error or body)
            self.schedule(1.0, _Tick("subscribe"))
            return
        self.subscribed = True
        self._roots(body)

    @handles(Inbound)
    def on_inbound(self, msg: Inbound) -> None:
        body = msg.env.msg
        if isinstance(body, FileChange):
            self._change(body)
        elif isinstance(body, FileRoots):
            self._roots(body)

    def _roots(self, msg: FileRoots) -> None:
        restarted = bool(self.epoch) and msg.epoch != self.epoch
        if restarted:
            self._health_failed(
                f"the File Monitor on {self.ctx.config.peer.name} restarted (epoch {self.epoch} -> {msg.epoch}); "
                "changes made meanwhile are being compared again"
            )
        self.epoch = msg.epoch
        wanted = {r.id: r for r in (MirrorRoot.from_dict(d) for d in msg.roots)}
        for rid in list(self.roots):
            if rid not in wanted or wanted[rid] != self.roots[rid].root:
                self.log.info("no longer mirroring {}", rid)
                self._forget_root(self.roots.pop(rid))
        for rid, root in wanted.items():
            if root.when is When.ONCE and rid in self.once_done:
                continue
            r = self.roots.get(rid)
            if r is None:
                r = self.roots[rid] = _Root(root, node_local_root(self.ctx.config, rid))
                self.log.info(
                    "mirroring {} ({}, {}, {}) into {}",
                    rid,
                    root.when,
                    "recursive" if root.recursive else "flat",
                    root.source,
                    r.top,
                )
                self._request_sync(r, "first synchronisation")
            elif restarted and root.when is When.CONTINUOUS:
                self._request_sync(r, "the File Monitor restarted")
        self._publish_state()

    def _forget_root(self, r: _Root) -> None:
        r.gen += 1
        r.queue.clear()
        r.batches.clear()
        r.batches_out = 0
        for jid in list(r.jobs):
            self._drop_job(self.jobs[jid])

    # ------------------------------------------------------------------------ synchronising

    def _request_sync(self, r: _Root, why: str) -> None:
        """Compare the root's manifests once nothing is in flight for it."""
        if r.state == "stopped":
            return
        r.want_sync = why
        r.state = "syncing"
        r.gen += 1
        r.queue.clear()
        r.buffer.clear()
        r.batches.clear()
        r.batches_out = 0
        if not r.jobs:
            self._start_sync(r)

    def _start_sync(self, r: _Root) -> None:
        self.log.info("synchronising {}: {}", r.root.id, r.want_sync)
        r.want_sync = ""
        r.rows = []
        r.gen += 1
        r.sync_started = time.time()
        self._request(
            FileManifestRequest(r.root.id, hashes=_has_entries(r.top)), ("manifest", r.root.id, r.gen)
        )

    def _on_manifest(self, tag: tuple[Any, ...], body: Any, error: str) -> None:
        r = self.roots.get(tag[1])
        if r is None or r.gen != tag[2]:
            return
        if not isinstance(body, FileManifestReply) or body.error:
            why = error or (body.error if isinstance(body, FileManifestReply) else "no answer")
            if why != r.manifest_error:
                self.log.warning(
                    "manifest of {} failed ({}); keeping the local copy, asking again", r.root.id, why
                )
            r.manifest_error = why
            self.schedule(5.0 if isinstance(body, FileManifestReply) else 1.0, _Tick("resync", 0))
            r.want_sync = r.want_sync or f"manifest failed: {why}"
            return
        r.manifest_error = ""
        if body.offset == 0:
            r.base_seq = body.seq
        try:
            r.rows += [Entry.from_row(row) for row in body.entries]
        except ValueError as exc:
            self.log.error(
                "manifest of {} from the File Monitor is malformed ({}); asking again", r.root.id, exc
            )
            r.want_sync = "malformed manifest"
            self.schedule(1.0, _Tick("resync", 0))
            return
        if body.offset + len(body.entries) < body.total and body.entries:
            req = FileManifestRequest(r.root.id, body.scan, body.offset + len(body.entries))
            self._request(req, ("manifest", r.root.id, r.gen))
            return
        self._apply_plan(r)

    def _apply_plan(self, r: _Root) -> None:
        remote = {e.path: e for e in r.rows}
        r.rows = []
        try:
            r.top.mkdir(parents=True, exist_ok=True)
            local = scan(r.top, r.root, None)
            plan = plan_sync(remote, local)
            for path in plan.delete:
                self._guard(r, path, lambda p: remove_tree(p))
            for e in plan.mkdirs:
                self._mkdir(r, e)
            for e in plan.links:
                self._link(r, e)
            for e in plan.meta:
                self._meta(r, e, fetch_if_differs=False)
        except _Stop as stop:
            self._stop_root(r, str(stop))
            return
        self.log.info(
            "{}: {} to fetch ({} bytes), {} to delete, {} directories, {} links, {} metadata",
            r.root.id,
            len(plan.fetch),
            plan.bytes,
            len(plan.delete),
            len(plan.mkdirs),
            len(plan.links),
            len(plan.meta),
        )
        group: list[str] = []
        group_bytes = 0
        for e in plan.fetch:
            if e.size > BATCH_FILE_LIMIT:
                r.queue.append(
                    FileChange(r.root.id, self.epoch, 0, "write", e.path, "", e.as_row(), time.time())
                )
                continue
            if group and (len(group) >= BATCH_FILES or group_bytes + e.size > BATCH_BYTES):
                r.batches.append(tuple(group))
                group, group_bytes = [], 0
            group.append(e.path)
            group_bytes += e.size
        if group:
            r.batches.append(tuple(group))
        r.queue.append(FileChange(r.root.id, self.epoch, 0, "synced", ""))
        self._send_batches(r)
        self._pump(r)

    def _send_batches(self, r: _Root) -> None:
        while r.batches and self.in_flight < self.window:
            paths = r.batches.popleft()
            r.batches_out += 1
            self.in_flight += 1
            self._request(FileBatchRequest(r.root.id, paths), ("batch", r.root.id, r.gen))

    def _on_batch(self, tag: tuple[Any, ...], body: Any, error: str) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        r = self.roots.get(tag[1])
        if r is None or r.gen != tag[2]:
            self._refill()
            return
        r.batches_out -= 1
        try:
            if not isinstance(body, FileBatchReply):
                self.log.warning(
                    "{}: a batch of files was not answered ({}); comparing again", r.root.id, error
                )
                r.want_sync = r.want_sync or "a batch of files was not answered"
            else:
                self._write_batch(r, body)
        except _Stop as stop:
            self._stop_root(r, str(stop))
        self._send_batches(r)
        self._pump(r)
        self._refill()

    def _write_batch(self, r: _Root, body: FileBatchReply) -> None:
        """Small files: all to temp files, one syncfs, then mode, mtime and rename each."""
        done: list[tuple[Path, Path, dict[str, Any]]] = []
        resolved: dict[str, str] = {}  # directories resolved once for the whole batch
        made: set[Path] = set()
        for row in body.files:
            rel = str(row.get("path", ""))
            data = row.get("data")
            if row.get("error"):
                if "refused" in str(row["error"]):
                    r.refused += 1
                    self.log.warning("{}: the File Monitor refused {}: {}", r.root.id, rel, row["error"])
                continue
            if not isinstance(data, bytes):
                e = Entry(rel, "file", int(row.get("size", 0)), int(row.get("mtime_ns", 0)), 0, "")
                r.queue.appendleft(
                    FileChange(r.root.id, self.epoch, 0, "write", rel, "", e.as_row(), time.time())
                )
                continue
            final = self._safe(r, rel, resolved)
            if final is None:
                continue
            tmp = temp_path(final)
            try:
                if final.parent not in made:
                    final.parent.mkdir(parents=True, exist_ok=True)
                    made.add(final.parent)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                self._os_error(r, rel, exc)
                continue
            done.append((tmp, final, row))
        if not done:
            return
        try:
            sync_filesystem(r.top)
        except OSError as exc:
            for tmp, _final, _row in done:
                tmp.unlink(missing_ok=True)
            self._os_error(r, done[0][2]["path"], exc)
            return
        for tmp, final, row in done:
            try:
                finish_file(tmp, final, int(row["mode"]), int(row["mtime_ns"]), synced=True)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                self._os_error(r, str(row["path"]), exc)
                continue
            r.files += 1
            r.bytes += int(row["size"])
        r.last_success = time.time()

    def _synced(self, r: _Root) -> None:
        """The manifest is applied: apply what was pushed meanwhile, then follow the pushes."""
        r.synced_at = time.time()
        r.last_success = r.synced_at
        if r.sync_started is not None:
            r.sync_seconds = r.synced_at - r.sync_started
        r.seq = r.base_seq
        buffered, r.buffer = sorted(r.buffer, key=lambda c: c.seq), []
        if r.root.when is When.ONCE:
            r.state = "done"
            self.once_done.add(r.root.id)
            self.log.info("{} copied once ({} files, {} bytes)", r.root.id, r.files, r.bytes)
            self._publish_state()
            return
        r.state = "running"
        self.log.info("{} is in sync; following changes from seq {}", r.root.id, r.seq)
        for ch in buffered:
            if ch.seq > r.seq:
                self._change(ch)
        self._publish_state()

    # ------------------------------------------------------------------------------ changes

    def _change(self, ch: FileChange) -> None:
        r = self.roots.get(ch.root)
        if r is None or r.root.when is not When.CONTINUOUS or r.state == "stopped":
            return
        if ch.epoch != self.epoch:
            if not self.subscribing:
                self._subscribe()  # the monitor restarted: its FileRoots tells us the new epoch
            return
        if ch.kind == "rescan" and ch.seq > r.counted_rescan:
            r.counted_rescan = ch.seq
            r.rescans += 1
            if "overflow" in ch.new_path:
                r.overflow_rescans += 1
        if r.state == "syncing":
            r.buffer.append(ch)
            return
        verdict = seq_verdict(r.seq, ch.seq)
        if verdict is Seq.OLD:
            return
        if verdict is Seq.GAP:
            r.rescans += 1
            self.log.warning(
                "gap in the file changes of {} (expected {}, got {}): rescanning the root",
                r.root.id,
                r.seq + 1,
                ch.seq,
            )
            self._request_sync(r, "gap in the change sequence")
            r.buffer.append(ch)
            return
        r.seq = ch.seq
        if ch.kind == "rescan":
            self.log.warning("the File Monitor rescans {} ({}): comparing it again", r.root.id, ch.new_path)
            self._request_sync(r, f"the File Monitor asked: {ch.new_path}")
            return
        r.queue.append(ch)
        self._pump(r)

    def _pump(self, r: _Root) -> None:
        """Apply queued changes in order: writes of distinct files run side by side, anything else
        waits until the writes before it are done."""
        try:
            while r.queue and r.state != "stopped":
                ch = r.queue[0]
                if ch.kind == "write":
                    busy = {self.jobs[j].path for j in r.jobs}
                    if ch.path in busy:
                        return
                    if ch.data is not None:
                        r.queue.popleft()
                        self._write_inline(r, ch)
                        continue
                    if len(self.jobs) >= self.window:
                        return
                    r.queue.popleft()
                    self._start_job(r, ch)
                    continue
                if r.jobs or r.batches or r.batches_out:
                    return
                r.queue.popleft()
                if ch.kind == "synced":
                    if r.want_sync:
                        self._start_sync(r)
                        return
                    self._synced(r)
                    continue
                self._apply(r, ch)
            if not r.queue and not r.jobs and r.want_sync and r.state != "stopped":
                self._start_sync(r)
        except _Stop as stop:
            self._stop_root(r, str(stop))

    def _apply(self, r: _Root, ch: FileChange) -> None:
        try:
            entry = Entry.from_row(ch.entry) if ch.entry is not None else None
        except ValueError as exc:
            self.log.error("{}: malformed change {} of {} ignored ({})", r.root.id, ch.kind, ch.path, exc)
            r.want_sync = r.want_sync or "malformed change"
            return
        if ch.kind == "mkdir" and entry is not None:
            self._mkdir(r, entry)
        elif ch.kind == "link" and entry is not None:
            self._link(r, entry)
        elif ch.kind == "meta" and entry is not None:
            self._meta(r, entry, fetch_if_differs=True)
            return
        elif ch.kind == "delete":
            self._guard(r, ch.path, remove_tree)
        elif ch.kind == "rename":
            self._rename(r, ch.path, ch.new_path)
        else:
            self.log.warning("{}: change {!r} of {} not understood; ignored", r.root.id, ch.kind, ch.path)
            return
        self._applied(r, ch)

    def _applied(self, r: _Root, ch: FileChange) -> None:
        r.last_success = time.time()
        if ch.at:
            r.lag = max(0.0, r.last_success - ch.at)

    # ---------------------------------------------------------------------------- file system

    def _safe(self, r: _Root, rel: str, resolved: dict[str, str] | None = None) -> Path | None:
        try:
            return safe_local_path(r.top, check_relative(rel), resolved)
        except PathRefused as exc:
            r.refused += 1
            self.log.warning("refused a change under {}: {}", r.root.id, exc)
            return None

    def _guard(self, r: _Root, rel: str, action: Callable[[Path], None]) -> None:
        path = self._safe(r, rel)
        if path is None:
            return
        try:
            action(path)
        except OSError as exc:
            self._os_error(r, rel, exc)

    def _os_error(self, r: _Root, rel: str, exc: OSError) -> None:
        if exc.errno in FATAL_ERRNOS:
            what = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "permission denied"
            raise _Stop(f"{what} writing {r.top / rel}: {exc.strerror}")
        self.log.warning("{}: {} failed: {}; the next comparison will repair it", r.root.id, rel, exc)
        r.want_sync = r.want_sync or f"{rel} could not be applied"

    def _mkdir(self, r: _Root, e: Entry) -> None:
        def make(p: Path) -> None:
            if p.is_symlink() or (p.exists() and not p.is_dir()):
                remove_tree(p)
            p.mkdir(parents=True, exist_ok=True)
            os.chmod(p, e.mode)

        self._guard(r, e.path, make)

    def _link(self, r: _Root, e: Entry) -> None:
        if not symlink_allowed(r.top, e.path, e.target):
            r.refused += 1
            self.log.warning(
                "refused symlink {} -> {} under {}: its target is outside the mirrored root",
                e.path,
                e.target,
                r.root.id,
            )
            return

        def make(p: Path) -> None:
            tmp = temp_path(p)
            remove_tree(tmp)
            os.symlink(e.target, tmp)
            if p.is_dir() and not p.is_symlink():
                remove_tree(p)
            os.replace(tmp, p)

        self._guard(r, e.path, make)

    def _meta(self, r: _Root, e: Entry, fetch_if_differs: bool) -> None:
        path = self._safe(r, e.path)
        if path is None:
            return
        try:
            st = path.lstat()
        except FileNotFoundError:
            st = None
        except OSError as exc:
            self._os_error(r, e.path, exc)
            return
        same = st is not None and (e.type == "dir" or (st.st_size == e.size and not path.is_symlink()))
        if not same:
            if fetch_if_differs and e.type == "file":
                r.queue.appendleft(
                    FileChange(r.root.id, self.epoch, 0, "write", e.path, "", e.as_row(), time.time())
                )
            return
        try:
            os.chmod(path, e.mode)
            if e.type == "file":
                os.utime(path, ns=(e.mtime_ns, e.mtime_ns))
        except OSError as exc:
            self._os_error(r, e.path, exc)
            return
        r.last_success = time.time()

    def _rename(self, r: _Root, old: str, new: str) -> None:
        src, dst = self._safe(r, old), self._safe(r, new)
        if src is None or dst is None:
            return
        try:
            if not src.exists() and not src.is_symlink():
                r.want_sync = r.want_sync or f"renamed {old} was not here"
                return
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_dir() and not dst.is_symlink() and not src.is_dir():
                remove_tree(dst)
            os.replace(src, dst)
        except OSError as exc:
            self._os_error(r, new, exc)

    # ------------------------------------------------------------------------------ content

    def _write_inline(self, r: _Root, ch: FileChange) -> None:
        """A small file whose content came with its change: temp file, fsync, mode, mtime, rename."""
        final = self._safe(r, ch.path)
        if final is None or ch.entry is None or ch.data is None:
            return
        try:
            e = Entry.from_row(ch.entry)
        except ValueError as exc:
            self.log.error("{}: malformed change of {} ignored ({})", r.root.id, ch.path, exc)
            return
        tmp = temp_path(final)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, ch.data)
            finally:
                os.close(fd)
            finish_file(tmp, final, e.mode, e.mtime_ns)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self._os_error(r, ch.path, exc)
            return
        r.files += 1
        r.bytes += len(ch.data)
        self._applied(r, ch)

    def _start_job(self, r: _Root, ch: FileChange) -> None:
        final = self._safe(r, ch.path)
        if final is None:
            return
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_path(final)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            self._os_error(r, ch.path, exc)
            return
        self.job_ids += 1
        job = _Job(self.job_ids, r.root.id, ch.path, final, tmp, fd, ch.at)
        if ch.entry is not None:
            job.expected = int(ch.entry.get("size", 0))
        self.jobs[job.id] = job
        r.jobs.add(job.id)
        self._feed(job)

    def _feed(self, job: _Job) -> None:
        """Ask for the next chunks of ``job`` while the window has room."""
        while self.in_flight < self.window:
            if job.size < 0:
                if job.outstanding:
                    return  # the first answer tells the size
            elif job.next_offset >= job.size:
                return
            offset = job.next_offset
            job.next_offset += self.chunk
            self._ask_chunk(job, offset)
            if job.size < 0:
                return

    def _ask_chunk(self, job: _Job, offset: int) -> None:
        job.outstanding.add(offset)
        self.in_flight += 1
        self._request(FileChunkRequest(job.root, job.path, offset, self.chunk), ("chunk", job.id, offset))

    def _on_chunk(self, tag: tuple[Any, ...], body: Any, error: str) -> None:
        job = self.jobs.get(tag[1])
        offset = tag[2]
        self.in_flight = max(0, self.in_flight - 1)
        if job is None or offset not in job.outstanding:
            self._refill()
            return
        job.outstanding.discard(offset)
        r = self.roots.get(job.root)
        if r is None:
            self._drop_job(job)
            self._refill()
            return
        if not isinstance(body, FileChunkReply):
            job.retries += 1
            if job.retries > MAX_RETRIES:
                self.log.warning(
                    "{}: giving up on {} after {} tries ({})", r.root.id, job.path, job.retries, error
                )
                self._drop_job(job)
                r.want_sync = r.want_sync or f"could not fetch {job.path}"
                self._pump(r)
            else:
                self.log.debug(
                    "{}: chunk {} of {} failed ({}); asking again", r.root.id, offset, job.path, error
                )
                job.outstanding.add(offset)  # hold its place until the retry
                self.in_flight += 1
                self.schedule(RETRY_DELAY, _Retry(job.id, offset))
            self._refill()
            return
        if body.error:
            if "refused" in body.error:
                r.refused += 1
                self.log.warning("{}: the File Monitor refused {}: {}", r.root.id, job.path, body.error)
            else:
                self.log.debug("{}: {} not fetched: {}", r.root.id, job.path, body.error)
            self._drop_job(job)
            self._pump(r)
            self._refill()
            return
        if job.size >= 0 and (body.size != job.size or body.mtime_ns != job.mtime_ns):
            self._restart_job(job)  # it changed while we copied it
            self._refill()
            return
        job.size, job.mtime_ns, job.mode = body.size, body.mtime_ns, body.mode
        try:
            if body.data:
                os.pwrite(job.fd, body.data, offset)
                start_writeback(job.fd, offset, len(body.data))
            job.received += len(body.data)
            if not body.data and offset < job.size:
                self._restart_job(job)  # shrank under us
                self._refill()
                return
            if job.received >= job.size and not job.outstanding:
                self._finish(r, job)
                self._pump(r)
            else:
                self._feed(job)
        except OSError as exc:
            self._drop_job(job)
            try:
                self._os_error(r, job.path, exc)
            except _Stop as stop:
                self._stop_root(r, str(stop))
        self._refill()

    @handles(_Retry)
    def on_retry(self, msg: _Retry) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        job = self.jobs.get(msg.job)
        if job is None:
            return
        job.outstanding.discard(msg.offset)
        self._ask_chunk(job, msg.offset)

    def _refill(self) -> None:
        for job in list(self.jobs.values()):
            if self.in_flight >= self.window:
                break
            self._feed(job)
        for r in list(self.roots.values()):
            if r.batches:
                self._send_batches(r)
            if r.queue and len(self.jobs) < self.window:
                self._pump(r)

    def _restart_job(self, job: _Job) -> None:
        self.log.debug(
            "{}: {} changed while it was copied; copying it again from the start", job.root, job.path
        )
        os.ftruncate(job.fd, 0)
        job.size, job.received, job.next_offset = -1, 0, 0
        if not job.outstanding:
            self._feed(job)
        else:
            job.outstanding.clear()  # late answers are ignored; the first new one sets the size
            self._feed(job)

    def _finish(self, r: _Root, job: _Job) -> None:
        os.close(job.fd)
        job.fd = -1
        finish_file(job.tmp, job.final, job.mode, job.mtime_ns)
        del self.jobs[job.id]
        r.jobs.discard(job.id)
        r.files += 1
        r.bytes += job.size
        r.last_success = time.time()
        if job.at:
            r.lag = max(0.0, r.last_success - job.at)

    def _drop_job(self, job: _Job) -> None:
        if job.fd >= 0:
            os.close(job.fd)
            job.fd = -1
        job.tmp.unlink(missing_ok=True)
        self.jobs.pop(job.id, None)
        r = self.roots.get(job.root)
        if r is not None:
            r.jobs.discard(job.id)

    # ------------------------------------------------------------------------- stop / state

    def _stop_root(self, r: _Root, reason: str) -> None:
        r.state, r.reason = "stopped", reason
        for jid in list(r.jobs):
            self._drop_job(self.jobs[jid])
        r.queue.clear()
        self.log.error("file mirroring of {} stopped: {}", r.root.id, reason)
        self._publish_state()

    def _overall(self) -> tuple[str, str]:
        roots = {rid: (r.state, r.reason) for rid, r in self.roots.items()}
        return overall_state(roots, self.health_ok, self.health_reason, self.subscribed)

    def _publish_state(self) -> None:
        state, reason = self._overall()
        if state != self.state:
            old, self.state = self.state, state
            if state == "stopped":
                self.log.warning("{} ({})", STOPPED_WARNING, reason)
                self._event(reason)
            elif old == "stopped":
                self.log.info("file replication from the primary is running again")
        if self.ctx.role.replication != self.state:
            self.ctx.role = replace(self.ctx.role, replication=self.state)

    def _event(self, reason: str) -> None:
        log = self.ctx.event_log
        if log is None:
            return
        role = self.ctx.role
        try:
            log.append(
                EventRecord.create(
                    node=self.ctx.node,
                    old_state=role.role,
                    new_state=role.role,
                    event="file-replication-stopped",
                    reason=reason,
                    generation=role.generation,
                    verdict=STOPPED_WARNING,
                )
            )
        except OSError as exc:
            self.log.error("cannot write the event log: {}", exc)

    # -------------------------------------------------------------------------------- health

    def _health_times(self) -> tuple[float | None, float]:
        p = self.ctx.server_params
        if p is None:
            return 60.0, 10.0
        return p.file_health_check_interval(), p.seconds("Switchover File Monitor Health Check Timeout")

    def _schedule_health(self) -> None:
        interval, _ = self._health_times()
        self.schedule(interval if interval is not None else 5.0, _Tick("health"))

    def _health_check(self) -> None:
        interval, timeout = self._health_times()
        if interval is None:
            return
        self.health_tokens += 1
        self.health_token = f"{uuid.uuid4().hex}-{self.health_tokens}"
        self.health_reply = None
        self._request(FileHealthCheck(self.health_token), ("health", self.health_token), timeout=timeout)
        self.schedule(timeout, _Tick("health-deadline", self.health_tokens))

    def _on_health(self, tag: tuple[Any, ...], body: Any, error: str) -> None:
        if tag[1] != self.health_token:
            return
        if isinstance(body, FileHealthReply):
            self.health_reply = body
            if self.epoch and body.epoch != self.epoch:
                self._health_failed(
                    f"the File Monitor on {self.ctx.config.peer.name} restarted (new epoch {body.epoch})"
                )
                self._subscribe()
        else:
            self._health_failed(f"the File Monitor did not answer the health check: {error}")

    def _health_deadline(self) -> None:
        _, timeout = self._health_times()
        reply = self.health_reply
        result = CheckResult(
            None if reply is None else reply.ok,
            reply.epoch if reply is not None else "",
            self.epoch,
            reply.detail if reply is not None else "",
            self._canary(),
            self.health_token,
        )
        why = check_verdict(result, timeout)
        if why is not None:
            self._health_failed(why)
        elif not self.health_ok:
            self.health_ok, self.health_reason = True, ""
            self._publish_state()

    def _canary(self) -> str:
        try:
            return (canary_dir(self.ctx.config.data_dir) / CANARY_FILE).read_text()
        except OSError:
            return ""

    def _health_failed(self, reason: str) -> None:
        changed = self.health_ok or reason != self.health_reason
        self.health_ok, self.health_reason = False, reason
        if changed:
            self.log.warning("file health check failed: {}", reason)
        self._publish_state()

    @handles(_Tick)
    def on_tick(self, msg: _Tick) -> None:
        if msg.name == "subscribe":
            self._subscribe()
        elif msg.name == "health":
            if not self.subscribed:
                self._subscribe()
            self._health_check()
            self._schedule_health()
            self._publish_state()
        elif msg.name == "health-deadline":
            if msg.token == self.health_tokens:
                self._health_deadline()
        elif msg.name == "resync":
            for r in self.roots.values():
                if r.want_sync and r.state == "syncing" and not r.jobs and not r.queue:
                    self._start_sync(r)
        elif msg.name == "full-scan":
            for r in self.roots.values():
                if r.state == "running":
                    self._request_sync(r, "periodic full comparison")
            self.schedule(self.ctx.config.mirror.full_scan_interval, _Tick("full-scan"))
        elif msg.name == "initial-deadline":
            self._initial_deadline()

    def _initial_deadline(self) -> None:
        late = [r for r in self.roots.values() if r.root.when is When.ONCE and r.state != "done"]
        if not late or self.initial_failed:
            return
        self.initial_failed = True
        limit = self.ctx.config.mirror.initial_sync_timeout
        for r in late:
            left = [e for e in r.queue if e.kind == "write"]
            bytes_left = sum(Entry.from_row(c.entry).size for c in left if c.entry is not None)
            jobs = [self.jobs[j] for j in r.jobs]
            bytes_left += sum(max(0, (j.size if j.size >= 0 else j.expected) - j.received) for j in jobs)
            if r.synced_at is None and not left and not jobs and not r.batches and not r.batches_out:
                bytes_left = -1  # still waiting for its manifest
            message = initial_sync_failure(r.root.path, bytes_left, len(left) + len(jobs), limit)
            self.log.error("{}", message)
            self._stop_root(r, message)
        if self.ctx.supervisor is not None:
            self.ctx.supervisor.tell(MonitorVerdict(Event.FATAL_ERROR, Facts(), late[0].reason))

    # -------------------------------------------------------------------------------- admin

    @handles(GetFilesStatus)
    def on_status(self, msg: GetFilesStatus) -> dict[str, Any]:
        rows = []
        for rid, r in self.roots.items():
            rows.append(
                {
                    "root": rid,
                    "local": str(r.top),
                    "when": str(r.root.when),
                    "recursive": r.root.recursive,
                    "source": r.root.source,
                    "state": r.state,
                    "reason": r.reason or r.want_sync,
                    "seq": r.seq,
                    "files": r.files,
                    "bytes": r.bytes,
                    "lag": r.lag,
                    "last_success": r.last_success,
                    "rescans": r.rescans,
                    "overflow_rescans": r.overflow_rescans,
                    "refused": r.refused,
                    "queued": len(r.queue) + len(r.buffer),
                    "sync_seconds": r.sync_seconds,
                    "in_flight": len(r.jobs),
                }
            )
        return {
            "side": "backup",
            "actor": self.name,
            "state": self.state,
            "reason": self._overall()[1],
            "epoch": self.epoch,
            "health_ok": self.health_ok,
            "roots": rows,
            "canary": CANARY_ROOT,
        }


def _has_entries(top: Path) -> bool:
    """Does the local copy hold anything (else the comparison needs no content hashes)?"""
    try:
        with os.scandir(top) as it:
            return any(True for _ in it)
    except OSError:
        return False
