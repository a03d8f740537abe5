"""Fault primitives against the real lab: link down/up, nftables flow drops, process signals."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator

import pytest

from deploy.lab.faults import FLOW_PRESETS, DropHandle, Faults, Flow, LinkHandle, preset, require_nft
from deploy.lab.procs import Procs
from deploy.lab.topology import Lab, LabConfig, LabError, wait_for

DEADLINE = 5.0
BLOCKED = 0.5  # timeout of a probe expected to fail (a dropped SYN or echo request never comes back)


def _reach(lab: Lab, src: str = "a", dst: str = "b") -> bool:
    return wait_for(lambda: lab.ping(src, dst), DEADLINE)


def _tcp(lab: Lab, port: int, src: str = "a", dst: str = "b") -> bool:
    return wait_for(lambda: lab.tcp_connect(src, dst, port), DEADLINE)


@pytest.fixture
def faults_lab(lab: Lab) -> Iterator[Lab]:
    """The session lab, healthy before the test and healed after it."""
    assert _reach(lab), "lab unhealthy before the test"
    yield lab
    Faults(lab).heal_all()
    assert _reach(lab) and _reach(lab, "b", "a"), "heal_all did not restore A<->B"
    assert not lab.read_state()["faults"]


# -- flows (no lab needed) ------------------------------------------------------------------------


def test_presets_and_configurable_ports() -> None:
    assert FLOW_PRESETS == ("main", "aux", "vswitch", "icmp", "all")
    assert preset("main") == Flow("tcp", (3634, 3634), "a", "b", "main")
    assert preset("aux").ports == (3635, 3635)
    assert preset("vswitch").ports == (3633, 3633)
    assert preset("icmp").proto == "icmp" and preset("icmp").ports is None
    assert preset("all").proto == "any"
    assert preset("main", main_port=4000, src="b", dst="a") == Flow("tcp", (4000, 4000), "b", "a", "main")
    lab = Lab(
        LabConfig(prefix="soltports", notifier_main_port=4100, notifier_aux_port=4101, vswitch_port=4099)
    )
    assert Faults(lab).flow("main").ports == (4100, 4100)
    assert Faults(lab).flow("aux").ports == (4101, 4101)
    assert Faults(lab).flow("vswitch").ports == (4099, 4099)
    assert Flow.tcp((5000, 5010)).ports == (5000, 5010)
    with pytest.raises(LabError, match="unknown flow preset"):
        preset("nope")
    with pytest.raises(LabError, match="port range needs proto tcp or udp"):
        Flow("icmp", (1, 2))
    with pytest.raises(LabError, match="bad port range"):
        Flow.tcp((10, 5))
    with pytest.raises(LabError, match="bad direction"):
        Faults(lab)._direction(preset("main"), "sideways")
    assert Faults(lab)._direction(preset("main"), "a->b") == "forward"
    assert Faults(lab)._direction(preset("main"), "b -> a") == "reverse"


def test_missing_nft_tells_to_run_the_install_script() -> None:
    with pytest.raises(LabError, match=r"deploy/install-system-deps\.sh"):
        require_nft(finder=lambda _tool: None)
    assert require_nft()  # installed here (the conftest fails the lab tests with that message otherwise)


# -- links ----------------------------------------------------------------------------------------


def test_link_down_of_a_nic_breaks_a_b_and_link_up_restores(faults_lab: Lab) -> None:
    lab = faults_lab
    handle = Faults(lab).link_down("a")
    assert isinstance(handle, LinkHandle)
    assert lab.status()["namespaces"]["a"]["links"]["eth0"]["state"] == "down"
    assert not lab.ping("a", "b", timeout=BLOCKED)
    assert not lab.ping("b", "a", timeout=BLOCKED)
    assert not lab.tcp_connect("b", "a", 3634, timeout=BLOCKED)
    Faults(lab).link_up("a")
    assert _reach(lab) and _reach(lab, "b", "a")
    assert _tcp(lab, 3634)
    assert not lab.read_state()["faults"]


def test_router_side_link_down_and_heal(faults_lab: Lab) -> None:
    lab = faults_lab
    handle = Faults(lab).link_down("b", end="router")
    assert lab.status()["namespaces"]["gw"]["links"]["p-b"]["state"] == "down"
    assert not lab.ping("a", "b", timeout=BLOCKED)
    assert lab.ping("a", "ntb"), "A's own segment must stay up"
    assert lab.ping("a", lab.link_addr["b"]), "the dedicated link is separate"
    Faults(lab).heal(handle)
    assert _reach(lab)


def test_dedicated_link_down(faults_lab: Lab) -> None:
    lab = faults_lab
    handle = Faults(lab).link_down("a", link="dedicated", end="peer")
    assert not lab.ping("a", lab.link_addr["b"], timeout=BLOCKED)
    assert lab.ping("a", "b"), "the routed path is separate"
    Faults(lab).heal(handle)
    assert wait_for(lambda: lab.ping("a", lab.link_addr["b"]), DEADLINE)
    with pytest.raises(LabError, match="end is 'host' or 'router'"):
        Faults(lab).link_down("a", end="peer")


# -- flow drops -----------------------------------------------------------------------------------


def test_main_drop_blocks_3634_only(faults_lab: Lab) -> None:
    lab = faults_lab
    handle = Faults(lab).drop("main")
    assert isinstance(handle, DropHandle) and handle.direction == "both"
    assert not lab.tcp_connect("a", "b", 3634, timeout=BLOCKED)
    assert not lab.tcp_connect("b", "a", 3634, timeout=BLOCKED)
    assert not lab.tcp_connect("a", lab.link_addr["b"], 3634, timeout=BLOCKED), "dedicated link too"
    assert lab.tcp_connect("a", "b", 3635), "aux must pass"
    assert lab.tcp_connect("a", "b", 3633), "vswitch must pass"
    assert lab.ping("a", "b"), "ICMP must pass"
    Faults(lab).heal(handle)
    assert _tcp(lab, 3634)


def test_icmp_drop_blocks_ping_not_tcp(faults_lab: Lab) -> None:
    lab = faults_lab
    handle = Faults(lab).drop("icmp")
    assert not lab.ping("a", "b", timeout=BLOCKED)
    assert not lab.ping("b", "a", timeout=BLOCKED)
    assert lab.ping("a", "nta"), "only A<->B ICMP is dropped, NetTest A still answers"
    assert lab.tcp_connect("a", "b", 3634) and lab.tcp_connect("a", "b", 3635)
    Faults(lab).heal(handle)
    assert _reach(lab) and _reach(lab, "b", "a")


def test_vswitch_and_aux_presets(faults_lab: Lab) -> None:
    lab = faults_lab
    vs = Faults(lab).drop("vswitch")
    aux = Faults(lab).drop("aux")
    assert not lab.tcp_connect("a", "b", 3633, timeout=BLOCKED)
    assert not lab.tcp_connect("a", "b", 3635, timeout=BLOCKED)
    assert lab.tcp_connect("a", "b", 3634)
    Faults(lab).heal(vs)  # exactly that one: aux stays dropped
    assert _tcp(lab, 3633)
    assert not lab.tcp_connect("a", "b", 3635, timeout=BLOCKED)
    assert aux.id in Faults(lab).ruleset("b") and vs.id not in Faults(lab).ruleset("b")
    Faults(lab).heal(aux)
    assert _tcp(lab, 3635)


def test_one_direction_puts_rules_on_the_receiving_side(faults_lab: Lab) -> None:
    lab = faults_lab
    fwd = Faults(lab).drop("main", "a->b")
    assert fwd.direction == "forward" and fwd.rules == (("b", "input"),)
    assert fwd.id in Faults(lab).ruleset("b") and fwd.id not in Faults(lab).ruleset("a")
    # A->B SYNs are dropped; B->A SYNs pass but A's answers (sport 3634) towards B are dropped
    assert not lab.tcp_connect("a", "b", 3634, timeout=BLOCKED)
    assert not lab.tcp_connect("b", "a", 3634, timeout=BLOCKED)
    rev = Faults(lab).drop(preset("icmp"), "reverse")
    assert rev.rules == (("a", "input"),)
    assert not lab.ping("a", "b", timeout=BLOCKED), "B's echo replies towards A are dropped"
    Faults(lab).heal(fwd)
    Faults(lab).heal(rev)
    assert _tcp(lab, 3634) and _reach(lab)
    assert fwd.id not in Faults(lab).ruleset("b")


def test_all_drop_at_the_router_spares_the_dedicated_link(faults_lab: Lab) -> None:
    lab = faults_lab
    handle = Faults(lab).drop("all", at="router")
    assert handle.rules == (("gw", "forward"), ("gw", "forward"))
    assert not lab.ping("a", "b", timeout=BLOCKED)
    assert not lab.tcp_connect("a", "b", 3634, timeout=BLOCKED)
    assert lab.ping("a", lab.link_addr["b"]), "the dedicated link does not cross the router"
    assert lab.ping("a", "nta") and lab.ping("b", "ntb"), "other flows through the router pass"
    Faults(lab).heal(handle)
    assert _reach(lab)


def test_all_drop_at_input_cuts_every_path(faults_lab: Lab) -> None:
    lab = faults_lab
    handle = Faults(lab).drop("all")
    assert not lab.ping("a", "b", timeout=BLOCKED)
    assert not lab.ping("a", lab.link_addr["b"], timeout=BLOCKED)
    assert not lab.tcp_connect("b", "a", 3635, timeout=BLOCKED)
    assert lab.ping("a", "gw_a") and lab.ping("b", "nta"), "A and B still reach the rest"
    Faults(lab).heal(handle)
    assert _reach(lab) and wait_for(lambda: lab.ping("a", lab.link_addr["b"]), DEADLINE)


def test_custom_flow_to_the_gateway(faults_lab: Lab) -> None:
    lab = faults_lab
    handle = Faults(lab).drop(Flow("icmp", None, "a", "gw", "gw-icmp"), "forward")
    assert handle.rules == (("gw", "input"),)
    assert not lab.ping("a", "gw_a", timeout=BLOCKED)
    assert lab.ping("a", "b"), "forwarded ICMP does not hit the router's input chain"
    Faults(lab).heal(handle)
    assert wait_for(lambda: lab.ping("a", "gw_a"), DEADLINE)


def test_heal_from_another_process_by_id(faults_lab: Lab) -> None:
    lab = faults_lab
    handle = Faults(lab).drop("main")
    other = Lab.load(lab.dir)  # what a second runner process would do
    assert [h.id for h in Faults(other).handles()] == [handle.id]
    Faults(other).heal(handle.id)
    assert not lab.read_state()["faults"]
    assert _tcp(lab, 3634)
    with pytest.raises(LabError, match="no fault"):
        Faults(other).heal(handle.id)


def test_heal_all_restores_everything(faults_lab: Lab) -> None:
    lab = faults_lab
    Faults(lab).drop("icmp")
    Faults(lab).drop("main", at="router")
    Faults(lab).link_down("b")
    assert len(lab.read_state()["faults"]) == 3
    assert not lab.ping("a", "b", timeout=BLOCKED)
    Faults(lab).heal_all()
    assert not lab.read_state()["faults"]
    assert _reach(lab) and _tcp(lab, 3634) and _tcp(lab, 3634, "b", "a")
    for host in lab.netns:
        assert Faults(lab).ruleset(host) == ""


# -- processes ------------------------------------------------------------------------------------


def _log_lines(path: str) -> list[str]:
    """Output lines of a lab process log (its header line repeats the argv, so match whole lines)."""
    with open(path) as f:
        return [line.rstrip("\n") for line in f]


def _netns_inode(lab: Lab, host: str) -> int:
    return os.stat(f"/run/netns/{lab.netns[host]}").st_ino


def test_process_runs_in_its_namespace_and_logs(lab: Lab) -> None:
    procs = Procs(lab)
    info = procs.start(
        "echoer", "nta", [sys.executable, "-c", "import signal; print('hello lab', flush=True); signal.pause()"]
    )
    try:
        assert os.stat(f"/proc/{info.pid}/ns/net").st_ino == _netns_inode(lab, "nta")
        assert wait_for(lambda: "hello lab" in _log_lines(info.log), DEADLINE)
        assert procs.alive("echoer") and procs.info("echoer").netns == lab.netns["nta"]
        with pytest.raises(LabError, match="already running"):
            procs.start("echoer", "nta", ["sleep", "1"])
    finally:
        procs.terminate("echoer", timeout=2)
    assert not procs.alive("echoer")


def test_kill9_sigstop_sigcont(lab: Lab) -> None:
    procs = Procs(lab)
    procs.start("victim", "a", ["sleep", "300"])
    assert procs.sigstop("victim")
    assert wait_for(lambda: procs.status("victim") == "stopped", DEADLINE)
    assert procs.alive("victim"), "a stopped process is alive"
    assert procs.sigcont("victim")
    assert wait_for(lambda: procs.status("victim") != "stopped", DEADLINE)
    assert procs.kill9("victim")
    assert not procs.alive("victim") and procs.status("victim") == "dead"
    assert procs.exit_code("victim") == -signal.SIGKILL
    assert not procs.sigstop("victim"), "signalling a dead process sends nothing"


def test_terminate_escalates_to_sigkill_after_the_deadline(lab: Lab) -> None:
    procs = Procs(lab)
    stubborn = (
        "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
        "while True: signal.pause()"
    )
    info = procs.start("stubborn", "b", [sys.executable, "-c", stubborn])
    assert wait_for(lambda: "ready" in _log_lines(info.log), DEADLINE)
    assert procs.terminate("stubborn", timeout=0.3) is False
    assert not procs.alive("stubborn")
    polite = procs.start("polite", "b", ["sleep", "300"])
    procs.sigstop("polite")
    assert procs.terminate("polite", timeout=DEADLINE) is True, "SIGTERM reaches a stopped process too"
    assert not procs.alive(polite.name)


def test_sigstopped_listener_still_answers_icmp_and_resumes(faults_lab: Lab) -> None:
    """SIGSTOP on the listener: the kernel still completes handshakes (backlog), ICMP still answers."""
    lab = faults_lab
    assert Procs(lab).sigstop("listen-b")
    try:
        assert Procs(lab).status("listen-b") == "stopped"
        assert lab.ping("a", "b")
    finally:
        assert Procs(lab).sigcont("listen-b")
    assert _tcp(lab, 3634)
