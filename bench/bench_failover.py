#!/usr/bin/env python3
"""Failover benchmark: time from a fault on the active to the backup serving, on a real local pair.

For each profile and scenario, ``--runs`` times: start a fresh :class:`deploy.pair.LocalPair` (alpha
active, beta backup, a reference ``TsServer`` module beside each), wait until beta's ModuleMonitor has
seen alpha's module answer, wait a random part of the ping interval (so the fault lands anywhere in
the ping cycle, as a real one does), inject the fault and measure from just before the signal to

* **primary**: beta's transition to Primary, the ``epoch`` of its event-log record (the status is
  also polled over the admin socket at ~100 Hz; that figure is reported as ``poll``);
* **hook**: beta's Commence hook starting (it writes ``date +%s.%N`` to a file).

Scenarios: ``module-crash`` (kill -9 of the module), ``module-hang`` (SIGSTOP of the module),
``node-crash`` (kill -9 of the active node). Profiles: ``fast`` (:data:`deploy.pair.FAST_PARAMETERS`,
with Reconnect Timeout 0 for the node crash) and ``default`` (the specification's defaults: TS Timeout
10 s, retry delay 1 s, Reconnect Timeout 30 s; a module hang then takes ~40-50 s per run).

Targets (loopback, fast profile): node crash < 0.3 s, module crash < 3 s, module hang at the TS
Timeout (5 s) + < 0.5 s. The specification's TS ping detects a hang only after 2 timeouts on the main
connection and 2 on the auxiliary one (spec lines 318-411), so that last target is checked against
both "TS Timeout + 0.5 s" and the specification's bound "4 x TS Timeout + 3 x retry delay + interval
+ 0.5 s".

    python bench/bench_failover.py [--runs 10] [--profiles fast,default] \\
        [--scenarios module-crash,module-hang,node-crash] [--json FILE] [--keep DIR]

Every process it starts is stopped when a run ends (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import signal
import stat
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.roles import event_log
from deploy.pair import FAST_PARAMETERS, LocalPair, wait_until

SCENARIOS = ("module-crash", "module-hang", "node-crash")
PROFILES = ("fast", "default")
ACTIVE, BACKUP = "alpha", "beta"
TIMING = {"timing": {"startup_wait": 1.0}}  # start-up negotiation wait, not measured
POLL_INTERVAL = 0.01  # admin status polling: ~100 Hz (the admin call itself takes ~1-2 ms)

# spec defaults of what the bounds below need
DEFAULTS = {
    "Switchover TS Timeout": 10.0,
    "Switchover TS Failure Retry Delay": 1.0,
    "Switchover Reconnect Timeout": 30.0,
    "Switchover Primary Monitor Ping Delay": 1.0,
}


def parameters(profile: str, scenario: str) -> dict[str, str]:
    if profile == "default":
        return {}
    params = dict(FAST_PARAMETERS)
    if scenario == "node-crash":
        params["Switchover Reconnect Timeout"] = "0"
    return params


def value(params: dict[str, str], name: str) -> float:
    return float(params.get(name, DEFAULTS[name]))


def hang_bound(params: dict[str, str]) -> float:
    """The specification's worst case for a hung module: up to one regular interval before the next
    ping, 2 timeouts on main and 2 on aux with the retry delays between, then the Primary Monitor's
    confirmation pings (2, each with its timeout, TS Timeout / 2 when unset), plus 0.5 s."""
    ts = value(params, "Switchover TS Timeout")
    retry = value(params, "Switchover TS Failure Retry Delay")
    pm_timeout = float(params.get("Switchover Primary Monitor Timeout", 0)) or ts / 2
    return ts + 4 * ts + 3 * retry + 2 * pm_timeout + 0.5


def targets(profile: str, scenario: str, params: dict[str, str]) -> dict[str, float]:
    """Upper bounds (seconds) to check the max against; empty when there is none."""
    if profile == "fast":
        if scenario == "node-crash":
            return {"target": 0.3}
        if scenario == "module-crash":
            return {"target": 3.0}
        return {"target": value(params, "Switchover TS Timeout") + 0.5, "spec bound": hang_bound(params)}
    if scenario == "module-hang":
        return {"spec bound": hang_bound(params)}
    return {}


def jitter_window(scenario: str, params: dict[str, str]) -> float:
    """The ping cycle the fault should land anywhere in."""
    if scenario == "node-crash":
        return value(params, "Switchover Primary Monitor Ping Delay")
    return value(params, "Switchover TS Timeout")


@dataclass
class Run:
    profile: str
    scenario: str
    index: int
    primary: float | None = None  # fault -> Primary, from the event log
    poll: float | None = None  # fault -> Primary, from polling the admin status
    hook: float | None = None  # fault -> Commence hook started
    reason: str | None = None
    error: str | None = None


@dataclass
class Summary:
    profile: str
    scenario: str
    runs: int
    failed: int
    primary: dict[str, float | None] = field(default_factory=dict)
    poll: dict[str, float | None] = field(default_factory=dict)
    hook: dict[str, float | None] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    targets: dict[str, float] = field(default_factory=dict)
    verdicts: dict[str, bool] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def stats(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 0.5), "p90": percentile(values, 0.9), "max": max(values, default=None)}


def install_hook(pair: LocalPair, name: str) -> Path:
    out = pair.nodes[name].data_dir / "commence.stamp"
    hook_dir = pair.nodes[name].data_dir / "hooks" / "commence.d"
    hook_dir.mkdir(parents=True, exist_ok=True)
    hook = hook_dir / "00-stamp"
    hook.write_text(f'#!/bin/sh\ndate +%s.%N >> "{out}"\n')
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return out


def backup_log(pair: LocalPair) -> str:
    path = pair.nodes[BACKUP].data_dir / "switchover.log"
    return path.read_text(errors="replace") if path.exists() else ""


def make_pair(base: Path, params: dict[str, str]) -> LocalPair:
    pair = LocalPair(base, parameters=params, extra=dict(TIMING))
    for node in pair.nodes.values():  # DEBUG: the ModuleMonitor logs each reply with its PID
        node.config.write_text(node.config.read_text().replace('log_level = "INFO"', 'log_level = "DEBUG"'))
    return pair


def start_pair(pair: LocalPair) -> None:
    """Start alpha (active) and beta (backup) with their modules; until beta's ModuleMonitor has seen
    alpha's module answer. The caller stops the pair, whatever happens."""
    pair.start_module(ACTIVE)
    pair.start_node(ACTIVE)
    wait_until(lambda: pair.role(ACTIVE) == "Primary", 30, what="alpha to become Primary")
    pair.start_module(BACKUP)
    pair.start_node(BACKUP)
    wait_until(lambda: pair.role(BACKUP) == "Backup", 30, what="beta to become Backup")
    module = pair.nodes[ACTIVE].module
    assert module is not None
    seen = f"Received ping from the TsServer module (pid {module.pid})"
    wait_until(lambda: seen in backup_log(pair), 30, what="beta's ModuleMonitor to see alpha's module")


def stderr_tail(pair: LocalPair, lines: int = 15) -> str:
    out = []
    for name, node in pair.nodes.items():
        path = node.data_dir / "node.stderr"
        text = path.read_text(errors="replace").splitlines() if path.exists() else []
        out += [f"  [{name}] {line[:200]}" for line in text[-lines:]]
    return "\n".join(out)


def one_run(profile: str, scenario: str, index: int, base: Path, jitter: bool) -> Run:
    run = Run(profile, scenario, index)
    params = parameters(profile, scenario)
    pair = make_pair(base, params)
    try:
        try:
            start_pair(pair)
        except TimeoutError as exc:
            run.error = f"setup: {exc}"
            print(f"setup failed: {exc}\n{stderr_tail(pair)}", file=sys.stderr)
            return run
        stamp = install_hook(pair, BACKUP)
        if jitter:
            time.sleep(random.uniform(0.0, jitter_window(scenario, params)))  # land anywhere in the cycle
        module = scenario != "node-crash"
        sig = signal.SIGSTOP if scenario == "module-hang" else signal.SIGKILL
        fault_at = time.time()
        pair.signal(ACTIVE, sig, module=module)
        limit = (
            4 * value(params, "Switchover TS Timeout") + value(params, "Switchover Reconnect Timeout") + 60
        )
        deadline = time.monotonic() + limit
        while pair.role(BACKUP) != "Primary":
            if time.monotonic() > deadline:
                run.error = f"beta did not become Primary within {limit:g} s"
                return run
            time.sleep(POLL_INTERVAL)
        run.poll = time.time() - fault_at
        took = [
            r
            for r in event_log.read(pair.nodes[BACKUP].data_dir / "events.jsonl")
            if r.new_state == "Primary" and r.old_state != "Init"
        ]
        if took:
            run.primary = took[0].epoch - fault_at
            run.reason = took[0].reason
        try:
            wait_until(lambda: stamp.exists() and stamp.read_text().strip(), 10, what="the Commence hook")
            run.hook = float(stamp.read_text().split()[0]) - fault_at
        except TimeoutError as exc:
            run.error = str(exc)
        return run
    finally:
        pair.stop()


def summarize(profile: str, scenario: str, runs: list[Run]) -> Summary:
    """Runs whose pair could not be set up (``setup:`` errors) are left out; any other error is a
    failed measurement and fails every target."""
    measured = [r for r in runs if not (r.error or "").startswith("setup:")]
    ok = [r for r in measured if r.error is None]
    params = parameters(profile, scenario)
    s = Summary(profile, scenario, len(measured), len(measured) - len(ok))
    s.primary = stats([r.primary for r in ok if r.primary is not None])
    s.poll = stats([r.poll for r in ok if r.poll is not None])
    s.hook = stats([r.hook for r in ok if r.hook is not None])
    s.reasons = sorted({r.reason or "?" for r in ok})
    s.targets = targets(profile, scenario, params)
    worst = s.primary["max"]
    for name, bound in s.targets.items():
        s.verdicts[name] = worst is not None and s.failed == 0 and worst < bound
    return s


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def print_table(summaries: list[Summary]) -> None:
    head = (
        f"{'profile':<8} {'scenario':<13} {'runs':>4} {'fail':>4} | "
        f"{'primary p50':>11} {'p90':>7} {'max':>7} | {'poll p50':>8} {'max':>7} | "
        f"{'hook p50':>8} {'p90':>7} {'max':>7} | reason / target"
    )
    print(head)
    print("-" * len(head))
    for s in summaries:
        checks = ", ".join(
            f"{name} < {bound:g} s: {'OK' if s.verdicts[name] else 'MISSED'}"
            for name, bound in s.targets.items()
        )
        print(
            f"{s.profile:<8} {s.scenario:<13} {s.runs:>4} {s.failed:>4} | "
            f"{fmt(s.primary['p50']):>11} {fmt(s.primary['p90']):>7} {fmt(s.primary['max']):>7} | "
            f"{fmt(s.poll['p50']):>8} {fmt(s.poll['max']):>7} | "
            f"{fmt(s.hook['p50']):>8} {fmt(s.hook['p90']):>7} {fmt(s.hook['max']):>7} | "
            f"{'/'.join(s.reasons)}{'; ' + checks if checks else ''}"
        )
    print("\nseconds from the fault (just before the signal); primary = event-log epoch of the switch,")
    print("poll = first admin status answer 'Primary' (~100 Hz polling), hook = Commence hook start")


def parse_list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad:
        raise SystemExit(f"unknown {what}: {', '.join(bad)} (choose from {', '.join(allowed)})")
    return items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="runs per profile and scenario (default 10)")
    ap.add_argument("--profiles", default=",".join(PROFILES), help="comma-separated: fast,default")
    ap.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated: module-crash,module-hang,node-crash",
    )
    ap.add_argument(
        "--no-jitter", action="store_true", help="inject the fault at once, not at a random phase"
    )
    ap.add_argument("--json", help="also write the runs and the summaries to this file")
    ap.add_argument("--keep", help="keep the pairs' data directories under this directory")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    profiles = parse_list(args.profiles, PROFILES, "profile")
    scenarios = parse_list(args.scenarios, SCENARIOS, "scenario")
    random.seed(args.seed)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-failover-"))
    root.mkdir(parents=True, exist_ok=True)
    all_runs: list[Run] = []
    summaries: list[Summary] = []
    try:
        for profile in profiles:
            for scenario in scenarios:
                runs: list[Run] = []
                for i in range(args.runs):
                    run = one_run(
                        profile, scenario, i, root / f"{profile}-{scenario}-{i}", not args.no_jitter
                    )
                    runs.append(run)
                    print(
                        f"{profile} {scenario} #{i + 1}: primary {fmt(run.primary)} s, poll {fmt(run.poll)} s, "
                        f"hook {fmt(run.hook)} s, reason {run.reason}"
                        + (f", ERROR {run.error}" if run.error else ""),
                        file=sys.stderr,
                        flush=True,
                    )
                all_runs += runs
                summaries.append(summarize(profile, scenario, runs))
    except KeyboardInterrupt:
        print("interrupted; summarising the runs done so far", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print_table(summaries)
    if args.json:
        data: dict[str, Any] = {
            "runs": [asdict(r) for r in all_runs],
            "summaries": [asdict(s) for s in summaries],
        }
        Path(args.json).write_text(json.dumps(data, indent=2))
    return 0 if all(r.error is None for r in all_runs) else 1


if __name__ == "__main__":
    sys.exit(main())
