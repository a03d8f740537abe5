#!/usr/bin/env python3
"""Idle cost of a pair: CPU (% of one core) and RSS of each node process while nothing happens.

Starts a fresh :class:`deploy.pair.LocalPair` on 127.0.0.1 (alpha active, beta backup, the reference
``TsServer`` module beside each), waits until beta's Module Monitor has seen alpha's module answer and
the pair has settled, then samples ``psutil`` CPU times of every node and module process over
``--seconds`` (30 by default) and prints CPU % of one core and RSS per process.

Profiles: ``lab`` (:data:`deploy.pair.FAST_PARAMETERS`, what the lab runs) and ``tight`` (50 ms notifier
ping delay, timeout and NetTest timeout: the tightest timings the issue asks to stay under 2 %).

    python bench/bench_idle.py [--profiles lab,tight] [--seconds 30] [--json FILE]

The machine's load average is printed with the numbers: CPU time is what these processes used, but a
loaded machine stretches their wake-ups.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.pair import FAST_PARAMETERS, LocalPair, wait_until

TIGHT_PARAMETERS = {
    **FAST_PARAMETERS,
    "Switchover Primary Monitor Ping Delay": "0.05",
    "Switchover Primary Monitor Timeout": "0.05",
    "Switchover Primary Monitor Retry Ping Delay": "0",
    "Switchover NetTest Timeout": "0.05",
}
PROFILES = {"lab": FAST_PARAMETERS, "tight": TIGHT_PARAMETERS}
SETTLE = 3.0


def measure(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    """CPU % of one core (user + system, children included) and RSS (MB) of each process over ``seconds``."""
    procs = {name: psutil.Process(pid) for name, pid in pids.items()}

    def cpu(p: psutil.Process) -> float:
        t = p.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    start = {name: cpu(p) for name, p in procs.items()}
    t0 = time.monotonic()
    time.sleep(seconds)  # a benchmark's measuring window, not a wait for a condition
    elapsed = time.monotonic() - t0
    return {
        name: {
            "cpu_percent": round(100 * (cpu(p) - start[name]) / elapsed, 2),
            "rss_mb": round(p.memory_info().rss / 2**20, 1),
            "threads": p.num_threads(),
        }
        for name, p in procs.items()
    }


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def run_profile(profile: str, seconds: float, base: Path) -> dict[str, Any]:
    pair = LocalPair(base / profile, parameters=dict(PROFILES[profile]), extra={"timing": {"startup_wait": 1.0}})
    try:
        pair.start_module("alpha")
        pair.start_node("alpha")
        wait_until(lambda: pair.role("alpha") == "Primary", 30, 0.1, "alpha to be Primary")
        pair.start_module("beta")
        pair.start_node("beta")
        wait_until(lambda: pair.role("beta") == "Backup", 30, 0.1, "beta to be Backup")

        def module_seen() -> bool:
            report = pair.admin("beta", "monitors")["monitors"].get("ModuleMonitor") or {}
            return bool(report.get("module_registered_on_active")) and bool(report.get("running"))

        wait_until(module_seen, 30, 0.1, "beta's module monitor to see alpha's module")
        time.sleep(SETTLE)  # let start-up work (imports, first pings, hooks) finish before measuring
        pids: dict[str, int] = {}
        for name, node in pair.nodes.items():
            role = pair.role(name)
            assert node.proc is not None and node.module is not None
            pids[f"node {name} ({role})"] = node.proc.pid
            pids[f"module {name}"] = node.module.pid
        before = load()
        usage = measure(pids, seconds)
        return {"profile": profile, "seconds": seconds, "load_before": before, "load_after": load(), "usage": usage}
    finally:
        pair.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profiles", default="lab,tight")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        for profile in args.profiles.split(","):
            if profile not in PROFILES:
                ap.error(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
            r = run_profile(profile, args.seconds, Path(tmp))
            results.append(r)
            print(f"profile {profile}: {args.seconds:g} s idle ({r['load_before']})")
            for name, u in r["usage"].items():
                print(f"  {name:24s} CPU {u['cpu_percent']:6.2f} % of a core   RSS {u['rss_mb']:6.1f} MB   "
                      f"threads {u['threads']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
