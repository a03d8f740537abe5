"""Automatic failover of a real pair on loopback: faults injected into the active's module and node.

Every test starts a :class:`~deploy.pair.LocalPair` (alpha = server A becomes active, beta = server B
its backup, a reference ``TsServer`` module beside each) with the fast profile
(:data:`~deploy.pair.FAST_PARAMETERS`: TS Timeout 5 s, retry delay 0.2 s, primary monitor ping every
0.1 s with a 0.3 s timeout, Reconnect Timeout 2 s), injects one fault and checks what the backup does
against the specification (spec lines 318-411, 522-875):

- a crashed module (kill -9) is seen at once (the Notifier rejects pings for it) -> switch, reason
  "TS Ping Failure";
- a hung module (SIGSTOP) is only seen by the TS ping timeouts: twice on main, twice on aux -> switch
  no sooner than that; a hang shorter than the tolerance is no switch;
- a module restarting too often -> switch by the restart policy;
- a crashed node -> Reconnecting for Switchover Reconnect Timeout, then switch (0 = at once); a node
  back in time -> no switch;
- one notifier link lost -> no switch (the other answers); both lost -> Reconnecting, then switch;
- a manual-switch-only backup never switches by itself, and the operator's switch still works.

Two tests expose defects and fail until they are fixed: a main link that silently drops everything
blinds the backup to its module (the Primary Monitor's diagnosis loop restarts the Module Monitor
every second, so it never reaches its auxiliary fallback), and a manual-switch-only backup runs no
monitors, so it never goes Reconnecting when the primary is lost (spec: "If the backup is in manual
switchover mode, the state machine goes to the Reconnecting State").

Waiting is polling (:func:`tests.conftest.wait_until`); the one bounded wait is :func:`hold_roles`
(and :func:`hold_roles_until`), which proves that nothing happens for a while by polling the roles
and failing at the first deviation.
"""

from __future__ import annotations

import re
import signal
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from actors.roles import event_log
from deploy.pair import FAST_PARAMETERS, LocalPair
from tests.conftest import poll_result, wait_until

TS_TIMEOUT = float(FAST_PARAMETERS["Switchover TS Timeout"])
MAX_TS_FAILURES = int(FAST_PARAMETERS["Switchover Max TS Failures"])
ACTIVE, BACKUP = "alpha", "beta"
# start-up negotiation wait (not under test): alpha starts alone and waits this long for a peer
TIMING = {"timing": {"startup_wait": 1.0}}

RolesSpec = Mapping[str, str | tuple[str | None, ...] | None]

# ------------------------------------------------------------------------------------------- helpers


def node_log(pair: LocalPair, name: str) -> str:
    path = pair.nodes[name].data_dir / "switchover.log"
    return path.read_text(errors="replace") if path.exists() else ""


def log_tail(pair: LocalPair, name: str, lines: int = 60) -> str:
    kept = [line for line in node_log(pair, name).splitlines() if "| DEBUG " not in line]
    return "\n".join(line[:300] for line in kept[-lines:])


def diagnostics(pair: LocalPair) -> str:
    parts = []
    for name in pair.names:
        records = [
            f"  {r.old_state} -> {r.new_state} [{r.event}] reason={r.reason!r}" for r in events(pair, name)
        ]
        parts.append(f"--- {name} events:\n" + "\n".join(records))
        parts.append(f"--- {name} log (last lines, no DEBUG):\n{log_tail(pair, name)}")
    return "\n".join(parts)


def events(pair: LocalPair, name: str) -> list[event_log.EventRecord]:
    return event_log.read(pair.nodes[name].data_dir / "events.jsonl")


def became_primary(pair: LocalPair, name: str, after: float = 0.0) -> list[event_log.EventRecord]:
    """The records of ``name`` taking over from a watching state (not the start-up role)."""
    return [
        r
        for r in events(pair, name)
        if r.new_state == "Primary" and r.old_state != "Init" and r.epoch >= after
    ]


def log_has(pair: LocalPair, name: str, text: str, since: int = 0) -> Callable[[], bool]:
    """A predicate: ``name``'s log contains ``text`` after offset ``since``."""
    return lambda: text in node_log(pair, name)[since:]


def module_pid(pair: LocalPair, name: str) -> int:
    module = pair.nodes[name].module
    assert module is not None and module.poll() is None, f"{name}'s module is not running"
    return module.pid


def saw_module_pid(pair: LocalPair, pid: int, since: int = 0) -> bool:
    """The backup's ModuleMonitor received a ping reply carrying ``pid`` (log offset ``since``)."""
    text = node_log(pair, BACKUP)[since:]
    return f"Received ping from the TsServer module (pid {pid})" in text or f"-> {pid} (" in text


def install_commence_hook(pair: LocalPair, name: str, kind: str = "commence") -> Path:
    """A Commence (or Discontinue) hook on ``name`` that writes its start time and reason; returns the
    output file."""
    out = pair.nodes[name].data_dir / f"{kind}.out"
    hook_dir = pair.nodes[name].data_dir / "hooks" / f"{kind}.d"
    hook_dir.mkdir(parents=True, exist_ok=True)
    hook = hook_dir / "10-record"
    hook.write_text(f'#!/bin/sh\necho "$(date +%s.%N) $SWITCHOVER_REASON" >> "{out}"\n')
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return out


def _deviation(pair: LocalPair, expected: RolesSpec, start: float) -> str | None:
    allowed = {n: r if isinstance(r, tuple) else (r,) for n, r in expected.items()}
    try:
        roles = {n: pair.role(n) for n in allowed}
    except Exception as exc:  # reported, never taken for "no deviation"
        return f"after {time.monotonic() - start:.2f} s the roles could not be read: {exc!r}"
    if any(roles[n] not in allowed[n] for n in allowed):
        return f"after {time.monotonic() - start:.2f} s roles were {roles}, expected {expected}"
    return None


def hold_roles(pair: LocalPair, expected: RolesSpec, seconds: float, interval: float = 0.05) -> None:
    """Poll the roles for ``seconds``; fail at the first one not in ``expected`` (a role, ``None`` for
    "not answering", or a tuple of acceptable ones)."""
    start = time.monotonic()
    found = poll_result(lambda: _deviation(pair, expected, start), seconds, interval)
    if found:
        pytest.fail(f"{found}\n{diagnostics(pair)}")


def hold_roles_until(
    pair: LocalPair, expected: RolesSpec, condition: Callable[[], bool], timeout: float, what: str
) -> None:
    """Like :func:`hold_roles`, but only until ``condition()`` holds; fails if it does not within
    ``timeout`` seconds."""
    start = time.monotonic()

    def check() -> tuple[str, str] | None:
        deviation = _deviation(pair, expected, start)
        if deviation:
            return ("deviation", deviation)
        return ("done", "") if condition() else None

    found = poll_result(check, timeout, 0.05)
    if not found:
        pytest.fail(f"{what} did not happen within {timeout:g} s (roles held)\n{diagnostics(pair)}")
    if found[0] == "deviation":
        pytest.fail(f"{found[1]}\n{diagnostics(pair)}")


def wait_role(pair: LocalPair, name: str, role: str, timeout: float) -> None:
    wait_until(lambda: pair.role(name) == role, timeout, 0.02, f"{name} to be {role}")


def kill_and_reap(pair: LocalPair, name: str, module: bool) -> float:
    """kill -9 the node or module process; returns the wall time just before the signal."""
    node = pair.nodes[name]
    proc = node.module if module else node.proc
    assert proc is not None and proc.poll() is None
    at = time.time()
    pair.signal(name, signal.SIGKILL, module=module)
    proc.wait(timeout=10)
    return at


# -------------------------------------------------------------------------------------------- fixture


PairFactory = Callable[..., LocalPair]


@pytest.fixture
def make_pair(tmp_path: Path) -> Iterator[PairFactory]:
    """``make_pair(backup_args=(), **parameter_overrides)``: a running pair (alpha Primary, beta
    Backup whose ModuleMonitor already saw alpha's module answer); always stopped at teardown."""
    pairs: list[LocalPair] = []

    def factory(backup_args: Iterable[str] = (), **overrides: str) -> LocalPair:
        params = dict(FAST_PARAMETERS)
        params.update({f"Switchover {k.replace('_', ' ')}": v for k, v in overrides.items()})
        pair = LocalPair(tmp_path / f"pair{len(pairs)}", parameters=params, extra=dict(TIMING))
        pairs.append(pair)
        for node in pair.nodes.values():  # DEBUG: the ModuleMonitor logs each reply with its PID
            text = node.config.read_text()
            assert 'log_level = "INFO"' in text
            node.config.write_text(text.replace('log_level = "INFO"', 'log_level = "DEBUG"'))
        pair.start_module(ACTIVE)
        pair.start_node(ACTIVE)
        wait_role(pair, ACTIVE, "Primary", 20)
        pair.start_module(BACKUP)
        pair.start_node(BACKUP, *backup_args)
        wait_role(pair, BACKUP, "Backup", 20)
        if "--manual-switch-only" not in backup_args:
            pid = module_pid(pair, ACTIVE)
            wait_until(lambda: saw_module_pid(pair, pid), 15, 0.05, f"beta's ModuleMonitor to see pid {pid}")
        return pair

    try:
        yield factory
    finally:
        for pair in pairs:
            pair.stop()


# ---------------------------------------------------------------------------------------------- tests


def test_module_crash_switches_with_ts_ping_failure(make_pair: PairFactory) -> None:
    pair = make_pair()
    hook_out = install_commence_hook(pair, BACKUP)
    fault_at = kill_and_reap(pair, ACTIVE, module=True)
    wait_role(pair, BACKUP, "Primary", 10)
    took = became_primary(pair, BACKUP)
    assert len(took) == 1, diagnostics(pair)
    record = took[0]
    assert record.old_state == "Backup" and record.event == "module-down"
    assert record.reason == "TS Ping Failure", record
    assert record.epoch - fault_at < 3.0, f"module crash took {record.epoch - fault_at:.2f} s to switch"
    assert "TS Ping Failure" in node_log(pair, BACKUP)
    assert "Switchover Service: Switch Initiated" in node_log(pair, BACKUP)
    wait_until(lambda: hook_out.exists() and hook_out.read_text().strip(), 10, 0.05, "the Commence hook")
    stamp, reason = hook_out.read_text().split(maxsplit=1)
    assert reason.strip() == "TS Ping Failure"
    assert float(stamp) >= record.epoch - 0.01
    # the former active (node alive, module dead) learns of the new generation and stops serving
    wait_role(pair, ACTIVE, "Inactive", 10)
    hold_roles(pair, {ACTIVE: "Inactive", BACKUP: "Primary"}, 1.0)


def test_a_module_crash_switch_fences_the_old_active_before_commencing(make_pair: PairFactory) -> None:
    """Issue 16: the old active still answers port 3633, so the backup sends Discontinue and waits for
    the answer before it becomes Primary and runs its Commence hooks: the old active's Discontinue
    (history row and hook) comes first, and no moment has two Primaries."""
    pair = make_pair()
    commence = install_commence_hook(pair, BACKUP)
    discontinue = install_commence_hook(pair, ACTIVE, kind="discontinue")
    kill_and_reap(pair, ACTIVE, module=True)
    wait_role(pair, BACKUP, "Primary", 10)
    took = became_primary(pair, BACKUP)
    assert len(took) == 1 and took[0].reason == "TS Ping Failure", diagnostics(pair)
    stepped = [r for r in events(pair, ACTIVE) if r.event == "discontinue-received"]
    assert len(stepped) == 1 and stepped[0].new_state == "Inactive", diagnostics(pair)
    assert stepped[0].epoch <= took[0].epoch, (stepped[0], took[0])
    assert "the former primary acknowledged Discontinue" in node_log(pair, BACKUP)
    wait_until(lambda: commence.exists() and discontinue.exists(), 10, 0.05, "both hooks")
    old_hook = float(discontinue.read_text().split()[0])
    new_hook = float(commence.read_text().split()[0])
    assert old_hook <= new_hook, f"Discontinue hook at {old_hook:.3f}, Commence hook at {new_hook:.3f}"
    assert pair.role(ACTIVE) == "Inactive"


def test_module_hang_switches_only_after_the_ts_ping_timeouts(make_pair: PairFactory) -> None:
    pair = make_pair()
    fault_at = time.time()
    pair.signal(ACTIVE, signal.SIGSTOP, module=True)
    # 2 timeouts on main + 2 on aux, each TS Timeout, plus up to one regular interval before the
    # first ping: at most 5 * TS Timeout and the retry delays
    wait_role(pair, BACKUP, "Primary", 5 * TS_TIMEOUT + 10)
    took = became_primary(pair, BACKUP)
    assert len(took) == 1, diagnostics(pair)
    elapsed = took[0].epoch - fault_at
    assert took[0].reason == "TS Ping Failure" and took[0].event == "module-down"
    assert elapsed >= TS_TIMEOUT, f"switched {elapsed:.2f} s after the hang, before one TS Timeout"
    # spec: "twice on the Main connection, twice on the Auxiliary connection"
    assert elapsed >= 2 * MAX_TS_FAILURES * TS_TIMEOUT, f"switched after only {elapsed:.2f} s"
    text = node_log(pair, BACKUP)
    main_exhausted = r"Ping timed out to the TsServer module.*reached maximum error count \[2\] pinging"
    assert re.search(main_exhausted, text), log_tail(pair, BACKUP)
    aux_exhausted = r"Ping timed out to the TsServer module on the aux connection.*signaling that"
    assert re.search(aux_exhausted, text), log_tail(pair, BACKUP)


def test_module_hang_shorter_than_the_tolerance_does_not_switch(make_pair: PairFactory) -> None:
    pair = make_pair()
    pid = module_pid(pair, ACTIVE)
    pair.signal(ACTIVE, signal.SIGSTOP, module=True)
    stopped_at = time.monotonic()
    since = len(node_log(pair, BACKUP))
    # stay stopped until one TS ping has timed out (error count 1 of 2 on main): fewer than the
    # 2 x 2 failures that make the module "down"
    wait_until(
        log_has(pair, BACKUP, "Ping timed out to the TsServer module on the main connection", since),
        2 * TS_TIMEOUT + 5,
        0.05,
        "one TS ping timeout",
    )
    assert time.monotonic() - stopped_at >= TS_TIMEOUT - 0.1  # a hang longer than one TS Timeout
    pair.signal(ACTIVE, signal.SIGCONT, module=True)
    resumed = len(node_log(pair, BACKUP))
    wait_until(lambda: saw_module_pid(pair, pid, resumed), TS_TIMEOUT + 2, 0.05, "a reply after SIGCONT")
    hold_roles(pair, {ACTIVE: "Primary", BACKUP: "Backup"}, 2.0)
    assert became_primary(pair, BACKUP) == []


def test_module_restarted_three_times_switches_by_restart_policy(make_pair: PairFactory) -> None:
    # retry delay 1 s (the spec's default): a restarting module (about 1 s to start) gets a retry
    # after it registered again, so the monitor sees a restart rather than a dead module
    pair = make_pair(TS_Failure_Retry_Delay="1")
    for n in (1, 2, 3):
        old = module_pid(pair, ACTIVE)
        since = len(node_log(pair, BACKUP))
        fault_at = kill_and_reap(pair, ACTIVE, module=True)
        pair.start_module(ACTIVE)
        new = module_pid(pair, ACTIVE)
        if n < 3:
            wait_until(
                log_has(pair, BACKUP, f"restarted: pid {old} -> {new}", since),
                15,
                0.05,
                f"beta's ModuleMonitor to see restart {n} ({old} -> {new})",
            )
            assert pair.role(BACKUP) == "Backup", diagnostics(pair)
    wait_role(pair, BACKUP, "Primary", 15)
    took = became_primary(pair, BACKUP)
    assert len(took) == 1 and took[0].reason == "TS Ping Failure", diagnostics(pair)
    assert took[0].epoch >= fault_at
    text = node_log(pair, BACKUP)
    assert "module is restarting too frequently (3 restarts within 300 s (maximum 2)" in text, log_tail(
        pair, BACKUP
    )
    assert f"pid {old} -> {new}" in text
    # the restart policy, not ping failures, signalled the module down
    assert "module is not responding (max restarts)" in text, log_tail(pair, BACKUP)


@pytest.mark.parametrize("reconnect_timeout", [0.0, 2.0])
def test_node_crash_switches_after_the_reconnect_timeout(
    make_pair: PairFactory, reconnect_timeout: float
) -> None:
    pair = make_pair(Reconnect_Timeout=f"{reconnect_timeout:g}")
    fault_at = kill_and_reap(pair, ACTIVE, module=False)
    wait_role(pair, BACKUP, "Primary", reconnect_timeout + 10)
    took = became_primary(pair, BACKUP)
    assert len(took) == 1, diagnostics(pair)
    elapsed = took[0].epoch - fault_at
    assert reconnect_timeout <= elapsed < reconnect_timeout + 2.0, f"switched after {elapsed:.2f} s"
    if reconnect_timeout == 0:
        assert took[0].old_state == "Backup" and took[0].event == "notifier-down"
        assert took[0].reason == "Loss of Connection to Notifier"
    else:
        assert took[0].old_state == "Reconnecting" and took[0].event == "reconnect-timeout"
        assert took[0].reason == "Reconnect Timeout"
        went = [r for r in events(pair, BACKUP) if r.new_state == "Reconnecting"]
        assert len(went) == 1 and went[0].epoch >= fault_at
        assert took[0].epoch - went[0].epoch >= reconnect_timeout
        assert "Reconnect period expired" in node_log(pair, BACKUP)


def test_node_restarted_within_the_reconnect_timeout_does_not_switch(make_pair: PairFactory) -> None:
    reconnect_timeout = 20.0
    pair = make_pair(Reconnect_Timeout=f"{reconnect_timeout:g}")
    fault_at = kill_and_reap(pair, ACTIVE, module=False)
    wait_role(pair, BACKUP, "Reconnecting", 5)
    pair.start_node(ACTIVE)
    wait_role(pair, ACTIVE, "Primary", 10)
    wait_role(pair, BACKUP, "Backup", 10)
    assert time.time() - fault_at < reconnect_timeout
    history = [(r.old_state, r.new_state) for r in events(pair, BACKUP) if r.epoch >= fault_at]
    assert history == [("Backup", "Reconnecting"), ("Reconnecting", "Backup")], diagnostics(pair)
    # watching again: the restarted node's module answers the backup's ModuleMonitor
    pid = module_pid(pair, ACTIVE)
    since = len(node_log(pair, BACKUP))
    wait_until(lambda: saw_module_pid(pair, pid, since), 2 * TS_TIMEOUT, 0.05, "a module ping reply")
    hold_roles(pair, {ACTIVE: "Primary", BACKUP: "Backup"}, 2.0)


@pytest.mark.parametrize("fault", [{"drop_all": True}, {"cut": True}], ids=["drop_all", "cut"])
def test_main_link_lost_does_not_switch(make_pair: PairFactory, fault: dict[str, Any]) -> None:
    pair = make_pair()
    since = len(node_log(pair, BACKUP))
    done = pair.admin(BACKUP, "inject", {"endpoint": "notifier.link.main", "faults": fault})
    assert done["endpoint"] == "notifier.link.main"
    steady = {ACTIVE: "Primary", BACKUP: "Backup"}
    # no switch while the ModuleMonitor's next ping fails on main and it falls back to aux, where the
    # module answers (spec: "If the issue is only with the main connection, the use of the auxiliary
    # is successful and the module monitor averts a false determination that the module is down");
    # at most one regular interval + 2 timeouts on main + the retry delays
    hold_roles_until(
        pair,
        steady,
        log_has(pair, BACKUP, "Received ping from the TsServer module on the aux connection", since),
        3 * TS_TIMEOUT + 3,
        "a module reply to the ModuleMonitor on the aux connection",
    )
    hold_roles(pair, steady, 2.0)
    assert became_primary(pair, BACKUP) == []
    assert all(r.new_state != "Reconnecting" for r in events(pair, BACKUP)), diagnostics(pair)


def test_module_crash_is_detected_while_the_main_link_drops_everything(make_pair: PairFactory) -> None:
    """A silently dropping main link (TCP up, nothing answered) must not blind the backup: the
    ModuleMonitor falls back to aux (2 TS timeouts on main), where the dead module is rejected."""
    pair = make_pair()
    pair.admin(BACKUP, "inject", {"endpoint": "notifier.link.main", "faults": {"drop_all": True}})
    fault_at = kill_and_reap(pair, ACTIVE, module=True)
    # at most: one regular interval, 2 timeouts on main, the aux rejections, the confirmation
    wait_until(
        lambda: pair.role(BACKUP) == "Primary",
        3 * TS_TIMEOUT + 5,
        0.05,
        f"beta to switch on the dead module while main drops\n{diagnostics(pair)}",
    )
    took = became_primary(pair, BACKUP)
    assert len(took) == 1 and took[0].reason == "TS Ping Failure" and took[0].epoch >= fault_at


def test_both_links_lost_reconnects_then_switches_on_expiry(make_pair: PairFactory) -> None:
    pair = make_pair()
    reconnect_timeout = float(FAST_PARAMETERS["Switchover Reconnect Timeout"])
    fault_at = time.time()
    for link in ("main", "aux"):
        pair.admin(BACKUP, "inject", {"endpoint": f"notifier.link.{link}", "faults": {"cut": True}})
    wait_role(pair, BACKUP, "Reconnecting", 5)
    wait_role(pair, BACKUP, "Primary", reconnect_timeout + 5)
    took = became_primary(pair, BACKUP)
    assert len(took) == 1, diagnostics(pair)
    assert took[0].old_state == "Reconnecting" and took[0].reason == "Reconnect Timeout"
    went = [r for r in events(pair, BACKUP) if r.new_state == "Reconnecting" and r.epoch >= fault_at]
    assert len(went) == 1 and took[0].epoch - went[0].epoch >= reconnect_timeout
    # the former active still runs and sees the new primary on the virtual switch link: it goes stale
    wait_role(pair, ACTIVE, "Inactive", 10)


def test_manual_switch_only_backup_ignores_a_module_crash(make_pair: PairFactory) -> None:
    pair = make_pair(backup_args=("--manual-switch-only",))
    kill_and_reap(pair, ACTIVE, module=True)
    # an automatic backup switches within about a second (see the module crash test)
    hold_roles(pair, {ACTIVE: "Primary", BACKUP: ("Backup", "Reconnecting")}, 3.0)
    assert became_primary(pair, BACKUP) == []
    done = pair.ctl("switch", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_role(pair, BACKUP, "Primary", 10)
    took = became_primary(pair, BACKUP)
    assert len(took) == 1 and took[0].reason == "Manual Switchover", diagnostics(pair)
    wait_role(pair, ACTIVE, "Inactive", 10)


def test_manual_switch_only_backup_ignores_a_node_crash(make_pair: PairFactory) -> None:
    pair = make_pair(backup_args=("--manual-switch-only",))
    reconnect_timeout = float(FAST_PARAMETERS["Switchover Reconnect Timeout"])
    kill_and_reap(pair, ACTIVE, module=False)
    # an automatic backup switches after the Reconnect Timeout; hold well past it
    hold_roles(pair, {BACKUP: ("Backup", "Reconnecting")}, reconnect_timeout + 2.0)
    assert became_primary(pair, BACKUP) == []
    done = pair.ctl("switch", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_role(pair, BACKUP, "Primary", 10)
    took = became_primary(pair, BACKUP)
    assert len(took) == 1 and took[0].reason == "Manual Switchover", diagnostics(pair)
    # spec (Start switchover in Manual mode): "it does **not** start monitoring the critical subsystems
    # (for example, TsServer or Notifier) for failure on the active server. A switchover occurs only if
    # you click the Switch button": the backup neither watched nor switched; the operator did.
    history = [(r.old_state, r.new_state) for r in events(pair, BACKUP)]
    assert history == [("Init", "Backup"), ("Backup", "Primary")], diagnostics(pair)
