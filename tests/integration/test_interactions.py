"""Interaction shadowing on a real pair (issue 12): alpha active, beta backup, real processes.

- 1,000 chats with messages shadowed on the backup with every message; kill -9 of the active ->
  the new active's application gets all of them on Commence with seqno 1 and the original
  created_at; every message published with "wait for the backup" is there;
- the mail filter shadows only emails assigned to an agent;
- enabling SMS recovery on the running pair gives a full sync without a restart;
- a backup restarted in the middle of the stream fully resynchronizes, without duplicates.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.config import load_config
from deploy.pair import FAST_PARAMETERS, LocalPair, child_env
from tests.conftest import wait_until
from transport.interactions_client import InteractionRefused, InteractionsClient, RecoveryListener
from transport.messages import InteractionList

ACTIVE, BACKUP = "alpha", "beta"
# no module runs: the module monitor stays patient; a lost active is taken over at once
QUIET = {
    **FAST_PARAMETERS,
    "Switchover TS Failure Retry Delay": "3600",
    "Switchover Max TS Failures": "100",
    "Switchover Reconnect Timeout": "0",
}
TIMING = {"timing": {"startup_wait": 1.0, "hello_interval": 0.1, "peer_timeout": 1.0}}


def address(pair: LocalPair, name: str, port: str) -> str:
    me = load_config(pair.nodes[name].config).me
    return f"tcp://{me.address}:{getattr(me, port)}"


def listing(pair: LocalPair, name: str, **args: Any) -> dict[str, Any]:
    return pair.admin(name, "interactions", args, timeout=10.0)


def synced(pair: LocalPair, expected: dict[str, int]) -> Callable[[], bool]:
    """True once the backup's shadow counts are ``expected`` and it is not in a full sync."""

    def check() -> bool:
        got = listing(pair, BACKUP, counts_only=True)
        counts = {t: n for t, n in got["counts"].items() if n}
        return counts == expected and not got["stats"]["syncing"] and got["kind"] == "shadow"

    return check


def first_sync(pair: LocalPair) -> Callable[[], bool]:
    def check() -> bool:
        got = listing(pair, BACKUP, counts_only=True)
        return got["kind"] == "shadow" and got["stats"]["full_syncs"] >= 1 and not got["stats"]["syncing"]

    return check


def by_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in items}


def start_app(pair: LocalPair, node: str, journal: Path, *args: str) -> subprocess.Popen[bytes]:
    """The reference application beside ``node`` with the pair's app key, journalling into ``journal``."""
    argv = ["app", "--config", str(pair.nodes[node].config), "--key", str(pair.client_key("app"))]
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", *argv, *args, "--journal", str(journal)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=child_env(),
        start_new_session=True,
    )


PairFactory = Callable[..., LocalPair]


@pytest.fixture
def make_pair(tmp_path: Path) -> Iterator[PairFactory]:
    pairs: list[LocalPair] = []

    def factory(**params: str) -> LocalPair:
        pair = LocalPair(tmp_path / f"pair{len(pairs)}", parameters={**QUIET, **params}, extra=dict(TIMING))
        pairs.append(pair)
        pair.start_node(ACTIVE)
        wait_until(lambda: pair.role(ACTIVE) == "Primary", 20, 0.05, "alpha Primary")
        pair.start_node(BACKUP)
        wait_until(lambda: pair.role(BACKUP) == "Backup", 20, 0.05, "beta Backup")
        wait_until(first_sync(pair), 10, 0.05, "beta's InteractionShadow to finish its first full sync")
        return pair

    try:
        yield factory
    finally:
        for pair in pairs:
            pair.stop()


def test_1000_chats_survive_a_crash_of_the_active_with_seqno_1(make_pair: PairFactory) -> None:
    pair = make_pair(**{"Chat Interaction Recovery Enabled": "1"})
    wait_until(synced(pair, {}), 10, 0.05, "the first full sync")
    recovered: list[InteractionList] = []
    commenced = threading.Event()

    def on_recovered(found: InteractionList) -> None:
        recovered.append(found)
        commenced.set()

    listener = RecoveryListener(
        address(pair, BACKUP, "vswitch_port"),
        address(pair, BACKUP, "interaction_port"),
        on_recovered,
        pair.security_for("app"),
        name="contact-center",
        renew=0.5,
    ).start()
    client = InteractionsClient(address(pair, ACTIVE, "interaction_port"), pair.security_for("app"))
    try:
        assert listener.events.subscribed.wait(10)
        ops: list[tuple[str, str, dict[str, Any]]] = []
        for n in range(1000):
            cid = f"chat-{n:04d}"
            ops.append(
                ("create", cid, {"type": "chat", "queue": "Support", "created_at": 1_700_000_000.0 + n})
            )
            ops.append(("append", cid, {"author": "customer", "text": f"hello {n}"}))
            ops.append(("update", cid, {"state": "connected", "agent": f"agent{n % 7}"}))
            ops.append(("append", cid, {"author": f"agent{n % 7}", "text": f"how can I help, {n}?"}))
        client.publish_many(ops)
        waited = [
            client.append(f"chat-{n:04d}", "customer", f"important {n}", wait_backup=True)
            for n in range(0, 1000, 20)
        ]
        assert all(r.shadowed for r in waited), [r.detail for r in waited if not r.shadowed][:3]
        live = by_id(client.query().items)
        assert len(live) == 1000
        wait_until(synced(pair, {"chat": 1000}), 20, 0.1, "1,000 chat shadows on the backup")
        shadows = by_id(listing(pair, BACKUP)["items"])
        assert shadows == live, "every shadow holds exactly the live interaction, every message"
        assert sum(len(i["transcript"]) for i in shadows.values()) == 2000 + 50
    finally:
        client.close()

    pair.signal(ACTIVE, signal.SIGKILL)
    try:
        assert commenced.wait(30), "the application on beta heard no Commence"
    finally:
        listener.stop()
    (found,) = recovered[:1]
    assert (found.node, found.kind, found.total) == (BACKUP, "live", 1000)
    got = by_id(list(found.items))
    assert set(got) == set(live)
    for iid, item in got.items():
        before = live[iid]
        assert item["seqno"] == 1
        assert item["created_at"] == before["created_at"]
        assert item["transcript"] == before["transcript"]
        assert (item["state"], item["agent"], item["queue"]) == (
            before["state"],
            before["agent"],
            before["queue"],
        )
    for n in range(0, 1000, 20):
        assert f"important {n}" in [m["text"] for m in got[f"chat-{n:04d}"]["transcript"]]
    # a repeated query after the promotion changes nothing: still seqno 1, and the app can go on
    with InteractionsClient(address(pair, BACKUP, "interaction_port"), pair.security_for("app")) as resumed:
        assert {i["seqno"] for i in resumed.query(type="chat").items} == {1}
        resumed.append("chat-0000", "agent0", "still here after the switch")
        assert (
            resumed.query(iid="chat-0000").items[0]["transcript"][-1]["text"] == "still here after the switch"
        )


def test_mail_filter_shadows_only_emails_assigned_to_an_agent(make_pair: PairFactory) -> None:
    pair = make_pair(
        **{"Mail Interaction Recovery Enabled": "1", "Mail Interaction Recovery Filter Enabled": "1"}
    )
    with InteractionsClient(address(pair, ACTIVE, "interaction_port"), pair.security_for("app")) as client:
        for n in range(10):
            client.create(f"mail-{n}", "mail", queue="Mailbox")
        client.publish_many(
            [("transfer", f"mail-{n}", {"queue": f"agent{n}", "agent": f"agent{n}"}) for n in (1, 3, 5, 7)]
        )
        assigned = client.update("mail-9", agent="agent9", wait_backup=True)
        assert assigned.shadowed, assigned.detail
        unassigned = client.create("mail-10", "mail", queue="Mailbox", wait_backup=True)
        assert not unassigned.shadowed and "does not shadow" in unassigned.detail
        wait_until(synced(pair, {"mail": 5}), 10, 0.05, "5 assigned emails shadowed")
        assert sorted(i["id"] for i in listing(pair, BACKUP)["items"]) == [
            "mail-1",
            "mail-3",
            "mail-5",
            "mail-7",
            "mail-9",
        ]
        client.transfer("mail-3", "Mailbox")  # back to the workgroup queue: no longer assigned
        wait_until(synced(pair, {"mail": 4}), 10, 0.05, "the unassigned email removed from the shadows")
        assert len(client.query(type="mail").items) == 11, "the active keeps every email"
    shown = _cli(pair, "interactions", "show", "mail-1", "--node", str(pair.nodes[BACKUP].data_dir))
    assert shown.returncode == 0 and "mail-1 (mail, shadow on beta)" in shown.stdout, (
        shown.stdout + shown.stderr
    )
    missing = _cli(pair, "interactions", "show", "mail-2", "--node", str(pair.nodes[BACKUP].data_dir))
    assert missing.returncode == 1 and "no shadow interaction 'mail-2' on beta" in missing.stderr


def test_enabling_sms_recovery_on_a_running_pair_gives_a_full_sync(make_pair: PairFactory) -> None:
    pair = make_pair(**{"Chat Interaction Recovery Enabled": "1"})
    with InteractionsClient(address(pair, ACTIVE, "interaction_port"), pair.security_for("app")) as client:
        client.publish_many(
            [("create", f"sms-{n}", {"type": "sms", "queue": "Texts"}) for n in range(20)]
            + [("append", f"sms-{n}", {"author": "customer", "text": "hi"}) for n in range(20)]
            + [("create", "chat-1", {"type": "chat"})]
        )
        wait_until(synced(pair, {"chat": 1}), 10, 0.05, "only the chat shadowed")
        syncs_before = listing(pair, BACKUP, counts_only=True)["stats"]["full_syncs"]
        for name in pair.names:  # as DS replication would carry it to the backup
            local = {"local": True} if name == BACKUP else {}
            pair.admin(name, "param.set", {"name": "SMS Interaction Recovery Enabled", "value": "1", **local})
        wait_until(synced(pair, {"chat": 1, "sms": 20}), 10, 0.05, "the 20 SMS shadowed after the full sync")
        stats = listing(pair, BACKUP, counts_only=True)["stats"]
        assert stats["full_syncs"] == syncs_before + 1 and "sms" in stats["types"]
        assert pair.nodes[BACKUP].proc is not None and pair.nodes[BACKUP].proc.poll() is None, "no restart"
        with pytest.raises(InteractionRefused, match="append: no live interaction sms-99"):
            client.append("sms-99", "agent1", "to nobody")
        with pytest.raises(InteractionRefused, match="type 'fax' is not an interaction type"):
            client.create("fax-1", "fax")
        client.append("sms-3", "agent1", "answer", wait_backup=True)
        sms3 = listing(pair, BACKUP, id="sms-3")["items"][0]
        assert [m["text"] for m in sms3["transcript"]] == ["hi", "answer"]
    log = (pair.nodes[BACKUP].data_dir / "switchover.log").read_text()
    assert "SMS Interaction Recovery Enabled was enabled" in log


def test_backup_restarted_mid_stream_resynchronizes_without_duplicates(make_pair: PairFactory) -> None:
    pair = make_pair(
        **{"Chat Interaction Recovery Enabled": "1", "Callback Interaction Recovery Enabled": "1"}
    )
    stop = threading.Event()
    published = [0]
    errors: list[BaseException] = []

    def stream() -> None:
        try:
            with InteractionsClient(
                address(pair, ACTIVE, "interaction_port"), pair.security_for("app")
            ) as client:
                for n in range(100):
                    client.create(f"chat-{n}", "chat")
                    client.create(f"cb-{n}", "callback", queue="Callbacks")
                n = 0
                while not stop.is_set():
                    client.append(f"chat-{n % 100}", "customer", f"line {n}")
                    if n % 10 == 0:
                        client.update(f"cb-{n % 100}", state=f"attempt {n}")
                    n += 1
                    published[0] = n
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=stream, daemon=True)
    writer.start()
    try:
        wait_until(lambda: published[0] > 300, 20, 0.05, "the stream to run")
        pair.signal(BACKUP, signal.SIGKILL)
        assert pair.nodes[BACKUP].proc is not None
        pair.nodes[BACKUP].proc.wait(10)
        at_restart = published[0]
        pair.start_node(BACKUP)
        wait_until(lambda: pair.role(BACKUP) == "Backup", 20, 0.05, "beta Backup again")
        wait_until(lambda: published[0] > at_restart + 300, 20, 0.05, "the stream to go on after the restart")
    finally:
        stop.set()
        writer.join(10)
    assert not errors, errors
    wait_until(synced(pair, {"chat": 100, "callback": 100}), 20, 0.05, "the shadows after the restart")
    with InteractionsClient(address(pair, ACTIVE, "interaction_port"), pair.security_for("app")) as client:
        live = by_id(client.query().items)

    def same() -> bool:
        return by_id(listing(pair, BACKUP)["items"]) == live

    wait_until(same, 10, 0.1, "the shadows to equal the live interactions")
    lines = [m["text"] for i in live.values() if i["type"] == "chat" for m in i["transcript"]]
    assert len(lines) == len(set(lines)) == published[0], "every message once, none twice"
    log = (pair.nodes[BACKUP].data_dir / "switchover.log").read_text()
    assert log.count("full synchronization complete") >= 2


def _journal(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _cli(pair: LocalPair, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=30, env=child_env()
    )


def test_reference_app_resumes_every_acknowledged_interaction_after_a_crash(
    make_pair: PairFactory, tmp_path: Path
) -> None:
    pair = make_pair(
        **{
            "Chat Interaction Recovery Enabled": "1",
            "Mail Interaction Recovery Enabled": "1",
            "Callback Interaction Recovery Enabled": "1",
        }
    )
    journals = {n: tmp_path / f"{n}.jsonl" for n in pair.names}
    apps = {
        n: start_app(pair, n, journals[n], "--rate", "200", "--wait-backup", "--seed", "7")
        for n in pair.names
    }
    try:
        wait_until(lambda: len(_journal(journals[ACTIVE])) >= 150, 30, 0.1, "alpha's app to publish")
        shown = _cli(pair, "interactions", "list", "--node", str(pair.nodes[BACKUP].data_dir), "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["kind"] == "shadow"
        table = _cli(pair, "interactions", "list", "--node", str(pair.nodes[ACTIVE].data_dir))
        assert "live interactions" in table.stdout and "by type:" in table.stdout, table.stdout
        status = pair.ctl("status")
        assert "Interactions (live on the active / shadowed on the backup):" in status.stdout, status.stdout
        pair.signal(ACTIVE, signal.SIGKILL)
        os.killpg(apps[ACTIVE].pid, signal.SIGKILL)
        apps[ACTIVE].wait(10)
        resumed = wait_until(
            lambda: [r for r in _journal(journals[BACKUP]) if r.get("event") == "resumed"],
            30,
            0.1,
            "beta's app",
        )[0]
        wait_until(lambda: any("op" in r for r in _journal(journals[BACKUP])), 10, 0.1, "beta's app to go on")
    finally:
        for app in apps.values():
            if app.poll() is None:
                os.killpg(app.pid, signal.SIGTERM)
                app.wait(10)
    # every operation the backup acknowledged before the crash is in what the app resumed
    acked = [r for r in _journal(journals[ACTIVE]) if r.get("shadowed")]
    assert acked, "nothing was acknowledged by the backup"
    alive: dict[str, int] = {}
    for r in acked:
        if r["op"] == "create":
            alive[r["id"]] = 0
        elif r["op"] == "disconnect":
            alive.pop(r["id"], None)
        elif r["op"] == "append" and r["id"] in alive:
            alive[r["id"]] += 1
    assert set(alive) <= set(resumed["ids"]), set(alive) - set(resumed["ids"])
    short = {i: (n, resumed["messages"][i]) for i, n in alive.items() if resumed["messages"][i] < n}
    assert not short, f"acknowledged messages lost: {short}"


def test_restored_pair_builds_fresh_shadows_and_a_second_switch_gives_seqno_2(make_pair: PairFactory) -> None:
    pair = make_pair(**{"Callback Interaction Recovery Enabled": "1"})
    with InteractionsClient(address(pair, ACTIVE, "interaction_port"), pair.security_for("app")) as client:
        client.publish_many(
            [
                ("create", f"cb-{n}", {"type": "callback", "queue": "Callbacks", "created_at": 1000.0 + n})
                for n in range(50)
            ]
        )
        client.update("cb-0", state="scheduled", wait_backup=True)
    wait_until(synced(pair, {"callback": 50}), 10, 0.05, "50 callback shadows")
    pair.signal(ACTIVE, signal.SIGKILL)
    wait_until(lambda: pair.role(BACKUP) == "Primary", 20, 0.05, "beta Primary")
    # the pair is restored: alpha comes back as the backup and shadows beta's (recovered) interactions
    pair.start_node(ACTIVE)
    wait_until(lambda: pair.role(ACTIVE) == "Backup", 20, 0.05, "alpha Backup")

    def alpha_shadows() -> list[dict[str, Any]]:
        got = listing(pair, ACTIVE)
        return (
            got["items"]
            if got["kind"] == "shadow" and got["total"] == 50 and not got["stats"]["syncing"]
            else []
        )

    shadows = by_id(wait_until(alpha_shadows, 15, 0.05, "alpha's fresh shadows"))
    assert {i["seqno"] for i in shadows.values()} == {1}
    with InteractionsClient(address(pair, BACKUP, "interaction_port"), pair.security_for("app")) as client:
        client.append("cb-1", "agent", "called, no answer", wait_backup=True)
    # a controlled switch back: alpha promotes its shadows of the recovered interactions
    assert pair.ctl("switch", "--yes").returncode == 0
    wait_until(lambda: pair.role(ACTIVE) == "Primary", 20, 0.05, "alpha Primary again")
    with InteractionsClient(address(pair, ACTIVE, "interaction_port"), pair.security_for("app")) as client:
        back = by_id(wait_until(lambda: client.query(timeout=2.0).items, 10, 0.1, "alpha's interactions"))
    assert len(back) == 50 and {i["seqno"] for i in back.values()} == {2}
    assert {i["created_at"] for i in back.values()} == {1000.0 + n for n in range(50)}
    assert back["cb-0"]["state"] == "scheduled"
    assert [m["text"] for m in back["cb-1"]["transcript"]] == ["called, no answer"]


def test_controlled_switch_loses_no_interaction_and_no_message(
    make_pair: PairFactory, tmp_path: Path
) -> None:
    pair = make_pair(
        **{
            "Chat Interaction Recovery Enabled": "1",
            "Mail Interaction Recovery Enabled": "1",
            "Callback Interaction Recovery Enabled": "1",
        }
    )
    journals = {n: tmp_path / f"{n}.jsonl" for n in pair.names}
    apps = {n: start_app(pair, n, journals[n], "--rate", "300", "--seed", "3") for n in pair.names}
    try:
        wait_until(lambda: len(_journal(journals[ACTIVE])) >= 200, 30, 0.1, "alpha's app to publish")
        assert pair.ctl("switch", "--yes").returncode == 0
        resumed = wait_until(
            lambda: [r for r in _journal(journals[BACKUP]) if r.get("event") == "resumed"],
            30,
            0.1,
            "beta's app",
        )[0]
    finally:
        for app in apps.values():
            if app.poll() is None:
                os.killpg(app.pid, signal.SIGTERM)
                app.wait(10)
    alive: dict[str, int] = {}
    for r in _journal(journals[ACTIVE]):  # every operation the active accepted, shadowed-confirmed or not
        if "op" not in r:
            continue
        if r["op"] == "create":
            alive[r["id"]] = 0
        elif r["op"] == "disconnect":
            alive.pop(r["id"], None)
        elif r["op"] == "append" and r["id"] in alive:
            alive[r["id"]] += 1
    assert set(alive) == set(resumed["ids"]), set(alive) ^ set(resumed["ids"])
    short = {i: (n, resumed["messages"][i]) for i, n in alive.items() if resumed["messages"][i] != n}
    assert not short, f"messages lost or added in the controlled switch: {short}"
