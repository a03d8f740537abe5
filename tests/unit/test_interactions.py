"""Interaction shadowing logic: the model, the live set, the stream, the shadows, promotion."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replication.interactions import (
    ENABLE_PARAMS,
    MAIL_FILTER_PARAM,
    TYPES,
    Interaction,
    InteractionError,
    LiveSet,
    ShadowFilter,
    ShadowStore,
    StreamGap,
    StreamItem,
    StreamSession,
    count_by_type,
)

ALL = ShadowFilter(frozenset(TYPES))


def synced(live: LiveSet, flt: ShadowFilter = ALL) -> tuple[StreamSession, ShadowStore]:
    session = StreamSession("s1", flt)
    store = ShadowStore(flt)
    store.begin_sync("s1")
    seq, items = session.snapshot(live)
    store.add_snapshot(i.to_dict() for i in items)
    store.finish_sync(seq)
    return session, store


def shadow_view(store: ShadowStore) -> dict[str, dict[str, Any]]:
    return {k: v.to_dict() for k, v in store.items.items()}


def admitted_view(live: LiveSet, flt: ShadowFilter) -> dict[str, dict[str, Any]]:
    return {k: v.to_dict() for k, v in live.items.items() if flt.admits(v)}


def test_create_keeps_given_created_at_and_starts_at_seqno_0() -> None:
    live = LiveSet()
    ch = live.publish("create", "c1", {"type": "chat", "queue": "Support", "created_at": 100.0}, now=150.0)
    assert ch.rev == 1 and ch.before is None
    assert live.items["c1"].created_at == 100.0
    assert live.items["c1"].seqno == 0
    assert live.items["c1"].state == "queued"


@pytest.mark.parametrize(
    ("op", "iid", "data", "words"),
    [
        ("create", "x", {"type": "fax"}, "not an interaction type"),
        ("create", "c1", {"type": "chat"}, "already exists"),
        ("update", "nope", {"state": "connected"}, "no live interaction nope"),
        ("update", "c1", {"colour": "red"}, "cannot change colour"),
        ("transfer", "c1", {"agent": "bob"}, "target queue is required"),
        ("explode", "c1", {}, "operation 'explode' is unknown"),
        ("append", "c1", {"author": 3, "text": "hi"}, "author must be text"),
    ],
)
def test_bad_publishes_say_what_was_wrong_and_change_nothing(
    op: str, iid: str, data: dict[str, Any], words: str
) -> None:
    live = LiveSet()
    live.publish("create", "c1", {"type": "chat"}, now=1.0)
    with pytest.raises(InteractionError, match=words):
        live.publish(op, iid, data, now=2.0)
    assert live.rev == 1 and list(live.items) == ["c1"]


def test_ops_update_append_transfer_disconnect() -> None:
    live = LiveSet()
    live.publish("create", "c1", {"type": "chat", "queue": "Support"}, now=1.0)
    live.publish(
        "update", "c1", {"state": "connected", "agent": "alice", "attributes": {"lang": "en"}}, now=2.0
    )
    live.publish("append", "c1", {"author": "customer", "text": "hello"}, now=3.0)
    live.publish("transfer", "c1", {"queue": "Sales"}, now=4.0)
    i = live.items["c1"]
    assert (i.state, i.queue, i.agent, dict(i.attributes)) == ("connected", "Sales", "", {"lang": "en"})
    assert [(m.author, m.text, m.at) for m in i.transcript] == [("customer", "hello", 3.0)]
    live.publish("disconnect", "c1", {}, now=5.0)
    assert live.items == {}
    assert [c.rev for c in live.log] == [1, 2, 3, 4, 5]
    assert live.changes_since(3) is not None and [c.op for c in live.changes_since(3) or []] == [
        "transfer",
        "disconnect",
    ]


def test_change_log_is_bounded_and_says_when_it_no_longer_reaches_back() -> None:
    live = LiveSet(log_size=3)
    for n in range(5):
        live.publish("create", f"i{n}", {"type": "sms"}, now=float(n))
    assert live.changes_since(1) is None
    assert [c.rev for c in live.changes_since(2) or []] == [3, 4, 5]
    assert live.changes_since(5) == []


def test_stream_applies_in_order_ignores_duplicates_and_detects_gaps() -> None:
    live = LiveSet()
    session, store = synced(live)
    items = [
        session.feed(live.publish("create", "c1", {"type": "chat"}, now=1.0)),
        session.feed(live.publish("append", "c1", {"author": "a", "text": "one"}, now=2.0)),
        session.feed(live.publish("append", "c1", {"author": "a", "text": "two"}, now=3.0)),
    ]
    stream = [i for i in items if i is not None]
    assert [s.kind for s in stream] == ["put", "op", "op"]
    store.apply(stream[0])
    assert store.apply(stream[0]).duplicates == 1
    with pytest.raises(StreamGap) as gap:
        store.apply(stream[2])
    assert (gap.value.expected, gap.value.got) == (2, 3)
    store.apply(stream[1])
    store.apply(stream[2])
    assert [m.text for m in store.items["c1"].transcript] == ["one", "two"]
    assert shadow_view(store) == admitted_view(live, ALL)


def test_updates_during_full_sync_are_queued_and_applied_once_above_the_snapshot() -> None:
    live = LiveSet()
    session = StreamSession("s", ALL)
    before = [session.feed(live.publish("create", f"c{n}", {"type": "chat"}, now=1.0)) for n in range(3)]
    store = ShadowStore(ALL)
    store.begin_sync("s")
    seq, snap = session.snapshot(live)
    after = [session.feed(live.publish("append", "c0", {"author": "a", "text": "late"}, now=2.0))]
    # an old item (already in the snapshot) and the new one both arrive while the sync runs
    for item in [before[2], *after]:
        assert item is not None and store.apply(item).queued == 1
    store.add_snapshot(i.to_dict() for i in snap)
    result = store.finish_sync(seq)
    assert len(result.applied) == 1 and result.duplicates == 1
    assert [m.text for m in store.items["c0"].transcript] == ["late"]
    assert shadow_view(store) == admitted_view(live, ALL)


def test_filter_enable_per_type_and_mail_only_when_assigned() -> None:
    flags = {ENABLE_PARAMS["mail"]: True, ENABLE_PARAMS["chat"]: True, MAIL_FILTER_PARAM: True}
    flt = ShadowFilter.from_flags(lambda name: flags.get(name, False))
    assert flt.types == {"mail", "chat"} and flt.mail_assigned_only
    live = LiveSet()
    session, store = synced(live, flt)
    for iid, kind in (("m1", "mail"), ("s1", "sms"), ("c1", "chat")):
        item = session.feed(live.publish("create", iid, {"type": kind, "queue": "Mailbox"}, now=1.0))
        if item is not None:
            store.apply(item)
    assert set(store.items) == {"c1"}, "an unassigned email and an SMS are not shadowed"
    item = session.feed(live.publish("transfer", "m1", {"queue": "alice", "agent": "alice"}, now=2.0))
    assert item is not None and item.kind == "put"
    store.apply(item)
    assert store.items["m1"].agent == "alice"
    item = session.feed(live.publish("update", "m1", {"agent": ""}, now=3.0))
    assert item is not None and item.kind == "remove"
    store.apply(item)
    assert set(store.items) == {"c1"}


def test_turning_the_mail_filter_on_drops_email_shadows_and_asks_for_a_full_sync() -> None:
    store = ShadowStore(ShadowFilter(frozenset({"mail", "chat"})))
    store.begin_sync("s")
    store.add_snapshot(
        [
            Interaction("m1", "mail", "queued", "Mailbox", "", 1.0).to_dict(),
            Interaction("m2", "mail", "connected", "alice", "alice", 1.0).to_dict(),
            Interaction("c1", "chat", "queued", "Support", "", 1.0).to_dict(),
        ]
    )
    store.finish_sync(0)
    resync, dropped = store.set_filter(ShadowFilter(frozenset({"mail", "chat"}), mail_assigned_only=True))
    assert resync and sorted(dropped) == ["m1", "m2"]
    assert set(store.items) == {"c1"}
    resync, dropped = store.set_filter(ShadowFilter(frozenset({"mail"}), mail_assigned_only=True))
    assert not resync and dropped == ["c1"], "turning a type off drops its shadows, no sync needed"
    assert store.set_filter(ShadowFilter(frozenset({"mail", "sms"}), True))[0], "enabling SMS needs a sync"
    assert store.set_filter(ShadowFilter(frozenset({"mail", "sms"}), False))[0], (
        "unassigned emails need a sync"
    )
    assert not store.set_filter(ShadowFilter(frozenset({"sms"}), True))[0], "mail off: nothing to fetch"


def test_promotion_is_idempotent_and_keeps_ids_and_created_at() -> None:
    live = LiveSet()
    session, store = synced(live)
    for n in range(3):
        item = session.feed(
            live.publish("create", f"c{n}", {"type": "chat", "created_at": 10.0 + n}, now=50.0)
        )
        assert item is not None
        store.apply(item)
    first = store.promote()
    again = store.promote()
    assert sorted((i.id, i.seqno, i.created_at) for i in first) == [
        ("c0", 1, 10.0),
        ("c1", 1, 11.0),
        ("c2", 1, 12.0),
    ]
    assert first == again
    # the promoted set becomes the live set of the new active; a later switch makes them 2
    new_live = LiveSet(first)
    _, next_store = synced(new_live)
    assert {i.seqno for i in next_store.promote()} == {2}


def test_snapshot_chunk_outside_a_sync_and_unknown_item_kinds_are_refused() -> None:
    store = ShadowStore(ALL)
    with pytest.raises(InteractionError, match="no full sync"):
        store.add_snapshot([])
    with pytest.raises(InteractionError, match="kind 'weird'"):
        store.apply(StreamItem(1, "weird", "x"))


# ------------------------------------------------------------------------------- property

op_strategy = st.tuples(
    st.sampled_from(["create", "update", "append", "transfer", "disconnect"]),
    st.integers(0, 5),
    st.sampled_from(TYPES),
    st.sampled_from(["", "alice", "bob"]),
)


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(op_strategy, max_size=60),
    types=st.sets(st.sampled_from(TYPES)),
    mail_filter=st.booleans(),
    sync_at=st.integers(0, 60),
    duplicate=st.lists(st.integers(0, 80), max_size=10),
)
def test_shadows_always_equal_the_admitted_live_set(
    ops: list[tuple[str, int, str, str]],
    types: set[str],
    mail_filter: bool,
    sync_at: int,
    duplicate: list[int],
) -> None:
    """Whatever the operations, where the full sync falls and which items are delivered twice,
    the shadows equal the live interactions the filter admits: none lost, none applied twice."""
    flt = ShadowFilter(frozenset(types), mail_filter)
    live = LiveSet()
    session = StreamSession("p", flt)
    store = ShadowStore(flt)
    sent: list[StreamItem] = []
    snapshot: tuple[int, list[Interaction]] | None = None
    for n, (op, k, kind, agent) in enumerate(ops):
        if n == sync_at:
            store.begin_sync("p")
            snapshot = session.snapshot(live)
        data: dict[str, Any] = {
            "create": {"type": kind, "agent": agent},
            "update": {"agent": agent, "state": "connected"},
            "append": {"author": agent or "customer", "text": f"m{n}"},
            "transfer": {"queue": agent or "Support", "agent": agent},
            "disconnect": {},
        }[op]
        try:
            change = live.publish(op, f"i{k}", data, now=float(n))
        except InteractionError:
            continue
        item = session.feed(change)
        if item is not None:
            sent.append(item)
            if snapshot is not None:  # only items after the sync began reach the store
                store.apply(item)
                if item.seq in duplicate:
                    store.apply(item)
    if snapshot is None:
        store.begin_sync("p")
        snapshot = session.snapshot(live)
    # items from before the snapshot may still arrive late: they must be ignored
    for item in sent:
        if item.seq in duplicate:
            store.apply(item)
    store.add_snapshot(i.to_dict() for i in snapshot[1])
    store.finish_sync(snapshot[0])
    assert shadow_view(store) == admitted_view(live, flt)
    assert store.seq == session.seq
    assert store.counts() == count_by_type(i for i in live.items.values() if flt.admits(i))
