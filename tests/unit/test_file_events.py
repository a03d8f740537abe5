"""The inotify event interpreter of the File Monitor (pure, virtual time)."""

from __future__ import annotations

from replication.file_events import (
    IN_ATTRIB,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_ISDIR,
    IN_MODIFY,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    Change,
    Ev,
    EventInterpreter,
    Rescan,
)
from replication.mirror_sets import MirrorRoot, When


def interp(recursive: bool = True, exceptions: tuple[str, ...] = ("txt",)) -> EventInterpreter:
    it = EventInterpreter(MirrorRoot("/d", recursive, When.CONTINUOUS, exceptions), debounce=0.05)
    it.watch_added(1, "")
    it.watch_added(2, "sub")
    return it


def test_close_write_sends_at_once_and_modify_waits_for_quiet() -> None:
    it = interp()
    assert it.process(
        [Ev(1, IN_CREATE, 0, "a"), Ev(1, IN_MODIFY, 0, "a"), Ev(1, IN_CLOSE_WRITE, 0, "a")], 0.0
    ) == [Change("write", "a")]
    assert it.process([Ev(1, IN_MODIFY, 0, "log")], 1.0) == []
    assert it.due(1.01) == []
    assert it.process([Ev(1, IN_MODIFY, 0, "log")], 1.03) == []
    assert it.due(1.07) == []  # still being written 40 ms ago
    assert it.due(1.09) == [Change("write", "log")]
    assert it.due(2.0) == []


def test_rename_paired_by_cookie_and_across_scope() -> None:
    it = interp()
    out = it.process([Ev(1, IN_MOVED_FROM, 7, "a"), Ev(2, IN_MOVED_TO, 7, "b")], 0.0)
    assert out == [Change("rename", "a", "sub/b")]
    # renamed to an excluded extension: a delete; from one: a write
    assert it.process([Ev(1, IN_MOVED_FROM, 8, "c"), Ev(1, IN_MOVED_TO, 8, "c.txt")], 0.0) == [
        Change("delete", "c")
    ]
    assert it.process([Ev(1, IN_MOVED_FROM, 9, "d.txt"), Ev(1, IN_MOVED_TO, 9, "d")], 0.0) == [
        Change("write", "d")
    ]


def test_unpaired_moves_are_deletes_and_writes() -> None:
    it = interp()
    assert it.process([Ev(1, IN_MOVED_FROM, 5, "out")], 0.0) == []  # may pair with the next batch
    assert it.process([Ev(1, IN_MOVED_TO, 6, "in")], 0.0) == [Change("delete", "out"), Change("write", "in")]
    assert it.process([Ev(1, IN_MOVED_FROM, 10, "x")], 0.0) == []
    assert it.expire_moves() == [Change("delete", "x")]


def test_directory_moved_out_is_unwatched_and_its_events_ignored() -> None:
    it = interp()
    it.process([Ev(1, IN_MOVED_FROM | IN_ISDIR, 3, "sub")], 0.0)
    assert it.expire_moves() == [Change("delete", "sub")]
    assert it.unwatch == [2]
    assert it.process([Ev(2, IN_CLOSE_WRITE, 0, "f")], 0.0) == []


def test_directory_rename_moves_its_watches() -> None:
    it = interp()
    out = it.process(
        [Ev(1, IN_MOVED_FROM | IN_ISDIR, 3, "sub"), Ev(1, IN_MOVED_TO | IN_ISDIR, 3, "new")], 0.0
    )
    assert out == [Change("rename", "sub", "new")]
    assert it.process([Ev(2, IN_CLOSE_WRITE, 0, "f")], 0.0) == [Change("write", "new/f")]


def test_new_directory_is_watched_and_scanned_and_flat_roots_ignore_subdirs() -> None:
    assert interp().process([Ev(1, IN_CREATE | IN_ISDIR, 0, "n")], 0.0) == [Change("newdir", "n")]
    flat = interp(recursive=False)
    assert flat.process([Ev(1, IN_CREATE | IN_ISDIR, 0, "n"), Ev(2, IN_CLOSE_WRITE, 0, "f")], 0.0) == []


def test_excluded_extension_and_chmod_and_delete() -> None:
    it = interp()
    assert it.process([Ev(1, IN_CLOSE_WRITE, 0, "n.TXT")], 0.0) == []
    assert it.process([Ev(1, IN_ATTRIB, 0, "a")], 0.0) == [Change("meta", "a")]
    assert it.process([Ev(1, IN_DELETE, 0, "a")], 0.0) == [Change("delete", "a")]


def test_overflow_and_lost_watch_mean_rescan_but_expected_ignores_do_not() -> None:
    it = interp()
    it.process([Ev(1, IN_MODIFY, 0, "busy")], 0.0)
    out = it.process(
        [Ev(1, IN_CLOSE_WRITE, 0, "a"), Ev(-1, IN_Q_OVERFLOW, 0, ""), Ev(1, IN_CLOSE_WRITE, 0, "b")], 0.0
    )
    assert out == [
        Change("write", "a"),
        Rescan("the inotify event queue overflowed (events were lost)", True),
    ]
    assert it.dirty == {}
    # a deleted subdirectory: DELETE_SELF then IGNORED is expected
    it = interp()
    out = it.process(
        [Ev(2, IN_DELETE_SELF, 0, ""), Ev(2, IN_IGNORED, 0, ""), Ev(1, IN_DELETE | IN_ISDIR, 0, "sub")], 0.0
    )
    assert out == [Change("delete", "sub")]
    # an IGNORED out of the blue: the watch was lost
    it = interp()
    (r,) = it.process([Ev(2, IN_IGNORED, 0, "")], 0.0)
    assert isinstance(r, Rescan) and "sub" in r.reason and not r.overflow
    (r,) = interp().process([Ev(1, IN_DELETE_SELF, 0, "")], 0.0)
    assert isinstance(r, Rescan) and "root" in r.reason
