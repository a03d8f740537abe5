"""Admin handlers for the DS tree and the server parameters, and the ``ds`` / ``param`` CLI commands."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from cli import ds_cmd, param_cmd
from replication.ds_admin import BACKUP_WRITE_WARNING, AdminError, handle_ds, handle_param
from replication.params import PARAMS_ROOT, ServerParams, param_key
from replication.store import Store
from transport.admin_client import AdminCallError


def strictly_json(value: Any) -> bool:
    """Only dict (str keys), list, str, int, float, bool and None."""
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list):
        return all(strictly_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and strictly_json(v) for k, v in value.items())
    return False


def ds(store: Store, op: str, is_active: bool = True, **args: Any) -> dict[str, Any]:
    result = handle_ds(store, op, args, is_active)
    assert strictly_json(result), result
    return result


def param(store: Store, params: ServerParams, op: str, is_active: bool = True, **args: Any) -> dict[str, Any]:
    result = handle_param(store, params, op, args, is_active)
    assert strictly_json(result), result
    return result


# ------------------------------------------------------------------------------------------------- ds
def test_ds_set_then_get_returns_the_attributes_children_and_hash(store):
    r = ds(store, "set", key="/Config/Users/alice", attrs={"Extension": "100", "Roles": ["a", "b"]})
    assert r == {"key": "/Config/Users/alice", "revision": 1}
    got = ds(store, "get", key="/Config/Users/alice")
    assert got["attrs"] == {"Extension": ["100"], "Roles": ["a", "b"]}
    assert got["children"] == [] and got["hash"] == store.subtree_hash("/Config/Users/alice")


def test_ds_ls_lists_children_with_counts(store):
    store.set("/Config/Users/alice", {"a": ["1"], "b": ["2"]})
    store.set("/Config/Users/alice/Prefs", {})
    store.set("/Config/Users/bob", {})
    r = ds(store, "ls", key="/Config/Users")
    assert r["children"] == [
        {"name": "alice", "key": "/Config/Users/alice", "attrs": 2, "children": 1},
        {"name": "bob", "key": "/Config/Users/bob", "attrs": 0, "children": 0},
    ]
    assert ds(store, "ls", key="/Config/Users", limit=1)["truncated"] is True
    assert ds(store, "ls")["children"][0]["name"] == "Config"


def test_ds_rm_deletes_a_subtree_or_one_attribute(store):
    store.set("/Config/Users/alice", {"a": ["1"], "b": ["2"]})
    store.set("/Config/Users/alice/Prefs", {})
    assert ds(store, "rm", key="/Config/Users/alice", attr="a")["removed"] == 1
    assert store.get("/Config/Users/alice") == {"b": ["2"]}
    assert ds(store, "rm", key="/Config/Users/alice")["removed"] == 2
    assert store.get("/Config/Users/alice") is None


def test_ds_rm_of_the_root_needs_force(store):
    store.set("/a", {})
    with pytest.raises(AdminError, match="without force"):
        ds(store, "rm", key="/")
    ds(store, "rm", key="/", force=True)
    assert store.children("/") == []


def test_ds_tree_returns_the_nested_subtree_with_depth_and_size_limits(store):
    store.batch([])
    for k in ["/Config/Users/alice", "/Config/Users/bob", "/Config/Workgroups/sales"]:
        store.set(k, {"x": ["1"]})
    full = ds(store, "tree", key="/Config")
    assert full["nodes"] == 6 and not full["truncated"]
    assert [c["name"] for c in full["tree"]["children"]] == ["Users", "Workgroups"]
    assert full["tree"]["children"][0]["children"][0] == {
        "name": "alice",
        "key": "/Config/Users/alice",
        "attrs": {"x": ["1"]},
        "children": [],
    }
    shallow = ds(store, "tree", key="/Config", depth=1)
    assert shallow["nodes"] == 3 and shallow["truncated"]
    assert ds(store, "tree", key="/", max_nodes=2)["nodes"] == 2


def test_ds_export_and_import_round_trip(store, tmp_path):
    store.set("/Config/Users/alice", {"Extension": ["100"]})
    doc = ds(store, "export", key="/Config")["data"]
    other = Store(tmp_path / "other.sqlite3")
    r = ds(other, "import", key="/Config", data=json.loads(json.dumps(doc)))
    assert r["keys"] == 3 and other.subtree_hash("/Config") == store.subtree_hash("/Config")
    other.close()


@pytest.mark.parametrize(
    ("op", "args", "message"),
    [
        ("get", {}, "missing argument 'key'"),
        ("get", {"key": "Config"}, "not absolute"),
        ("get", {"key": "/nope"}, "no such DS key: /nope"),
        ("ls", {"key": "/nope"}, "no such DS key"),
        ("set", {"key": "/a", "attrs": {"x": 1}}, "string or a list of strings"),
        ("set", {"key": "/a", "attrs": {"": ["1"]}}, "non-empty"),
        ("set", {"key": "/a"}, "missing argument 'attrs'"),
        ("rm", {"key": "/nope"}, "no such DS key"),
        ("tree", {"key": "/", "depth": -1}, "depth"),
        ("export", {"key": "/nope"}, "no such DS key"),
        ("import", {"key": "/a", "data": {"format": "x"}}, "format"),
        ("frobnicate", {}, "unknown ds operation 'frobnicate'"),
    ],
)
def test_ds_errors_are_admin_errors_with_a_clear_message(store, op, args, message):
    with pytest.raises(AdminError, match=message):
        handle_ds(store, op, args, True)
    assert store.revision == 0


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("set", {"key": "/a", "attrs": {"x": "1"}}),
        ("rm", {"key": "/keep"}),
        ("import", {"key": "/", "data": {"tree": {}}}),
    ],
)
def test_writes_on_the_backup_are_refused_with_the_specifications_warning(store, op, args):
    store.set("/keep", {})
    with pytest.raises(AdminError) as exc:
        handle_ds(store, op, args, False)
    assert "apply only to this server" in str(exc.value) and "overwritten by replication" in str(exc.value)
    assert "--local" in str(exc.value)
    assert store.revision == 1 and store.get("/keep") == {}


def test_local_writes_on_the_backup_are_made_with_a_warning(store):
    r = ds(store, "set", is_active=False, key="/a", attrs={"x": "1"}, local=True)
    assert r["warning"] == f"local change: {BACKUP_WRITE_WARNING}"
    assert store.get("/a") == {"x": ["1"]}


def test_reads_on_the_backup_are_allowed(store):
    store.set("/a", {"x": ["1"]})
    assert ds(store, "get", is_active=False, key="/a")["attrs"] == {"x": ["1"]}


# ------------------------------------------------------------------------------------------- param
def test_param_list_has_a_row_per_parameter_with_effective_stored_default_range_and_dynamic(store, params):
    store.set(param_key("Switchover TS Timeout"), {"value": ["100"]})
    store.set(f"{PARAMS_ROOT}/Switchover Max TS Failurs", {"value": ["3"]})
    r = param(store, params, "list")
    rows = {row["name"]: row for row in r["params"]}
    ts = rows["Switchover TS Timeout"]
    assert (ts["value"], ts["stored"], ts["default"], ts["range"]) == (60.0, "100", "10", "5-60 s")
    assert ts["dynamic"] is True
    assert "maximum 60" in ts["problem"]
    pmt = rows["Switchover Primary Monitor Timeout"]
    assert (pmt["value"], pmt["resolved"], pmt["dynamic"]) == (0.0, 30.0, False)
    assert r["unknown"] == [
        {"name": "Switchover Max TS Failurs", "stored": "3", "suggestion": "Switchover Max TS Failures"}
    ]


def test_param_list_shows_what_the_monitors_use_and_flags_as_yes_no(store, params):
    rows = {row["name"]: row for row in param(store, params, "list")["params"]}
    delay = rows["Switchover Primary Monitor Ping Delay"]
    assert (delay["value"], delay["resolved"]) == (0.0, 1.0)  # 0 = 1 s, as the primary monitor pings
    for name in ("Switchover Ping on Aux Connection", "Switchover Use QoS For Ping"):
        assert (rows[name]["default"], rows[name]["value"]) == ("No", False)
    assert rows["Switchover Disable Gateway Ping"]["default"] == "Yes"


def test_param_get_describes_one_parameter(store, params):
    r = param(store, params, "get", name="switchover unreachable primary ping count")
    assert r["name"] == "Switchover Unreachable Primary Ping Count"
    assert r["value"] == 0 and r["resolved"] == 0 and "-1" in r["special"]  # unset: switch at once
    assert r["key"] == param_key("Switchover Unreachable Primary Ping Count")


def test_param_set_validates_first_and_writes_nothing_when_invalid(store, params):
    with pytest.raises(AdminError, match="5-60"):
        param(store, params, "set", name="Switchover TS Timeout", value="0.2")
    assert store.revision == 0
    r = param(store, params, "set", name="Switchover TS Timeout", value="7.5")
    assert (r["value"], r["stored"], r["applies"], r["revision"]) == (7.5, "7.5", "immediately", 1)
    assert "warning" not in r


def test_param_set_of_a_non_dynamic_parameter_says_it_takes_effect_after_restart(store, params):
    r = param(store, params, "set", name="Switchover Reconnect Timeout", value="0.5")
    assert r["applies"] == "after restart" and "after the switchover service restarts" in r["warning"]


def test_param_unset_returns_to_the_default(store, params):
    param(store, params, "set", name="Switchover QoS DSCP", value="46")
    r = param(store, params, "unset", name="Switchover QoS DSCP")
    assert r["was_set"] is True and r["value"] == 34 and r["stored"] is None
    assert param(store, params, "unset", name="Switchover QoS DSCP")["was_set"] is False


def test_param_writes_on_the_backup_need_local(store, params):
    with pytest.raises(AdminError, match="apply only to this server"):
        param(store, params, "set", is_active=False, name="Switchover QoS DSCP", value="46")
    assert store.revision == 0
    r = param(store, params, "set", is_active=False, name="Switchover QoS DSCP", value="46", local=True)
    assert "local change" in r["warning"] and r["value"] == 46


@pytest.mark.parametrize(
    ("op", "args", "message"),
    [
        ("get", {"name": "Switchover TS Timout"}, "did you mean 'Switchover TS Timeout'"),
        ("get", {}, "missing argument 'name'"),
        ("set", {"name": "Switchover TS Timeout"}, "missing argument 'value'"),
        ("set", {"name": "Switchover TS Timeout", "value": 7}, "must be the value as text"),
        ("set", {"name": "CustomMirrorDir", "value": "relative/dir"}, "invalid entry 'relative/dir'"),
        ("drop", {}, "unknown param operation"),
    ],
)
def test_param_errors_are_admin_errors_with_a_clear_message(store, params, op, args, message):
    with pytest.raises(AdminError, match=message):
        handle_param(store, params, op, args, True)


# --------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def cli(store, params, monkeypatch):
    """Run ``switchover ds|param ...`` with the admin call served in-process by the handlers."""
    calls: list[tuple[str, dict[str, Any]]] = []
    state = {"active": True}

    def admin_call(node_dir: str, op: str, args: dict[str, Any] | None = None, timeout: float = 5.0):
        wire_args = json.loads(json.dumps(args or {}))  # as it would travel
        calls.append((op, wire_args))
        group, _, sub = op.partition(".")
        try:
            if group == "ds":
                result = handle_ds(store, sub, wire_args, state["active"])
            else:
                result = handle_param(store, params, sub, wire_args, state["active"])
        except AdminError as exc:
            raise AdminCallError(str(exc)) from None
        return json.loads(json.dumps(result))

    monkeypatch.setattr(ds_cmd, "admin_call", admin_call)
    monkeypatch.setattr(param_cmd, "admin_call", admin_call)
    parser = argparse.ArgumentParser(prog="switchover")
    sub = parser.add_subparsers(dest="command", required=True)
    ds_cmd.register(sub)
    param_cmd.register(sub)

    def run(*argv: str, active: bool = True) -> int:
        state["active"] = active
        args = parser.parse_args(list(argv))
        return int(args.func(args))

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_cli_ds_set_get_ls_tree_print_for_people_and_json_for_scripts(cli, store, capsys):
    assert cli("ds", "set", "/Config/Users/alice", "Extension=100", "Roles=a", "Roles=b") == 0
    assert store.get("/Config/Users/alice") == {"Extension": ["100"], "Roles": ["a", "b"]}
    assert cli("ds", "get", "/Config/Users/alice") == 0
    out = capsys.readouterr().out
    assert "Extension" in out and "100" in out
    assert cli("ds", "--json", "get", "/Config/Users/alice") == 0
    assert json.loads(capsys.readouterr().out)["attrs"]["Roles"] == ["a", "b"]
    assert cli("ds", "get", "/Config/Users/alice", "--json", "--node", "/elsewhere") == 0
    assert json.loads(capsys.readouterr().out)["key"] == "/Config/Users/alice"
    assert cli("ds", "ls", "/Config/Users") == 0
    assert "alice" in capsys.readouterr().out
    assert cli("ds", "tree", "/Config") == 0
    assert "alice" in capsys.readouterr().out
    assert cli.calls[0] == (
        "ds.set",
        {"key": "/Config/Users/alice", "attrs": {"Extension": ["100"], "Roles": ["a", "b"]}},
    )


def test_cli_ds_export_to_a_file_and_import_it_back(cli, store, tmp_path, capsys):
    store.set("/Config/Users/alice", {"Extension": ["100"]})
    out = tmp_path / "config.json"
    assert cli("ds", "export", "/Config", "-o", str(out)) == 0
    before = store.subtree_hash("/Config")
    store.delete("/Config")
    assert cli("ds", "import", str(out)) == 0
    assert store.subtree_hash("/Config") == before
    assert cli("ds", "import", str(out), "--at", "/Copy") == 0
    assert store.child_hashes("/Copy") == store.child_hashes("/Config")


def test_cli_errors_exit_1_with_the_message_on_stderr(cli, store, capsys):
    assert cli("ds", "get", "/nope") == 1
    assert "no such DS key: /nope" in capsys.readouterr().err
    assert cli("ds", "set", "/a", "novalue") == 1
    assert "NAME=VALUE" in capsys.readouterr().err
    assert cli("ds", "set", "/a", "x=1", active=False) == 1
    assert "--local" in capsys.readouterr().err
    assert cli("ds", "set", "/a", "x=1", "--local", active=False) == 0
    assert "warning" in capsys.readouterr().err
    assert cli("ds", "import", "/does/not/exist.json") == 1
    assert "cannot read" in capsys.readouterr().err


def test_cli_param_set_get_list_unset(cli, store, capsys):
    assert cli("param", "set", "Switchover", "TS", "Timeout", "7.5") == 0
    assert store.get(param_key("Switchover TS Timeout")) == {"value": ["7.5"]}
    assert cli("param", "set", "CustomMirrorDir", "+/srv/a; /srv/b") == 0
    assert cli("param", "get", "switchover", "ts", "timeout") == 0
    assert "7.5" in capsys.readouterr().out
    assert cli("param", "list") == 0
    out = capsys.readouterr().out
    assert "Switchover TS Timeout" in out and "Switchover QoS DSCP" in out
    assert cli("param", "--json", "list") == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["params"]}
    assert rows["CustomMirrorDir"]["value"] == ["+/srv/a", "/srv/b"]
    assert cli("param", "unset", "Switchover TS Timeout") == 0
    assert store.get(param_key("Switchover TS Timeout")) is None


def test_cli_param_set_refuses_bad_values_and_names(cli, store, capsys):
    assert cli("param", "set", "Switchover TS Timeout", "100") == 1
    assert "5-60" in capsys.readouterr().err
    assert cli("param", "set", "Switchover TS Timout", "10") == 1
    assert "did you mean 'Switchover TS Timeout'" in capsys.readouterr().err
    assert cli("param", "set", "Nonsense", "name", "10") == 1
    assert "quote the name" in capsys.readouterr().err
    assert store.revision == 0


def test_cli_param_set_on_the_backup_needs_local(cli, store, capsys):
    assert cli("param", "set", "Switchover QoS DSCP", "46", active=False) == 1
    assert cli("param", "set", "Switchover QoS DSCP", "46", "--local", active=False) == 0
    assert store.get(param_key("Switchover QoS DSCP")) == {"value": ["46"]}
