#!/usr/bin/env python3
"""Failover against keepalived, side by side in the same network namespaces, at equal tolerance.

Builds one lab (:class:`deploy.lab.topology.Lab`: servers A and B on two segments behind a router, the
NetTest hosts) and, in the same two namespaces, runs either the switchover pair (nodes only, no module)
or keepalived (VRRP over unicast between the same LAN addresses, ``advert_int`` 0.1 s, A priority 150,
B 100: B declares A dead after 3 adverts + skew = 0.361 s of silence). The pair is given parameters
whose worst-case host-loss detection time (:func:`actors.monitoring.detection_time.detection_times`) is
that same silence: by default notifier ping every 0.2 s, timeout 0.08 s, 1 retry at once, NetTest timeout
0.08 s (0.2 + 2 x 0.08 = 0.36 s; ``--timeout`` picks another split), Reconnect Timeout 0 (a dead notifier
with a live host switches at once).

Faults, each on the active (A), runs interleaved (system order alternating), a fresh pair each run,
landing at a random point of the ping / advert cycle:

* ``kill9``: SIGKILL of the active's processes (the node; keepalived's parent and VRRP child together);
* ``nic-down``: the active's NIC down (host loss);
* ``sigstop``: SIGSTOP of the active's processes (a frozen node).

Measured from just before the fault to B's decision: the epoch of B's event-log record for the switch
(switchover) and the moment keepalived writes B's MASTER line to its notify FIFO (read by a thread).
Printed: min / median / max per system and fault, the ratio switchover / keepalived of the medians,
and the idle CPU (% of one core over ``--idle`` seconds) and RSS of each system's two nodes. The
machine's load average is printed too: it is shared.

    python bench/bench_lab_failover.py [--runs 5] [--faults kill9,nic-down,sigstop] [--idle 30]
        [--json FILE]

Needs root (network namespaces) and keepalived (``deploy/install-system-deps.sh``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_idle import load, measure

from actors.monitoring.detection_time import detection_times
from actors.monitoring.monitor_params import PrimaryMonitorParams
from actors.roles import event_log
from deploy.lab.faults import Faults
from deploy.lab.procs import Procs
from deploy.lab.runner import LabPair, poll
from deploy.lab.topology import INSTALL_HINT, Lab, LabConfig, LabError, cleanup_prefix, require_root, which

FAULTS = ("kill9", "nic-down", "sigstop")
SYSTEMS = ("switchover", "keepalived")
ADVERT = 0.1
PRIORITY = {"a": 150, "b": 100}
KEEPALIVED_TOLERANCE = 3 * ADVERT + (256 - PRIORITY["b"]) / 256 * ADVERT  # master down interval

TAKEOVER_LIMIT = 15.0
SETTLE = 2.0
DEFAULT_TIMEOUT = 0.08


def monitor_params(timeout: float) -> PrimaryMonitorParams:
    """One retry at once, the echo timeout equal to the ping timeout, and the ping delay that makes the
    worst-case host loss equal keepalived's master-down interval (``ping_delay + 2 * timeout``)."""
    ping_delay = round(KEEPALIVED_TOLERANCE - 2 * timeout, 3)
    if ping_delay <= 0:
        raise ValueError(f"a timeout of {timeout:g} s leaves no room for a ping delay within "
                         f"{KEEPALIVED_TOLERANCE:.3f} s; expected a timeout below {KEEPALIVED_TOLERANCE / 2:.3f} s")
    return PrimaryMonitorParams(
        ping_delay=ping_delay, timeout=timeout, retry_count=1, retry_ping_delay=0.0, nettest_timeout=timeout
    )


def parameters(p: PrimaryMonitorParams) -> dict[str, str]:
    return {
        "Switchover Primary Monitor Ping Delay": f"{p.ping_delay:g}",
        "Switchover Primary Monitor Timeout": f"{p.timeout:g}",
        "Switchover Primary Monitor Retry Count": str(p.retry_count),
        "Switchover Primary Monitor Retry Ping Delay": f"{p.retry_ping_delay:g}",
        "Switchover NetTest Timeout": f"{p.nettest_timeout:g}",
        "Switchover Reconnect Timeout": "0",
    }


def pair_tolerance(timeout: float) -> float:
    return detection_times(monitor_params(timeout), 0.0).host_loss


@dataclass
class Run:
    system: str
    fault: str
    n: int
    seconds: float | None = None
    error: str = ""
    detail: str = ""


@dataclass
class Results:
    runs: list[Run] = field(default_factory=list)
    idle: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    load: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# signalling a "node": the process and everything under it, at once


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return []


def signal_tree(pid: int, sig: int) -> None:
    for p in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)


def fault_now(lab: Lab, fault: str, pid: int) -> float:
    """Inject ``fault`` on A (whose main process is ``pid``); the time just before it."""
    at = time.time()
    if fault == "kill9":
        signal_tree(pid, signal.SIGKILL)
    elif fault == "sigstop":
        signal_tree(pid, signal.SIGSTOP)
    elif fault == "nic-down":
        Faults(lab).link_down("a")
    else:
        raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
    return at


def undo(lab: Lab, fault: str, pid: int) -> None:
    if fault == "sigstop":
        signal_tree(pid, signal.SIGCONT)
    if fault == "nic-down":
        Faults(lab).heal_all()


# --------------------------------------------------------------------------------------------------
# switchover


def switchover_pair(lab: Lab, root: Path, params: dict[str, str]) -> LabPair:
    pair = LabPair(lab, root, parameters=params, modules={"a": False, "b": False}, log_level="INFO")
    pair.write_configs()
    pair.start_node("a")  # A first: it becomes Primary, B then joins as Backup
    if not poll(lambda: pair.roles().get("a") == "Primary", 30, 0.1):
        raise LabError(f"node a did not become Primary: {pair.roles()}")
    pair.start_node("b")
    if not poll(lambda: pair.roles().get("b") == "Backup", 30, 0.1):
        raise LabError(f"node b did not become Backup: {pair.roles()}")

    def monitoring() -> bool:
        from transport.admin_client import admin_call

        with contextlib.suppress(Exception):
            report = admin_call(str(pair.data_dir("b")), "monitors", {}, timeout=1.0)["monitors"]
            return bool((report.get("PrimaryMonitor") or {}).get("running"))
        return False

    if not poll(monitoring, 30, 0.1):
        raise LabError("node b's primary monitor did not start")
    return pair


def switchover_run(lab: Lab, root: Path, fault: str, n: int, *, params: dict[str, str]) -> Run:
    run = Run("switchover", fault, n)
    pair = switchover_pair(lab, root, params)
    try:
        time.sleep(SETTLE + random.uniform(0, 0.25))  # a random point of the 0.2 s ping cycle
        if pair.roles() != {"a": "Primary", "b": "Backup"}:
            run.error = f"the pair changed roles before the fault (a false detection?): {pair.roles()}"
            return run
        pid = pair.pid("node-a")
        at = fault_now(lab, fault, pid)
        events = pair.data_dir("b") / "events.jsonl"

        def took() -> list[event_log.EventRecord]:
            with contextlib.suppress(OSError, ValueError):
                return [r for r in event_log.read(events) if r.new_state == "Primary" and r.old_state != "Init"]
            return []

        if poll(lambda: bool(took()), TAKEOVER_LIMIT, 0.02):
            record = took()[0]
            run.seconds = record.epoch - at
            run.detail = record.reason or ""
        else:
            run.error = f"b did not become Primary within {TAKEOVER_LIMIT:g} s"
        undo(lab, fault, pid)
    finally:
        pair.stop_all(timeout=3.0)
    return run


# --------------------------------------------------------------------------------------------------
# keepalived

KEEPALIVED_CONF = """
global_defs {{
    router_id {name}
    vrrp_version 3
    notify_fifo {fifo}
    script_user root
    enable_script_security
}}
vrrp_instance bench {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int {advert}
    unicast_src_ip {me}
    unicast_peer {{
        {peer}
    }}
    virtual_ipaddress {{
        {vip}/32 dev eth0
    }}
}}
"""


class FifoReader:
    """Reads keepalived's notify FIFO on a thread, stamping each line with the wall clock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError), open(self.path, "rb", buffering=0) as f:
            buf = b""
            while True:
                chunk = f.read(4096)
                if not chunk:
                    return
                now = time.time()
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    with self._lock:
                        self.lines.append((now, line.decode(errors="replace")))

    def first(self, word: str, after: float = 0.0) -> float | None:
        with self._lock:
            return next((t for t, line in self.lines if t >= after and f" {word} " in f"{line} "), None)

    def close(self) -> None:
        # a writer that opens and closes ends the reader's loop when keepalived is already gone
        with contextlib.suppress(OSError):
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        self._thread.join(timeout=2)


@dataclass
class KeepalivedPair:
    lab: Lab
    root: Path
    fifos: dict[str, FifoReader] = field(default_factory=dict)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        exe = which("keepalived")
        if exe is None:
            raise LabError(f"keepalived not found (Debian package keepalived): {INSTALL_HINT}")
        vip = f"{self.lab.config.subnet_base}.1.100"
        for host, peer in (("a", "b"), ("b", "a")):  # A first: MASTER alone, then B joins as BACKUP
            fifo = self.root / f"{host}.fifo"
            self.fifos[host] = FifoReader(fifo)
            conf = self.root / f"{host}.conf"
            conf.write_text(KEEPALIVED_CONF.format(
                name=f"bench-{host}", fifo=fifo, priority=PRIORITY[host], advert=ADVERT,
                me=self.lab.addr[host], peer=self.lab.addr[peer], vip=vip,
            ))
            Procs(self.lab).start(f"keepalived-{host}", host, [
                exe, "--dont-fork", "--log-console", "--log-detail", "--vrrp", "-f", str(conf),
                "-p", str(self.root / f"{host}.pid"), "-r", str(self.root / f"{host}.vrrp.pid"),
            ], replace=True)
            if host == "a" and not poll(lambda: self.fifos["a"].first("MASTER") is not None, 20, 0.02):
                raise LabError("keepalived on a did not become MASTER within 20 s")
        if not poll(lambda: self.fifos["b"].first("BACKUP") is not None, 20, 0.02):
            raise LabError("keepalived on b did not report BACKUP within 20 s")
        if self.fifos["b"].first("MASTER") is not None:
            raise LabError("keepalived on b became MASTER during start-up")

    def pid(self, host: str) -> int:
        return Procs(self.lab).pid(f"keepalived-{host}")

    def stop(self) -> None:
        for host in ("a", "b"):
            with contextlib.suppress(LabError, KeyError):
                pid = self.pid(host)
                signal_tree(pid, signal.SIGCONT)
                signal_tree(pid, signal.SIGKILL)
                Procs(self.lab).wait_exit(f"keepalived-{host}", 5)
        for reader in self.fifos.values():
            reader.close()


def keepalived_run(lab: Lab, root: Path, fault: str, n: int) -> Run:
    run = Run("keepalived", fault, n)
    pair = KeepalivedPair(lab, root)
    try:
        pair.start()
        time.sleep(SETTLE + random.uniform(0, ADVERT))
        pid = pair.pid("a")
        at = fault_now(lab, fault, pid)
        if poll(lambda: pair.fifos["b"].first("MASTER", after=at) is not None, TAKEOVER_LIMIT, 0.01):
            took = pair.fifos["b"].first("MASTER", after=at)
            assert took is not None
            run.seconds = took - at
            run.detail = "MASTER"
        else:
            run.error = f"keepalived on b did not become MASTER within {TAKEOVER_LIMIT:g} s"
        undo(lab, fault, pid)
    finally:
        pair.stop()
    return run


# --------------------------------------------------------------------------------------------------
# idle cost


def idle_switchover(lab: Lab, root: Path, seconds: float, params: dict[str, str]) -> dict[str, dict[str, float]]:
    pair = switchover_pair(lab, root, params)
    try:
        time.sleep(SETTLE)
        return measure({"a (Primary)": pair.pid("node-a"), "b (Backup)": pair.pid("node-b")}, seconds)
    finally:
        pair.stop_all(timeout=3.0)


def idle_keepalived(lab: Lab, root: Path, seconds: float) -> dict[str, dict[str, float]]:
    pair = KeepalivedPair(lab, root)
    try:
        pair.start()
        time.sleep(SETTLE)
        nodes = {"a": "a (MASTER)", "b": "b (BACKUP)"}
        procs = {f"{host} {p.pid}": p.pid for host in nodes for p in tree(pair.pid(host))}
        per = measure(procs, seconds)  # both nodes over the same window
        out: dict[str, dict[str, float]] = {}
        for host, label in nodes.items():
            mine = [v for k, v in per.items() if k.startswith(f"{host} ")]
            out[label] = {
                "cpu_percent": round(sum(v["cpu_percent"] for v in mine), 2),
                "rss_mb": round(sum(v["rss_mb"] for v in mine), 1),
                "processes": len(mine),
            }
        return out
    finally:
        pair.stop()


# --------------------------------------------------------------------------------------------------


def summary(results: Results, faults: list[str], timeout: float) -> str:
    lines = [
        f"tolerance: keepalived {KEEPALIVED_TOLERANCE:.3f} s (advert {ADVERT:g} s), switchover "
        f"{pair_tolerance(timeout):.3f} s (worst-case host loss of its parameters)",
        "seconds from the fault to the backup's decision to take over",
        f"{'fault':10s} {'system':11s} {'n':>2s} {'min':>7s} {'median':>7s} {'max':>7s}   runs",
    ]
    for fault in faults:
        medians: dict[str, float] = {}
        for system in SYSTEMS:
            runs = [r for r in results.runs if r.system == system and r.fault == fault]
            ok = [r.seconds for r in runs if r.seconds is not None]
            failed = [r for r in runs if r.seconds is None]
            if ok:
                medians[system] = statistics.median(ok)
                lines.append(
                    f"{fault:10s} {system:11s} {len(ok):2d} {min(ok):7.3f} {statistics.median(ok):7.3f} "
                    f"{max(ok):7.3f}   " + " ".join(f"{v:.3f}" for v in ok)
                )
            for r in failed:
                lines.append(f"{fault:10s} {system:11s} run {r.n}: {r.error}")
        if len(medians) == 2 and medians["keepalived"] > 0:
            ratio = medians["switchover"] / medians["keepalived"]
            lines.append(f"{fault:10s} ratio switchover/keepalived (medians): {ratio:.2f}")
    lines.append(f"load: {', '.join(results.load)}")
    if results.idle:
        lines.append("idle over the measuring window:")
    for system, nodes in results.idle.items():
        for node, u in nodes.items():
            lines.append(f"  {system:11s} {node:14s} CPU {u['cpu_percent']:6.2f} % of a core   RSS {u['rss_mb']:6.1f} MB")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--faults", default=",".join(FAULTS))
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of idle measurement per system (0: skip)")
    ap.add_argument("--json", help="also write every run to this file")
    ap.add_argument("--prefix", default=f"sob{os.getpid() % 100000}")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                    help="the pair's notifier ping and echo timeout; the ping delay fills the rest of the "
                         f"tolerance (default {DEFAULT_TIMEOUT:g} s: ping delay 0.2 s)")
    args = ap.parse_args()
    try:
        params = parameters(monitor_params(args.timeout))
    except ValueError as exc:
        ap.error(str(exc))
    print(f"pair parameters: {params}", flush=True)
    faults = [f for f in args.faults.split(",") if f]
    for f in faults:
        if f not in FAULTS:
            ap.error(f"unknown fault {f!r}; expected some of {', '.join(FAULTS)}")
    require_root()
    if which("keepalived") is None:
        ap.error(f"keepalived not found: {INSTALL_HINT}")
    results = Results()
    cleanup_prefix(args.prefix)
    with tempfile.TemporaryDirectory(prefix="bench-lab-") as tmp:
        base = Path(tmp)
        lab = Lab(LabConfig(prefix=args.prefix, labdir=str(base / "lab"))).up()
        counter = iter(range(1_000_000))

        def fresh() -> Path:
            return base / f"r{next(counter)}"

        try:
            if args.idle > 0:
                results.load.append(load())
                results.idle["switchover"] = idle_switchover(lab, fresh(), args.idle, params)
                results.idle["keepalived"] = idle_keepalived(lab, fresh(), args.idle)
                results.load.append(load())
            runners: dict[str, Callable[[Lab, Path, str, int], Run]] = {
                "switchover": functools.partial(switchover_run, params=params), "keepalived": keepalived_run,
            }
            for n in range(args.runs):
                for fault in faults:
                    order = SYSTEMS if (n + faults.index(fault)) % 2 == 0 else tuple(reversed(SYSTEMS))
                    for system in order:
                        try:
                            run = runners[system](lab, fresh(), fault, n)
                        except LabError as exc:
                            run = Run(system, fault, n, error=str(exc))
                        results.runs.append(run)
                        shown = f"{run.seconds:.3f} s" if run.seconds is not None else run.error
                        print(f"run {n} {fault:9s} {system:11s} {shown} {run.detail}", flush=True)
        finally:
            Procs(lab).stop_all(timeout=3.0)
            lab.down(grace=1.0)
    results.load.append(load())
    print()
    print(summary(results, faults, args.timeout))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "runs": [asdict(r) for r in results.runs], "idle": results.idle, "load": results.load,
            "parameters": params, "advert": ADVERT,
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
