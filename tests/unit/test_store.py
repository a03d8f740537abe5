"""The DS tree store: keys, attributes, batches, revisions, change log, subtree hashes, subscribers."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger

from replication.store import (
    Change,
    Compacted,
    DeleteAttrOp,
    DeleteOp,
    EpochChanged,
    InvalidAttrs,
    InvalidImport,
    InvalidKey,
    Op,
    RevisionAhead,
    SetOp,
    Store,
    StoreError,
    _Batch,
    iter_diff,
    validate_key,
)
from tests.conftest import wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def log_records():
    records: list[str] = []
    handler = logger.add(lambda m: records.append(m.record["message"]), level="WARNING")
    yield records
    logger.remove(handler)


# ---------------------------------------------------------------------------------------------- keys
VALID_KEYS = [
    "/",
    "/Config",
    "/Config/Users/alice",
    "/Server/Parameters/Switchover TS Timeout",
    "/a/.hidden",
    "/a/b...c",
    "/é/ü",
]


@pytest.mark.parametrize("key", VALID_KEYS)
def test_valid_keys_are_accepted_unchanged(key):
    assert validate_key(key) == key


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("Config/Users", "not absolute"),
        ("", "not absolute"),
        ("/Config//Users", "empty segment"),
        ("/Config/Users/", "ends with '/'"),
        ("/Config/./Users", "'.' segment"),
        ("/Config/../Users", "'..' segment"),
        ("/Config/Us\x00ers", "NUL"),
        (42, "must be a string"),
    ],
)
def test_invalid_keys_raise_invalid_key_saying_what_is_wrong_and_what_is_expected(key, fragment):
    with pytest.raises(InvalidKey) as exc:
        validate_key(key)
    assert fragment in str(exc.value)
    assert "expected an absolute path" in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_store_operations_reject_invalid_keys_and_write_nothing(store):
    with pytest.raises(InvalidKey):
        store.set("relative/key", {"a": ["1"]})
    with pytest.raises(InvalidKey):
        store.get("/a//b")
    assert store.revision == 0


@pytest.mark.parametrize("attrs", [{"a": "single string"}, {"": ["x"]}, {"a": [1]}, ["a"], {"a\x00": ["x"]}])
def test_invalid_attributes_raise_invalid_attrs(store, attrs):
    with pytest.raises(InvalidAttrs):
        store.set("/k", attrs)
    assert store.get("/k") is None


# ---------------------------------------------------------------------------------- basic operations
def test_set_creates_the_key_and_its_parents_and_get_returns_its_attributes(store):
    store.set("/Config/Users/alice", {"Extension": ["100"], "Roles": ["admin", "agent"]})
    assert store.get("/Config/Users/alice") == {"Extension": ["100"], "Roles": ["admin", "agent"]}
    assert store.get("/Config/Users") == {}
    assert store.get("/Config") == {}
    assert store.get("/Config/Users/bob") is None
    assert store.children("/") == ["Config"]
    assert store.children("/Config/Users") == ["alice"]


def test_set_changes_only_the_given_attributes(store):
    store.set("/k", {"a": ["1"], "b": ["2"]})
    store.set("/k", {"b": ["3", "4"], "c": []})
    assert store.get("/k") == {"a": ["1"], "b": ["3", "4"], "c": []}


def test_values_keep_their_order_and_names_may_contain_spaces(store):
    store.set("/Server/Parameters/Switchover TS Timeout", {"value": ["10"], "list": ["z", "a", "m"]})
    assert store.get("/Server/Parameters/Switchover TS Timeout") == {"value": ["10"], "list": ["z", "a", "m"]}
    assert store.children("/Server/Parameters") == ["Switchover TS Timeout"]


def test_delete_attr_removes_one_attribute_and_is_a_no_op_when_missing(store):
    store.set("/k", {"a": ["1"], "b": ["2"]})
    store.delete_attr("/k", "a")
    store.delete_attr("/k", "missing")
    store.delete_attr("/missing", "a")
    assert store.get("/k") == {"b": ["2"]}
    assert store.get("/missing") is None


def test_delete_is_recursive_and_leaves_siblings(store):
    store.batch(
        [
            SetOp("/a/b/c", {"x": ["1"]}),
            SetOp("/a/b/d", {}),
            SetOp("/a/bb", {"y": ["2"]}),
            SetOp("/a/b c", {"z": ["3"]}),
        ]
    )
    store.delete("/a/b")
    assert store.get("/a/b") is None and store.get("/a/b/c") is None and store.get("/a/b/d") is None
    assert store.children("/a") == ["b c", "bb"]
    assert store.verify() == []


def test_deleting_the_root_empties_the_tree_but_keeps_the_root(store):
    store.set("/a/b", {"x": ["1"]})
    store.set("/", {"r": ["1"]})
    store.delete("/")
    assert store.get("/") == {}
    assert store.children("/") == []
    assert store.count() == 1
    assert store.verify() == []


def test_children_of_a_missing_key_is_empty_and_lists_are_sorted(store):
    for name in ["zeta", "Alpha", "beta", "a b"]:
        store.set(f"/p/{name}", {})
    assert store.children("/p") == sorted(["zeta", "Alpha", "beta", "a b"])
    assert store.children("/nothing") == []


def test_walk_lists_a_subtree_parents_first_in_name_order(store):
    store.batch([SetOp("/a/y", {}), SetOp("/a/x/1", {"v": ["1"]}), SetOp("/a x", {}), SetOp("/b", {})])
    assert [k for k, _ in store.walk("/a")] == ["/a", "/a/x", "/a/x/1", "/a/y"]
    assert store.count("/a") == 4


def test_a_batch_applies_its_operations_in_order(store):
    store.batch(
        [
            SetOp("/k", {"a": ["1"]}),
            DeleteOp("/k"),
            SetOp("/k/child", {"b": ["2"]}),
            SetOp("/k", {"c": ["3"]}),
            DeleteAttrOp("/k", "c"),
        ]
    )
    assert store.get("/k") == {}
    assert store.get("/k/child") == {"b": ["2"]}
    assert store.verify() == []


def test_a_batch_with_an_invalid_operation_writes_nothing(store):
    store.set("/keep", {"a": ["1"]})
    with pytest.raises(InvalidKey):
        store.batch([SetOp("/new", {"a": ["1"]}), DeleteOp("/keep"), SetOp("bad", {})])
    assert store.get("/new") is None
    assert store.get("/keep") == {"a": ["1"]}
    assert store.revision == 1


def test_an_empty_batch_is_not_a_revision(store):
    assert store.batch([]) == 0
    assert store.revision == 0


# ------------------------------------------------------------------------------------------ revisions
def test_every_batch_gets_the_next_revision(store):
    assert store.set("/a", {"x": ["1"]}) == 1
    assert store.batch([SetOp("/b", {}), SetOp("/c", {})]) == 2
    assert store.delete("/zzz") == 3
    assert store.revision == 3


def test_revisions_strictly_increase_across_reopen(tmp_path):
    path = tmp_path / "ds.sqlite3"
    seen = []
    for _ in range(3):
        s = Store(path)
        seen.append(s.revision)
        seen.append(s.set("/k", {"n": [str(len(seen))]}))
        seen.append(s.batch([SetOp("/j", {}), DeleteOp("/j")]))
        s.close()
    s = Store(path)
    seen.append(s.revision)
    s.close()
    assert seen == [0, 1, 2, 2, 3, 4, 4, 5, 6, 6]


def test_the_epoch_is_persisted_and_reset_starts_a_new_one_without_reusing_revisions(tmp_path):
    s = Store(tmp_path)
    s.set("/a", {"x": ["1"]})
    epoch = s.epoch
    s.close()
    s = Store(tmp_path)
    assert s.epoch == epoch
    rev = s.reset()
    assert rev == 2
    assert s.epoch != epoch
    assert s.get("/a") is None and s.children("/") == []
    assert s.set("/b", {}) == 3
    new_epoch = s.epoch
    s.close()
    s = Store(tmp_path)
    assert (s.epoch, s.revision) == (new_epoch, 3)
    s.close()


def test_user_metadata_is_written_in_the_same_transaction_as_the_batch(store):
    store.batch([SetOp("/a", {})], meta={"mirror.cursor": "epoch-x:41"})
    assert store.get_meta("mirror.cursor") == "epoch-x:41"
    assert store.get_meta("missing") is None
    with pytest.raises(InvalidKey):
        store.batch([SetOp("bad", {})], meta={"mirror.cursor": "epoch-x:42"})
    assert store.get_meta("mirror.cursor") == "epoch-x:41"


# ------------------------------------------------------------------------------------------ change log
def _build_history(store: Store) -> list[Change]:
    expected: list[Change] = []
    batches: list[list[Op]] = [
        [SetOp("/Config/Users/alice", {"Extension": ["100"]})],
        [
            SetOp("/Config/Users/bob", {"Extension": ["101"]}),
            DeleteAttrOp("/Config/Users/alice", "Extension"),
        ],
        [DeleteOp("/Config/Users/alice")],
        [
            SetOp("/Server/Parameters/Switchover TS Timeout", {"value": ["7"]}),
            SetOp("/x", {}),
            DeleteOp("/x"),
        ],
    ]
    for ops in batches:
        rev = store.batch(ops)
        for i, op in enumerate(ops):
            if isinstance(op, SetOp):
                expected.append(Change(rev, "set", op.key, dict(op.attrs), i, len(ops)))
            elif isinstance(op, DeleteAttrOp):
                expected.append(Change(rev, "delete_attr", op.key, {op.name: []}, i, len(ops)))
            else:
                expected.append(Change(rev, "delete", op.key, {}, i, len(ops)))
    return expected


def test_changes_since_returns_exactly_the_changes_after_a_revision_in_order(store):
    expected = _build_history(store)
    for rev in range(store.revision + 1):
        assert store.changes_since(rev) == [c for c in expected if c.revision > rev]


def test_changes_since_with_a_limit_never_splits_a_batch(store):
    expected = _build_history(store)
    got = store.changes_since(0, limit=2)
    assert got == [c for c in expected if c.revision <= 2]  # revision 2 has two changes: both included
    got = store.changes_since(0, limit=1)
    assert got == [c for c in expected if c.revision == 1]
    assert store.changes_since(3, limit=1) == [c for c in expected if c.revision == 4]


def test_replaying_the_change_log_reproduces_the_tree(tmp_path, store):
    _build_history(store)
    replica = Store(tmp_path / "replica.sqlite3")
    by_rev: dict[int, list[Change]] = {}
    for ch in store.changes_since(0):
        by_rev.setdefault(ch.revision, []).append(ch)
    for _rev, changes in sorted(by_rev.items()):
        assert len(changes) == changes[0].count
        replica.batch([c.to_op() for c in changes])
    assert replica.subtree_hash() == store.subtree_hash()
    replica.close()


def test_reading_below_the_compacted_point_raises_compacted_never_a_gap(tmp_path):
    s = Store(tmp_path)
    expected = _build_history(s)
    assert s.compact(3) == 2
    assert s.changes_since(2) == [c for c in expected if c.revision > 2]
    assert s.changes_since(3) == [c for c in expected if c.revision > 3]
    for rev in (0, 1):
        with pytest.raises(Compacted) as exc:
            s.changes_since(rev)
        assert exc.value.requested == rev and exc.value.floor == 2
        assert "compacted" in str(exc.value)
    s.close()
    s = Store(tmp_path)  # the compacted point is durable
    assert s.log_floor == 2
    with pytest.raises(Compacted):
        s.changes_since(1)
    assert s.compact(1) == 2  # never goes back
    assert s.compact(100) == s.revision  # clamped: everything is compacted
    assert s.changes_since(s.revision) == []
    s.close()


def test_changes_since_rejects_a_revision_ahead_and_a_foreign_epoch(store):
    _build_history(store)
    with pytest.raises(RevisionAhead):
        store.changes_since(store.revision + 1)
    with pytest.raises(EpochChanged):
        store.changes_since(0, epoch="not-this-one")
    assert store.changes_since(0, epoch=store.epoch)
    with pytest.raises(ValueError):
        store.changes_since(-1)


def test_after_reset_the_old_history_is_compacted(store):
    _build_history(store)
    old = store.revision
    store.reset()
    with pytest.raises(Compacted):
        store.changes_since(old)
    assert store.changes_since(store.revision) == []


# ---------------------------------------------------------------------------------------- subtree hash
def test_attribute_name_order_does_not_change_the_hash_but_value_order_does(tmp_path):
    a, b, c = (Store(tmp_path / f"{n}.sqlite3") for n in "abc")
    a.set("/k", {"x": ["1", "2"], "y": ["3"]})
    b.set("/k", {"y": ["3"]})
    b.set("/k", {"x": ["1", "2"]})
    c.set("/k", {"x": ["2", "1"], "y": ["3"]})
    assert a.subtree_hash() == b.subtree_hash()
    assert a.subtree_hash() != c.subtree_hash()
    for s in (a, b, c):
        s.close()


def test_an_empty_key_and_a_missing_key_hash_differently(tmp_path):
    a, b = Store(tmp_path / "a.sqlite3"), Store(tmp_path / "b.sqlite3")
    a.set("/k", {})
    assert a.subtree_hash() != b.subtree_hash()
    a.delete("/k")
    assert a.subtree_hash() == b.subtree_hash()
    a.close()
    b.close()


def test_hashes_compare_top_down_to_the_differing_keys(tmp_path):
    a, b = Store(tmp_path / "a.sqlite3"), Store(tmp_path / "b.sqlite3")
    ops = [SetOp(f"/Config/Users/u{i}", {"Extension": [str(100 + i)]}) for i in range(50)]
    a.batch(ops)
    b.batch(list(reversed(ops)))
    assert a.subtree_hash() == b.subtree_hash()
    assert a.child_hashes("/Config/Users") == b.child_hashes("/Config/Users")
    b.set("/Config/Users/u7", {"Extension": ["999"]})
    b.set("/Config/Workgroups/sales", {})
    assert sorted(iter_diff(a, b)) == ["/Config/Users/u7", "/Config/Workgroups"]
    a.close()
    b.close()


_names = st.sampled_from(["a", "b", "c d", "e"])
_values = st.lists(st.sampled_from(["", "1", "2", "x y"]), max_size=3)
_paths = st.lists(_names, min_size=1, max_size=3).map(lambda segs: "/" + "/".join(segs))
_attrs = st.dictionaries(st.sampled_from(["v", "w", "Extension"]), _values, max_size=3)
_ops = st.one_of(
    st.builds(SetOp, _paths, _attrs),
    st.builds(DeleteAttrOp, _paths, st.sampled_from(["v", "w", "Extension"])),
    st.builds(DeleteOp, _paths),
)


def _final_state(ops_batches: list[list]) -> dict[str, dict[str, list[str]]]:
    """A plain-Python model of the tree after the operations."""
    tree: dict[str, dict[str, list[str]]] = {"/": {}}
    for batch in ops_batches:
        for op in batch:
            if isinstance(op, SetOp):
                segs = op.key[1:].split("/")
                for i in range(1, len(segs) + 1):
                    tree.setdefault("/" + "/".join(segs[:i]), {})
                tree[op.key].update({k: list(v) for k, v in op.attrs.items()})
            elif isinstance(op, DeleteAttrOp):
                tree.get(op.key, {}).pop(op.name, None)
            else:
                for k in [k for k in tree if k == op.key or k.startswith(op.key + "/")]:
                    del tree[k]
    return tree


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(st.lists(_ops, min_size=1, max_size=6), min_size=1, max_size=6),
    shuffle_seed=st.randoms(use_true_random=False),
)
def test_trees_built_by_different_operation_sequences_with_equal_content_have_equal_hashes(
    tmp_path_factory, batches, shuffle_seed
):
    d = tmp_path_factory.mktemp("h")
    a, b = Store(d / "a.sqlite3"), Store(d / "b.sqlite3")
    for batch in batches:
        a.batch(batch)
    model = _final_state(batches)
    assert {k: v for k, v in a.walk("/")} == model
    # b gets the same content a different way: noise first, then every key in a random order, one by one
    b.set("/noise/x", {"v": ["junk"]})
    items = sorted(model.items())
    shuffle_seed.shuffle(items)
    for key, attrs in items:
        b.set(key, attrs)
    if "/noise" not in model:
        b.delete("/noise")
    for key, attrs in model.items():
        for name in set(b.get(key) or {}) - set(attrs):
            b.delete_attr(key, name)
    assert {k: v for k, v in b.walk("/")} == model
    assert a.subtree_hash() == b.subtree_hash()
    assert a.verify() == [] and b.verify() == []
    # any single attribute difference shows in the root hash
    key = items[0][0]
    b.set(key, {"extra": ["1"]})
    assert a.subtree_hash() != b.subtree_hash()
    b.delete_attr(key, "extra")
    assert a.subtree_hash() == b.subtree_hash()
    for key, attrs in items:
        for name, values in attrs.items():
            b.set(key, {name: [*values, "changed"]})
            assert a.subtree_hash() != b.subtree_hash()
            b.set(key, {name: values})
    assert a.subtree_hash() == b.subtree_hash()
    a.close()
    b.close()


def test_incremental_hashes_match_a_full_recomputation_after_large_batches(store):
    store.batch([SetOp(f"/d{i % 7}/k{i}", {"v": [str(i)]}) for i in range(2000)])
    store.batch(
        [DeleteOp(f"/d{i % 7}/k{i}") for i in range(0, 2000, 3)]
        + [SetOp(f"/d{i % 7}/k{i}/sub", {"w": ["x"]}) for i in range(1, 2000, 5)]
    )
    assert store.verify() == []


# ----------------------------------------------------------------------------------------- subscribers
def test_subscribers_receive_each_committed_change_in_order_after_commit(store):
    seen: list[tuple[int, str, str, int]] = []

    def on_change(ch: Change) -> None:
        # after commit: the change is already visible to readers
        assert store.revision >= ch.revision
        seen.append((ch.revision, ch.op, ch.key, ch.index))

    unsubscribe = store.subscribe(on_change)
    store.set("/a", {"x": ["1"]})
    store.batch([SetOp("/b", {}), DeleteAttrOp("/a", "x")])
    store.delete("/b")
    unsubscribe()
    store.set("/c", {})
    assert seen == [
        (1, "set", "/a", 0),
        (2, "set", "/b", 0),
        (2, "delete_attr", "/a", 1),
        (3, "delete", "/b", 0),
    ]


def test_a_failing_subscriber_is_logged_and_does_not_break_the_store_or_other_subscribers(store, log_records):
    seen = []

    def broken(ch: Change) -> None:
        raise RuntimeError("subscriber bug")

    store.subscribe(broken)
    store.subscribe(lambda ch: seen.append(ch.revision))
    store.set("/a", {})
    store.set("/b", {})
    assert seen == [1, 2]
    assert any("subscriber" in r and "failed" in r for r in log_records)
    assert store.get("/b") == {}


def test_a_subscriber_may_write_to_the_store_and_its_change_follows_in_order(store):
    seen = []

    def echo(ch: Change) -> None:
        seen.append((ch.revision, ch.key))
        if ch.key == "/ping":
            store.set("/pong", {})

    store.subscribe(echo)
    store.set("/ping", {})
    assert seen == [(1, "/ping"), (2, "/pong")]


def test_a_subscriber_waiting_for_another_thread_that_writes_does_not_deadlock(store):
    other_done = threading.Event()
    seen: list[str] = []

    def write_second() -> None:
        store.set("/second", {})  # returns at once: the running delivery will deliver it
        other_done.set()

    def subscriber(ch: Change) -> None:
        seen.append(ch.key)
        if ch.key == "/first":
            threading.Thread(target=write_second).start()
            assert other_done.wait(30), "the other thread's write is stuck behind this delivery"

    store.subscribe(subscriber)
    store.set("/first", {})
    assert other_done.is_set()
    assert seen == ["/first", "/second"]


def test_concurrent_writers_get_unique_revisions_and_subscribers_see_them_in_order(store):
    seen: list[int] = []
    store.subscribe(lambda ch: seen.append(ch.revision))
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                store.set(f"/t{n}/k{i}", {"v": [str(i)]})
                store.get(f"/t{n}/k{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.revision == 100
    assert seen == list(range(1, 101))
    assert store.verify() == []


# ----------------------------------------------------------------------------------------- export/import
def test_export_and_import_round_trip_a_subtree(tmp_path, store):
    store.batch(
        [
            SetOp("/Config/Users/alice", {"Extension": ["100"], "Roles": ["a", "b"]}),
            SetOp("/Config/Users/bob", {}),
            SetOp("/Config/Workgroups/sales", {"Members": ["alice"]}),
        ]
    )
    doc = store.export_json("/Config")
    assert doc["format"] == "switchover-ds/1" and doc["key"] == "/Config"
    json.dumps(doc)  # JSON-able
    other = Store(tmp_path / "other.sqlite3")
    other.set("/Config/Stale", {"old": ["1"]})
    other.import_json(json.loads(json.dumps(doc)), "/Config")
    assert other.subtree_hash("/Config") == store.subtree_hash("/Config")
    assert other.get("/Config/Stale") is None
    other.import_json(doc, "/Copy")
    assert other.child_hashes("/Copy") == store.child_hashes("/Config")
    other.close()


def test_import_with_merge_keeps_existing_keys(store):
    store.set("/Config/Keep", {"a": ["1"]})
    store.import_json(
        {"tree": {"attrs": {}, "children": {"New": {"attrs": {"b": ["2"]}, "children": {}}}}},
        "/Config",
        merge=True,
    )
    assert store.get("/Config/Keep") == {"a": ["1"]} and store.get("/Config/New") == {"b": ["2"]}


def test_import_that_replaces_history_starts_a_new_epoch(store):
    _build_history(store)
    doc = store.export_json("/")
    epoch, old_rev = store.epoch, store.revision
    store.set("/after", {})
    rev = store.import_json(doc, "/", reset_history=True)
    assert store.epoch != epoch and rev > old_rev
    assert store.get("/after") is None
    assert store.export_json("/")["tree"] == doc["tree"]
    with pytest.raises(Compacted):
        store.changes_since(old_rev)
    assert store.verify() == []


@pytest.mark.parametrize(
    "doc",
    [
        {"format": "other/1", "tree": {}},
        {"tree": {"attrs": {"a": "not-a-list"}}},
        {"tree": {"children": {"a/b": {}}}},
        {"tree": {"children": {"..": {}}}},
        {"tree": {"bogus": 1}},
        {"tree": []},
    ],
)
def test_a_malformed_import_is_refused_and_writes_nothing(store, doc):
    store.set("/Config/Keep", {})
    with pytest.raises(InvalidImport):
        store.import_json(doc, "/Config")
    assert store.get("/Config/Keep") == {}
    assert store.revision == 1


def test_opening_something_that_is_not_a_store_fails_clearly(tmp_path):
    with pytest.raises(StoreError, match="cannot open DS store"):
        Store(tmp_path / "missing-dir" / "ds.sqlite3")
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot use DS store"):
        Store(junk)


# ----------------------------------------------------------------------------------------- durability
def test_a_store_in_normal_durability_mode_starts_a_new_epoch_after_an_unclean_stop(tmp_path):
    path = tmp_path / "ds.sqlite3"
    s = Store(path, durability="normal")
    s.set("/a", {})
    epoch = s.epoch
    s.close()
    s = Store(path, durability="normal")
    assert s.epoch == epoch  # clean close: the history continues
    s.set("/b", {})
    # simulate a crash: drop the connection without the clean-shutdown mark
    s._conn.close()
    s._closed = True
    s = Store(path, durability="normal")
    assert s.epoch != epoch and s.get("/b") == {}
    s.close()


_CHILD = """
import sys
from pathlib import Path
from replication.store import Store, SetOp

path, marker, mode, n = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
store = Store(path, cache_mib=1)

def ops():
    for i in range(n):
        if mode == "block" and i == n // 2:
            marker.write_text("batch started")
            sys.stdin.read()  # never returns: the parent kills us inside the open batch
        yield SetOp(f"/Big/k{i // 1000}/k{i}", {"v": [str(i)], "pad": ["x" * 64]})

store.batch(ops())
marker.with_suffix(".done").write_text("committed")
"""


def _run_child(tmp_path: Path, mode: str, n: int) -> tuple[subprocess.Popen, Path, Path]:
    db = tmp_path / "ds.sqlite3"
    s = Store(db)
    s.set("/Before", {"v": ["1"]})
    s.close()
    marker = tmp_path / "marker"
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), str(marker), mode, str(n)], stdin=subprocess.PIPE, env=env
    )
    return proc, db, marker


def _wait_until(proc: subprocess.Popen, condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"child exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        try:
            proc.wait(timeout=0.002)  # wait on the child itself, a few ms at a time
        except subprocess.TimeoutExpired:
            pass


def _check_all_or_nothing(db: Path, n: int) -> str:
    s = Store(db)
    try:
        assert s.get("/Before") == {"v": ["1"]}
        assert s.verify() == []
        count = s.count("/Big")
        if count == 0:
            assert s.revision == 1 and [c.key for c in s.changes_since(0)] == ["/Before"]
            outcome = "none"
        else:
            assert count == n + 1 + (n + 999) // 1000  # every key, its parents, /Big
            assert s.revision == 2 and len(s.changes_since(1)) == n
            outcome = "all"
        assert s.set("/After", {}) == s.revision  # the store is usable: no lock left behind
        return outcome
    finally:
        s.close()


def test_a_batch_killed_while_open_leaves_nothing_visible(tmp_path):
    proc, db, marker = _run_child(tmp_path, "block", 20_000)
    _wait_until(proc, marker.exists, "the batch started")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _check_all_or_nothing(db, 20_000) == "none"


def test_a_large_batch_killed_while_writing_is_all_or_nothing(tmp_path):
    n = 60_000
    proc, db, marker = _run_child(tmp_path, "write", n)
    wal = db.with_name(db.name + "-wal")
    # the batch is writing once its pages spill into the WAL (the page cache is 1 MiB)
    done = marker.with_suffix(".done")
    _wait_until(
        proc,
        lambda: (wal.exists() and wal.stat().st_size > 2_000_000) or done.exists(),
        "the batch writing pages",
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _check_all_or_nothing(db, n) in ("none", "all")


def test_the_default_durability_is_normal_and_full_is_still_available(tmp_path):
    s = Store(tmp_path / "a.sqlite3")
    assert s.durability == "normal"
    assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s.close()
    s = Store(tmp_path / "b.sqlite3", durability="full")
    assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    s.close()
    with pytest.raises(ValueError, match="durability"):
        Store(tmp_path / "c.sqlite3", durability="off")  # type: ignore[arg-type]


def _crash(s: Store) -> None:
    """Drop the connection without the clean-shutdown mark, as a crash would."""
    s._checkpointer.close()
    s._conn.close()
    s._closed = True


def test_the_mode_of_the_run_that_stopped_uncleanly_decides_the_new_epoch(tmp_path):
    path = tmp_path / "ds.sqlite3"
    s = Store(path, durability="normal")
    s.set("/a", {})
    epoch = s.epoch
    _crash(s)
    s = Store(path, durability="full")  # the lost tail (if any) was lost by the normal run
    assert s.epoch != epoch and s.get("/a") == {}
    epoch = s.epoch
    s.set("/b", {})
    _crash(s)
    s = Store(path, durability="normal")  # a full run fsynced every commit: nothing was lost
    assert s.epoch == epoch and s.get("/b") == {} and s.revision == 2
    s.close()
    s = Store(path)
    assert s.epoch == epoch  # clean close
    s.close()


_KILLED_CHILD = """
import os, signal, sys
from replication.store import Store, SetOp
store = Store(sys.argv[1])  # default durability
for i in range(50):
    store.set(f"/k/{i}", {"v": [str(i)]})
store.batch([SetOp(f"/big/{i}", {"v": [str(i)]}) for i in range(2000)])
print(store.position()[0], store.revision, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_every_returned_revision_survives_a_kill_9_with_the_default_durability(tmp_path):
    db = tmp_path / "ds.sqlite3"
    script = tmp_path / "child.py"
    script.write_text(_KILLED_CHILD)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, str(script), str(db)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    epoch, rev = proc.stdout.split()
    s = Store(db)
    try:
        assert s.revision == int(rev) == 51
        assert s.get("/k/49") == {"v": ["49"]} and s.count("/big") == 2001
        assert len(s.changes_since(0)) == 50 + 2000
        assert s.verify() == []
        assert s.epoch != epoch  # not closed cleanly in normal mode: readers resynchronise
    finally:
        s.close()


def test_blobs_are_stored_as_blobs(store):
    store.batch([SetOp(f"/t/k{i}", {"v": [str(i)]}) for i in range(1500)])
    store.set("/t/k1", {"w": ["x"]})
    types = store._conn.execute(
        "SELECT DISTINCT typeof(attrs), typeof(acc), typeof(hash) FROM nodes"
    ).fetchall()
    assert types == [("blob", "blob", "blob")]
    assert store._conn.execute("SELECT typeof(ops) FROM changes").fetchall() == [("blob",), ("blob",)]


def _mixed_ops() -> list[Op]:
    ops: list[Op] = []
    ops += [SetOp(f"/Users/g{i % 7}/u{i}", {"Gen": ["1"], "Extension": [str(i)]}) for i in range(0, 600, 2)]
    ops += [SetOp(f"/Users/g{i % 7}/u{i}", {"Extension": [str(i)]}) for i in range(1, 600, 2)]  # new keys
    ops += [SetOp(f"/New/a{i % 5}/b{i % 3}/c{i}", {"x": [str(i), "y"]}) for i in range(400)]  # new parents
    ops += [SetOp("/New/a1/twice", {"first": ["1"]}), SetOp("/New/a1/twice", {"second": ["2"]})]
    ops += [DeleteAttrOp(f"/Users/g{i % 7}/u{i}", "Gen") for i in range(0, 100, 4)]
    ops += [DeleteAttrOp(f"/New/a{i % 5}/b{i % 3}/c{i}", "x") for i in range(0, 50, 5)]
    ops += [DeleteOp("/Users/g3"), SetOp("/Users/g3/u3", {"back": ["1"]})]  # deleted, then re-created
    ops += [DeleteOp("/Users/g4/u4"), DeleteOp("/missing/key"), DeleteAttrOp("/missing", "a")]
    ops += [SetOp("/Users", {"top": ["1"]}), SetOp("/", {"root": ["r"]})]
    return ops


def _seed(s: Store) -> None:
    s.batch([SetOp(f"/Users/g{i % 7}/u{i}", {"Gen": ["0"], "Extension": [str(i)]}) for i in range(0, 600, 2)])
    s.batch([SetOp(f"/Other/k{i}", {"v": [str(i)]}) for i in range(100)])


def test_a_large_mixed_batch_matches_the_same_operations_applied_one_by_one(tmp_path):
    a, b = Store(tmp_path / "a.sqlite3"), Store(tmp_path / "b.sqlite3")
    _seed(a)
    _seed(b)
    ops = _mixed_ops()
    assert len(ops) > _Batch._CHUNK  # the big-batch path: ancestors looked up first, several chunks
    rev = a.batch(ops)
    for op in ops:
        b.batch([op])
    assert a.walk("/") == b.walk("/")
    assert a.subtree_hash() == b.subtree_hash()
    assert a.verify() == [] and b.verify() == []
    assert a.get("/New/a1/twice") == {"first": ["1"], "second": ["2"]}
    assert a.get("/Users/g3") == {} and a.children("/Users/g3") == ["u3"]
    logged = a.changes_since(rev - 1)
    one_by_one = b.changes_since(rev - 1)
    assert [(c.op, c.key, c.attrs) for c in logged] == [(c.op, c.key, c.attrs) for c in one_by_one]
    assert [c.to_op() for c in logged] == ops  # the log holds each operation as given
    a.close()
    b.close()


def test_deleting_the_root_and_rebuilding_in_one_large_batch(store):
    _seed(store)
    ops: list[Op] = [DeleteOp("/")] + [SetOp(f"/Users/g{i % 3}/u{i}", {"v": [str(i)]}) for i in range(700)]
    store.batch(ops)
    assert store.count() == 1 + 1 + 3 + 700
    assert store.verify() == []
    fresh = Store(store.path.with_name("fresh.sqlite3"))
    fresh.batch(ops[1:])
    assert fresh.subtree_hash() == store.subtree_hash()
    fresh.close()


@pytest.mark.parametrize("chunk", [2, 512])
def test_a_key_re_created_under_a_deleted_key_is_deleted_with_it_again(store, chunk, monkeypatch):
    # regression: the second delete of /a missed /a/a (re-created after the first delete) and the batch
    # wrote /a/a without its parent
    monkeypatch.setattr(_Batch, "_CHUNK", chunk)
    store.batch([SetOp("/a", {}), DeleteOp("/a"), SetOp("/a/a", {}), DeleteOp("/a")])
    assert store.walk("/") == [("/", {})]
    store.batch(
        [
            SetOp("/b/c", {}),
            DeleteOp("/b"),
            SetOp("/b/c/d", {"x": ["1"]}),
            DeleteOp("/b/c"),
            SetOp("/b/e", {}),
        ]
    )
    assert store.walk("/") == [("/", {}), ("/b", {}), ("/b/e", {})]
    assert store.verify() == []


@settings(max_examples=40, deadline=None)
@given(batches=st.lists(st.lists(_ops, min_size=1, max_size=8), min_size=1, max_size=5))
def test_the_big_batch_lookup_path_matches_the_model(tmp_path_factory, batches):
    """With a tiny lookup chunk every batch takes the big-batch path (ancestors first, several padded
    chunks): the result must match the plain model and a full recomputation of the hashes."""
    d = tmp_path_factory.mktemp("chunk")
    a = Store(d / "a.sqlite3")
    original = _Batch._CHUNK
    _Batch._CHUNK = 2
    try:
        for batch in batches:
            a.batch(batch)
    finally:
        _Batch._CHUNK = original
    b = Store(d / "b.sqlite3")
    for batch in batches:
        b.batch(batch)
    assert {k: v for k, v in a.walk("/")} == _final_state(batches)
    assert a.subtree_hash() == b.subtree_hash()
    assert a.verify() == []
    a.close()
    b.close()


def test_a_key_set_twice_in_a_batch_logs_and_delivers_each_operation_as_given(store):
    seen: list[Change] = []
    store.subscribe(seen.append)
    rev = store.batch(
        [
            SetOp("/n", {"a": ["1"]}),
            SetOp("/n", {"b": ["2"]}),
            DeleteAttrOp("/n", "a"),
            SetOp("/n", {"a": ["3"]}),
        ]
    )
    expected = [
        Change(rev, "set", "/n", {"a": ["1"]}, 0, 4),
        Change(rev, "set", "/n", {"b": ["2"]}, 1, 4),
        Change(rev, "delete_attr", "/n", {"a": []}, 2, 4),
        Change(rev, "set", "/n", {"a": ["3"]}, 3, 4),
    ]
    assert seen == expected
    assert store.changes_since(0) == expected
    assert store.get("/n") == {"b": ["2"], "a": ["3"]}


def test_the_store_keeps_its_own_copies_of_the_attributes(store):
    seen: list[Change] = []
    store.subscribe(seen.append)
    attrs = {"a": ["1"]}
    store.set("/k", attrs)
    attrs["a"].append("2")
    attrs["b"] = ["x"]
    assert store.get("/k") == {"a": ["1"]}
    assert seen[0].attrs == {"a": ["1"]} and store.changes_since(0)[0].attrs == {"a": ["1"]}

    def ops():
        shared = {"v": ["1"]}
        yield SetOp("/x", shared)
        shared["v"].append("2")
        yield SetOp("/z", {})

    store.batch(ops())
    assert store.get("/x") == {"v": ["1"]}
    assert [c.attrs for c in store.changes_since(1)] == [{"v": ["1"]}, {}]  # validated, then copied


def test_a_large_batch_pauses_the_garbage_collector_and_always_restores_it(store, monkeypatch):
    during: list[bool] = []
    finish = _Batch.finish

    def spy(self: _Batch) -> None:
        during.append(gc.isenabled())
        finish(self)

    monkeypatch.setattr(_Batch, "finish", spy)
    assert gc.isenabled()
    store.batch([SetOp(f"/g/k{i}", {}) for i in range(1000)])  # sized: paused from the start
    store.batch(SetOp(f"/h/k{i}", {}) for i in range(1000))  # a generator: paused once validated
    store.set("/small", {})
    assert during == [False, False, True]
    assert gc.isenabled()
    with pytest.raises(InvalidKey):
        store.batch([SetOp(f"/g/k{i}", {}) for i in range(1000)] + [SetOp("bad", {})])
    assert gc.isenabled()
    gc.disable()  # the application's choice is left alone
    try:
        store.batch([SetOp(f"/i/k{i}", {}) for i in range(1000)])
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert store.verify() == []


def test_checkpoints_run_in_the_background_and_their_thread_stops_on_close(tmp_path):
    path = tmp_path / "ds.sqlite3"
    s = Store(path)
    s.set("/few", {})
    assert s._checkpointer._thread is None  # started on demand only
    for r in range(5):
        s.batch([SetOp(f"/b{r}/k{i}", {"v": [str(i)]}) for i in range(1000)])
    wait_until(lambda: s._checkpointer.runs > 0, 30, message="a background checkpoint")
    assert s._checkpointer.last is not None and s._checkpointer.last[0] == 0  # not busy
    thread = s._checkpointer._thread
    assert thread is not None and thread.is_alive() and thread.daemon
    # SQLite's own automatic checkpoint is only a backstop
    assert s._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] > 1000
    s.close()
    assert not thread.is_alive()
    s = Store(path)
    assert s.count() == 1 + 1 + 5 * 1001 and s.verify() == [] and s.revision == 6
    s.close()


def test_a_checkpointer_that_cannot_open_the_database_only_logs(tmp_path, log_records):
    s = Store(tmp_path / "ds.sqlite3")
    s._checkpointer.path = tmp_path / "missing-dir" / "ds.sqlite3"
    s._checkpointer.wrote(10**6)
    thread = s._checkpointer._thread
    assert thread is not None
    thread.join(10)
    assert any("no background checkpoints" in r for r in log_records)
    s.set("/still", {"works": ["yes"]})
    assert s.get("/still") == {"works": ["yes"]}
    s.close()


def test_lookups_use_a_few_padded_statement_sizes(store):
    store.batch([SetOp(f"/p/k{i}", {}) for i in range(3)])
    executed: list[str] = []
    store._conn.set_trace_callback(executed.append)
    store.batch([SetOp(f"/p/k{i}", {"v": ["1"]}) for i in range(3)])  # 3 keys + 2 ancestors: 8 slots
    store._conn.set_trace_callback(None)
    lookups = [sql for sql in executed if sql.startswith("SELECT path, attrs, acc, hash FROM nodes")]
    assert len(lookups) == 1 and lookups[0].count("'") == 2 * 8


# ---------------------------------------------------------------- replica positions (issue 10)
def test_adopt_takes_the_position_and_restarts_the_log(tmp_path: Path) -> None:
    s = Store(tmp_path / "r.sqlite3")
    s.set("/mine", {"v": ["1"]})
    seen: list[Change] = []
    s.subscribe(seen.append)
    assert s.adopt([SetOp("/theirs", {"v": ["2"]}), DeleteOp("/mine")], "E1", 40) == 40
    assert s.position() == ("E1", 40) and s.log_floor == 40
    assert [c.key for c in seen] == ["/theirs", "/mine"] and {c.revision for c in seen} == {40}
    assert s.changes_since(40) == []
    s.apply_replicated([SetOp("/next", {})], 41)
    assert [c.revision for c in s.changes_since(40)] == [41]
    with pytest.raises(StoreError, match="not above"):
        s.apply_replicated([SetOp("/again", {})], 41)
    s.close()
    s = Store(tmp_path / "r.sqlite3")
    assert s.position() == ("E1", 41)
    s.close()


def test_new_history_continues_numbering_and_is_remembered(tmp_path: Path) -> None:
    s = Store(tmp_path / "h.sqlite3")
    s.set("/a", {})
    first = s.epoch
    second = s.new_history()
    s.set("/b", {})
    assert s.revision == 2 and second != first
    assert s.previous_histories() == [(first, 1)]
    s.new_history()
    assert s.previous_histories() == [(second, 2), (first, 1)]
    s.close()
    s = Store(tmp_path / "h.sqlite3")
    assert s.previous_histories()[1] == (first, 1)
    s.reset()  # a reset continues no history
    assert s.previous_histories() == []
    s.close()
