"""A randomized fault run in the lab (issue 16): ``switchover lab chaos --minutes N --seed S``.

A *workload* writes DS keys through whichever node is Primary (admin ``ds.set``, one key per write,
``/Chaos/wNNNNNN``) while a *nemesis* applies faults from the lab's set one after the other at times
drawn from a seeded schedule: kill -9 of a node or a module, SIGSTOP of a node, a server's NIC down,
nftables drops of the main / aux / virtual switch flows or of everything between the servers, and a
whole-network outage (every router port down). After each fault it heals, waits for the pair to be
quiet again (one Primary, one backup) and, when a node stayed stale, rejoins it (``ctl rejoin``) or
restarts it, so the next fault hits a working pair. At the end it checks:

* two serving actives: the longest window in which both nodes reported Primary (partitions counted),
  against the sampling resolution (:data:`DUAL_PRIMARY_RESOLUTION`);
* each switch within :data:`SWITCH_BOUND` of the latest fault (a switch without a fault is a violation);
* hooks exactly once per role change (:func:`deploy.lab.checks.check_hooks`);
* every acknowledged write present on the final active. DS replication (issue 10) is built elsewhere
  and may be missing on this branch: a write acknowledged by the node that is *not* the final active is
  then counted as "not replicated yet" (reported, not a violation); with replication present it is lost;
* no leaked processes (nothing of the run is alive after teardown) and bounded thread / descriptor
  growth of the nodes between the first and the last measurement (when both nodes are the ones started
  first; a restarted node is measured from its restart).

The schedule (:func:`make_schedule`) is a pure function of the seed and the length: a failing run is
replayed with the same seed. Times of a run are not: a fault starts at its scheduled time or, when the
pair took longer to recover, as soon as it is quiet.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.lab import checks
from deploy.lab.checks import CheckResult, History
from deploy.lab.faults import Faults, require_nft
from deploy.lab.procs import Procs
from deploy.lab.runner import SAMPLE_INTERVAL, SERVER_NAMES, ScenarioRun, StepFailed, poll
from deploy.lab.scenario import NODES, Expect, ResourceBounds, Scenario, Step, _parse_step
from deploy.lab.topology import Lab, LabConfig, LabError, cleanup_prefix, require_root
from transport.admin_client import AdminCallError, admin_call

FAULT_KINDS: tuple[str, ...] = (
    "kill9-node",
    "kill9-module",
    "sigstop-node",
    "nic-down",
    "drop-main",
    "drop-aux",
    "drop-vswitch",
    "network-outage",
)
"""The nemesis' faults, all from the lab's set (deploy/lab/faults.py, procs.py). Not drawn: a drop of
*everything* between the servers while both keep their gateway and NetTest (a symmetric partition):
each side's own network is fine, so the backup takes over and the active rightly keeps serving; two
actives until the heal cannot be told apart from a dead backup without a third party (a witness),
which this pair does not have. ``fault_steps`` still knows ``drop-all`` for a run that asks for it."""

DUAL_PRIMARY_RESOLUTION = 2 * SAMPLE_INTERVAL
"""The two-Primary window a run tolerates: two samplings (one per node, each holding until its next
sample) cannot resolve a shorter one. Measured: a frozen old Primary resumed by SIGCONT answers its admin
socket as Primary a few ms (6-19 ms) before it handles the queued Hello of the new primary."""

SWITCH_BOUND = 40.0
"""Seconds from a fault's start within which a switch it causes must happen (the slowest path of the
fast profile is a module hang: 2 x 2 TS timeouts of 5 s after up to a TS Timeout of wait, plus the
confirmation pings and the diagnosis; 25 s measured by module-hang)."""
QUIET_TIMEOUT = 30.0
"""Seconds to wait for one Primary and one backup after a heal before repairing (rejoin / restart)."""
GAP = (2.0, 6.0)
"""Quiet seconds before each fault, drawn uniformly."""
DURATION = (0.5, 8.0)
"""Seconds each fault lasts, drawn uniformly."""
RECOVERY = 6.0
"""Seconds the schedule leaves after each heal for the pair to settle."""
WRITE_INTERVAL = 0.1
STALE_ROLES = ("Inactive", "Stepped Down", "Stopping", "Error", "Init")


@dataclass(frozen=True)
class PlannedFault:
    """One fault of the schedule: ``at`` seconds after the chaos phase began, on server ``node``."""

    index: int
    at: float
    kind: str
    node: str
    duration: float

    def describe(self) -> str:
        return f"#{self.index} {self.kind} {self.node.upper()} for {self.duration:.1f} s (planned t={self.at:.1f} s)"


def make_schedule(seed: int, seconds: float, kinds: Sequence[str] = FAULT_KINDS) -> list[PlannedFault]:
    """The faults of a run of ``seconds``: a pure function of ``seed`` (the replay key)."""
    rng = random.Random(seed)
    out: list[PlannedFault] = []
    t = 0.0
    while True:
        t += rng.uniform(*GAP)
        kind = rng.choice(list(kinds))
        node = rng.choice(NODES)
        duration = rng.uniform(*DURATION)
        if t + duration > seconds:
            return out
        out.append(PlannedFault(len(out) + 1, round(t, 3), kind, node, round(duration, 3)))
        t += duration + RECOVERY


def fault_steps(f: PlannedFault) -> tuple[dict[str, Any], dict[str, Any]]:
    """The scenario steps (as TOML tables) that apply and heal ``f``."""
    fid = f"chaos{f.index}"
    n = f.node
    if f.kind == "kill9-node":
        return {"action": "kill9", "target": f"node-{n}"}, {"action": "restart", "target": f"node-{n}", "how": "kill9"}
    if f.kind == "kill9-module":
        return (
            {"action": "kill9", "target": f"module-{n}"},
            {"action": "restart", "target": f"module-{n}", "how": "kill9"},
        )
    if f.kind == "sigstop-node":
        return {"action": "sigstop", "target": f"node-{n}"}, {"action": "sigcont", "target": f"node-{n}"}
    if f.kind == "nic-down":
        return {"action": "link_down", "host": n, "id": fid, "partition": True}, {"action": "heal", "id": fid}
    if f.kind.startswith("drop-"):
        flow = f.kind.removeprefix("drop-")
        return {"action": "drop", "flow": flow, "id": fid, "partition": True}, {"action": "heal", "id": fid}
    if f.kind == "network-outage":
        return (
            {"action": "link_down", "host": ["a", "b", "nta", "ntb"], "end": "router", "id": fid, "partition": True},
            {"action": "heal", "id": fid},
        )
    raise ValueError(f"unknown fault kind {f.kind!r} (expected one of {', '.join(FAULT_KINDS)})")


# ------------------------------------------------------------------------------------ workload


@dataclass(frozen=True)
class Ack:
    seq: int
    node: str
    t: float


@dataclass
class Workload:
    """Writes one DS key at a time through the node the sampler last saw as the only Primary."""

    data_dirs: dict[str, Path]
    primary: Callable[[], str | None]
    acks: list[Ack] = field(default_factory=list)
    attempts: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Workload:
        self._thread = threading.Thread(target=self._loop, name="chaos-workload", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(WRITE_INTERVAL):
            node = self.primary()
            if node is None:
                continue
            self.attempts += 1
            seq = self.attempts
            with contextlib.suppress(AdminCallError, OSError):
                admin_call(
                    str(self.data_dirs[node]), "ds.set", {"key": key_of(seq), "attrs": {"v": str(seq)}}, 1.0
                )
                self.acks.append(Ack(seq, node, time.time()))


def key_of(seq: int) -> str:
    return f"/Chaos/w{seq:06d}"


@dataclass(frozen=True)
class WriteOutcome:
    acknowledged: int
    present: int
    not_replicated: int  # acknowledged by the other node, replication absent on this branch
    lost: int
    final_active: str | None
    replication: bool

    def check(self) -> CheckResult:
        text = (
            f"{self.acknowledged} acknowledged, {self.present} present on the final active "
            f"{(self.final_active or 'none').upper()}"
        )
        if self.not_replicated:
            text += f", {self.not_replicated} written on the other node and not replicated yet (no DS replication on this branch)"
        if self.lost:
            return CheckResult("writes", False, f"{text}, {self.lost} LOST", float(self.lost))
        if self.final_active is None:
            return CheckResult("writes", False, f"{text}: no single active at the end")
        return CheckResult("writes", True, text, 0.0)


def judge_writes(acks: Sequence[Ack], present: set[int], final_active: str | None, replication: bool) -> WriteOutcome:
    """Pure: which acknowledged writes are on the final active, and how to count the others."""
    here = sum(1 for a in acks if a.seq in present)
    elsewhere = [a for a in acks if a.seq not in present]
    not_replicated = 0 if replication else sum(1 for a in elsewhere if a.node != final_active)
    return WriteOutcome(len(acks), here, not_replicated, len(elsewhere) - not_replicated, final_active, replication)


def judge_switches(history: History, starts: Sequence[float], bound: float = SWITCH_BOUND) -> CheckResult:
    """Every switch follows a fault start by at most ``bound`` seconds."""
    late: list[str] = []
    sw = checks.switches(history.transitions, history.fault_time)
    for t in sw:
        before = [s for s in starts if s <= t.t]
        if not before or t.t - before[-1] > bound:
            since = f"{t.t - before[-1]:.1f} s after the last fault" if before else "before any fault"
            late.append(f"{t.node.upper()} {t.old} -> Primary ({t.reason}) {since}")
    if late:
        return CheckResult("switch bound", False, "; ".join(late) + f" (bound {bound:g} s)")
    worst = max((t.t - max(s for s in starts if s <= t.t) for t in sw), default=0.0)
    return CheckResult("switch bound", True, f"{len(sw)} switch(es), slowest {worst:.2f} s after its fault (bound {bound:g} s)", worst)


# ------------------------------------------------------------------------------------ the run


@dataclass
class ChaosResult:
    seed: int
    schedule: list[PlannedFault]
    applied: list[str]
    history: History
    checks: list[CheckResult]
    writes: WriteOutcome
    repairs: list[str]
    leaked: list[str]
    duration: float

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def violations(self) -> int:
        return sum(1 for c in self.checks if not c.ok)

    def summary(self) -> str:
        m = checks.measure(self.history)
        lines = [
            f"chaos seed {self.seed}: {'PASS' if self.passed else 'FAIL'} ({self.violations} violation(s)) "
            f"in {self.duration:.0f} s",
            f"  faults applied: {len(self.applied)} of {len(self.schedule)} planned; "
            f"switches: {m.switches}; max two-Primary window: {m.dual_primary_max:.3f} s "
            f"(total {m.dual_primary_total:.3f} s); repairs: {len(self.repairs)}",
            f"  writes: {self.writes.acknowledged} acknowledged, {self.writes.present} on the final active, "
            f"{self.writes.not_replicated} not replicated yet, {self.writes.lost} lost",
        ]
        lines += [f"  {'PASS' if c.ok else 'FAIL'}  {c.name}: {c.detail}" for c in self.checks]
        lines += [f"  fault {a}" for a in self.applied]
        lines += [f"  repair {r}" for r in self.repairs]
        return "\n".join(lines)


class ChaosRun(ScenarioRun):
    """The scenario runner's actions, driven by the schedule instead of a file."""

    def __init__(self, lab: Lab, run_dir: Path, seed: int, seconds: float, echo: Callable[[str], None]) -> None:
        expect = Expect(
            max_dual_primary=DUAL_PRIMARY_RESOLUTION,
            resources=ResourceBounds(max_thread_growth=8, max_fd_growth=24, max_socket_growth=12),
        )
        scenario = Scenario(name=f"chaos-{seed}", description="randomized fault run", timeout=seconds + 600,
                            steps=(), expect=expect)
        super().__init__(scenario, lab, run_dir, echo)
        self.seed = seed
        self.seconds = seconds
        self.schedule = make_schedule(seed, seconds)
        self.ids: dict[str, str] = {}
        self.applied: list[str] = []
        self.repairs: list[str] = []
        self.starts: list[float] = []
        self.restarted: set[str] = set()
        self.workload = Workload({n: self.pair.data_dir(n) for n in NODES}, self._only_primary)

    def _only_primary(self) -> str | None:
        roles = self._latest_roles()
        primary = [n for n, r in roles.items() if r == "Primary"]
        return primary[0] if len(primary) == 1 else None

    def _step(self, raw: dict[str, Any], where: str) -> Step:
        return _parse_step(raw, f"<chaos seed {self.seed}>", where, self.ids)

    def _settled(self, timeout: float) -> bool:
        """Quiet, or a node stale beside a Primary for 2 s (it needs a rejoin: no use waiting longer)."""

        def stale() -> bool:
            roles = self._latest_roles()
            return any(r in STALE_ROLES or r is None for r in roles.values()) and "Primary" in roles.values()

        def settled() -> bool:
            if self._quiet(0.0):
                return True
            return stale() and not poll(lambda: not stale(), 2.0, 0.1)

        poll(settled, self._left(timeout), 0.2)
        return self._quiet(0.0)

    def _quiet(self, timeout: float) -> bool:
        def quiet() -> bool:
            return sorted(r or "" for r in self._latest_roles().values()) == ["Backup", "Primary"]

        def stable() -> bool:
            if not quiet():
                return False
            return not poll(lambda: not quiet(), 1.0, 0.05)

        if timeout <= 0:
            return stable()
        return poll(stable, self._left(timeout), 0.1)

    def _repair(self) -> None:
        """Bring a stale or dead node back: rejoin it through the other, or restart it."""
        roles = self._latest_roles()
        for node in NODES:
            role = roles[node]
            other = "b" if node == "a" else "a"
            if role is None or not Procs(self.lab).alive(self.pair.proc(f"node-{node}")):
                self._run_step(self._step({"action": "restart", "target": f"node-{node}", "how": "kill9"}, "repair"))
                self.restarted.add(node)
                self.repairs.append(f"restarted node {node.upper()} (was {role or 'not answering'})")
            elif role in STALE_ROLES and roles[other] == "Primary":
                rc, out = self.pair.ctl(other, ["--timeout", "2", "rejoin", "--server", SERVER_NAMES[node], "--wait", "10"])
                last = out.strip().splitlines()[-1][:100] if out.strip() else ""
                self.repairs.append(f"rejoined {node.upper()} (was {role}): rc {rc} {last}")
        if not Procs(self.lab).alive(self.pair.proc("module-a")) or not Procs(self.lab).alive(self.pair.proc("module-b")):
            for node in NODES:
                if not Procs(self.lab).alive(self.pair.proc(f"module-{node}")):
                    self.pair.start_module(node)
                    self.repairs.append(f"restarted module {node.upper()}")

    def run(self) -> History:
        self.t0 = time.time()
        self.deadline = time.monotonic() + self.scenario.timeout
        aborted = ""
        self.pair.write_configs()
        self.sampler.start()
        try:
            try:
                self._run_step(self._step({"action": "start_pair"}, "start"))
                self._run_step(self._step({"action": "wait_roles", "roles": {"a": "Primary", "b": "Backup"},
                                           "stable": 1.0}, "start"))
                self.baseline_time = time.time()
                self._run_step(self._step({"action": "measure", "label": "before"}, "start"))
                self.workload.start()
                began = time.monotonic()
                for f in self.schedule:
                    wait = f.at - (time.monotonic() - began)
                    if wait > 0:
                        threading.Event().wait(self._left(wait))
                    fault, heal = fault_steps(f)
                    self.starts.append(time.time())
                    self.applied.append(f.describe() + f" at t={time.time() - self.t0:+.1f} s")
                    self._run_step(self._step(fault, f"fault{f.index}"))
                    threading.Event().wait(self._left(f.duration))
                    self._run_step(self._step(heal, f"heal{f.index}"))
                    if not self._settled(QUIET_TIMEOUT):
                        self._repair()
                        if not self._quiet(QUIET_TIMEOUT):
                            raise StepFailed(f"the pair did not recover after {f.describe()} (roles {self._roles_text()})")
                self.workload.stop()
                if not self._quiet(QUIET_TIMEOUT):
                    self._repair()
                    self._quiet(QUIET_TIMEOUT)
                label = "after" if not self.restarted else "after (a node was restarted)"
                self._run_step(self._step({"action": "measure", "label": label}, "end"))
            except StepFailed as exc:
                aborted = str(exc)
            except LabError as exc:
                aborted = f"lab error: {exc}"
            self.workload.stop()
            self._settle_hooks()
        finally:
            try:
                samples = self.sampler.stop()
                history = self._collect(samples, time.time(), aborted)
            finally:
                self.final_writes = self._writes()
                self._teardown()
        return history

    def _writes(self) -> WriteOutcome:
        final = self._only_primary()
        present: set[int] = set()
        replication = False
        if final is not None:
            with contextlib.suppress(AdminCallError, OSError):
                rows = admin_call(str(self.pair.data_dir(final)), "ds.ls", {"key": "/Chaos", "limit": 10**7}, 10.0)
                present = {int(r["name"][1:]) for r in rows.get("children", []) if str(r["name"]).startswith("w")}
            for node in NODES:
                with contextlib.suppress(AdminCallError, OSError):
                    status = admin_call(str(self.pair.data_dir(node)), "status", {}, 2.0)
                    replication = replication or str(status.get("replication", "unknown")) not in ("unknown", "")
        return judge_writes(self.workload.acks, present, final, replication)


def leaked_processes(lab: Lab) -> list[str]:
    """Processes of the run still alive after teardown."""
    procs = Procs(lab)
    return [name for name in procs.list() if procs.alive(name)]


def run_chaos(
    *, minutes: float, seed: int, prefix: str, labdir: str | Path | None = None, echo: Callable[[str], None] | None = None
) -> ChaosResult:
    """Build a fresh lab, run the seeded chaos for ``minutes``, take the lab down, judge."""
    require_root()
    require_nft()
    cleanup_prefix(prefix)
    say = echo or (lambda _l: None)
    lab = Lab(LabConfig(prefix=prefix, labdir=str(labdir) if labdir else None))
    started = time.monotonic()
    run_dir = lab.dir / "runs" / f"chaos-{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    leaked: list[str] = []
    try:
        lab.up()
        run = ChaosRun(lab, run_dir, seed, minutes * 60.0, say)
        say(f"chaos seed {seed}: {len(run.schedule)} faults planned over {minutes:g} min; run dir {run_dir}")
        history = run.run()
        with contextlib.suppress(LabError):
            Faults(lab).heal_all()
        leaked = leaked_processes(lab)
    finally:
        lab.down(grace=1.0)
    result_checks = [
        checks.check_steps(history),
        checks.check_dual_primary(history, DUAL_PRIMARY_RESOLUTION),
        judge_switches(history, run.starts),
        checks.check_hooks(history),
        run.final_writes.check(),
        CheckResult("leaks", not leaked, "no process of the run left" if not leaked else f"still running: {', '.join(leaked)}"),
    ]
    res = _resources(history, run.restarted)
    if res is not None:
        result_checks.append(res)
    result = ChaosResult(
        seed, run.schedule, run.applied, history, result_checks, run.final_writes, run.repairs, leaked,
        time.monotonic() - started,
    )
    (run_dir / "summary.txt").write_text(result.summary() + "\n")
    (run_dir / "history.json").write_text(json.dumps(checks.history_to_dict(history), indent=1))
    return result


def _resources(history: History, restarted: set[str]) -> CheckResult | None:
    """Thread / descriptor growth of the nodes that ran the whole time (a restarted node starts afresh)."""
    if "before" not in history.resources:
        return None
    after_label = next((k for k in history.resources if k.startswith("after")), None)
    if after_label is None:
        return CheckResult("resources", False, "no final resource measurement was taken")
    keep = [n for n in NODES if n not in restarted]
    if not keep:
        return CheckResult("resources", True, "both nodes were restarted during the run: nothing to compare")
    sub = History(
        t0=history.t0, t_end=history.t_end, samples=[], transitions=[], hooks=[],
        resources={
            "before": {n: history.resources["before"][n] for n in keep},
            "after": {n: history.resources[after_label][n] for n in keep},
        },
    )
    bounds = ResourceBounds(max_thread_growth=8, max_fd_growth=24, max_socket_growth=12)
    return checks.check_resources(sub, Expect(resources=bounds))
