"""The real ICMP pinger and gateway discovery.

Only loopback addresses are pinged. Failures are produced inside fresh network namespaces (this test
runs as root): one whose loopback ignores echo requests, one whose loopback is down, and one where the
process drops root to check the unprivileged-socket path and the start-up error.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from transport.icmp import (
    IcmpPinger,
    IcmpUnavailableError,
    gateways,
    parse_proc_net_ipv6_route,
    parse_proc_net_route,
    resolve_address,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pinger() -> Iterator[IcmpPinger]:
    p = IcmpPinger()
    yield p
    p.close()


def ask(pinger: IcmpPinger, address: str, timeout: float = 1.0) -> tuple[bool, str, float]:
    """(answered, thread that reported, seconds) through the asynchronous interface."""
    done = threading.Event()
    out: list[tuple[bool, str]] = []
    start = time.monotonic()

    def on_result(ok: bool) -> None:
        out.append((ok, threading.current_thread().name))
        done.set()

    pinger.ping(address, timeout, on_result)
    assert done.wait(timeout + 5), "the pinger never called back"
    return out[0][0], out[0][1], time.monotonic() - start


# ------------------------------------------------------------------------------------------------
# Real echoes on this host
# ------------------------------------------------------------------------------------------------


def test_a_loopback_echo_is_answered_and_reported_on_a_worker_thread(pinger: IcmpPinger) -> None:
    answered, thread, seconds = ask(pinger, "127.0.0.1")
    assert answered and thread.startswith("icmp") and seconds < 1.0
    assert pinger.mode == "privileged"  # these tests run as root


def test_ping_returns_before_the_answer_is_reported(pinger: IcmpPinger) -> None:
    returned = threading.Event()
    seen: list[bool] = []
    done = threading.Event()

    def on_result(ok: bool) -> None:
        seen.append(returned.wait(2.0))  # had ping() already returned when the answer came?
        done.set()

    pinger.ping("127.0.0.1", 1.0, on_result)
    returned.set()
    assert done.wait(5) and seen == [True]


def test_ipv6_loopback_and_a_host_name_are_answered(pinger: IcmpPinger) -> None:
    assert ask(pinger, "::1")[0]
    assert ask(pinger, "localhost")[0]
    assert resolve_address("localhost") in ("127.0.0.1", "::1")


def test_names_that_cannot_be_resolved_are_no_answer_not_an_error(pinger: IcmpPinger) -> None:
    assert ask(pinger, "no-such-host.invalid")[0] is False
    assert ask(pinger, "bad..name")[0] is False
    assert resolve_address("bad..name") is None


def test_a_failing_callback_does_not_stop_the_pinger(pinger: IcmpPinger) -> None:
    def boom(ok: bool) -> None:
        raise RuntimeError("callback bug")

    for _ in range(8):  # more than the pool's workers
        pinger.ping("127.0.0.1", 1.0, boom)
    assert ask(pinger, "127.0.0.1")[0]


def test_a_closed_pinger_refuses_new_pings() -> None:
    p = IcmpPinger(max_workers=1)
    p.close()
    with pytest.raises(RuntimeError, match="closed"):
        p.ping("127.0.0.1", 1.0, lambda ok: None)


def test_dscp_marking_still_gets_an_answer() -> None:
    with IcmpPinger(dscp=34) as p:
        assert p.ping_sync("127.0.0.1", 1.0)


# ------------------------------------------------------------------------------------------------
# Failures and permissions, inside fresh network namespaces
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def netns() -> Iterator[str]:
    assert shutil.which("ip"), "iproute2 is needed"
    name = f"so-icmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def in_ns(ns: str, *command: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, *command], check=True, capture_output=True)


SCRIPT = """
import encodings.idna  # imported before dropping root: the interpreter lives under /root
import json, os, sys, time
from transport.icmp import IcmpPinger, IcmpUnavailableError
if {drop!r}:
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
try:
    pinger = IcmpPinger()
except IcmpUnavailableError as exc:
    print(json.dumps({{"error": str(exc)}}))
    sys.exit(0)
start = time.monotonic()
answered = pinger.ping_sync({address!r}, {timeout!r})
print(json.dumps({{"mode": pinger.mode, "answered": answered, "seconds": time.monotonic() - start}}))
"""


def run_pinger(ns: str, address: str = "127.0.0.1", timeout: float = 0.5, drop_root: bool = False) -> dict:
    script = SCRIPT.format(drop=drop_root, address=address, timeout=timeout)
    env = {**os.environ, "PYTHONPATH": str(REPO), "LOGURU_LEVEL": "WARNING"}
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_loopback_that_ignores_echo_requests_is_no_answer_within_the_timeout(netns: str) -> None:
    in_ns(netns, "ip", "link", "set", "lo", "up")
    in_ns(netns, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1")
    result = run_pinger(netns, timeout=0.5)
    assert result["answered"] is False
    assert 0.5 <= result["seconds"] < 2.5


def test_an_address_without_a_route_is_no_answer_at_once(netns: str) -> None:
    # a fresh namespace: loopback down, no route at all
    result = run_pinger(netns, timeout=3.0)
    assert result["answered"] is False and result["seconds"] < 1.0


def test_the_same_namespace_answers_once_its_loopback_is_up(netns: str) -> None:
    in_ns(netns, "ip", "link", "set", "lo", "up")
    result = run_pinger(netns)
    assert result == {"mode": "privileged", "answered": True, "seconds": result["seconds"]}


def test_without_root_the_pinger_uses_unprivileged_sockets_when_the_sysctl_allows_it(netns: str) -> None:
    in_ns(netns, "ip", "link", "set", "lo", "up")
    in_ns(netns, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
    result = run_pinger(netns, drop_root=True)
    assert result["mode"] == "unprivileged" and result["answered"] is True


def test_without_root_or_the_sysctl_start_up_fails_saying_what_to_do(netns: str) -> None:
    in_ns(netns, "ip", "link", "set", "lo", "up")  # ping_group_range keeps its default "1 0" here
    result = run_pinger(netns, drop_root=True)
    message = result["error"]
    assert "net.ipv4.ping_group_range" in message and "'1 0'" in message
    assert "root" in message and "CAP_NET_RAW" in message
    assert "sysctl -w net.ipv4.ping_group_range='0 2147483647'" in message


def test_the_unavailable_error_is_a_runtime_error() -> None:
    assert issubclass(IcmpUnavailableError, RuntimeError)


# ------------------------------------------------------------------------------------------------
# Gateways
# ------------------------------------------------------------------------------------------------


def hexaddr(ip: str) -> str:
    """An IPv4 address as /proc/net/route prints it on this host."""
    return f"{struct.unpack('=I', socket.inet_aton(ip))[0]:08X}"


def route_line(iface: str, dest: str, gw: str, flags: int, metric: int, mask: str = "0.0.0.0") -> str:
    return "\t".join(
        [
            iface,
            hexaddr(dest),
            hexaddr(gw),
            f"{flags:04X}",
            "0",
            "0",
            str(metric),
            hexaddr(mask),
            "0",
            "0",
            "0",
        ]
    )


ROUTE_HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT"


def test_ipv4_gateways_are_read_from_proc_net_route_text() -> None:
    text = "\n".join(
        [
            ROUTE_HEADER,
            route_line("eth0", "0.0.0.0", "192.0.2.1", 0x3, 100),
            route_line("eth1", "0.0.0.0", "192.168.1.1", 0x3, 50),
            route_line("eth0", "192.0.2.0", "0.0.0.0", 0x1, 0, "255.255.255.0"),  # on-link, no gateway
            route_line("eth1", "10.0.0.0", "192.168.1.254", 0x3, 0, "255.0.0.0"),  # not a default route
            route_line("lo", "127.0.0.0", "127.0.0.1", 0x3, 0, "255.0.0.0"),  # loopback
            route_line("eth0", "0.0.0.0", "192.0.2.1", 0x3, 200),  # duplicate
            route_line("eth2", "0.0.0.0", "10.10.10.10", 0x2, 0),  # not up
            route_line("eth3", "0.0.0.0", "10.20.20.20", 0x203, 0),  # reject
            "garbage line",
        ]
    )
    assert parse_proc_net_route(text) == ["192.168.1.1", "192.0.2.1", "192.168.1.254"]


IPV6_ROUTE = """\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000200 00000002 00000000 00000003     eth1
20010db8000000000000000000000000 20 00000000000000000000000000000000 00 fd000000000000000000000000000002 00000100 00000002 00000000 00000003     eth0
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000001 00000000 00000002 00000000 00000003       lo
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
"""


def test_ipv6_gateways_are_read_from_proc_net_ipv6_route_text() -> None:
    assert parse_proc_net_ipv6_route(IPV6_ROUTE) == ["fe80::1%eth1", "fd00::1", "fd00::2"]


def test_gateways_combines_both_tables_ipv4_first(tmp_path: Path) -> None:
    v4 = tmp_path / "route"
    v6 = tmp_path / "ipv6_route"
    v4.write_text("\n".join([ROUTE_HEADER, route_line("eth0", "0.0.0.0", "192.0.2.1", 0x3, 0)]) + "\n")
    v6.write_text(IPV6_ROUTE)
    assert gateways(v4, v6) == ["192.0.2.1", "fe80::1%eth1", "fd00::1", "fd00::2"]
    assert gateways(tmp_path / "missing", tmp_path / "missing6") == []


def test_the_real_routing_tables_give_the_gateways_ip_route_shows() -> None:
    found = gateways()
    assert len(found) == len(set(found))
    assert all(a and not a.startswith("127.") and a not in ("0.0.0.0", "::", "::1") for a in found)
    shown: set[str] = set()
    for family in ("-4", "-6"):
        out = subprocess.run(
            ["ip", "-j", family, "route", "show"], capture_output=True, text=True, check=True
        )
        shown |= {r["gateway"] for r in json.loads(out.stdout or "[]") if "gateway" in r}
    assert {a.split("%")[0] for a in found} >= shown
    v4_found = {a for a in found if ":" not in a}
    assert v4_found == {g for g in shown if ":" not in g}
