#!/usr/bin/env python3
"""Interaction shadowing benchmark on a real local pair (prints numbers, asserts nothing).

1. alpha (active) gets ``--count`` live chats (default 100,000: 6.7x the vendor's 15,000 tested
   emails), each with one message, through the application API (pipelined publishes);
2. beta starts as backup with chat recovery on: **full sync** = from beta's shadow requesting the
   snapshot to its store holding all of them (beta's own measure, from its log), and the wall time
   from starting beta to its listing showing them all;
3. **update apply** at ``--rate`` updates/s (default 2,000) for ``--seconds``: appends published with
   "wait for the backup", paced on a fixed schedule, several in flight; the latency of each is from
   its send to the active's answer that the backup's shadow store holds it (application -> active ->
   backup applies and writes SQLite -> acknowledgement -> active -> application), so it bounds the
   backup's apply time from above; p50/p99/max, and the rate achieved;
4. **backup RSS** of beta's process with all shadows;
5. **promotion**: kill -9 of alpha; beta becomes active and promotes the shadows: its own measure
   (log) and the wall time from the kill to the first query on beta returning all of them with
   seqno 1.

    python bench/bench_interactions.py [--count 100000] [--rate 2000] [--seconds 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.config import load_config
from deploy.pair import FAST_PARAMETERS, LocalPair, wait_until
from transport.codec import REQUEST, Envelope, decode, encode
from transport.interactions_client import InteractionsClient
from transport.messages import InteractionPublish, InteractionPublished

ACTIVE, BACKUP = "alpha", "beta"
PARAMS = {
    **FAST_PARAMETERS,
    "Switchover TS Failure Retry Delay": "3600",
    "Switchover Max TS Failures": "100",
    "Switchover Reconnect Timeout": "0",
    "Chat Interaction Recovery Enabled": "1",
}
TIMING = {"timing": {"startup_wait": 1.0, "hello_interval": 0.1, "peer_timeout": 1.0}}


def address(pair: LocalPair, name: str) -> str:
    me = load_config(pair.nodes[name].config).me
    return f"tcp://{me.address}:{me.interaction_port}"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def log_seconds(pair: LocalPair, name: str, pattern: str) -> float | None:
    text = (pair.nodes[name].data_dir / "switchover.log").read_text(errors="replace")
    found = re.findall(pattern, text)
    return float(found[-1]) if found else None


def counts(pair: LocalPair, name: str) -> dict[str, Any]:
    return pair.admin(name, "interactions", {"counts_only": True}, timeout=30.0)


def fill(pair: LocalPair, count: int) -> float:
    t0 = time.monotonic()
    with InteractionsClient(address(pair, ACTIVE), timeout=60.0) as client:
        batch = 5000
        for start in range(0, count, batch):
            ops: list[tuple[str, str, dict[str, Any]]] = []
            for n in range(start, min(count, start + batch)):
                ops.append(
                    ("create", f"chat-{n}", {"type": "chat", "queue": "Support", "agent": f"a{n % 50}"})
                )
                ops.append(
                    ("append", f"chat-{n}", {"author": "customer", "text": f"hello from customer {n}"})
                )
            client.publish_many(ops, timeout=120.0)
    return time.monotonic() - t0


def paced_updates(pair: LocalPair, count: int, rate: float, seconds: float) -> tuple[list[float], float, int]:
    """Appends with wait-for-the-backup on a fixed schedule; (latencies in s, achieved rate, failures)."""
    ctx: zmq.Context[Any] = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(address(pair, ACTIVE))
    sent: dict[int, float] = {}
    latencies: list[float] = []
    failures = 0
    ids = itertools.count(1)
    total = int(rate * seconds)
    start = time.monotonic()
    n = 0
    while n < total or sent:
        now = time.monotonic()
        if now - start > seconds + 30:
            break
        while n < total and start + n / rate <= now:
            corr = next(ids)
            msg = InteractionPublish(
                "append", f"chat-{n % count}", {"author": "agent", "text": f"u{n}"}, True, 10.0
            )
            sock.send_multipart(encode(Envelope(msg, "bench", 0, None, REQUEST, corr)))
            sent[corr] = time.monotonic()
            n += 1
        due = start + n / rate if n < total else now + 0.05
        wait_ms = max(0, int((due - time.monotonic()) * 1000))
        if sock.poll(wait_ms):
            while True:
                try:
                    frames = sock.recv_multipart(flags=zmq.NOBLOCK)
                except zmq.Again:
                    break
                env = decode(frames)
                t_sent = sent.pop(env.corr or 0, None)
                if t_sent is None:
                    continue
                if isinstance(env.msg, InteractionPublished) and env.msg.ok and env.msg.shadowed:
                    latencies.append(time.monotonic() - t_sent)
                else:
                    failures += 1
    elapsed = time.monotonic() - start
    sock.close()
    return latencies, len(latencies) / elapsed, failures + len(sent)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--keep", help="keep the pair's directory here")
    args = ap.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-interactions-"))
    pair = LocalPair(base / "pair", parameters=dict(PARAMS), extra=dict(TIMING))
    try:
        pair.start_node(ACTIVE)
        wait_until(lambda: pair.role(ACTIVE) == "Primary", 30, what="alpha Primary")
        took = fill(pair, args.count)
        print(
            f"filled the active with {args.count} chats (+1 message each) in {took:.2f} s "
            f"({2 * args.count / took:.0f} publishes/s, pipelined)"
        )

        t0 = time.monotonic()
        pair.start_node(BACKUP)
        wait_until(lambda: pair.role(BACKUP) == "Backup", 30, what="beta Backup")
        wait_until(
            lambda: (
                counts(pair, BACKUP)["counts"].get("chat") == args.count
                and not counts(pair, BACKUP)["stats"]["syncing"]
            ),
            120,
            0.1,
            what="beta's shadows",
        )
        wall = time.monotonic() - t0
        own = log_seconds(
            pair, BACKUP, r"full synchronization complete: \d+ shadow interaction\(s\) .*? in ([\d.]+) s"
        )
        print(
            f"full sync of {args.count} shadows: {own:.3f} s (backup's measure: request -> store holds all); "
            f"{wall:.2f} s wall from starting the backup process to its listing showing all"
        )

        latencies, achieved, failures = paced_updates(pair, args.count, args.rate, args.seconds)
        ms = [x * 1000 for x in latencies]
        print(
            f"update apply with wait-for-the-backup at {args.rate:.0f}/s for {args.seconds:g} s: "
            f"{len(ms)} confirmed ({achieved:.0f}/s achieved), {failures} unconfirmed; latency ms "
            f"p50 {pct(ms, 50):.2f}, p99 {pct(ms, 99):.2f}, max {max(ms):.2f}"
        )

        stats = counts(pair, BACKUP)["stats"]
        delay = stats["stream_delay_ms"]
        print(
            f"  active applied it -> backup applied it (wall clocks of one host, last {delay['n']}): "
            f"p50 {delay['p50']:.2f} ms, p99 {delay['p99']:.2f} ms, max {delay['max']:.2f} ms"
        )
        inside = stats["apply_ms"]
        print(
            f"  of which the backup's shadow actor applying each update (in the actor, last {inside['n']}): "
            f"p50 {inside['p50']:.3f} ms, p99 {inside['p99']:.3f} ms, max {inside['max']:.3f} ms"
        )
        beta_pid = pair.nodes[BACKUP].proc.pid  # type: ignore[union-attr]
        rss = psutil.Process(beta_pid).memory_info().rss / 2**20
        alpha_rss = psutil.Process(pair.nodes[ACTIVE].proc.pid).memory_info().rss / 2**20  # type: ignore[union-attr]
        db = pair.nodes[BACKUP].data_dir / "interactions.db"
        size = sum(p.stat().st_size for p in db.parent.glob("interactions.db*")) / 2**20
        print(
            f"backup RSS with {args.count} shadows: {rss:.0f} MiB (active: {alpha_rss:.0f} MiB); "
            f"shadow SQLite {size:.0f} MiB"
        )

        t_kill = time.monotonic()
        os.kill(pair.nodes[ACTIVE].proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
        with InteractionsClient(address(pair, BACKUP), timeout=60.0) as client:

            def all_recovered() -> bool:
                got = client.query(limit=-1, timeout=60.0)
                return got.total == args.count and got.stats.get("recovered") == args.count

            wait_until(all_recovered, 120, 0.01, what="beta's recovered interactions")
            wall = time.monotonic() - t_kill
            sample = client.query(iid="chat-7").items[0]
        own = log_seconds(pair, BACKUP, r"became active interactions .*? in ([\d.]+) s")
        print(
            f"promotion of {args.count} shadows: {own:.3f} s (new active's measure: SQLite seqno+1 and load); "
            f"{wall:.2f} s wall from kill -9 of the active to a query on the new active answering all "
            f"(seqno of a sample: {sample['seqno']})"
        )
    finally:
        pair.stop()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
