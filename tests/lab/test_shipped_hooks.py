"""The shipped floating-address hook (deploy/hooks/floating_address.py) run by real nodes in the lab.

A and B share the dedicated link's segment (eth1); the floating address lives there. The active's
Commence hook adds it and announces it by gratuitous ARP (the peer's neighbour table, with
``arp_accept`` on, learns the active's MAC from the announcement alone); after ``ctl switch`` the former
active's Discontinue hook removes it and the new active's Commence hook adds and announces it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from deploy.lab.procs import Procs
from deploy.lab.runner import LabPair, switchover_argv
from deploy.lab.topology import DEDICATED_IF, Lab
from deploy.pair import child_env
from tests.conftest import wait_until
from tests.lab.conftest import LabFactory

HOOK = Path(__file__).resolve().parents[2] / "deploy" / "hooks" / "floating_address.py"
WRAPPER = """#!/bin/sh
# the operator's settings for the shipped hook, then the hook itself
export SWITCHOVER_FLOATING_ADDRESS={address}
export SWITCHOVER_FLOATING_DEVICE={device}
export SWITCHOVER_FLOATING_ARP_COUNT=2
export SWITCHOVER_FLOATING_CONF=/nonexistent
exec {python} {hook} "$@"
"""


def install(pair: LabPair, address: str) -> None:
    text = WRAPPER.format(address=address, device=DEDICATED_IF, python=sys.executable, hook=HOOK)
    for node in ("a", "b"):
        for kind in ("commence", "discontinue"):
            directory = pair.hooks_dir(node) / f"{kind}.d"
            directory.mkdir(parents=True, exist_ok=True)
            hook = directory / "40-floating-address"
            hook.write_text(text)
            hook.chmod(0o755)


def holds(lab: Lab, host: str, address: str) -> bool:
    out = lab.exec(host, ["ip", "-o", "-4", "addr", "show", "dev", DEDICATED_IF]).stdout
    return f" {address}/" in out


def mac(lab: Lab, host: str) -> str:
    return lab.exec(host, ["cat", f"/sys/class/net/{DEDICATED_IF}/address"]).stdout.strip()


def neighbour(lab: Lab, host: str, address: str) -> str:
    """The MAC ``host`` has for ``address`` on the dedicated link ('' when none)."""
    out = lab.exec(host, ["ip", "neigh", "show", address, "dev", DEDICATED_IF]).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else ""


def floating_lab(lab_factory: LabFactory) -> tuple[Lab, str]:
    """A lab with the dedicated link up, and the floating address to use on it."""
    lab = lab_factory.make(dedicated_link=True).up()
    return lab, lab.link_addr["a"].rsplit(".", 1)[0] + ".100"


def test_floating_address_follows_the_active_and_is_announced(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    lab, vip = floating_lab(lab_factory)
    for host in ("a", "b"):
        # learn neighbours from gratuitous ARP; never use the floating address as the source of an
        # ordinary ARP request (so only the hook's announcement can teach the peer where it is)
        lab.exec(host, ["sysctl", "-qw", f"net.ipv4.conf.{DEDICATED_IF}.arp_accept=1"])
        lab.exec(host, ["sysctl", "-qw", f"net.ipv4.conf.{DEDICATED_IF}.arp_announce=2"])
    pair = LabPair(lab, tmp_path / "pair", log_level="DEBUG")
    install(pair, f"{vip}/24")
    try:
        assert pair.up() == {"a": "Primary", "b": "Backup"}
        wait_until(lambda: holds(lab, "a", vip), 10, message="the address on the active (A)")
        assert not holds(lab, "b", vip)
        wait_until(lambda: neighbour(lab, "b", vip) == mac(lab, "a"), 5, message="B to learn A's MAC by ARP")

        rc, out = pair.ctl("a", ["switch", "--yes"])
        assert rc == 0, out
        wait_until(lambda: holds(lab, "b", vip), 15, message="the address on the new active (B)")
        wait_until(lambda: not holds(lab, "a", vip), 10, message="the address gone from the former active")
        wait_until(lambda: neighbour(lab, "a", vip) == mac(lab, "b"), 5, message="A to learn B's MAC by ARP")
        assert pair.roles() == {"a": "Inactive", "b": "Primary"}
    finally:
        pair.stop_all()


def test_a_killed_active_gives_the_address_up_through_hooks_run(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    """kill -9 of the active node: nothing in the dead process can remove the address (keepalived leaves
    it too); ``switchover hooks run discontinue --if-was-active``, which the systemd unit runs as
    ExecStopPost, does, so that afterwards only the new active holds it."""
    lab, vip = floating_lab(lab_factory)
    pair = LabPair(lab, tmp_path / "pair", parameters={"Switchover Reconnect Timeout": "0"})
    install(pair, f"{vip}/24")
    try:
        assert pair.up() == {"a": "Primary", "b": "Backup"}
        wait_until(lambda: holds(lab, "a", vip), 10, message="the address on the active (A)")
        assert Procs(lab).kill9(pair.proc("node-a"))
        wait_until(lambda: holds(lab, "b", vip), 15, message="the address on B after A died")
        assert holds(lab, "a", vip)  # both hold it: the dead node could not give it up

        argv = switchover_argv(
            "hooks", "run", "discontinue", "--if-was-active", "--config", str(pair.config_path("a"))
        )
        done = lab.exec("a", argv, check=False, env=child_env())
        assert done.returncode == 0, done.stdout + done.stderr
        assert "40-floating-address: ok" in done.stdout
        assert not holds(lab, "a", vip) and holds(lab, "b", vip)
        again = lab.exec("a", argv, check=False, env=child_env())  # a second ExecStopPost: harmless
        assert again.returncode == 0 and not holds(lab, "a", vip)
    finally:
        pair.stop_all()
