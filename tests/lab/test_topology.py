"""The lab's topology: real namespaces, real ICMP (icmplib inside a namespace), real TCP."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest

from deploy.lab.faults import Faults
from deploy.lab.procs import Procs
from deploy.lab.topology import (
    HOSTS,
    ROOT_ERROR,
    Lab,
    LabCommandError,
    LabConfig,
    LabError,
    LabPermissionError,
    _list_netns,
    cleanup_prefix,
    netns_pids,
    require_root,
    wait_for,
)
from tests.lab.conftest import LabFactory

DEADLINE = 5.0


def _host_links() -> list[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    return [link["ifname"] for link in json.loads(out)]


def _host_nft_tables() -> list[str]:
    out = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True, check=True).stdout
    return [item["table"]["name"] for item in json.loads(out)["nftables"] if "table" in item]


def test_addresses_and_names(lab: Lab) -> None:
    p = lab.prefix
    assert lab.netns == {h: f"{p}-{h}" for h in HOSTS}
    assert lab.addr["a"] == "10.231.1.10" and lab.addr["b"] == "10.231.2.10"
    assert lab.gateway == {"a": "10.231.1.1", "ntb": "10.231.1.1", "b": "10.231.2.1", "nta": "10.231.2.1"}
    # NetTest A is on B's segment (pinged by A), NetTest B on A's segment
    assert lab.nettest == {"a": "10.231.2.20", "b": "10.231.1.20"}
    assert lab.link_addr == {"a": "10.231.3.1", "b": "10.231.3.2"}
    assert set(lab.netns.values()) <= set(_list_netns())


def test_a_and_b_reach_each_other_over_the_router(lab: Lab) -> None:
    assert wait_for(lambda: lab.ping("a", "b"), DEADLINE), "A cannot ping B"
    assert wait_for(lambda: lab.ping("b", "a"), DEADLINE), "B cannot ping A"
    # the path goes through the gateway: A's route to B is via the router, and the router forwards
    route = json.loads(lab.exec("a", ["ip", "-j", "route", "get", lab.addr["b"]]).stdout)[0]
    assert route["gateway"] == lab.gateway["a"] and route["dev"] == "eth0"
    assert lab.exec("gw", ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "1"


def test_tcp_connect_a_to_b_main_port(lab: Lab) -> None:
    assert Procs(lab).alive("listen-b")
    assert wait_for(lambda: lab.tcp_connect("a", "b", 3634), DEADLINE)
    assert wait_for(lambda: lab.tcp_connect("b", "a", 3634), DEADLINE)
    assert not lab.tcp_connect("a", "b", 3699, timeout=0.5), "nothing listens on 3699: must be refused"


@pytest.mark.parametrize("host", ["a", "b", "nta", "ntb"])
def test_default_route_is_the_router(lab: Lab, host: str) -> None:
    routes = json.loads(lab.exec(host, ["ip", "-j", "route", "show", "default"]).stdout)
    assert [r["gateway"] for r in routes] == [lab.gateway[host]]


def test_nettest_hosts_answer_icmp(lab: Lab) -> None:
    assert wait_for(lambda: lab.ping("a", lab.nettest["a"]), DEADLINE), "A cannot ping NetTest A"
    assert wait_for(lambda: lab.ping("b", lab.nettest["b"]), DEADLINE), "B cannot ping NetTest B"
    assert wait_for(lambda: lab.ping("a", "ntb"), DEADLINE), "A cannot ping NetTest B on its own segment"
    assert wait_for(lambda: lab.ping("a", "gw_a"), DEADLINE), "A cannot ping its gateway"


def test_dedicated_link(lab: Lab) -> None:
    assert wait_for(lambda: lab.ping("a", lab.link_addr["b"]), DEADLINE)
    route = json.loads(lab.exec("a", ["ip", "-j", "route", "get", lab.link_addr["b"]]).stdout)[0]
    assert route["dev"] == "eth1" and "gateway" not in route


def test_status(lab: Lab) -> None:
    st = lab.status()
    assert st["up"] and st["prefix"] == lab.prefix
    assert all(n["exists"] for n in st["namespaces"].values())
    a_links = st["namespaces"]["a"]["links"]
    assert a_links["eth0"]["state"] == "up" and a_links["eth0"]["addresses"] == ["10.231.1.10/24"]
    assert a_links["eth1"]["addresses"] == ["10.231.3.1/24"]
    gw_links = st["namespaces"]["gw"]["links"]
    assert gw_links["p-a"]["master"] == "br-a" and gw_links["p-nta"]["master"] == "br-b"
    assert st["processes"]["listen-b"]["alive"] is True
    # the state is on disk: another process (here: a fresh Lab) sees the same lab
    other = Lab.load(lab.dir)
    assert other.addr == lab.addr and other.config == lab.config
    assert other.status()["processes"]["listen-a"]["pid"] == Procs(lab).pid("listen-a")


def test_status_from_another_process(lab: Lab) -> None:
    code = (
        "import json, sys\n"
        "from deploy.lab.topology import Lab\n"
        "print(json.dumps(Lab.load(sys.argv[1]).status()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(lab.dir)], capture_output=True, text=True, check=True
    )
    st = json.loads(out.stdout)
    assert st["up"] and st["processes"]["listen-b"]["alive"]


def test_up_is_idempotent(lab: Lab) -> None:
    lab.up()
    lab.up()
    assert wait_for(lambda: lab.ping("a", "b"), DEADLINE)
    assert Procs(lab).alive("listen-b")
    addrs = lab.status()["namespaces"]["a"]["links"]["eth0"]["addresses"]
    assert addrs == ["10.231.1.10/24"]


def test_exec_errors_name_the_command(lab: Lab) -> None:
    with pytest.raises(LabCommandError, match=r"ip link show dev nosuchdev.*(not exist|Cannot find)"):
        lab.exec("a", ["ip", "link", "show", "dev", "nosuchdev"])
    with pytest.raises(LabError, match="unknown lab host"):
        lab.exec("zz", ["true"])


def test_not_root_gives_the_clear_error() -> None:
    with pytest.raises(LabPermissionError) as info:
        require_root(euid=1000)
    assert str(info.value) == ROOT_ERROR
    assert "run as root" in ROOT_ERROR and "CAP_SYS_ADMIN" in ROOT_ERROR
    require_root(euid=0)
    nonroot = Lab(LabConfig(prefix="soltnoroot"), euid=1000)
    for call in (nonroot.up, nonroot.down, nonroot.status, lambda: nonroot.exec("a", ["true"])):
        with pytest.raises(PermissionError, match="the lab needs root"):
            call()
    assert not any(ns.startswith("soltnoroot-") for ns in _list_netns())


def test_bad_prefix_rejected() -> None:
    for bad in ("", "so-lab", "1lab", "x" * 30):
        with pytest.raises(LabError, match="bad lab prefix"):
            LabConfig(prefix=bad)


def test_down_leaves_nothing_behind(lab_factory: LabFactory) -> None:
    extra = lab_factory.make(dedicated_link=True)
    extra.up()
    assert wait_for(lambda: extra.ping("a", "b"), DEADLINE)
    procs = Procs(extra)
    for host in ("a", "b", "gw", "nta"):
        procs.start(f"sleep-{host}", host, ["sleep", "300"])
    # a process that ignores SIGTERM, so down must escalate to SIGKILL
    procs.start(
        "stubborn",
        "b",
        [
            sys.executable,
            "-c",
            "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: signal.pause()",
        ],
    )
    Faults(extra).drop("main")
    Faults(extra).link_down("a", end="router")
    pids = [p.pid for p in procs.list().values()]
    for ns in extra.netns.values():
        pids += netns_pids(ns)
    assert len(pids) >= 5

    removed = extra.down(grace=0.3)

    assert sorted(removed["netns"]) == sorted(extra.netns.values())
    assert not [ns for ns in _list_netns() if ns.startswith(extra.prefix)]
    assert not [name for name in _host_links() if name.startswith(extra.prefix)]
    assert not [t for t in _host_nft_tables() if t.startswith(extra.prefix)]
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
    assert not extra.status()["up"] and not extra.read_state()["procs"] and not extra.read_state()["faults"]
    extra.down()  # idempotent


def test_cleanup_prefix_after_a_crashed_runner(lab_factory: LabFactory) -> None:
    extra = lab_factory.make()
    extra.up()
    info = Procs(extra).start("orphan", "a", ["sleep", "300"])
    # a link in the host namespace named with the prefix (as an older or hand-made lab might leave)
    host_link = f"{extra.prefix}-v0"
    subprocess.run(
        ["ip", "link", "add", host_link, "type", "veth", "peer", "name", f"{extra.prefix}-v1"], check=True
    )
    # the runner "crashed": no state, only the prefix
    removed = cleanup_prefix(extra.prefix)
    assert len(removed["netns"]) == len(HOSTS)
    assert host_link in removed["links"]
    assert not [ns for ns in _list_netns() if ns.startswith(extra.prefix + "-")]
    assert not [name for name in _host_links() if name.startswith(extra.prefix)]
    assert wait_for(lambda: not Procs(extra).alive("orphan"), DEADLINE), info.pid
    assert cleanup_prefix(extra.prefix) == {"netns": [], "links": [], "nft_tables": [], "pids": []}


def test_cleanup_prefix_respects_lab_boundaries(lab: Lab, lab_factory: LabFactory) -> None:
    """Cleaning solt<pid>x0 must not touch solt<pid> (its name is a prefix of the other's)."""
    extra = lab_factory.make()
    extra.up()
    assert extra.prefix.startswith(lab.prefix)
    cleanup_prefix(extra.prefix)
    assert set(lab.netns.values()) <= set(_list_netns())
    cleanup_prefix(lab.prefix[:-1] + "Z")  # no match at all
    assert set(lab.netns.values()) <= set(_list_netns())
    assert Procs(lab).alive("listen-a")


def test_cli_status(lab: Lab) -> None:
    env = {**os.environ}
    out = subprocess.run(
        [sys.executable, "-m", "deploy.lab.topology", "status", "--labdir", str(lab.dir)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert json.loads(out.stdout)["prefix"] == lab.prefix
    assert "RuntimeWarning" not in out.stderr
