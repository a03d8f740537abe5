"""The SQLite home of interactions: shadows survive a reopen; promotion happens once."""

from __future__ import annotations

from pathlib import Path

from replication.interactions import Interaction, TranscriptEntry
from replication.interactions_db import InteractionDB


def chat(iid: str, created: float) -> Interaction:
    return Interaction(
        iid, "chat", "connected", "Support", "alice", created, (TranscriptEntry("c", "hi", created),)
    )


def test_shadows_survive_a_reopen_and_are_promoted_once(tmp_path: Path) -> None:
    db = InteractionDB.in_dir(tmp_path)
    db.replace_all([chat("c1", 10.0), chat("c2", 20.0)], "shadow")
    db.write(put=[chat("c3", 30.0)], delete=["c2"])
    db.close()
    db = InteractionDB.in_dir(tmp_path)
    assert db.mode() == "shadow"
    items, promoted = db.promote()
    assert promoted and sorted((i.id, i.seqno, i.created_at) for i in items) == [
        ("c1", 1, 10.0),
        ("c3", 1, 30.0),
    ]
    db.close()
    db = InteractionDB.in_dir(tmp_path)  # e.g. the publisher restarted: nothing changes
    again, promoted_again = db.promote()
    assert not promoted_again and sorted(i.seqno for i in again) == [1, 1]
    assert db.mode() == "live"
    assert [m.text for m in next(i for i in again if i.id == "c1").transcript] == ["hi"]
    db.close()


def test_a_new_full_sync_replaces_everything(tmp_path: Path) -> None:
    db = InteractionDB.in_dir(tmp_path)
    db.replace_all([chat("old", 1.0)], "live")
    db.replace_all([chat("new", 2.0)], "shadow")
    assert [i.id for i in db.load()] == ["new"] and db.mode() == "shadow"
    db.close()
