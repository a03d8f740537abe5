"""A real service protected end to end in the lab, side by side with keepalived.

nginx (Debian's package, from deploy/install-system-deps.sh) runs on both servers. A *service LAN*
is added to a lab: a bridge ``br-s`` in the router namespace with A's and B's ``eth2`` on it; the
router namespace itself is the client (it sits on the segment like any client of the service). A
client there requests ``http://VIP/`` every 20 ms (timeout 250 ms) and records each answer.

Two systems move the floating address VIP between A and B:

* **switchover**: a node per server whose pair traffic also runs over ``eth2`` (one NIC, as on a
  plain server), ``switchover module watch --pidfile`` answering for nginx, and the shipped
  ``deploy/hooks/floating_address.py`` as Commence and Discontinue hook. At a kill -9 of a node
  the runner starts what the systemd unit's ``ExecStopPost`` runs when the process exits:
  ``switchover hooks run discontinue --if-was-active --peer-wait 10``.
* **keepalived**: VRRPv3 on ``eth2`` (advert 0.1 s, nopreempt), a ``vrrp_script`` checking nginx's
  PID every second (keepalived's smallest interval).

Faults: ``service-kill`` (kill -9 of nginx on the active), ``node-kill`` (kill -9 of the active's
switchover node / keepalived), ``nic-down`` (the active's eth2 down), ``switch`` (``ctl switch`` /
keepalived stopped on the active). The report gives client-observed downtime (first failed request
to the first successful one after it), failed requests, and which servers hold VIP afterwards.

    python -m deploy.lab.real_service [--runs 3] [--faults service-kill,node-kill,nic-down,switch]
        [--systems switchover,keepalived] [--json FILE]        (root)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from deploy.lab.procs import Procs
from deploy.lab.runner import LabPair, switchover_argv
from deploy.lab.topology import Lab, LabConfig, cleanup_prefix, require_root, wait_for
from deploy.pair import child_env

SERVICE_IF = "eth2"
FAULTS = ("service-kill", "node-kill", "nic-down", "switch")
SYSTEMS = ("switchover", "keepalived")
HOOK = Path(__file__).resolve().parents[1] / "hooks" / "floating_address.py"
REQUEST_EVERY = 0.02
REQUEST_TIMEOUT = 0.25
RECOVERY_WAIT = 20.0  # seconds after the fault to wait for the service to answer again
AFTER_RECOVERY = 2.0  # seconds of requests recorded after the first success (failures there count)

CLIENT = r"""
import socket, sys, time
host, out, every, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
request = f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()
with open(out, "a", buffering=1) as f:
    nxt = time.monotonic()
    while True:
        t = time.time()
        who = "-"
        try:
            with socket.create_connection((host, 80), timeout=timeout) as s:
                s.settimeout(timeout)
                s.sendall(request)
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            ok = data.startswith(b"HTTP/1.1 200")
            who = data.rsplit(b"\n", 2)[-2].decode().strip() if ok else "-"
        except OSError:
            ok = False
        f.write(f"{t:.4f} {int(ok)} {who}\n")
        nxt += every
        time.sleep(max(0.0, nxt - time.monotonic()))
"""

NGINX_CONF = """
worker_processes 1;
pid {pid};
error_log {dir}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    server {{
        listen 80 reuseport;
        location / {{ return 200 "server-{host}\\n"; }}
    }}
}}
"""

KEEPALIVED_CONF = """
global_defs {{
    router_id lab-{host}
    script_user root
    enable_script_security
    vrrp_garp_master_delay 0
    vrrp_garp_master_repeat 3
}}
vrrp_script chk_nginx {{
    script "{check}"
    interval 1
    timeout 1
    fall 1
    rise 1
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface {dev}
    virtual_router_id 51
    version 3
    priority {priority}
    advert_int 0.1
    nopreempt
    virtual_ipaddress {{
        {vip}/24 dev {dev}
    }}
    track_script {{
        chk_nginx
    }}
}}
"""


@dataclass
class ServiceLan:
    """Addresses on the service LAN (``<base>.4.0/24``)."""

    lab: Lab
    base: str
    addr: dict[str, str] = field(default_factory=dict)

    @property
    def vip(self) -> str:
        return f"{self.base}.4.100"

    def up(self) -> ServiceLan:
        lab, gw = self.lab, self.lab.ns("gw")
        self.addr = {"a": f"{self.base}.4.1", "b": f"{self.base}.4.2", "gw": f"{self.base}.4.254"}
        lab.exec(
            "gw", ["ip", "link", "add", "br-s", "type", "bridge", "forward_delay", "0", "stp_state", "0"]
        )
        lab.exec("gw", ["ip", "addr", "add", f"{self.addr['gw']}/24", "dev", "br-s"])
        lab.exec("gw", ["ip", "link", "set", "br-s", "up"])
        for host in ("a", "b"):
            port = f"s-{host}"
            lab.exec(
                host, ["ip", "link", "add", SERVICE_IF, "type", "veth", "peer", "name", port, "netns", gw]
            )
            lab.exec("gw", ["ip", "link", "set", port, "master", "br-s"])
            lab.exec("gw", ["ip", "link", "set", port, "up"])
            lab.exec(host, ["ip", "addr", "add", f"{self.addr[host]}/24", "dev", SERVICE_IF])
            lab.exec(host, ["ip", "link", "set", SERVICE_IF, "up"])
        # the client takes a gratuitous ARP as news even for an address it has a fresh entry for
        lab.exec("gw", ["sysctl", "-qw", "net.ipv4.conf.br-s.arp_accept=1"])
        lab.exec("gw", ["sysctl", "-qw", "net.ipv4.neigh.br-s.locktime=0"])
        return self

    def holders(self) -> list[str]:
        out = []
        for host in ("a", "b"):
            text = self.lab.exec(
                host, ["ip", "-o", "-4", "addr", "show", "dev", SERVICE_IF], check=False
            ).stdout
            if f" {self.vip}/" in text:
                out.append(host)
        return out


@dataclass
class RunResult:
    system: str
    fault: str
    run: int
    downtime: float | None  # seconds; None: never failed; inf: never recovered
    failed: int
    requests: int
    holders_after: list[str]
    served_by_after: str
    note: str = ""


class Bench:
    def __init__(self, root: Path, prefix: str) -> None:
        self.root, self.prefix = root, prefix

    # -- the lab ---------------------------------------------------------------------------------

    def fresh_lab(self, n: int) -> tuple[Lab, ServiceLan]:
        prefix = f"{self.prefix}{n}"
        cleanup_prefix(prefix)
        lab = Lab(LabConfig(prefix=prefix, labdir=str(self.root / prefix))).up()
        return lab, ServiceLan(lab, lab.addr["a"].rsplit(".", 2)[0]).up()

    def start_nginx(self, lab: Lab, host: str) -> Path:
        d = lab.dir / f"nginx-{host}"
        d.mkdir(parents=True, exist_ok=True)
        pid = d / "nginx.pid"
        conf = d / "nginx.conf"
        conf.write_text(NGINX_CONF.format(pid=pid, dir=d, host=host))
        Procs(lab).start(f"nginx-{host}", host, ["nginx", "-c", str(conf), "-g", "daemon off;"], replace=True)
        wait_for(lambda: pid.exists() and pid.read_text().strip().isdigit(), 5.0, what=f"nginx on {host}")
        return pid

    def kill_nginx(self, lab: Lab, host: str) -> None:
        master = psutil.Process(Procs(lab).pid(f"nginx-{host}"))
        for p in [master, *master.children(recursive=True)]:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        Procs(lab).wait_exit(f"nginx-{host}", 5.0)

    def start_client(self, lab: Lab, svc: ServiceLan, out: Path) -> None:
        argv = [sys.executable, "-c", CLIENT, svc.vip, str(out), str(REQUEST_EVERY), str(REQUEST_TIMEOUT)]
        Procs(lab).start("client", "gw", argv, replace=True)

    # -- the two systems -------------------------------------------------------------------------

    def switchover_up(self, lab: Lab, svc: ServiceLan, pids: dict[str, Path]) -> LabPair:
        pair = LabPair(lab, lab.dir / "pair", modules={"a": False, "b": False})
        pair.write_configs()
        for host in ("a", "b"):  # the pair's own traffic on the service NIC too
            cfg = pair.config_path(host)
            text = cfg.read_text()
            for h in ("a", "b"):
                text = text.replace(f'address = "{lab.addr[h]}"', f'address = "{svc.addr[h]}"')
            cfg.write_text(text)
            wrapper = (
                "#!/bin/sh\n"
                f"export SWITCHOVER_FLOATING_ADDRESS={svc.vip}/24 SWITCHOVER_FLOATING_DEVICE={SERVICE_IF}\n"
                "export SWITCHOVER_FLOATING_CONF=/nonexistent\n"
                f'exec {sys.executable} {HOOK} "$@"\n'
            )
            for kind in ("commence", "discontinue"):
                hook = pair.hooks_dir(host) / f"{kind}.d" / "40-floating-address"
                hook.write_text(wrapper)
                hook.chmod(0o755)
        for host in ("a", "b"):
            pair.start_node(host)
            watch = switchover_argv(
                "module", "watch", "--name", "TsServer", "--config", str(pair.config_path(host)),
                "--pidfile", str(pids[host]), "--check-interval", "0.5",
            )  # fmt: skip
            Procs(lab).start(f"module-{host}", host, watch, env=child_env(), replace=True)
        pair.wait_pair(30.0)
        return pair

    def keepalived_up(self, lab: Lab, svc: ServiceLan, pids: dict[str, Path]) -> None:
        for host, priority in (("a", 150), ("b", 100)):
            d = lab.dir / f"keepalived-{host}"
            d.mkdir(parents=True, exist_ok=True)
            check = d / "check-nginx"
            check.write_text(f'#!/bin/sh\nexec kill -0 "$(cat {pids[host]})"\n')
            check.chmod(0o755)
            conf = d / "keepalived.conf"
            conf.write_text(
                KEEPALIVED_CONF.format(host=host, check=check, dev=SERVICE_IF, priority=priority, vip=svc.vip)
            )
            argv = [
                "keepalived", "--dont-fork", "--log-console", "--vrrp", "--use-file", str(conf),
                "--pid", str(d / "keepalived.pid"), "--vrrp_pid", str(d / "vrrp.pid"),
            ]  # fmt: skip
            Procs(lab).start(f"keepalived-{host}", host, argv, replace=True)
            if host == "a":  # A first, so that it is the master
                wait_for(lambda: svc.holders() == ["a"], 10.0, what="keepalived on A to take the address")

    # -- one run ---------------------------------------------------------------------------------

    def run_one(self, system: str, fault: str, n: int) -> RunResult:
        lab, svc = self.fresh_lab(n)
        out = lab.dir / "client.log"
        pair: LabPair | None = None
        try:
            pids = {h: self.start_nginx(lab, h) for h in ("a", "b")}
            if system == "switchover":
                pair = self.switchover_up(lab, svc, pids)
            else:
                self.keepalived_up(lab, svc, pids)
            if not wait_for(lambda: svc.holders() == ["a"], 15.0, what="the address on A"):
                raise RuntimeError(f"{system}: the address is not on A alone: {svc.holders()}")
            self.start_client(lab, svc, out)
            if not wait_for(lambda: _streak(out, 25), 10.0, what="the client to be served"):
                raise RuntimeError(f"{system}: the client is not served through {svc.vip}")
            t_fault = time.time()
            note = self.inject(lab, svc, system, fault, pair)
            if system == "switchover" and fault == "node-kill" and pair is not None:
                # what the unit's ExecStopPost does as soon as systemd sees the node process exit
                argv = switchover_argv(
                    "hooks", "run", "discontinue", "--if-was-active", "--peer-wait", "10",
                    "--config", str(pair.config_path("a")),
                )  # fmt: skip
                Procs(lab).start("stop-post-a", "a", argv, env=child_env(), replace=True)
            recovered = wait_for(
                lambda: _recovered_after(out, t_fault) is not None, RECOVERY_WAIT, what="recovery"
            )
            if recovered:
                end = (_recovered_after(out, t_fault) or t_fault) + AFTER_RECOVERY
                wait_for(lambda: time.time() >= end, AFTER_RECOVERY + 1, interval=0.05, what="tail")
            if system == "switchover" and fault == "node-kill":
                Procs(lab).wait_exit("stop-post-a", 15.0)
            Procs(lab).signal("client", signal.SIGTERM)
            samples = _read(out)
            after = [s for s in samples if s[0] >= t_fault]
            downtime = _downtime(after)
            served = next((who for _, ok, who in reversed(after) if ok), "-")
            return RunResult(
                system, fault, n, downtime, sum(1 for _, ok, _ in after if not ok), len(after),
                svc.holders(), served, note,
            )  # fmt: skip
        finally:
            lab.down(grace=1.0)

    def inject(self, lab: Lab, svc: ServiceLan, system: str, fault: str, pair: LabPair | None) -> str:
        if fault == "service-kill":
            self.kill_nginx(lab, "a")
        elif fault == "node-kill":
            Procs(lab).kill9(pair.proc("node-a") if pair is not None else "keepalived-a")
        elif fault == "nic-down":
            lab.exec("a", ["ip", "link", "set", SERVICE_IF, "down"])
        elif fault == "switch":
            if pair is not None:
                rc, text = pair.ctl("a", ["switch", "--yes"])
                return "" if rc == 0 else f"ctl switch failed: {text}"
            Procs(lab).signal("keepalived-a", signal.SIGTERM)  # a stopped keepalived hands over at once
        return ""


def _read(path: Path) -> list[tuple[float, bool, str]]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                rows.append((float(parts[0]), parts[1] == "1", parts[2]))
    return rows


def _streak(path: Path, n: int) -> bool:
    rows = _read(path)
    return len(rows) >= n and all(ok for _, ok, _ in rows[-n:])


def _recovered_after(path: Path, t_fault: float) -> float | None:
    """Time of the first success after the first failure after ``t_fault`` (None: not yet);
    with no failure at all for 3 s after the fault, the fault time itself."""
    after = [r for r in _read(path) if r[0] >= t_fault]
    first_fail = next((i for i, r in enumerate(after) if not r[1]), None)
    if first_fail is None:
        return t_fault if after and after[-1][0] - t_fault > 3.0 else None
    return next((r[0] for r in after[first_fail:] if r[1]), None)


def _downtime(after: list[tuple[float, bool, str]]) -> float | None:
    first_fail = next((i for i, r in enumerate(after) if not r[1]), None)
    if first_fail is None:
        return None
    back = next((r[0] for r in after[first_fail:] if r[1]), None)
    return float("inf") if back is None else back - after[first_fail][0]


def report(results: list[RunResult]) -> str:
    lines = [
        "fault          system      downtime (s) per run       median   failed   address after / served by"
    ]
    by: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        by.setdefault((r.fault, r.system), []).append(r)
    for (fault, system), rs in by.items():
        downs = [0.0 if r.downtime is None else r.downtime for r in rs]
        shown = " ".join("never" if d == float("inf") else f"{d:.3f}" for d in downs)
        med = statistics.median(downs)
        holders = "; ".join(f"{'+'.join(r.holders_after) or 'none'}/{r.served_by_after}" for r in rs)
        failed = ",".join(str(r.failed) for r in rs)
        lines.append(f"{fault:<14} {system:<11} {shown:<26} {med:>7.3f}   {failed:<8} {holders}")
        lines += [f"    note: {r.note}" for r in rs if r.note]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--root", default="/tmp/switchover-real-service")
    args = parser.parse_args(argv)
    require_root()
    for tool in ("nginx", "keepalived"):
        if not any(Path(d, tool).exists() for d in ("/usr/sbin", "/usr/bin", "/sbin")):
            print(f"{tool} is missing: run deploy/install-system-deps.sh", file=sys.stderr)
            return 2
    bench = Bench(Path(args.root), f"rs{os.getpid() % 10000}x")
    results: list[RunResult] = []
    n = 0
    for fault in args.faults.split(","):
        for system in args.systems.split(","):
            for run in range(args.runs):
                n += 1
                try:
                    r = bench.run_one(system, fault, n)
                except Exception as exc:  # one broken run must not lose the others
                    r = RunResult(system, fault, run, float("inf"), -1, 0, [], "-", f"run failed: {exc}")
                r.run = run
                results.append(r)
                print(
                    f"{fault} {system} run {run + 1}: downtime "
                    f"{'none' if r.downtime is None else f'{r.downtime:.3f} s'}, failed {r.failed}/{r.requests}, "
                    f"address on {r.holders_after}, served by {r.served_by_after} {r.note}",
                    flush=True,
                )
    print()
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
