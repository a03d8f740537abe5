"""DS replication logic: compare-and-update between two real stores, stream following, positions."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from replication.ds_sync import (
    Follower,
    PositionError,
    TreeCompare,
    WriteGate,
    discarded_keys,
    fetch_attrs,
    hash_nodes,
    pack_batches,
    resolve_start,
    unpack_batches,
)
from replication.store import DeleteAttrOp, DeleteOp, SetOp, Store, iter_diff


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    a, b = Store(tmp_path / "a.sqlite3"), Store(tmp_path / "b.sqlite3")
    yield a, b
    a.close()
    b.close()


def run_compare(remote: Store, local: Store, **kw: object) -> TreeCompare:
    """Serve the compare's requests from ``remote`` (what the DSPublisher does) and adopt the result."""
    cmp = TreeCompare(local, **kw)  # type: ignore[arg-type]
    while (req := cmp.next_request()) is not None:
        kind, items = req
        if kind == "hash":
            cmp.on_hashes(hash_nodes(remote, items), remote.revision)
        else:
            cmp.on_fetched(fetch_attrs(remote, items), remote.revision)
    local.adopt(cmp.ops(), remote.epoch, remote.revision)
    return cmp


def fill(store: Store, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    store.batch([SetOp(f"/Bench/g{i % 10}/k{i}", {"v": [str(rng.random())]}) for i in range(n)])


def test_compare_of_equal_trees_lists_only_the_root(pair: tuple[Store, Store]) -> None:
    a, b = pair
    fill(a, 200)
    fill(b, 200)
    cmp = run_compare(a, b)
    assert cmp.stats.hash_requests == 1 and cmp.stats.keys_fetched == 0
    assert b.position() == a.position()


def test_compare_fetches_only_differing_keys(pair: tuple[Store, Store]) -> None:
    a, b = pair
    fill(a, 1000)
    fill(b, 1000)
    changed = [f"/Bench/g{i % 10}/k{i}" for i in range(0, 1000, 97)]
    a.batch([SetOp(k, {"v": ["new"]}) for k in changed])
    b.batch([SetOp("/Bench/g3/extra", {"x": ["1"]}), DeleteAttrOp("/Bench/g4/k4", "v"),
             SetOp("/Bench/g5/k5", {"stray": ["1"]})])
    cmp = run_compare(a, b)
    assert b.subtree_hash("/") == a.subtree_hash("/")
    assert cmp.stats.keys_fetched == len(changed) + 2  # + k4 and k5 whose attributes differ
    assert b.get("/Bench/g3/extra") is None and b.get("/Bench/g5/k5") == a.get("/Bench/g5/k5")
    assert list(iter_diff(a, b)) == []


def test_compare_fills_an_empty_tree_and_empties_a_full_one(pair: tuple[Store, Store]) -> None:
    a, b = pair
    fill(a, 500)
    a.set("/Deep/x/y/z", {"a": ["1", "2"]})
    run_compare(a, b)
    assert b.subtree_hash("/") == a.subtree_hash("/") and b.verify() == []
    a.delete("/Bench")
    a.delete("/Deep/x/y/z")
    run_compare(a, b)
    assert b.subtree_hash("/") == a.subtree_hash("/") and not b.exists("/Bench")


def test_a_leaf_that_gained_children_locally_loses_them(pair: tuple[Store, Store]) -> None:
    a, b = pair
    a.set("/x/leaf", {"v": ["1"]})
    b.set("/x/leaf/under", {"v": ["2"]})
    b.set("/x/leaf", {"v": ["1"]})
    run_compare(a, b)
    assert b.subtree_hash("/") == a.subtree_hash("/")


def test_local_keys_are_never_touched(pair: tuple[Store, Store]) -> None:
    a, b = pair
    a.set("/Server/Parameters/Handler Path", {"value": ["/a"]})
    a.set("/Server/Parameters/Switchover TS Timeout", {"value": ["20"]})
    b.set("/Server/Parameters/Handler Path", {"value": ["/b"]})
    cmp = run_compare(a, b, replicate=lambda k: not k.endswith("/Handler Path"))
    assert b.get("/Server/Parameters/Handler Path") == {"value": ["/b"]}
    assert b.get("/Server/Parameters/Switchover TS Timeout") == {"value": ["20"]}
    assert cmp.stats.skipped_local == 1


def test_compare_then_queued_batches_equals_the_active_whatever_it_read_when(pair: tuple[Store, Store]) -> None:
    """Writes land on the active between the compare's requests; the queued stream fixes the rest."""
    a, b = pair
    fill(a, 300)
    rng = random.Random(7)
    follower = Follower(a.epoch, a.revision, comparing=True)
    stream: list[tuple[int, list[object]]] = []
    a.subscribe(lambda c: stream.append((c.revision, [c.to_op()])) if c.index == 0 and c.count == 1 else None)
    cmp = TreeCompare(b, hash_chunk=2, fetch_chunk=20)
    while (req := cmp.next_request()) is not None:
        k = f"/Bench/g{rng.randrange(10)}/k{rng.randrange(400)}"
        a.batch([DeleteOp(k)] if rng.random() < 0.3 else [SetOp(k, {"v": [str(rng.random())]})])
        kind, items = req
        if kind == "hash":
            cmp.on_hashes(hash_nodes(a, items))
        else:
            cmp.on_fetched(fetch_attrs(a, items))
    ready, gap = follower.accept(follower.base + 1, a.revision, stream)  # type: ignore[arg-type]
    assert ready == [] and gap is None
    b.adopt(cmp.ops(), follower.history, follower.base)
    for rev, ops in follower.compared():
        b.apply_replicated(ops, rev)
    assert b.subtree_hash("/") == a.subtree_hash("/")
    assert b.position() == a.position()


def test_follower_drops_what_it_holds_and_reports_a_gap() -> None:
    f = Follower("h", 10, comparing=False)
    ready, gap = f.accept(9, 12, [(9, []), (10, []), (11, []), (12, [])])
    assert [r for r, _ in ready] == [11, 12] and gap is None
    assert f.accept(5, 12, [(12, [])]) == ([], None)  # a duplicate
    ready, gap = f.accept(13, 15, [(15, [])])  # 13 and 14 had no operations on the active
    assert [r for r, _ in ready] == [15] and gap is None
    ready, gap = f.accept(17, 17, [(17, [])])
    assert ready == [] and gap is not None and "expected revision 16" in gap


def test_batches_roundtrip() -> None:
    raw = pack_batches([(3, [("set", "/a", {"x": ["1"]}), ("delete_attr", "/a", {"y": []}), ("delete", "/b", {})])])
    assert unpack_batches(raw) == [(3, [SetOp("/a", {"x": ["1"]}), DeleteAttrOp("/a", "y"), DeleteOp("/b")])]


@pytest.mark.parametrize(
    ("history", "revision", "expect"),
    [
        ("E2", 50, 50),  # current history
        ("E1", 40, 40),  # the previous history, before its end: resume on the new one
        ("E1", 45, 45),  # exactly at its end
        ("E1", 46, "history"),  # past the end: a fork (writes the new active never got)
        ("E0", 5, "history"),  # unknown history
        ("E2", 61, "ahead"),
        ("E2", 10, "compacted"),
    ],
)
def test_resolve_start(history: str, revision: int, expect: object) -> None:
    def go() -> int:
        return resolve_start(history, revision, ("E2", 60), 20, [("E1", 45)])

    if isinstance(expect, int):
        assert go() == expect
    else:
        with pytest.raises(PositionError) as err:
            go()
        assert err.value.kind == expect
        if history == "E1":
            assert err.value.fork == 45


def test_history_continues_after_promotion_and_forks_are_reported(pair: tuple[Store, Store]) -> None:
    a, b = pair
    fill(a, 50)
    run_compare(a, b)
    a.set("/split/only-on-a", {"v": ["1"]})  # never reached b
    old_epoch, old_rev = b.position()
    new_epoch = b.new_history()  # b promoted
    b.set("/after", {"v": ["1"]})
    assert b.previous_histories() == [(old_epoch, old_rev)]
    with pytest.raises(PositionError) as err:
        resolve_start(*a.position(), b.position(), b.log_floor, b.previous_histories())
    assert err.value.fork == old_rev
    assert discarded_keys(a, err.value.fork) == ["/split/only-on-a"]
    assert b.epoch == new_epoch


def test_write_gate_lease() -> None:
    now = [0.0]
    gate = WriteGate(lambda: now[0])
    assert gate.check() is None
    gate.freeze(5.0, "switch to B")
    assert gate.check() is not None and "switch to B" in (gate.check() or "")
    now[0] = 6.0
    assert gate.check() is None




def test_wide_nodes_are_compared_by_buckets_first(pair: tuple[Store, Store]) -> None:
    a, b = pair
    a.batch([SetOp(f"/Wide/k{i}", {"v": [str(i)]}) for i in range(3000)])
    b.batch([SetOp(f"/Wide/k{i}", {"v": [str(i)]}) for i in range(3000)])
    a.batch([SetOp("/Wide/k7", {"v": ["new"]}), DeleteOp("/Wide/k8"), SetOp("/Wide/extra", {})])
    b.set("/Wide/stray", {"v": ["x"]})
    cmp = run_compare(a, b)
    assert b.subtree_hash("/") == a.subtree_hash("/")
    assert cmp.stats.keys_fetched == 2  # k7 and extra
    assert cmp.stats.paths_listed <= 3 + 4  # /, /Wide (buckets), at most 4 differing buckets
    assert cmp.stats.bytes_in < 3000 * 10  # far less than a listing of 3,000 children


def test_a_heartbeat_past_what_arrived_is_a_gap() -> None:
    f = Follower("h", 10, comparing=False)
    assert f.heartbeat(12) is None  # revisions 11-12 may still be on their way
    f.accept(11, 12, [(11, []), (12, [])])
    assert f.heartbeat(15) is None  # 12 arrived; 13-15 may still be on their way
    gap = f.heartbeat(15)  # but by the next heartbeat they must have arrived
    assert gap is not None and "up to revision 15" in gap
