"""Benchmark of the DS store (a script, not a test).

    python bench/bench_store.py [--keys 100000] [--writes 3000] [--durability normal full] [--dir DIR]

For each durability mode (``normal`` is the store's default): load the keys (in batches), single-key
committed writes (writes/s and p50/p99/p99.9/max latency including the commit), 10,000-change batches
(changes/s; median and best of --repeat runs, as a shared machine is noisy) of three kinds: updates of
random existing keys (the worst case: they touch most pages of the table), updates of 10,000 neighbouring
keys (a subtree), and 10,000 new keys; then 1,000 random updates and the root hash (time of the updates
with their incremental hash maintenance, time to read the root hash, and a full recomputation for
comparison).
"""

from __future__ import annotations

import argparse
import inspect
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from replication.store import SetOp, Store


def key(i: int) -> str:
    return f"/Bench/Users/g{i // 1000:03d}/user{i:06d}"


def attrs(i: int, gen: int) -> dict[str, list[str]]:
    return {"Extension": [str(1000 + i)], "Roles": ["agent", f"team{i % 17}"], "Gen": [str(gen)]}


def run(mode: str, n_keys: int, n_writes: int, repeat: int, base: Path) -> dict[str, float]:
    d = base / mode
    d.mkdir(parents=True)
    store = Store(d, durability=mode)  # type: ignore[arg-type]
    out: dict[str, float] = {}
    rng = random.Random(42)

    t0 = time.perf_counter()
    chunk = 20_000
    for start in range(0, n_keys, chunk):
        store.batch(SetOp(key(i), attrs(i, 0)) for i in range(start, min(n_keys, start + chunk)))
    out["load_s"] = time.perf_counter() - t0
    out["load_keys_per_s"] = n_keys / out["load_s"]

    lat = []
    t0 = time.perf_counter()
    for w in range(n_writes):
        i = rng.randrange(n_keys)
        a = time.perf_counter()
        store.set(key(i), {"Gen": [str(w + 1)]})
        lat.append(time.perf_counter() - a)
    total = time.perf_counter() - t0
    lat.sort()
    out["single_writes_per_s"] = n_writes / total
    out["single_p50_ms"] = lat[len(lat) // 2] * 1e3
    out["single_p99_ms"] = lat[int(len(lat) * 0.99)] * 1e3
    out["single_p999_ms"] = lat[int(len(lat) * 0.999)] * 1e3
    out["single_max_ms"] = lat[-1] * 1e3

    rates = []
    for r in range(repeat):
        ids = rng.sample(range(n_keys), 10_000)
        ops = [SetOp(key(i), {"Gen": [f"b{r}"], "Extension": [str(i)]}) for i in ids]
        a = time.perf_counter()
        store.batch(ops)
        rates.append(10_000 / (time.perf_counter() - a))
    out["batch_random_updates_per_s_median"] = statistics.median(rates)
    out["batch_random_updates_per_s_best"] = max(rates)

    rates = []
    for r in range(repeat):
        start = rng.randrange(n_keys - 10_000)
        ops = [SetOp(key(i), {"Gen": [f"c{r}"], "Extension": [str(i)]}) for i in range(start, start + 10_000)]
        a = time.perf_counter()
        store.batch(ops)
        rates.append(10_000 / (time.perf_counter() - a))
    out["batch_clustered_updates_per_s_median"] = statistics.median(rates)
    out["batch_clustered_updates_per_s_best"] = max(rates)

    rates = []
    for r in range(repeat):
        ops = [SetOp(f"/Bench/New{r}/g{i // 1000:03d}/k{i:06d}", attrs(i, r)) for i in range(10_000)]
        a = time.perf_counter()
        store.batch(ops)
        rates.append(10_000 / (time.perf_counter() - a))
    out["batch_new_keys_per_s_median"] = statistics.median(rates)
    out["batch_new_keys_per_s_best"] = max(rates)

    ids = [rng.randrange(n_keys) for _ in range(1000)]
    a = time.perf_counter()
    store.batch(SetOp(key(i), {"Gen": [f"r{j}"]}) for j, i in enumerate(ids))
    out["1000_updates_one_batch_ms"] = (time.perf_counter() - a) * 1e3
    a = time.perf_counter()
    for j, i in enumerate(ids):
        store.set(key(i), {"Gen": [f"s{j}"]})
    out["1000_updates_single_ms"] = (time.perf_counter() - a) * 1e3
    a = time.perf_counter()
    root = store.subtree_hash("/")
    out["root_hash_read_us"] = (time.perf_counter() - a) * 1e6
    assert root is not None
    reads = []
    for _ in range(101):  # the single read above is one noisy sample
        a = time.perf_counter()
        store.subtree_hash("/")
        reads.append(time.perf_counter() - a)
    out["root_hash_read_us_median"] = statistics.median(reads) * 1e6
    a = time.perf_counter()
    problems = store.verify()
    out["full_rehash_check_s"] = time.perf_counter() - a
    assert problems == [], problems[:3]
    out["keys"] = store.count()
    store.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--writes", type=int, default=3_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--durability", nargs="+", default=["normal", "full"], choices=["normal", "full"])
    ap.add_argument("--dir", help="where to put the databases (default: a temporary directory, removed)")
    args = ap.parse_args()
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-store-"))
    try:
        for mode in args.durability:
            res = run(mode, args.keys, args.writes, args.repeat, base)
            is_default = mode == inspect.signature(Store).parameters["durability"].default
            default = " (the default)" if is_default else ""
            print(f"durability={mode}{default} (synchronous={'FULL' if mode == 'full' else 'NORMAL'}, WAL)")
            for k, v in res.items():
                print(f"  {k:40s} {v:14,.2f}" if k.endswith("_ms") else f"  {k:40s} {v:14,.1f}")
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
