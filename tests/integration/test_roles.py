"""Roles of a pair: two real ``switchover node`` processes on 127.0.0.1 (issue acceptance).

Start-up negotiation (first started is active, simultaneous start ends with one active), the
controlled switch (``ctl switch``), rejoin and restart of the stale former active, a split brain made
by cutting the VirtualSwitch links and its resolution by generation, ``ctl history``,
``ctl query-backup``, ``ctl status`` (release mismatch), ``--force-backup``, ``--manual-switch-only``
and SIGTERM. Every node gets a recording Commence and Discontinue hook.

No module runs beside the nodes: the module monitor's retry delay is so long that the backup never
sees the (absent) module as down during a test, so a switch happens only when a test asks for it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.pair import LocalPair, wait_until
from transport.admin_client import AdminCallError

# The backup would otherwise switch after a few rejected pings of the absent TsServer module; the
# primary monitor is tolerant so that a loaded CI machine does not make the backup switch either.
QUIET_PARAMETERS: dict[str, str] = {
    "Switchover TS Timeout": "5",
    "Switchover TS Failure Retry Delay": "3600",
    "Switchover Max TS Failures": "100",
    "Switchover Primary Monitor Ping Delay": "0.5",
    "Switchover Primary Monitor Timeout": "3",
    "Switchover Reconnect Timeout": "60",
}
TIMING: dict[str, Any] = {
    "hello_interval": 0.1,
    "peer_timeout": 1.0,
    "startup_wait": 1.0,
    "discontinue_timeout": 2.0,
}
SETTLE = 15.0  # deadline for roles to settle after starting processes
HOOK_ENV = ("EVENT", "ROLE", "GENERATION", "REASON", "NODE", "PEER")
CONFIRM = "Are you sure you wish to initiate Switchover to backup?"

# A hook that writes its SWITCHOVER_* environment, one file per run (renamed into place: complete).
RECORDING_HOOK = """#!/bin/sh
out="{records}/{kind}-$$"
env | grep '^SWITCHOVER_' | sort > "$out.tmp"
mv "$out.tmp" "$out.env"
"""


# --------------------------------------------------------------------------------------- helpers


def install_hooks(pair: LocalPair) -> None:
    """A recording commence and discontinue hook in each node's ``<data_dir>/hooks``."""
    for node in pair.nodes.values():
        records = hook_records_dir(node.data_dir)
        records.mkdir(parents=True, exist_ok=True)
        for kind in ("commence", "discontinue"):
            directory = node.data_dir / "hooks" / f"{kind}.d"
            directory.mkdir(parents=True, exist_ok=True)
            script = directory / "10-record"
            script.write_text(RECORDING_HOOK.format(records=records, kind=kind))
            script.chmod(0o755)


def hook_records_dir(data_dir: Path) -> Path:
    return data_dir.parent / f"{data_dir.name}-hook-runs"


def hook_runs(pair: LocalPair, name: str, kind: str) -> list[dict[str, str]]:
    """The environments of the completed runs of ``name``'s ``kind`` hook, in no particular order."""
    runs = []
    for path in sorted(hook_records_dir(pair.nodes[name].data_dir).glob(f"{kind}-*.env")):
        env = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        runs.append({k.removeprefix("SWITCHOVER_"): v for k, v in env.items()})
    return runs


def expect_hook(
    pair: LocalPair, name: str, kind: str, count: int, timeout: float = 10.0
) -> list[dict[str, str]]:
    """Wait for ``count`` runs of the hook, then check there are exactly that many."""
    wait_until(
        lambda: len(hook_runs(pair, name, kind)) >= count,
        timeout,
        what=f"{count} {kind} hook run(s) on {name}",
    )
    runs = hook_runs(pair, name, kind)
    assert len(runs) == count, f"{kind} hook of {name} ran {len(runs)} times, expected {count}: {runs}"
    return runs


def events(pair: LocalPair, name: str) -> list[dict[str, Any]]:
    path = pair.nodes[name].data_dir / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def status(pair: LocalPair, name: str) -> dict[str, Any]:
    return pair.admin(name, "status", timeout=2.0)


def other(pair: LocalPair, name: str) -> str:
    return next(n for n in pair.names if n != name)


def ctl_as(
    pair: LocalPair, name: str, *args: str, input_text: str | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """``switchover ctl --config <name's config> ARGS`` (``pair.ctl`` always uses alpha's config)."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "ctl", "--config", str(pair.nodes[name].config), *args],
        capture_output=True,
        text=True,
        input=input_text,
        stdin=None if input_text is not None else subprocess.DEVNULL,
        timeout=timeout,
    )


def ctl_json(pair: LocalPair, *args: str) -> Any:
    done = pair.ctl("--json", *args)
    assert done.returncode == 0, f"ctl --json {' '.join(args)} failed ({done.returncode}): {done.stderr}"
    return json.loads(done.stdout)


def settled(pair: LocalPair) -> dict[str, str] | None:
    """``{"primary": name, "backup": name}`` once one node is Primary and the other a started Backup."""
    try:
        states = {n: status(pair, n) for n in pair.names}
    except AdminCallError:
        return None
    roles = sorted(s["role"] for s in states.values())
    if roles != ["Backup", "Primary"] or any(s["starting_up"] for s in states.values()):
        return None
    primary = next(n for n, s in states.items() if s["role"] == "Primary")
    return {"primary": primary, "backup": other(pair, primary)}


def start_both(pair: LocalPair, *args: str, reverse: bool = False) -> tuple[str, str]:
    """Start both nodes at once; wait until one is Primary and the other Backup; (primary, backup)."""
    for name in reversed(pair.names) if reverse else pair.names:
        pair.start_node(name, *args)
    roles = wait_until(lambda: settled(pair), SETTLE, what="one Primary and one Backup")
    return roles["primary"], roles["backup"]


def start_in_order(pair: LocalPair, first: str, *second_args: str) -> str:
    """Start ``first``, wait until it is Primary, then start the other; returns the other's name."""
    second = other(pair, first)
    pair.start_node(first)
    wait_until(lambda: pair.role(first) == "Primary", SETTLE, what=f"{first} to become Primary")
    pair.start_node(second, *second_args)
    return second


def exited(pair: LocalPair, name: str, timeout: float = 15.0) -> int:
    proc = pair.nodes[name].proc
    assert proc is not None
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} did not exit within {timeout:g} s:\n{node_output(pair, name)}")


def node_output(pair: LocalPair, name: str) -> str:
    path = pair.nodes[name].data_dir / "node.stderr"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def stop_pairs(pairs: list[LocalPair]) -> None:
    """SIGTERM every process of every pair at once, then reap them (SIGKILL after 10 s)."""
    procs = [
        proc
        for pair in pairs
        for node in pair.nodes.values()
        for proc in (node.module, node.proc)
        if proc is not None
    ]
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# -------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def new_pair(tmp_path: Path) -> Iterator[Callable[..., LocalPair]]:
    """Make pairs (recording hooks, quiet parameters, short timing); all processes stopped after."""
    pairs: list[LocalPair] = []

    def make(name: str = "pair", release: dict[str, str] | None = None) -> LocalPair:
        pair = LocalPair(
            tmp_path / name,
            parameters=dict(QUIET_PARAMETERS),
            release=dict(release or {}),
            extra={"timing": dict(TIMING)},
        )
        install_hooks(pair)
        pairs.append(pair)
        return pair

    try:
        yield make
    finally:
        stop_pairs(pairs)


@pytest.fixture
def pair(new_pair: Callable[..., LocalPair]) -> LocalPair:
    return new_pair()


# ------------------------------------------------------------------------------ start-up roles


@pytest.mark.parametrize("first", ["alpha", "beta"])
def test_first_started_becomes_primary_and_second_backup(pair: LocalPair, first: str) -> None:
    second = start_in_order(pair, first)
    wait_until(lambda: pair.role(second) == "Backup", SETTLE, what=f"{second} to become Backup")
    assert pair.roles() == {first: "Primary", second: "Backup"}
    (became_primary,) = [e for e in events(pair, first) if e["new_state"] == "Primary"]
    assert became_primary["old_state"] == "Init"
    assert became_primary["reason"] == "First Started Becomes Active"
    assert [e["new_state"] for e in events(pair, second)] == ["Backup"]
    (commence,) = expect_hook(pair, first, "commence", 1)
    assert commence["REASON"] == "First Started Becomes Active" and commence["ROLE"] == "Primary"
    assert hook_runs(pair, second, "commence") == []


@pytest.mark.parametrize("run", range(20))
def test_simultaneous_start_ends_with_exactly_one_primary(pair: LocalPair, run: int) -> None:
    primary, backup = start_both(pair, reverse=run % 2 == 1)  # server B launched first on odd runs
    assert pair.roles() == {primary: "Primary", backup: "Backup"}
    # never two primaries on the way: one node ever became Primary, nobody was fenced
    changes = [e for name in pair.names for e in events(pair, name)]
    assert [e["node"] for e in changes if e["new_state"] == "Primary"] == [primary], changes
    assert not [e for e in changes if e["new_state"] == "Inactive"], changes


# -------------------------------------------------------------------------------- manual switch


def test_ctl_switch_yes_swaps_roles_bumps_generation_and_runs_hooks_once(pair: LocalPair) -> None:
    old, new = start_both(pair)
    expect_hook(pair, old, "commence", 1)
    generation = status(pair, old)["generation"]
    assert status(pair, new)["generation"] == generation

    done = pair.ctl("switch", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{new} is now active (generation {generation + 1})" in done.stdout

    wait_until(lambda: pair.role(old) == "Inactive", 5, what=f"{old} (the former active) to go Inactive")
    assert pair.roles() == {new: "Primary", old: "Inactive"}
    assert status(pair, new)["generation"] == generation + 1
    assert ctl_json(pair, "status")["generation"] == generation + 1

    (commence,) = expect_hook(pair, new, "commence", 1)
    assert commence == {
        "EVENT": "commence",
        "ROLE": "Primary",
        "GENERATION": str(generation + 1),
        "REASON": "Manual Switchover",
        "NODE": new,
        "PEER": old,
    }
    (discontinue,) = expect_hook(pair, old, "discontinue", 1)
    assert discontinue == {
        "EVENT": "discontinue",
        "ROLE": "Inactive",
        "GENERATION": str(generation),  # the generation it served under, as in its event log
        "REASON": "Discontinue Received",
        "NODE": old,
        "PEER": new,
    }
    assert len(hook_runs(pair, old, "commence")) == 1  # only its start-up one
    assert hook_runs(pair, new, "discontinue") == []


def test_ctl_switch_asks_for_confirmation_and_no_cancels(pair: LocalPair) -> None:
    primary, backup = start_both(pair)
    generation = status(pair, primary)["generation"]
    before = {n: events(pair, n) for n in pair.names}

    done = pair.ctl("switch", input_text="no\n")
    assert CONFIRM in done.stdout, done.stdout + done.stderr
    assert done.returncode != 0
    assert "cancelled" in done.stdout.lower()
    # nothing changed: roles, generation, event logs, hooks
    assert pair.roles() == {primary: "Primary", backup: "Backup"}
    assert {n: status(pair, n)["generation"] for n in pair.names} == {n: generation for n in pair.names}
    assert {n: events(pair, n) for n in pair.names} == before
    assert hook_runs(pair, backup, "commence") == [] and hook_runs(pair, primary, "discontinue") == []

    # and "yes" at the same prompt does switch
    done = pair.ctl("switch", input_text="yes\n")
    assert CONFIRM in done.stdout and done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: pair.roles() == {backup: "Primary", primary: "Inactive"}, 5, what="the switch")


def test_ctl_switch_without_an_answer_cancels_cleanly(pair: LocalPair) -> None:
    """No answer at all (stdin at end of file, as from a script or cron job): cancelled, no traceback."""
    primary, backup = start_both(pair)
    before = {n: events(pair, n) for n in pair.names}

    done = ctl_as(pair, primary, "switch", input_text="")
    assert CONFIRM in done.stdout, done.stdout + done.stderr
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert "cancelled" in done.stdout.lower() or "--yes" in done.stderr, done.stdout + done.stderr
    assert pair.roles() == {primary: "Primary", backup: "Backup"}
    assert {n: events(pair, n) for n in pair.names} == before


# ------------------------------------------------------------------------- the stale former active


def test_ctl_rejoin_makes_the_stale_node_backup(pair: LocalPair) -> None:
    old, new = start_both(pair)
    assert pair.ctl("switch", "--yes").returncode == 0
    wait_until(lambda: pair.role(old) == "Inactive", 5, what=f"{old} to go Inactive")

    done = pair.ctl("rejoin")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{old} is now Backup" in done.stdout
    assert pair.roles() == {new: "Primary", old: "Backup"}
    assert status(pair, old)["generation"] == status(pair, new)["generation"]
    assert [e["new_state"] for e in events(pair, old)][-2:] == ["Init", "Backup"]
    assert len(hook_runs(pair, old, "commence")) == 1  # rejoining runs no Commence hook

    # the rejoined backup can take over again: a full round trip
    assert pair.ctl("switch", "--yes").returncode == 0
    wait_until(lambda: pair.roles() == {old: "Primary", new: "Inactive"}, 5, what="the switch back")


def test_restarting_the_stale_node_makes_it_backup(pair: LocalPair) -> None:
    old, new = start_both(pair)
    assert pair.ctl("switch", "--yes").returncode == 0
    wait_until(lambda: pair.role(old) == "Inactive", 5, what=f"{old} to go Inactive")
    generation = status(pair, new)["generation"]

    pair.signal(old, signal.SIGTERM)
    assert exited(pair, old) == 0, node_output(pair, old)
    pair.start_node(old)
    wait_until(lambda: pair.role(old) == "Backup", SETTLE, what=f"restarted {old} to become Backup")
    assert pair.role(new) == "Primary"
    assert status(pair, old)["generation"] == generation
    assert events(pair, old)[-1]["old_state"] == "Init" and events(pair, old)[-1]["new_state"] == "Backup"
    assert len(hook_runs(pair, old, "commence")) == 1
    assert len(hook_runs(pair, old, "discontinue")) == 1  # the switch's; a stale node's stop runs none


# ------------------------------------------------------------------------------- split brain


def cut_vswitch(pair: LocalPair, cut: bool) -> None:
    faults = {"drop_all": True} if cut else {}
    for name in pair.names:
        result = pair.admin(name, "inject", {"endpoint": "vswitch.peer", "faults": faults})
        assert result["faults"]["drop_all"] is cut


def peer_reachable(pair: LocalPair, name: str) -> bool:
    return bool(pair.admin(name, "actors")["peer"]["reachable"])


def test_split_brain_heals_to_the_higher_generation(pair: LocalPair) -> None:
    old, new = start_both(pair)
    expect_hook(pair, old, "commence", 1)
    generation = status(pair, old)["generation"]

    cut_vswitch(pair, True)
    wait_until(
        lambda: not any(peer_reachable(pair, n) for n in pair.names), 5, what="both nodes to lose their peer"
    )
    done = pair.ctl("switch", "--immediate")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: pair.role(new) == "Primary", 5, what=f"{new} to become Primary")
    assert pair.roles() == {old: "Primary", new: "Primary"}  # the links are cut: nobody told the old one
    assert status(pair, new)["generation"] == generation + 1
    view = ctl_json(pair, "status")
    assert any("more than one primary" in w for w in view["warnings"]), view["warnings"]
    assert hook_runs(pair, old, "discontinue") == []

    cut_vswitch(pair, False)
    healed = time.monotonic()
    wait_until(lambda: pair.role(old) == "Inactive", 2.0, what=f"{old} (lower generation) to go Inactive")
    assert time.monotonic() - healed < 2.0
    assert pair.role(new) == "Primary"
    (stale,) = [e for e in events(pair, old) if e["new_state"] == "Inactive"]
    assert stale["reason"] == "Higher Generation Seen"
    (discontinue,) = expect_hook(pair, old, "discontinue", 1)
    assert discontinue["ROLE"] == "Inactive" and discontinue["REASON"] == "Higher Generation Seen"
    assert discontinue["NODE"] == old and discontinue["PEER"] == new
    (commence,) = expect_hook(pair, new, "commence", 1)
    assert commence["REASON"] == "Manual Switchover" and commence["GENERATION"] == str(generation + 1)
    assert hook_runs(pair, new, "discontinue") == []
    assert ctl_json(pair, "status")["warnings"] == []


# ---------------------------------------------------------------------------------- history


def test_ctl_history_shows_every_change_of_both_nodes_in_time_order(pair: LocalPair) -> None:
    old, new = start_both(pair)
    assert pair.ctl("switch", "--yes").returncode == 0
    wait_until(lambda: pair.role(old) == "Inactive", 5, what=f"{old} to go Inactive")
    assert pair.ctl("rejoin").returncode == 0

    history = ctl_json(pair, "history")
    logged = [e for name in pair.names for e in events(pair, name)]

    def key(e: dict[str, Any]) -> tuple[float, str]:
        return (e["epoch"], e["node"])

    assert sorted(history, key=key) == sorted(logged, key=key)  # every change, nothing else
    assert [key(e) for e in history] == sorted(key(e) for e in history)  # in time order
    assert {e["node"] for e in history} == {old, new}
    for e in history:
        assert e["reason"] or e["verdict"], e
    changes = [(e["node"], e["old_state"], e["new_state"], e["reason"]) for e in history]
    assert (new, "Backup", "Primary", "Manual Switchover") in changes
    assert (old, "Primary", "Inactive", "Discontinue Received") in changes
    assert changes[-1][:3] == (old, "Init", "Backup")
    first_primary = next(c for c in changes if c[2] == "Primary")
    assert first_primary[0] == old and first_primary[3] in (
        "First Started Becomes Active",
        "Won Start-up Negotiation",
    )

    table = pair.ctl("history")
    assert table.returncode == 0, table.stderr
    text = table.stdout
    for needle in (old, new, "Manual Switchover", "Discontinue Received", "Primary -> Inactive"):
        assert needle in text, f"{needle!r} missing from ctl history:\n{text}"


def test_ctl_history_shows_a_stopped_nodes_changes_once_from_its_peers_copy(pair: LocalPair) -> None:
    old, new = start_both(pair)
    assert pair.ctl("switch", "--yes").returncode == 0
    wait_until(lambda: pair.role(old) == "Inactive", 5, what=f"{old} to go Inactive")
    pair.signal(old, signal.SIGTERM)
    assert exited(pair, old) == 0, node_output(pair, old)
    logged = events(pair, old)  # the stopped node's own log: what really happened there
    assert [e["new_state"] for e in logged][-2:] == ["Inactive", "Stopping"]

    history = ctl_json(pair, "history")  # only `new` answers; `old`'s changes come from its copy
    assert [(e["epoch"], e["node"]) for e in history] == sorted((e["epoch"], e["node"]) for e in history)
    assert [e for e in history if e["node"] == new] == events(pair, new)
    copied = [e for e in history if e["node"] == old]
    stale = [e for e in copied if (e["old_state"], e["new_state"]) == ("Primary", "Inactive")]
    assert len(stale) == 1, f"{old} went Inactive once, ctl history shows it {len(stale)} times: {stale}"
    assert stale[0]["reason"] == "Discontinue Received"
    # the copy holds the stopped node's records as it logged them, each once
    assert [e for e in copied if e not in logged] == [], "records in the copy that the node never logged"
    assert len({(e["epoch"], e["new_state"]) for e in copied}) == len(copied)
    assert copied[-1]["new_state"] == "Stopping"


# ------------------------------------------------------------------- query-backup and status


def test_query_backup_and_status_json(pair: LocalPair) -> None:
    primary, backup = start_both(pair)
    on_backup = ctl_as(pair, backup, "query-backup")
    assert on_backup.returncode == 0, on_backup.stdout + on_backup.stderr
    assert "is the backup" in on_backup.stdout
    on_primary = ctl_as(pair, primary, "query-backup")
    assert on_primary.returncode != 0
    assert "not the backup" in on_primary.stdout

    view = ctl_json(pair, "status")
    assert view["active"] == primary and view["backup"] == backup
    assert view["pair_state"] == "Active"
    assert view["generation"] == status(pair, primary)["generation"] == 1
    assert view["mode"] == "auto-switch"
    assert view["warnings"] == []


def test_release_mismatch_makes_the_backup_upgrade_higher(new_pair: Callable[..., LocalPair]) -> None:
    pair = new_pair(release={"beta": "2.0.0"})
    start_in_order(pair, "alpha")
    wait_until(lambda: pair.role("beta") == "Upgrade Higher", SETTLE, what="beta to go Upgrade Higher")
    assert pair.role("alpha") == "Primary"

    view = ctl_json(pair, "status")
    assert view["active"] == "alpha" and view["backup"] == "beta"
    assert view["pair_state"] == "Upgrade Higher"
    assert view["primary_version"] == "1.0.0" and view["backup_version"] == "2.0.0"
    assert view["mode"] == "manual switch only"

    text = pair.ctl("status")
    assert text.returncode == 0, text.stderr
    assert "State:   Upgrade Higher" in text.stdout, text.stdout
    assert "Primary server version: 1.0.0" in text.stdout
    assert "Backup server version: 2.0.0" in text.stdout
    assert "manual switch only" in text.stdout


# ------------------------------------------------------------------------- command-line flags


def test_force_backup_alone_waits_in_init_until_a_primary_appears(pair: LocalPair) -> None:
    pair.start_node("alpha", "--force-backup")
    log = pair.a.data_dir / "switchover.log"
    waiting = "waiting in StateInit for a primary"

    # start-up negotiations (startup_wait 1 s each) ran out twice and it is still waiting
    wait_until(
        lambda: log.exists() and log.read_text(errors="replace").count(waiting) >= 2,
        SETTLE,
        what="alpha to give up two negotiations",
    )
    assert pair.role("alpha") == "Init"
    assert events(pair, "alpha") == []  # never became anything, in particular never Primary
    assert hook_runs(pair, "alpha", "commence") == []
    assert status(pair, "alpha")["generation"] == 0

    pair.start_node("beta")
    wait_until(lambda: pair.roles() == {"alpha": "Backup", "beta": "Primary"}, SETTLE, what="beta Primary")
    assert [e["new_state"] for e in events(pair, "alpha")] == ["Backup"]
    assert hook_runs(pair, "alpha", "commence") == []


def test_manual_switch_only_backup_is_reported_by_ctl_status(pair: LocalPair) -> None:
    second = start_in_order(pair, "alpha", "--manual-switch-only")
    wait_until(lambda: pair.role(second) == "Backup", SETTLE, what=f"{second} to become Backup")

    view = ctl_json(pair, "status")
    assert view["backup"] == second and view["mode"] == "manual switch only"
    assert view["servers"][second]["manual_switch_only"] is True
    assert view["servers"]["alpha"]["manual_switch_only"] is False
    text = pair.ctl("status")
    assert "Backup server is running in manual switch only mode." in text.stdout, text.stdout


# ------------------------------------------------------------------------------------ SIGTERM


def test_sigterm_exits_0_and_a_primary_runs_its_discontinue_hook(pair: LocalPair) -> None:
    for node in pair.nodes.values():  # a hook that takes a moment runs before the recording one
        slow = node.data_dir / "hooks" / "discontinue.d" / "05-flush"
        slow.write_text("#!/bin/sh\nsleep 0.5\n")
        slow.chmod(0o755)
    primary, backup = start_both(pair)
    generation = status(pair, primary)["generation"]

    pair.signal(primary, signal.SIGTERM)
    assert exited(pair, primary) == 0, node_output(pair, primary)
    # on the way down: its Discontinue hooks (all of them, in order) finished before the process exited
    runs = hook_runs(pair, primary, "discontinue")
    assert len(runs) == 1, f"the Discontinue hooks had not all run when {primary} exited: {runs}"
    assert runs[0] == {
        "EVENT": "discontinue",
        "ROLE": "Stopping",
        "GENERATION": str(generation),
        "REASON": "Shutdown",
        "NODE": primary,
        "PEER": backup,
    }
    assert not (pair.nodes[primary].data_dir / "admin.sock").exists()

    pair.signal(backup, signal.SIGTERM)
    assert exited(pair, backup) == 0, node_output(pair, backup)
    assert hook_runs(pair, backup, "discontinue") == []  # a backup serves nothing: nothing to discontinue
    assert events(pair, backup)[-1]["new_state"] == "Stopping"
