#!/usr/bin/env python3
"""DS replication benchmark on a real local pair (two node processes, loopback). Prints numbers only.

1. **apply lag** at a paced rate (default 1,000 single-key writes/s through the active's admin socket):
   the backup's DSMirror measures, for every pushed message it applies, the time from the active
   seeing the commit to the backup having applied it (same machine, one clock); p50/p99 reported.
2. **sustained stream**: batches of ``--batch`` keys imported as fast as the active takes them; changes/s
   from the first write until the backup applied the last revision, and whether the stream had a gap
   (a gap makes the mirror resubscribe; the count of subscriptions is printed).
3. **initial compare** of ``--keys`` keys with ``--differ`` of them changed while the backup was down
   (kill -9: it cannot resume, it compares) against a **full copy** (the backup's store deleted):
   duration and reply bytes (the msgpack payloads of the hash and fetch replies) of each.

    python bench/bench_replication.py [--rate 1000] [--seconds 5] [--keys 100000] [--differ 0.01]
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.pair import LocalPair, wait_until
from transport.admin_client import AdminCallError, admin_call

PARAMS = {
    "Switchover TS Timeout": "5",
    "Switchover TS Failure Retry Delay": "3600",
    "Switchover Max TS Failures": "100",
    "Switchover Primary Monitor Ping Delay": "0.5",
    "Switchover Primary Monitor Timeout": "3",
    "Switchover Reconnect Timeout": "600",
}
TIMING = {"hello_interval": 0.1, "peer_timeout": 1.0, "startup_wait": 1.0, "discontinue_timeout": 2.0}


def call(pair: LocalPair, name: str, op: str, args: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
    return admin_call(str(pair.nodes[name].data_dir), op, args or {}, timeout)


def repl(pair: LocalPair, name: str) -> dict[str, Any]:
    return dict(call(pair, name, "ds.replication"))


def settled(pair: LocalPair) -> bool:
    try:
        states = [call(pair, n, "status", timeout=1.0) for n in pair.names]
    except AdminCallError:
        return False
    return sorted(s["role"] for s in states) == ["Backup", "Primary"] and not any(s["starting_up"] for s in states)


def caught_up(pair: LocalPair, revision: int) -> bool:
    try:
        return int(repl(pair, "beta")["applied"]) >= revision
    except AdminCallError:
        return False


def start(pair: LocalPair) -> None:
    pair.start_node("alpha")
    wait_until(lambda: pair.role("alpha") == "Primary", 30, what="alpha Primary")
    pair.start_node("beta")
    wait_until(lambda: settled(pair), 60, what="beta started up")


def import_tree(pair: LocalPair, key: str, n: int, value: str, width: int = 1000) -> int:
    """``n`` keys under ``key`` in groups of ``width``, one batch per group; returns the last revision."""
    rev = 0
    for g in range(0, n, width):
        children = {f"k{i}": {"attrs": {"v": [f"{value}-{i}-" + "x" * 40]}, "children": {}}
                    for i in range(g, min(n, g + width))}
        rev = call(pair, "alpha", "ds.import", {"key": f"{key}/g{g // width}",
                                                  "data": {"tree": {"attrs": {}, "children": children}}})["revision"]
    return int(rev)


def bench_lag(pair: LocalPair, rate: float, seconds: float) -> None:
    n = int(rate * seconds)
    data = str(pair.nodes["alpha"].data_dir)
    t0 = time.monotonic()
    rev = 0
    for i in range(n):
        pause = t0 + i / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # pacing (not waiting for a result)
        rev = admin_call(data, "ds.set", {"key": f"/Lag/g{i % 50}/k{i}", "attrs": {"v": str(i)}}, 10.0)["revision"]
    took = time.monotonic() - t0
    wait_until(lambda: caught_up(pair, rev), 60, 0.01, "backup caught up")
    st = repl(pair, "beta")
    print(f"apply lag at {n / took:,.0f} writes/s ({n} single-key writes): p50 {st['lag_ms_p50']} ms, "
          f"p99 {st['lag_ms_p99']} ms (over {len(range(n))} writes, {st['applied_batches']} batches applied)")


def bench_stream(pair: LocalPair, batches: int, batch: int) -> None:
    before = repl(pair, "beta")
    subs_before = before["compares"]
    t0 = time.monotonic()
    rev = 0
    for b in range(batches):
        rev = import_tree(pair, f"/Stream/b{b}", batch, "s", width=batch)
    wrote = time.monotonic() - t0
    wait_until(lambda: caught_up(pair, rev), 120, 0.005, "backup caught up")
    took = time.monotonic() - t0
    after = repl(pair, "beta")
    total = batches * (batch + 1)
    print(f"sustained stream: {total:,} changes in {batches} batches: active wrote them in {wrote:.2f} s "
          f"({total / wrote:,.0f}/s); backup applied all in {took:.2f} s ({total / took:,.0f} changes/s); "
          f"state {after['state']}, compares during the run {after['compares'] - subs_before} "
          f"(0 = no gap, no resync)")


def bench_compare(pair: LocalPair, keys: int, differ: float, root: Path) -> None:
    for old in ("/Lag", "/Stream"):  # the tree is then the big one (and the parameters)
        try:
            call(pair, "alpha", "ds.rm", {"key": old})
        except AdminCallError:
            pass  # that part did not run
    rev = import_tree(pair, "/Big", keys, "base")
    wait_until(lambda: caught_up(pair, rev), 300, 0.05, "backup has the big tree")
    # 1: the backup dies (kill -9: its store starts a new epoch, so it compares), 1 % change meanwhile
    pair.signal("beta", signal.SIGKILL)
    proc = pair.nodes["beta"].proc
    assert proc is not None
    proc.wait(10)
    rng = random.Random(1)
    changed = rng.sample(range(keys), int(keys * differ))
    width = 1000
    for start in range(0, len(changed), 500):
        part = changed[start:start + 500]
        for i in part:
            call(pair, "alpha", "ds.set", {"key": f"/Big/g{i // width}/k{i}", "attrs": {"v": "changed-" + "y" * 40}})
    pair.start_node("beta")
    wait_until(lambda: settled(pair), 300, 0.05, "beta started up after the compare")
    cmp = repl(pair, "beta")["last_compare"]
    same = call(pair, "alpha", "ds.get", {"key": "/"})["hash"] == call(pair, "beta", "ds.get", {"key": "/"})["hash"]
    print(f"compare of {keys:,} keys "
          f"with {len(changed):,} differing: {cmp['duration_s']:.3f} s, {cmp['keys_fetched']:,} keys fetched, "
          f"{cmp['paths_listed']:,} nodes listed in {cmp['hash_requests']} hash and {cmp['fetch_requests']} fetch "
          f"request(s), {cmp['bytes_in']:,} reply bytes; root hashes equal: {same}")
    # 2: full copy: the backup starts from an empty store
    pair.signal("beta", signal.SIGTERM)
    proc = pair.nodes["beta"].proc
    assert proc is not None
    proc.wait(30)
    for f in pair.nodes["beta"].data_dir.glob("ds.sqlite3*"):
        f.unlink()
    pair.start_node("beta")
    wait_until(lambda: settled(pair), 600, 0.05, "beta started up after the full copy")
    full = repl(pair, "beta")["last_compare"]
    same = call(pair, "alpha", "ds.get", {"key": "/"})["hash"] == call(pair, "beta", "ds.get", {"key": "/"})["hash"]
    print(f"full copy into an empty store: {full['duration_s']:.3f} s, {full['keys_fetched']:,} keys fetched, "
          f"{full['bytes_in']:,} reply bytes; root hashes equal: {same}")
    print(f"compare vs full copy: {full['duration_s'] / max(cmp['duration_s'], 1e-9):.1f}x faster, "
          f"{100.0 * cmp['bytes_in'] / max(full['bytes_in'], 1):.1f} % of the bytes")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch", type=int, default=2500)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--differ", type=float, default=0.01)
    ap.add_argument("--keep", help="keep the pair's files in this directory")
    ap.add_argument("--only", choices=("lag", "stream", "compare"), help="run one part only")
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-repl-"))
    pair = LocalPair(root / "pair", parameters=dict(PARAMS), extra={"timing": dict(TIMING)})
    try:
        start(pair)
        if args.only in (None, "lag"):
            bench_lag(pair, args.rate, args.seconds)
        if args.only in (None, "stream"):
            bench_stream(pair, args.batches, args.batch)
        if args.only in (None, "compare"):
            bench_compare(pair, args.keys, args.differ, root)
    finally:
        pair.stop()
    print(f"(files in {root})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
