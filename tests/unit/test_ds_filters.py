"""Upgrade-state and local-parameter filters of DS replication (Appendix C), as tables."""

from __future__ import annotations

import pytest

from replication.ds_filters import (
    UPGRADE_HIGHER_BUILTIN_EXCLUSIONS,
    DSFilter,
    ds_class,
    filter_for,
    local_param_keys,
)
from replication.params import ServerParams, param_key
from replication.store import DeleteAttrOp, DeleteOp, SetOp, Store

LOCAL = local_param_keys()
HIGHER = DSFilter(exclude=(*UPGRADE_HIGHER_BUILTIN_EXCLUSIONS, "/Config/Secret"), local=LOCAL)
LOWER = DSFilter(include=("/Config/Users", "/Config/Workgroups"), local=LOCAL,
                 attr_exceptions=(("User", ("Workgroups", "Extension")), ("Workgroup", ("Members",))))
NORMAL = DSFilter(local=LOCAL)


def test_path_parameters_are_local() -> None:
    assert set(LOCAL) == {param_key("Handler Path"), param_key("Resource Path"), param_key("I3Tables Path")}


@pytest.mark.parametrize(
    ("flt", "key", "replicates", "descends"),
    [
        (NORMAL, "/Config/Users/alice", True, True),
        (NORMAL, param_key("Switchover TS Timeout"), True, True),
        (NORMAL, param_key("Handler Path"), False, True),
        (HIGHER, "/Config/Users/alice", True, True),
        (HIGHER, "/Config/Handlers/h1", False, False),
        (HIGHER, "/Server/Handlers", False, False),
        (HIGHER, "/Config/Phones/p1", False, False),
        (HIGHER, "/Config/Secret/x", False, False),
        (HIGHER, "/Config/SecretSanta", True, True),
        (HIGHER, param_key("Handler Path"), False, False),
        (LOWER, "/Config/Users/alice", True, True),
        (LOWER, "/Config/Users", True, True),
        (LOWER, "/Config", False, True),
        (LOWER, "/", False, True),
        (LOWER, "/Config/Roles/admin", False, False),
        (LOWER, "/Config/UsersX", False, False),
        (LOWER, param_key("Switchover TS Timeout"), False, False),
    ],
)
def test_which_keys_replicate(flt: DSFilter, key: str, replicates: bool, descends: bool) -> None:
    assert flt.replicate(key) is replicates
    assert flt.descend(key) is descends


@pytest.mark.parametrize(
    ("key", "attrs", "cls"),
    [
        ("/Config/Users/alice", {}, "User"),
        ("/Config/Workgroups/sales", {}, "Workgroup"),
        ("/Config/Users/alice", {"class": ["Agent"]}, "Agent"),
        ("/x", {}, ""),
    ],
)
def test_ds_class(key: str, attrs: dict[str, list[str]], cls: str) -> None:
    assert ds_class(key, attrs) == cls


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        (SetOp("/Config/Users/alice", {"Extension": ["100"], "Name": ["Alice"]}),
         [SetOp("/Config/Users/alice", {"Name": ["Alice"]})]),
        (DeleteAttrOp("/Config/Users/alice", "Workgroups"), []),
        (DeleteAttrOp("/Config/Users/alice", "Name"), [DeleteAttrOp("/Config/Users/alice", "Name")]),
        (SetOp("/Config/Roles/r", {"x": ["1"]}), []),
        (DeleteOp("/Config/Users/bob"), [DeleteOp("/Config/Users/bob")]),
        (DeleteOp("/Config"), [DeleteOp("/Config/Users")]),  # spares what does not replicate
    ],
)
def test_upgrade_lower_batches(op: object, expected: list[object]) -> None:
    children = {"/Config": ["Roles", "Users"], "/Config/Users": ["alice"]}
    out = LOWER.ops([op], lambda k: children.get(k, []), lambda k: {})  # type: ignore[list-item]
    assert out == expected


def test_a_delete_spares_local_parameters() -> None:
    children = {"/Server": ["Parameters"], "/Server/Parameters": ["Handler Path", "Switchover TS Timeout"]}
    out = NORMAL.ops([DeleteOp("/Server")], lambda k: children.get(k, []), lambda k: None)
    assert out == [DeleteOp(param_key("Switchover TS Timeout"))]


def test_excepted_attributes_stay_as_they_are_here() -> None:
    merged = LOWER.merge_attrs("/Config/Users/alice", {"Name": ["A"], "Extension": ["1"]},
                               {"Name": ["old"], "Extension": ["9"], "Workgroups": ["w"]})
    assert merged == {"Name": ["A"], "Extension": ["9"], "Workgroups": ["w"]}


@pytest.mark.parametrize("state", ["Backup", "Upgrade Higher", "Upgrade Lower"])
def test_filter_for_reads_the_parameters(state: str, store: Store, params: ServerParams) -> None:
    params.set("Switchover Upgrade Higher DS Exclusions", "/Config/Secret")
    params.set("Custom Upgrade Synchronization Directories", "/Config/Extra")
    params.set("Custom Upgrade Attribute Exceptions", "User(Extension)")
    flt = filter_for(state, params)
    assert flt.replicate(param_key("Handler Path")) is False
    if state == "Upgrade Higher":
        assert not flt.replicate("/Config/Secret/a") and flt.replicate("/Config/Users/x")
        assert not flt.replicate("/Config/Handlers/h")
    elif state == "Upgrade Lower":
        assert flt.replicate("/Config/Extra/a") and flt.replicate("/Config/Users/x")
        assert not flt.replicate("/Config/Secret/a")
        assert flt.attr_exceptions == (("User", ("Extension",)),)
    else:
        assert flt.replicate("/Config/Secret/a") and flt.replicate("/Config/Handlers/h")
