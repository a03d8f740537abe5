#!/usr/bin/env python3
"""Transport benchmark: two processes over TCP loopback, typed messages through real Endpoints.

1. request/reply: N sequential ``Ping`` -> ``Pong`` round trips; p50/p99/max latency in µs.
2. one-way: M small ``Hello`` notifications; throughput in messages/s measured at the receiver
   (first to last message received), plus losses. Endpoints never block their callers: a sender
   that outruns the receiver fills the ZeroMQ high-water marks and further messages are dropped.
   So by default the sender keeps at most ``--window`` messages in flight (a Ping round trip after
   each window; it travels behind the Hellos, so its Pong means they were all handled).
   ``--window 0`` sends one unpaced burst and shows the losses.

Targets: p99 < 1 ms, > 50,000 msg/s; CURVE costs at most 25 % of the one-way throughput.

    python bench/bench_transport.py [--requests 5000] [--messages 200000] [--window 5000]
                                    [--curve off|on|both] [--rounds N] [--json]

With ``--curve on`` the server runs as a node does: CURVE with the server group keypair, pyzmq's
ZAP authenticator and the per-message rights check (:mod:`transport.auth`); the client uses the
group keypair (the peer node's traffic: Hello is node-to-node). ``both`` (the default) runs off
then on and prints the cost.

The server runs in a separate process (``multiprocessing``, spawn). It reports its figures back
over a pipe. Everything is on 127.0.0.1 and the run is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zmq

from transport.auth import AccessControl, PairAuthenticator
from transport.codec import REQUEST, Envelope
from transport.endpoint import Endpoint, EndpointOptions
from transport.messages import Hello, Ping, Pong
from transport.security import Security

TARGET_P99_US = 1000.0
TARGET_RATE = 50_000.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def quiet_logs() -> None:
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="ERROR")


# ------------------------------------------------------------------------------------ server side


def serve(
    address: str, expected: int, conn: Connection, options: EndpointOptions, keys: tuple[bytes, bytes] | None
) -> None:
    """The receiving process: echo Ping -> Pong; count Hellos and time them."""
    quiet_logs()
    security = Security.plain()
    if keys is not None:
        access = AccessControl(keys[0].decode(), None)
        PairAuthenticator(zmq.Context.instance(), access).start()
        security = Security.curve_group(*keys, access=access)
    done = threading.Event()
    first = [0.0]
    last = [0.0]
    count = [0]
    holder: list[Endpoint] = []

    def on_message(env: Envelope, peer: bytes | None) -> None:
        msg = env.msg
        if env.kind == REQUEST and isinstance(msg, Ping):
            holder[0].reply(env, Pong(msg.payload), to=peer)
        elif isinstance(msg, Hello):
            now = time.perf_counter()
            if count[0] == 0:
                first[0] = now
            count[0] += 1
            last[0] = now
            if count[0] >= expected:
                done.set()

    server = Endpoint(
        "bench.server", "server", address, node="S", on_message=on_message, options=options, security=security
    )
    holder.append(server)
    server.start()
    conn.send({"ready": True, "pid": os.getpid()})
    # wait for "report" (after the one-way phase) or "stop"
    while True:
        cmd = conn.recv()
        if cmd == "report":
            timeout = float(conn.recv())
            done.wait(timeout)
            elapsed = last[0] - first[0]
            conn.send(
                {
                    "received": count[0],
                    "elapsed": elapsed,
                    "rate": (count[0] - 1) / elapsed if elapsed > 0 and count[0] > 1 else 0.0,
                    "stats": dict(server.stats.__dict__),
                }
            )
        elif cmd == "stop":
            server.stop()
            conn.send("stopped")
            return


# ------------------------------------------------------------------------------------ client side


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(pct / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def run(
    requests: int, messages: int, payload: int, window: int, options: EndpointOptions, curve: bool = False
) -> dict[str, Any]:
    address = f"tcp://127.0.0.1:{free_port()}"
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    keys = zmq.curve_keypair() if curve else None
    security = Security.curve_group(*keys) if keys is not None else Security.plain()
    proc = ctx.Process(target=serve, args=(address, messages, child, options, keys), daemon=True)
    proc.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("server process did not start")
        parent.recv()
        client = Endpoint(
            "bench.client",
            "client",
            address,
            node="C",
            on_message=lambda e, p: None,
            options=options,
            security=security,
        )
        client.start()
        deadline = time.monotonic() + 10
        while not client.connected:  # connection set up by the I/O thread; bounded wait
            if time.monotonic() > deadline:
                raise RuntimeError("client did not connect")
            time.sleep(0.001)

        body = b"x" * payload
        for _ in range(min(500, requests)):  # warm-up
            client.request(Ping(body), timeout=2).result(5)

        # 1. request/reply latency, sequential
        lat: list[float] = []
        t_all = time.perf_counter()
        for _ in range(requests):
            t0 = time.perf_counter()
            reply = client.request(Ping(body), timeout=2).result(5)
            lat.append(time.perf_counter() - t0)
            assert reply.msg == Pong(body)
        rtt_wall = time.perf_counter() - t_all
        lat_us = sorted(x * 1e6 for x in lat)

        # 2. one-way throughput at the receiver
        hello = Hello("A", "Active", 1, "1.0.0", 1.0)
        t_send = time.perf_counter()
        step = window if window > 0 else messages
        for start in range(0, messages, step):
            for _ in range(min(step, messages - start)):
                client.send(hello)
            if window > 0:
                client.request(Ping(b"window"), timeout=30).result(60)
        queued = time.perf_counter() - t_send
        parent.send("report")
        parent.send(max(30.0, messages / 5000))
        if not parent.poll(max(60.0, messages / 2000)):
            raise RuntimeError("server did not report")
        server_report = parent.recv()
        client_stats = dict(client.stats.__dict__)
        client.stop()
        parent.send("stop")
        parent.poll(10)
        return {
            "curve": curve,
            "requests": requests,
            "payload_bytes": payload,
            "rtt_p50_us": round(percentile(lat_us, 50), 1),
            "rtt_p90_us": round(percentile(lat_us, 90), 1),
            "rtt_p99_us": round(percentile(lat_us, 99), 1),
            "rtt_max_us": round(lat_us[-1], 1),
            "rtt_mean_us": round(statistics.fmean(lat_us), 1),
            "rtt_per_s": round(requests / rtt_wall),
            "messages": messages,
            "window": window,
            "received": server_report["received"],
            "lost": messages - server_report["received"],
            "oneway_rate_per_s": round(server_report["rate"]),
            "oneway_receive_s": round(server_report["elapsed"], 3),
            "sender_rate_per_s": round(messages / queued),
            "client_stats": client_stats,
            "server_stats": server_report["stats"],
        }
    finally:
        if proc.is_alive():
            proc.terminate()
        proc.join(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000, help="sequential request/reply round trips")
    parser.add_argument("--messages", type=int, default=200_000, help="one-way Hello notifications")
    parser.add_argument("--payload", type=int, default=16, help="bytes in each Ping")
    parser.add_argument(
        "--window", type=int, default=5000, help="one-way messages in flight at most (0: one unpaced burst)"
    )
    parser.add_argument(
        "--curve",
        choices=("off", "on", "both"),
        default="both",
        help="CURVE + ZAP + rights check on the server (default: both, to compare)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate the modes this many times; report each mode's median run",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    quiet_logs()
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.curve]
    runs: dict[bool, list[dict[str, Any]]] = {m: [] for m in modes}
    for _ in range(args.rounds):  # alternate the modes, so load from elsewhere hits both alike
        for curve in modes:
            runs[curve].append(
                run(args.requests, args.messages, args.payload, args.window, EndpointOptions(), curve)
            )
    # per mode, the run with the median one-way rate (its latencies come along)
    results = [sorted(runs[m], key=lambda r: r["oneway_rate_per_s"])[len(runs[m]) // 2] for m in modes]
    if args.rounds > 1:
        for m in modes:
            rates = ", ".join(f"{r['oneway_rate_per_s']:,}" for r in runs[m])
            p50s = ", ".join(f"{r['rtt_p50_us']:.0f}" for r in runs[m])
            print(f"CURVE {'on ' if m else 'off'} rounds: one-way msg/s {rates}; round trip p50 µs {p50s}")
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
        return 0
    for result in results:
        print(f"--- CURVE {'on (group key, ZAP, rights check)' if result['curve'] else 'off (plain text)'}")
        report(result)
    if len(results) == 2:
        off, on = results
        cost = (
            1 - on["oneway_rate_per_s"] / off["oneway_rate_per_s"]
            if off["oneway_rate_per_s"]
            else float("nan")
        )
        print(
            f"CURVE cost: one-way throughput {cost:+.1%} lower"
            f" [target <= 25 %: {'OK' if cost <= 0.25 else 'MISSED'}];"
            f" round trip p50 {on['rtt_p50_us'] - off['rtt_p50_us']:+.0f} µs,"
            f" p99 {on['rtt_p99_us'] - off['rtt_p99_us']:+.0f} µs"
        )
    return 0


def report(result: dict[str, Any]) -> None:
    ok_lat = result["rtt_p99_us"] < TARGET_P99_US
    ok_rate = result["oneway_rate_per_s"] > TARGET_RATE and result["lost"] == 0
    print(
        f"request/reply  N={result['requests']}: p50 {result['rtt_p50_us']:.0f} µs, "
        f"p90 {result['rtt_p90_us']:.0f} µs, p99 {result['rtt_p99_us']:.0f} µs, "
        f"max {result['rtt_max_us']:.0f} µs ({result['rtt_per_s']} round trips/s)  "
        f"[target p99 < {TARGET_P99_US:.0f} µs: {'OK' if ok_lat else 'MISSED'}]"
    )
    print(
        f"one-way        N={result['messages']}: "
        f"{result['oneway_rate_per_s']:,} msg/s at the receiver, "
        f"{result['received']} received, {result['lost']} lost "
        f"(window {result['window'] or 'none'}; sender {result['sender_rate_per_s']:,} msg/s)  "
        f"[target > {TARGET_RATE:,.0f} msg/s, no loss: {'OK' if ok_rate else 'MISSED'}]"
    )
    print(f"client stats {result['client_stats']}")
    print(f"server stats {result['server_stats']}")


if __name__ == "__main__":
    sys.exit(main())
