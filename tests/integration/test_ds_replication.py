"""DS tree replication between two real ``switchover node`` processes (issue 10 acceptance)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploy.pair import LocalPair, child_env
from tests.conftest import poll_result, wait_until
from transport.admin_client import AdminCallError

QUIET_PARAMETERS: dict[str, str] = {  # no automatic switch while a test runs (no module is running)
    "Switchover TS Timeout": "5",
    "Switchover TS Failure Retry Delay": "3600",
    "Switchover Max TS Failures": "100",
    "Switchover Primary Monitor Ping Delay": "0.5",
    "Switchover Primary Monitor Timeout": "3",
    "Switchover Reconnect Timeout": "60",
    "Switchover DS Request Timeout": "5",
}
TIMING: dict[str, Any] = {"hello_interval": 0.1, "peer_timeout": 1.0, "startup_wait": 1.0,
                          "discontinue_timeout": 2.0}
SETTLE = 20.0


def admin(pair: LocalPair, name: str, op: str, args: dict[str, Any] | None = None,
          timeout: float = 5.0) -> dict[str, Any]:
    return pair.admin(name, op, args, timeout)


def settled(pair: LocalPair) -> dict[str, str] | None:
    try:
        states = {n: admin(pair, n, "status", timeout=1.0) for n in pair.names}
    except AdminCallError:
        return None
    if sorted(s["role"] for s in states.values()) != ["Backup", "Primary"]:
        return None
    if any(s["starting_up"] for s in states.values()):
        return None
    primary = next(n for n, s in states.items() if s["role"] == "Primary")
    return {"primary": primary, "backup": next(n for n in pair.names if n != primary)}


def start_in_order(pair: LocalPair) -> tuple[str, str]:
    first, second = pair.names
    pair.start_node(first)
    wait_until(lambda: pair.role(first) == "Primary", SETTLE, message=f"{first} to become Primary")
    pair.start_node(second)
    roles = wait_until(lambda: settled(pair), SETTLE, message="a started Primary and Backup")
    return roles["primary"], roles["backup"]


def repl(pair: LocalPair, name: str) -> dict[str, Any]:
    return admin(pair, name, "ds.replication")


def root_hash(pair: LocalPair, name: str) -> str:
    return str(admin(pair, name, "ds.get", {"key": "/"})["hash"])


def in_sync(pair: LocalPair, primary: str, backup: str) -> bool:
    return root_hash(pair, primary) == root_hash(pair, backup) and repl(pair, backup)["state"] == "streaming"


def write_many(pair: LocalPair, name: str, n: int, prefix: str = "/Load", tag: str = "v") -> None:
    """``n`` acknowledged single-key writes through the admin socket (each one revision)."""
    from transport.admin_client import admin_call

    data = str(pair.nodes[name].data_dir)
    for i in range(n):
        admin_call(data, "ds.set", {"key": f"{prefix}/g{i % 20}/k{i}", "attrs": {"v": f"{tag}{i}"}}, 5.0)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[LocalPair]:
    p = LocalPair(tmp_path / "pair", parameters=dict(QUIET_PARAMETERS), extra={"timing": dict(TIMING)})
    try:
        yield p
    finally:
        p.stop()


def test_a_ds_set_on_the_active_is_on_the_backup_within_1_s(pair: LocalPair) -> None:
    primary, backup = start_in_order(pair)
    wait_until(lambda: in_sync(pair, primary, backup), 10, message="the first compare")
    for i in range(5):
        admin(pair, primary, "ds.set", {"key": f"/Config/Users/u{i}", "attrs": {"Name": f"user {i}"}})
        start = time.monotonic()

        def seen(i: int = i) -> bool:
            try:
                got = admin(pair, backup, "ds.get", {"key": f"/Config/Users/u{i}"}, timeout=1.0)
            except AdminCallError:
                return False
            return bool(got["attrs"] == {"Name": [f"user {i}"]})

        assert poll_result(seen, 1.0, 0.005), f"write {i} not on the backup within 1 s"
        assert time.monotonic() - start < 1.0
    status = repl(pair, backup)
    assert status["side"] == "backup" and status["state"] == "streaming"
    assert status["history"] == repl(pair, primary)["history"]
    assert status["applied"] == repl(pair, primary)["revision"]
    assert status["last_compare"]["duration_s"] >= 0


def test_a_parameter_set_on_the_active_is_the_backups_value_within_1_s(pair: LocalPair) -> None:
    primary, backup = start_in_order(pair)
    before = admin(pair, backup, "param.get", {"name": "Switchover TS Timeout"})
    assert str(before.get("value")) in ("5", "5.0"), before
    admin(pair, primary, "param.set", {"name": "Switchover TS Timeout", "value": "20"})
    start = time.monotonic()

    def twenty() -> dict[str, Any] | None:
        got = admin(pair, backup, "param.get", {"name": "Switchover TS Timeout"}, timeout=1.0)
        return got if str(got.get("value")) in ("20", "20.0") else None

    got = poll_result(twenty, 1.0, 0.01)
    assert got, "the active's value did not reach the backup within 1 s"
    assert time.monotonic() - start < 1.5  # the poll's deadline, plus one admin round trip


def test_local_writes_on_the_backup_are_refused_or_overwritten(pair: LocalPair) -> None:
    primary, backup = start_in_order(pair)
    admin(pair, primary, "ds.set", {"key": "/Config/x", "attrs": {"v": "active"}})
    with pytest.raises(AdminCallError, match="refused"):
        admin(pair, backup, "ds.set", {"key": "/Config/x", "attrs": {"v": "backup"}})
    admin(pair, backup, "ds.set", {"key": "/Config/x", "attrs": {"v": "backup"}, "local": True})
    wait_until(lambda: admin(pair, backup, "ds.get", {"key": "/Config/x"})["attrs"] == {"v": ["active"]}, 5,
               message="the compare to overwrite the local write")
    wait_until(lambda: in_sync(pair, primary, backup), 5, message="trees equal")


def test_restarted_backup_compares_and_fetches_only_what_differs(pair: LocalPair) -> None:
    primary, backup = start_in_order(pair)
    write_many(pair, primary, 200, "/Base")
    wait_until(lambda: in_sync(pair, primary, backup), 10, message="in sync")
    # kill -9: the backup's store starts a new epoch when it reopens, so it cannot resume: it compares
    pair.signal(backup, signal.SIGKILL)
    proc = pair.nodes[backup].proc
    assert proc is not None
    proc.wait(15)
    # 1,000 changes on the active meanwhile: 1,000 new keys under 10 new parents, and 20 changed keys
    for b in range(10):
        admin(pair, primary, "ds.import", {"key": f"/Batch{b}", "data": {"tree": {"attrs": {}, "children": {
            f"k{i}": {"attrs": {"v": [str(i)]}, "children": {}} for i in range(100)}}}})
    for i in range(20):
        admin(pair, primary, "ds.set", {"key": f"/Base/g{i % 20}/k{i}", "attrs": {"v": "changed"}})
    pair.start_node(backup)
    wait_until(lambda: settled(pair), SETTLE, message="the backup to start up again")
    wait_until(lambda: in_sync(pair, primary, backup), 10, message="trees equal after the restart")
    status = repl(pair, backup)
    assert root_hash(pair, primary) == root_hash(pair, backup)
    assert status["compares"] == 1
    compare = status["last_compare"]
    assert compare["keys_fetched"] == 1000 + 10 + 20, compare  # exactly the keys that differ
    assert compare["keys_deleted"] == 0
    assert compare["paths_listed"] < 60, compare  # the unchanged /Base groups were never listed


def test_ctl_switch_right_after_2000_writes_loses_none(pair: LocalPair) -> None:
    primary, backup = start_in_order(pair)
    write_many(pair, primary, 2000, "/Acked")
    done = subprocess.run([sys.executable, "-m", "cli.main", "ctl", "--config", str(pair.a.config), "switch",
                           "--yes"], capture_output=True, text=True, env=child_env(), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: pair.role(backup) == "Primary", 15, message="the backup to become Primary")
    count = admin(pair, backup, "ds.tree", {"key": "/Acked", "max_nodes": 5000})["nodes"]
    assert count == 2000 + 20 + 1, count  # 2,000 keys, 20 groups, /Acked
    for i in (0, 999, 1999):
        assert admin(pair, backup, "ds.get", {"key": f"/Acked/g{i % 20}/k{i}"})["attrs"] == {"v": [f"v{i}"]}
    log = (pair.nodes[backup].data_dir / "node.stderr").read_text()
    assert "DS stream drained" in log
    records = [json.loads(line) for line in (pair.nodes[backup].data_dir / "events.jsonl").read_text().splitlines()]
    switch = next(r for r in records if r["new_state"] == "Primary")
    assert "DS replication streaming at revision" in switch["verdict"], switch


def ctl_status_json(pair: LocalPair) -> dict[str, Any]:
    import json

    done = pair.ctl("--json", "status")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def cut_link(pair: LocalPair, backup: str, cut: bool) -> None:
    admin(pair, backup, "inject", {"endpoint": "ds.link", "faults": {"cut": cut}})


def test_ctl_status_shows_ds_replication_and_warns_when_it_stops(pair: LocalPair) -> None:
    primary, backup = start_in_order(pair)
    admin(pair, primary, "ds.set", {"key": "/Config/a", "attrs": {"v": "1"}})
    wait_until(lambda: in_sync(pair, primary, backup), 10, message="in sync")
    view = ctl_status_json(pair)
    ds = view["ds_replication"]
    assert ds["state"] == "streaming" and ds["lag_revisions"] == 0, ds
    assert ds["applied"] == repl(pair, primary)["revision"]
    assert ds["last_compare"] is not None and ds["last_compare"]["duration_s"] >= 0
    assert not any("DS (configuration) replication" in w for w in view["warnings"])
    text = pair.ctl("status")
    assert "DS replication: streaming" in text.stdout, text.stdout
    shown = subprocess.run([sys.executable, "-m", "cli.main", "admin", "--node", str(pair.nodes[backup].data_dir),
                            "replication"], capture_output=True, text=True, env=child_env(), timeout=30)
    assert shown.returncode == 0 and "state: streaming" in shown.stdout, shown.stdout + shown.stderr
    cut_link(pair, backup, True)
    wait_until(lambda: repl(pair, backup)["state"] == "stopped", 10, message="replication to stop")
    view = ctl_status_json(pair)
    assert any("DS (configuration) replication from the primary has stopped" in w for w in view["warnings"])
    cut_link(pair, backup, False)
    wait_until(lambda: in_sync(pair, primary, backup), 10, message="in sync again")


ops_strategy = st.lists(
    st.tuples(
        st.sampled_from(["set", "set", "set", "import", "rm", "cut", "heal"]),
        st.integers(min_value=0, max_value=30),
        st.text(alphabet="abcxyz", min_size=1, max_size=4),
    ),
    min_size=5,
    max_size=40,
)


def test_random_batches_while_the_link_is_cut_and_restored_end_equal(pair: LocalPair) -> None:
    primary, backup = start_in_order(pair)

    @settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
    @given(ops_strategy)
    def run(steps: list[tuple[str, int, str]]) -> None:
        for kind, n, value in steps:
            key = f"/Prop/g{n % 5}/k{n}"
            if kind == "set":
                admin(pair, primary, "ds.set", {"key": key, "attrs": {"v": value, f"a{n % 3}": [value, value]}})
            elif kind == "import":  # one batch of several keys
                children = {f"i{j}": {"attrs": {"v": [value]}, "children": {}} for j in range(n % 6 + 1)}
                admin(pair, primary, "ds.import", {"key": f"/Prop/imp{n % 4}", "merge": bool(n % 2),
                                                   "data": {"tree": {"attrs": {}, "children": children}}})
            elif kind == "rm":
                try:
                    admin(pair, primary, "ds.rm", {"key": key if n % 7 else f"/Prop/g{n % 5}"})
                except AdminCallError:
                    pass  # no such key: nothing to remove
            else:
                cut_link(pair, backup, kind == "cut")
        cut_link(pair, backup, False)
        wait_until(lambda: in_sync(pair, primary, backup), 20, message="trees equal after quiet")

    run()


def test_former_active_rejoins_by_resuming_and_reports_its_discarded_writes(pair: LocalPair) -> None:
    primary, backup = start_in_order(pair)
    write_many(pair, primary, 50, "/Before")
    done = pair.ctl("switch", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: pair.roles() == {backup: "Primary", primary: "Inactive"}, 15, message="the switch")
    # the stale former active takes a local write the new active never gets (made after the split)
    admin(pair, primary, "ds.set", {"key": "/Split/only-here", "attrs": {"v": "lost"}, "local": True})
    admin(pair, backup, "ds.set", {"key": "/After/new", "attrs": {"v": "kept"}})
    done = pair.ctl("rejoin", "--server", primary)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: settled(pair) == {"primary": backup, "backup": primary}, SETTLE, message="rejoined")
    wait_until(lambda: in_sync(pair, backup, primary), 10, message="trees equal after the rejoin")
    log = (pair.nodes[primary].data_dir / "node.stderr").read_text()
    assert "DISCARDED" in log and "/Split/only-here" in log, log[-3000:]
    with pytest.raises(AdminCallError):
        admin(pair, primary, "ds.get", {"key": "/Split/only-here"})
    assert admin(pair, primary, "ds.get", {"key": "/After/new"})["attrs"] == {"v": ["kept"]}


def test_former_active_without_own_writes_resumes_without_a_compare(pair: LocalPair) -> None:
    primary, backup = start_in_order(pair)
    write_many(pair, primary, 50, "/Before")
    assert pair.ctl("switch", "--yes").returncode == 0
    wait_until(lambda: pair.roles() == {backup: "Primary", primary: "Inactive"}, 15, message="the switch")
    write_many(pair, backup, 30, "/After")
    assert pair.ctl("rejoin", "--server", primary).returncode == 0
    wait_until(lambda: settled(pair) == {"primary": backup, "backup": primary}, SETTLE, message="rejoined")
    wait_until(lambda: in_sync(pair, backup, primary), 10, message="trees equal after the rejoin")
    status = repl(pair, primary)
    assert status["compares"] == 0, status  # resumed on the new active's continuing history
    assert status["history"] == repl(pair, backup)["history"]


class Writer:
    """Keeps writing single keys to whichever node is Primary; remembers every acknowledged write."""

    def __init__(self, pair: LocalPair) -> None:
        import threading

        self.pair = pair
        self.acked: dict[str, str] = {}
        self.acked_by: dict[str, str] = {}
        self.refused = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def primary(self) -> str | None:
        return next((n for n in self.pair.names if self.pair.role(n) == "Primary"), None)

    def run(self) -> None:
        i = 0
        target = self.primary()
        while not self.stop.is_set():
            key, value = f"/Writer/g{i % 10}/k{i}", f"w{i}"
            if target is None:
                target = self.primary()
                continue
            try:
                admin(self.pair, target, "ds.set", {"key": key, "attrs": {"v": value}}, timeout=1.0)
            except AdminCallError:
                self.refused += 1
                target = self.primary()
                continue
            self.acked[key] = value
            self.acked_by[key] = target
            i += 1

    def lost_on(self, name: str) -> list[str]:
        lost = []
        for key, value in list(self.acked.items()):
            try:
                got = admin(self.pair, name, "ds.get", {"key": key})["attrs"]
            except AdminCallError:
                got = None
            if got != {"v": [value]}:
                lost.append(key)
        return lost


def test_a_writer_loses_nothing_through_a_controlled_switch(pair: LocalPair) -> None:
    primary, backup = start_in_order(pair)
    writer = Writer(pair)
    writer.thread.start()
    wait_until(lambda: len(writer.acked) >= 300, 20, message="300 acknowledged writes")
    done = pair.ctl("switch", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: pair.roles() == {backup: "Primary", primary: "Inactive"}, 15, message="the switch")
    n = len(writer.acked)
    wait_until(lambda: len(writer.acked) >= n + 100, 20, message="writes on the new active")
    writer.stop.set()
    writer.thread.join(10)
    assert writer.lost_on(backup) == [], "acknowledged writes lost in a controlled switch"
    print(f"controlled switch: {len(writer.acked)} acknowledged writes, 0 lost, {writer.refused} refused "
          "while switching")


def test_a_writer_through_kill_9_of_the_active_loses_only_a_tail(tmp_path: Path) -> None:
    """Replication is asynchronous: a crash may lose the last writes, never one in the middle; the
    switch's event-log record says where replication was."""
    params = dict(QUIET_PARAMETERS, **{"Switchover Reconnect Timeout": "1"})
    pair = LocalPair(tmp_path / "crash", parameters=params, extra={"timing": dict(TIMING)})
    try:
        primary, backup = start_in_order(pair)
        writer = Writer(pair)
        writer.thread.start()
        wait_until(lambda: len(writer.acked) >= 500, 20, message="500 acknowledged writes")
        pair.signal(primary, signal.SIGKILL)
        wait_until(lambda: pair.role(backup) == "Primary", 30, message="the backup to take over")
        n = len(writer.acked)
        wait_until(lambda: len(writer.acked) >= n + 50, 20, message="writes on the new active")
        writer.stop.set()
        writer.thread.join(10)
        on_old = [k for k in writer.acked if writer.acked_by[k] == primary]  # in write order
        lost = set(writer.lost_on(backup))
        assert not lost - set(on_old), "a write acknowledged by the new active is missing"
        # every write after the first lost one is lost too: a tail, never a hole
        assert set(on_old[len(on_old) - len(lost):]) == lost, "a hole in the replicated writes"
        records = [json.loads(line) for line in (pair.nodes[backup].data_dir / "events.jsonl").read_text()
                   .splitlines()]
        switch = next(r for r in records if r["new_state"] == "Primary")
        assert "DS replication" in switch["verdict"] and "revision(s) behind" in switch["verdict"], switch
        print(f"kill -9 of the active: {len(on_old)} writes acknowledged by it, {len(lost)} lost; "
              f"switch record: {switch['verdict']}")
    finally:
        pair.stop()


def test_upgrade_higher_backup_does_not_take_handler_entries(tmp_path: Path) -> None:
    pair = LocalPair(tmp_path / "upgrade", parameters=dict(QUIET_PARAMETERS), extra={"timing": dict(TIMING)},
                     release={"beta": "1.1.0"})
    try:
        pair.start_node("alpha")
        wait_until(lambda: pair.role("alpha") == "Primary", SETTLE, message="alpha Primary")
        pair.start_node("beta")
        wait_until(lambda: pair.role("beta") == "Upgrade Higher", SETTLE, message="beta in Upgrade Higher")
        admin(pair, "alpha", "ds.set", {"key": "/Config/Handlers/h1", "attrs": {"v": "handler"}})
        admin(pair, "alpha", "ds.set", {"key": "/Config/Users/u1", "attrs": {"v": "user"}})
        wait_until(lambda: repl(pair, "beta").get("applied") == repl(pair, "alpha")["revision"], 10,
                   message="beta caught up")
        assert admin(pair, "beta", "ds.get", {"key": "/Config/Users/u1"})["attrs"] == {"v": ["user"]}
        with pytest.raises(AdminCallError):
            admin(pair, "beta", "ds.get", {"key": "/Config/Handlers/h1"})
        assert repl(pair, "beta")["filter"] == "Upgrade Higher"
    finally:
        pair.stop()
