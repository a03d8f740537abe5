"""What a batch of inotify events means for one mirrored root (pure: no I/O, injectable time).

The File Monitor feeds the events of one root's inotify instance to :class:`EventInterpreter` and
gets back :class:`Change` s to push (in order) and :class:`Rescan` s (the root must be compared whole
again). The rules, after lsyncd and Syncthing:

- ``IN_MOVED_FROM``/``IN_MOVED_TO`` with one cookie are one rename; a ``MOVED_FROM`` left unpaired is
  a delete (moved out of the root), a ``MOVED_TO`` left unpaired is a new file or tree (moved in);
- a file created or modified is sent when it is closed after writing, or once it has been quiet for
  the debounce time (a writer that keeps it open);
- a new directory is watched and scanned at once (files may have landed before the watch);
- ``IN_Q_OVERFLOW`` (events were lost), a lost watch (``IN_IGNORED`` nobody asked for) or the root itself
  deleted or moved means a rescan of the root;
- paths the root does not mirror (subdirectories of a flat root, excluded extensions, excluded
  directories) are dropped; a rename across that boundary is a write or a delete.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from replication.mirror_sets import MirrorRoot

# inotify masks (linux/inotify.h)
IN_ACCESS = 0x1
IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_UNMOUNT = 0x2000
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x1000000
IN_DONT_FOLLOW = 0x2000000
IN_EXCL_UNLINK = 0x4000000
IN_ISDIR = 0x40000000

WATCH_MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
    | IN_DONT_FOLLOW
    | IN_EXCL_UNLINK
)


@dataclass(frozen=True)
class Ev:
    """One inotify event (the fields of ``inotify_simple.Event``)."""

    wd: int
    mask: int
    cookie: int
    name: str


@dataclass(frozen=True)
class Change:
    """``kind``: write (send the file, or the link it turned out to be), meta (mode/mtime), delete,
    rename (``path`` -> ``new_path``), newdir (watch it and send all it holds)."""

    kind: str
    path: str
    new_path: str = ""


@dataclass(frozen=True)
class Rescan:
    reason: str
    overflow: bool = False


Output = Change | Rescan


def _join(base: str, name: str) -> str:
    return posixpath.join(base, name) if base else name


@dataclass
class EventInterpreter:
    root: MirrorRoot
    debounce: float = 0.05
    watches: dict[int, str] = field(default_factory=dict)  # wd -> directory relative to the root ("" = root)
    pending: dict[int, tuple[str, bool, bool]] = field(
        default_factory=dict
    )  # cookie -> (path, is_dir, dirty)
    dirty: dict[str, float] = field(default_factory=dict)  # file -> time of its last change
    leaving: set[int] = field(default_factory=set)  # wds whose IN_IGNORED is expected
    unwatch: list[int] = field(default_factory=list)  # wds the monitor must remove (a tree moved out)

    # ------------------------------------------------------------------------------- watches
    def watch_added(self, wd: int, rel: str) -> None:
        self.watches[wd] = rel
        self.leaving.discard(wd)

    def watch_removed(self, wd: int) -> None:
        """The monitor removed ``wd`` itself: its IN_IGNORED is expected."""
        self.leaving.add(wd)

    def reset(self) -> None:
        """After a rescan: nothing pending; the watches are re-added by the scan."""
        self.pending.clear()
        self.dirty.clear()

    def _rename_watches(self, old: str, new: str) -> None:
        for wd, rel in list(self.watches.items()):
            if rel == old or rel.startswith(old + "/"):
                self.watches[wd] = new + rel[len(old) :]

    def _drop_watches(self, top: str, remove: bool = False) -> None:
        for wd, rel in list(self.watches.items()):
            if rel == top or rel.startswith(top + "/"):
                self.leaving.add(wd)
                if remove:  # the directory still exists elsewhere: its events must not count here
                    del self.watches[wd]
                    self.unwatch.append(wd)

    # -------------------------------------------------------------------------------- events
    def process(self, events: list[Ev], now: float) -> list[Output]:
        out: list[Output] = []
        for ev in events:
            if self.pending and not (ev.mask & IN_MOVED_TO and ev.cookie in self.pending):
                out += self._flush_moves()
            if ev.mask & IN_Q_OVERFLOW:
                self.reset()
                return [*out, Rescan("the inotify event queue overflowed (events were lost)", overflow=True)]
            rescan = self._one(ev, now, out)
            if rescan is not None:
                self.reset()
                return [*out, rescan]
        return out

    def expire_moves(self) -> list[Output]:
        """Renames whose other half never came: moved out of the root (a delete)."""
        return self._flush_moves()

    def _flush_moves(self) -> list[Output]:
        out: list[Output] = []
        for path, is_dir, _dirty in self.pending.values():
            if self.root.includes(path, is_dir):
                out.append(Change("delete", path))
            if is_dir:
                self._drop_watches(path, remove=True)
        self.pending.clear()
        return out

    def due(self, now: float) -> list[Change]:
        """Files quiet for the debounce time: send them now."""
        ready = sorted(p for p, t in self.dirty.items() if now - t >= self.debounce)
        for p in ready:
            del self.dirty[p]
        return [Change("write", p) for p in ready]

    def _one(self, ev: Ev, now: float, out: list[Output]) -> Rescan | None:
        mask = ev.mask
        if mask & IN_IGNORED:
            rel = self.watches.pop(ev.wd, None)
            if ev.wd in self.leaving:
                self.leaving.discard(ev.wd)
                return None
            if rel is None:
                return None
            return Rescan(f"lost the watch on {rel or 'the root'}")
        base = self.watches.get(ev.wd)
        if base is None:
            return None  # an event of a watch already gone
        if mask & IN_UNMOUNT:
            return Rescan(f"the file system of {base or 'the root'} was unmounted")
        if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
            if base == "":
                what = "deleted" if mask & IN_DELETE_SELF else "moved"
                return Rescan(f"the root directory was {what}")
            if mask & IN_DELETE_SELF:
                self.leaving.add(ev.wd)
            return None  # the parent's event says what happened
        rel = _join(base, ev.name)
        is_dir = bool(mask & IN_ISDIR)
        if mask & IN_MOVED_FROM:
            dirty = self.dirty.pop(rel, None) is not None
            self.pending[ev.cookie] = (rel, is_dir, dirty)
            return None
        if mask & IN_MOVED_TO:
            old = self.pending.pop(ev.cookie, None)
            if old is None:
                self._moved_in(rel, is_dir, out)
            else:
                self._renamed(old[0], rel, is_dir, old[2], now, out)
            return None
        if is_dir:
            if mask & IN_CREATE:
                if self.root.includes(rel, True):
                    out.append(Change("newdir", rel))
            elif mask & IN_DELETE:
                if self.root.includes(rel, True):
                    out.append(Change("delete", rel))
                self._drop_watches(rel)
            elif mask & IN_ATTRIB and self.root.includes(rel, True):
                out.append(Change("meta", rel))
            return None
        if not self.root.includes(rel):
            return None
        if mask & IN_DELETE:
            self.dirty.pop(rel, None)
            out.append(Change("delete", rel))
        elif mask & IN_CLOSE_WRITE:
            self.dirty.pop(rel, None)
            out.append(Change("write", rel))
        elif mask & (IN_CREATE | IN_MODIFY):
            self.dirty[rel] = now
        elif mask & IN_ATTRIB and rel not in self.dirty:
            out.append(Change("meta", rel))
        return None

    def _moved_in(self, rel: str, is_dir: bool, out: list[Output]) -> None:
        if is_dir:
            if self.root.includes(rel, True):
                out.append(Change("newdir", rel))
        elif self.root.includes(rel):
            out.append(Change("write", rel))

    def _renamed(self, old: str, new: str, is_dir: bool, dirty: bool, now: float, out: list[Output]) -> None:
        was, now_in = self.root.includes(old, is_dir), self.root.includes(new, is_dir)
        if is_dir:
            self._rename_watches(old, new)
        if was and now_in:
            out.append(Change("rename", old, new))
            if dirty:
                self.dirty[new] = now
        elif was:
            out.append(Change("delete", old))
            if is_dir:
                self._drop_watches(new, remove=True)
        elif now_in:
            out.append(Change("newdir" if is_dir else "write", new))
