#!/usr/bin/env python3
"""CLI latency: wall time of ``switchover ctl status`` and ``switchover admin ... status`` against a
running local pair (:class:`deploy.pair.LocalPair`), each run a fresh process as an operator's shell
starts it. Prints the median, min and max of ``--runs`` runs per command (target: median <= 150 ms).

Two bytecode settings, because most of a short command's time is Python importing code:

* **as installed**: the project's bytecode cached (a pip install compiles it; here a private
  ``PYTHONPYCACHEPREFIX`` filled by one warm-up run);
* **no bytecode cache** (``PYTHONDONTWRITEBYTECODE=1`` and no cache, as in some CI and development
  shells): every project module is compiled from source on each run.

    python bench/bench_cli.py [--runs 15] [--json]

The pair is stopped when the benchmark ends (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.pair import LocalPair, child_env, wait_until

QUIET = {
    "Switchover TS Failure Retry Delay": "3600",
    "Switchover Max TS Failures": "100",
    "Switchover Reconnect Timeout": "60",
}


def commands(pair: LocalPair) -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "cli.main"]
    return {
        "ctl status": [*cli, "ctl", "--config", str(pair.a.config), "status"],
        "admin status": [*cli, "admin", "--node", str(pair.a.data_dir), "status"],
    }


def time_runs(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    pycache = base / "pycache"
    pair = LocalPair(base / "pair", parameters=dict(QUIET))
    results: dict[str, Any] = {}
    try:
        for name in pair.names:
            pair.start_node(name)
        wait_until(lambda: sorted(map(str, pair.roles().values())) == ["Backup", "Primary"], 20, what="roles")
        installed = {**child_env(), "PYTHONPYCACHEPREFIX": str(pycache)}
        installed.pop("PYTHONDONTWRITEBYTECODE", None)
        no_cache = {**child_env(), "PYTHONDONTWRITEBYTECODE": "1"}
        no_cache.pop("PYTHONPYCACHEPREFIX", None)
        for label, argv in commands(pair).items():
            time_runs(argv, installed, 1)  # fills the private bytecode cache
            for setting, env in (("as installed", installed), ("no bytecode cache", no_cache)):
                t = time_runs(argv, env, args.runs)
                results[f"{label}, {setting}"] = {
                    "median_ms": round(statistics.median(t) * 1000, 1),
                    "min_ms": round(min(t) * 1000, 1),
                    "max_ms": round(max(t) * 1000, 1),
                    "runs": len(t),
                }
    finally:
        pair.stop()
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"CLI latency against a running local pair ({args.runs} runs each, {os.cpu_count()} CPUs)")
    print(f"{'command':<40} {'median':>9} {'min':>9} {'max':>9}")
    for label, r in results.items():
        print(f"{label:<40} {r['median_ms']:>7.1f}ms {r['min_ms']:>7.1f}ms {r['max_ms']:>7.1f}ms")
    print("target: median <= 150 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
