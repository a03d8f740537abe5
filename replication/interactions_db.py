"""Durable home of a node's interactions: a SQLite file (WAL) in the data directory.

The active writes its live set through it; the backup its shadows. ``mode`` says which the file
holds: ``live`` or ``shadow``. A node that becomes active finds ``shadow`` there and promotes it
once (:meth:`InteractionDB.promote`, one transaction: a repeated promotion changes nothing).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path

import msgpack

from replication.interactions import Interaction, from_row, to_row

DB_NAME = "interactions.db"


class InteractionDB:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        # doc: the compact row (msgpack); seqno apart, so a promotion is one UPDATE
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS interactions (id TEXT PRIMARY KEY, seqno INTEGER NOT NULL, doc BLOB NOT NULL)"
        )
        self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.dirty: set[str] = set()  # ids changed in memory, not yet written (see mark / flush)

    @staticmethod
    def in_dir(data_dir: str | Path) -> InteractionDB:
        return InteractionDB(Path(data_dir) / DB_NAME)

    def close(self) -> None:
        self.conn.close()

    # ---------------------------------------------------------------------------------- reading
    def mode(self) -> str:
        row = self.conn.execute("SELECT value FROM meta WHERE key='mode'").fetchone()
        return str(row[0]) if row else "live"

    def load(self) -> list[Interaction]:
        return [
            from_row(msgpack.unpackb(doc), seqno)
            for (seqno, doc) in self.conn.execute("SELECT seqno, doc FROM interactions")
        ]

    # ---------------------------------------------------------------------------------- writing
    def write(self, put: Iterable[Interaction] = (), delete: Iterable[str] = ()) -> None:
        """Upsert and delete in one transaction."""
        rows = [_row(i) for i in put]
        gone = [(iid,) for iid in delete]
        if not rows and not gone:
            return
        with self._tx():
            if rows:
                self.conn.executemany(
                    "INSERT OR REPLACE INTO interactions (id, seqno, doc) VALUES (?, ?, ?)", rows
                )
            if gone:
                self.conn.executemany("DELETE FROM interactions WHERE id = ?", gone)

    def mark(self, iid: str) -> bool:
        """Note a change of ``iid`` to write at the next :meth:`flush`; True if it is the first one
        since the last flush (the caller schedules the flush then)."""
        first = not self.dirty
        self.dirty.add(iid)
        return first

    def flush(self, items: Mapping[str, Interaction]) -> int:
        """Write the marked ids as they are in ``items`` now (absent: deleted), in one transaction."""
        if not self.dirty:
            return 0
        ids, self.dirty = self.dirty, set()
        self.write(put=[items[i] for i in ids if i in items], delete=[i for i in ids if i not in items])
        return len(ids)

    def replace_all(self, items: Iterable[Interaction], mode: str) -> None:
        """The whole content at once (a full synchronization), with its mode."""
        rows = [_row(i) for i in items]
        self.dirty.clear()
        with self._tx():
            self.conn.execute("DELETE FROM interactions")
            self.conn.executemany("INSERT INTO interactions (id, seqno, doc) VALUES (?, ?, ?)", rows)
            self._set_mode(mode)

    def promote(self) -> tuple[list[Interaction], bool]:
        """Shadows become live (seqno + 1), once: (the live interactions, promoted now?)."""
        with self._tx():
            promoted = self.mode() == "shadow"
            if promoted:
                self.conn.execute("UPDATE interactions SET seqno = seqno + 1")
                self._set_mode("live")
        return self.load(), promoted

    def _set_mode(self, mode: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('mode', ?)", (mode,))

    def _tx(self) -> _Tx:
        return _Tx(self.conn)


def _row(i: Interaction) -> tuple[str, int, bytes]:
    return (i.id, i.seqno, msgpack.packb(to_row(i), use_bin_type=True))


class _Tx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
