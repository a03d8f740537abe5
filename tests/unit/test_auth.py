"""Rights, the clients file and the per-request check (transport/auth.py), and key files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import zmq

from transport.auth import (
    GROUP_USER,
    REQUIRED_RIGHTS,
    AccessControl,
    Client,
    ClientsFileError,
    Right,
    load_clients,
    parse_rights,
    required_rights,
    save_clients,
)
from transport.messages import (
    Hello,
    HistoryRequest,
    ModulePing,
    QueryState,
    RegisterModule,
    RejoinRequest,
    SwitchRequest,
    lookup,
)
from transport.security import KeyFileError, check_private, load_keypair, load_public, write_keypair


def key() -> str:
    return zmq.curve_keypair()[0].decode()


GROUP = key()


def access(tmp_path: Path, *clients: Client, primary: bool = True) -> AccessControl:
    path = tmp_path / "clients.toml"
    save_clients(path, clients)
    return AccessControl(GROUP, path, primary_present=lambda: primary)


def hello() -> Hello:
    return Hello("alpha", "Primary", 1, "1.0.0", 0.0)


# ------------------------------------------------------------------------------------------ rights


def test_parse_rights_names_the_unknown_one() -> None:
    assert parse_rights("monitor, remote-control") == {Right.MONITOR, Right.REMOTE_CONTROL}
    with pytest.raises(ValueError, match=r"unknown right 'root'.*monitor, remote-control, admin"):
        parse_rights("monitor,root")
    with pytest.raises(ValueError, match="node"):  # the node right is never a client's
        parse_rights("node")
    with pytest.raises(ValueError, match="no rights given"):
        parse_rights("")


def test_every_row_of_the_rights_table_names_rights_a_client_can_have() -> None:
    for type_name, rights in REQUIRED_RIGHTS.items():
        assert rights and Right.NODE not in rights, type_name
    for type_name in ("QueryState", "SwitchRequest", "RegisterModule", "WhoAmI"):
        assert lookup(type_name) is not None, f"{type_name} is not a registered message"


def test_the_control_panel_rules_for_a_switch() -> None:
    assert required_rights(SwitchRequest(), primary_present=True) == {Right.REMOTE_CONTROL}
    assert required_rights(SwitchRequest(immediate=True), primary_present=True) == {Right.ADMIN}
    assert required_rights(SwitchRequest(immediate=True), primary_present=False) == {Right.ADMIN}
    no_primary = required_rights(SwitchRequest(), primary_present=False)
    assert Right.MONITOR in no_primary and Right.MODULE not in no_primary


def test_a_type_without_a_row_is_for_the_peer_node_only(tmp_path: Path) -> None:
    ac = access(tmp_path, Client("boss", key(), frozenset({Right.ADMIN})))
    assert ac.check(hello(), GROUP_USER, "10.0.0.2", "vswitch.server") is None
    refusal = ac.check(hello(), "boss", "10.0.0.9", "vswitch.server")
    assert refusal == "user boss lacks the Node right (only the peer server sends this)"
    assert ac.check(ModulePing("TsServer"), "boss", "10.0.0.9", "notifier.main") is not None


def test_rights_are_checked_per_request_with_a_clear_refusal(tmp_path: Path) -> None:
    ac = access(
        tmp_path,
        Client("watcher", key(), frozenset({Right.MONITOR})),
        Client("pilot", key(), frozenset({Right.REMOTE_CONTROL})),
        Client("boss", key(), frozenset({Right.ADMIN})),
        Client("TsServer", key(), frozenset({Right.MODULE})),
    )
    assert ac.check(QueryState(), "watcher", "a", "e") is None
    assert ac.check(HistoryRequest(), "watcher", "a", "e") is None
    assert ac.check(SwitchRequest(), "watcher", "a", "e") == "user watcher lacks the Remote Control right"
    assert ac.check(RejoinRequest(), "watcher", "a", "e") == "user watcher lacks the Remote Control right"
    assert ac.check(SwitchRequest(), "pilot", "a", "e") is None
    assert ac.check(HistoryRequest(), "pilot", "a", "e") is None  # remote control includes monitor
    assert "lacks the Admin right" in str(ac.check(SwitchRequest(immediate=True), "pilot", "a", "e"))
    assert ac.check(SwitchRequest(immediate=True), "boss", "a", "e") is None
    assert ac.check(RegisterModule("TsServer", 1), "TsServer", "a", "e") is None
    assert "lacks the Module right" in str(ac.check(RegisterModule("x", 1), "boss", "a", "e"))
    assert (
        ac.check(QueryState(), "nobody", "a", "e") == "user nobody is not authorized (revoked or unknown key)"
    )
    assert ac.counters["request_refused"] == 5


def test_without_a_primary_the_remote_control_right_is_not_checked(tmp_path: Path) -> None:
    ac = access(tmp_path, Client("watcher", key(), frozenset({Right.MONITOR})), primary=False)
    assert ac.check(SwitchRequest(), "watcher", "a", "e") is None
    assert ac.check(SwitchRequest(immediate=True), "watcher", "a", "e") is not None


def test_zap_admits_the_group_and_active_clients_only_and_names_them(tmp_path: Path) -> None:
    alive, gone = key(), key()
    ac = access(
        tmp_path,
        Client("ops", alive, frozenset({Right.MONITOR})),
        Client("old", gone, frozenset({Right.MONITOR}), revoked="2026-01-01T00:00:00Z"),
    )
    assert ac.admit("vswitch.server", "10.0.0.2", GROUP) and ac.user_of_key(GROUP) == GROUP_USER
    assert ac.admit("vswitch.server", "10.0.0.3", alive) and ac.user_of_key(alive) == "ops"
    assert not ac.admit("vswitch.server", "10.0.0.4", gone)
    assert not ac.admit("vswitch.server", "10.0.0.5", key())
    assert ac.counters == {"handshake_revoked_key": 1, "handshake_unknown_key": 1}


def test_reload_applies_revocations_at_once_and_keeps_the_old_list_on_a_bad_file(tmp_path: Path) -> None:
    k = key()
    ac = access(tmp_path, Client("ops", k, frozenset({Right.MONITOR})))
    assert ac.rights_of("ops") == {Right.MONITOR}
    save_clients(ac.clients_path, [Client("ops", k, frozenset({Right.MONITOR}), revoked="now")])  # type: ignore[arg-type]
    assert ac.reload()["removed"] == ["ops"]
    assert ac.rights_of("ops") == frozenset() and not ac.admit("d", "a", k)
    ac.clients_path.write_text("[clients.x]\npublic_key = 'short'\n")  # type: ignore[union-attr]
    with pytest.raises(ClientsFileError, match=r"clients\.x\.public_key: expected a 40-character Z85"):
        ac.reload()
    assert [c.name for c in ac.clients()] == ["ops"]


@pytest.mark.parametrize(
    "text, words",
    [
        ("[clients.a]\npublic_key = 'K'\nrights=['monitor']\n", "40-character"),
        ("[clients.a]\npublic_key = '{k}'\nrights=['god']\n", "unknown right 'god'"),
        ("[clients.a]\npublic_key = '{k}'\nrights=['monitor']\ncolour='red'\n", "unknown key 'colour'"),
        ("[clients.'a b']\npublic_key = '{k}'\nrights=['monitor']\n", "not a valid client name"),
        (
            "[clients.a]\npublic_key = '{k}'\nrights=['monitor']\n[clients.b]\npublic_key = '{k}'\nrights=['app']\n",
            "the same key as client 'a'",
        ),
        ("[other]\n", "expected only [clients.NAME] tables"),
        ("not toml = = =", "not valid TOML"),
    ],
)
def test_a_bad_clients_file_is_refused_naming_what_is_wrong(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "clients.toml"
    path.write_text(text.replace("{k}", key()))
    with pytest.raises(ClientsFileError, match=words.replace("[", r"\[").replace("]", r"\]")):
        load_clients(path)


def test_a_clients_file_others_can_write_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "clients.toml"
    save_clients(path, [])
    os.chmod(path, 0o666)
    with pytest.raises(ClientsFileError, match=r"has mode 0666: others could authorize keys.*chmod 644"):
        load_clients(path)


def test_the_clients_file_round_trips(tmp_path: Path) -> None:
    clients = [
        Client("ops-1", key(), frozenset({Right.MONITOR, Right.REMOTE_CONTROL}), "2026-12-01T00:00:00Z"),
        Client("TsServer@a", key(), frozenset({Right.MODULE}), "", "2026-12-02T00:00:00Z"),
    ]
    save_clients(tmp_path / "c.toml", clients)
    assert load_clients(tmp_path / "c.toml") == {c.name: c for c in clients}


def test_refusal_logs_are_rate_limited(tmp_path: Path) -> None:
    from loguru import logger

    lines: list[str] = []
    sink = logger.add(lines.append, format="{message}")
    try:
        ac = access(tmp_path, Client("watcher", key(), frozenset({Right.MONITOR})))
        for _ in range(50):
            ac.check(SwitchRequest(), "watcher", "10.0.0.7", "vswitch.server")
        ac.check(SwitchRequest(), "watcher", "10.0.0.8", "vswitch.server")  # another host: its own line
    finally:
        logger.remove(sink)
    refusals = [line for line in lines if "refused SwitchRequest" in line]
    assert len(refusals) == 2, refusals
    assert "from watcher at 10.0.0.7: user watcher lacks the Remote Control right" in refusals[0]
    assert ac.counters["request_refused"] == 51


# --------------------------------------------------------------------------------------- key files


def test_a_new_keypair_is_private_and_loads(tmp_path: Path) -> None:
    pub, sec = write_keypair(tmp_path / "keys", "server-group")
    assert stat.S_IMODE(sec.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    public, secret = load_keypair(sec)
    assert zmq.curve_public(secret) == public == load_public(sec) == load_public(pub)
    with pytest.raises(KeyFileError, match="exists already"):
        write_keypair(tmp_path / "keys", "server-group")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_secret_file_others_can_read_is_refused_naming_it_and_its_mode(tmp_path: Path, mode: int) -> None:
    _, sec = write_keypair(tmp_path, "k")
    os.chmod(sec, mode)
    with pytest.raises(KeyFileError) as info:
        check_private(sec)
    assert f"{sec} has mode {mode:04o}" in str(info.value) and f"chmod 600 {sec}" in str(info.value)


def test_a_public_file_is_not_a_secret(tmp_path: Path) -> None:
    pub, _ = write_keypair(tmp_path, "k")
    os.chmod(pub, 0o600)
    with pytest.raises(KeyFileError, match="holds no secret key"):
        load_keypair(pub)
    with pytest.raises(KeyFileError, match="does not exist"):
        load_keypair(tmp_path / "missing.key_secret")
