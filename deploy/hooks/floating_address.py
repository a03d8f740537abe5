#!/usr/bin/env python3
"""switchover hook: a floating service address that follows the active server.

Install it as a Commence and a Discontinue hook (the same file, or a symlink, in both directories)::

    install -m 755 floating_address.py /var/lib/switchover/hooks/commence.d/40-floating-address
    ln -s ../commence.d/40-floating-address /var/lib/switchover/hooks/discontinue.d/40-floating-address

Commence (``SWITCHOVER_EVENT=commence``): ``ip addr replace ADDRESS dev DEVICE`` (idempotent), then
gratuitous ARP: ``COUNT`` ARP announcements (sender = target = the address, to the broadcast
address) ``INTERVAL`` seconds apart, so that neighbours and switches learn the new owner at once
instead of when their ARP cache expires. Discontinue: ``ip addr del ADDRESS dev DEVICE`` (an
address already absent is fine). The event can also be given as the first argument
(``floating_address.py commence``), e.g. to test the settings by hand.

Settings, from the environment or from a ``KEY=VALUE`` file (``SWITCHOVER_FLOATING_CONF``, default
``/etc/switchover/floating-address.conf``; the environment wins):

``SWITCHOVER_FLOATING_ADDRESS``   the address with its prefix length, e.g. ``192.0.2.10/24`` (required)
``SWITCHOVER_FLOATING_DEVICE``    the interface, e.g. ``eth0`` (required)
``SWITCHOVER_FLOATING_ARP_COUNT`` announcements on Commence (default 3; 0: none)
``SWITCHOVER_FLOATING_ARP_INTERVAL`` seconds between them (default 0.2)
``SWITCHOVER_FLOATING_LABEL``     optional address label (``eth0:vip``), shown by ``ip addr``

Needs root (CAP_NET_ADMIN for the address, CAP_NET_RAW for ARP) and iproute2's ``ip``. Gratuitous
ARP is sent with a raw packet socket (Python's standard library only), so ``arping`` is not needed.
IPv6 addresses are added and removed, but no unsolicited neighbour advertisement is sent.
Exit codes: 0 done, 2 bad settings, 1 the ``ip`` command failed. Standard library only, so the
node's own Python (or any python3) runs it without the switchover package installed.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CONF = "/etc/switchover/floating-address.conf"
ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


class SettingsError(ValueError):
    """The settings cannot be used; the text names the key and says what was expected."""


@dataclass(frozen=True)
class Settings:
    interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    device: str
    arp_count: int = 3
    arp_interval: float = 0.2
    label: str = ""

    @property
    def address(self) -> str:
        return str(self.interface.ip)


def read_conf(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, optional quotes); a missing file is empty."""
    if not path.exists():
        return {}
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise SettingsError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("\"'")
    return values


def settings_from(env: Mapping[str, str]) -> Settings:
    conf = read_conf(Path(env.get("SWITCHOVER_FLOATING_CONF", DEFAULT_CONF)))
    merged = {**conf, **{k: v for k, v in env.items() if k.startswith("SWITCHOVER_FLOATING_")}}
    address = merged.get("SWITCHOVER_FLOATING_ADDRESS", "")
    device = merged.get("SWITCHOVER_FLOATING_DEVICE", "")
    if not address:
        raise SettingsError("SWITCHOVER_FLOATING_ADDRESS is not set (expected e.g. 192.0.2.10/24)")
    if "/" not in address:
        raise SettingsError(
            f"SWITCHOVER_FLOATING_ADDRESS={address!r}: give the prefix length too (e.g. {address}/24)"
        )
    try:
        interface = ipaddress.ip_interface(address)
    except ValueError as exc:
        raise SettingsError(f"SWITCHOVER_FLOATING_ADDRESS={address!r}: {exc}") from None
    if not device:
        raise SettingsError("SWITCHOVER_FLOATING_DEVICE is not set (expected an interface name, e.g. eth0)")
    try:
        count = int(merged.get("SWITCHOVER_FLOATING_ARP_COUNT", "3"))
        interval = float(merged.get("SWITCHOVER_FLOATING_ARP_INTERVAL", "0.2"))
    except ValueError as exc:
        raise SettingsError(f"SWITCHOVER_FLOATING_ARP_COUNT / _INTERVAL: expected numbers ({exc})") from None
    if count < 0 or interval < 0:
        raise SettingsError("SWITCHOVER_FLOATING_ARP_COUNT and _INTERVAL must not be negative")
    return Settings(interface, device, count, interval, merged.get("SWITCHOVER_FLOATING_LABEL", ""))


def arp_announcement(mac: bytes, address: str) -> bytes:
    """An Ethernet frame with a gratuitous ARP request: who-has ADDRESS tell ADDRESS, from ``mac``."""
    ip = socket.inet_aton(address)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip, b"\x00" * 6, ip)
    return BROADCAST + mac + struct.pack("!H", ETH_P_ARP) + arp


def send_gratuitous_arp(device: str, address: str, count: int, interval: float) -> int:
    """Send ``count`` announcements on ``device``; returns how many went out."""
    mac = bytes.fromhex(Path(f"/sys/class/net/{device}/address").read_text().strip().replace(":", ""))
    frame = arp_announcement(mac, address)
    sent = 0
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.bind((device, ETH_P_ARP))
        for i in range(count):
            if i:
                time.sleep(interval)  # spacing the announcements, as arping does
            sock.send(frame)
            sent += 1
    return sent


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def commence(s: Settings) -> int:
    extra = ["label", s.label] if s.label else []
    done = ip("addr", "replace", str(s.interface), "dev", s.device, *extra)
    if done.returncode != 0:
        print(
            f"floating-address: cannot add {s.interface} to {s.device}: {done.stderr.strip()}",
            file=sys.stderr,
        )
        return 1
    print(f"floating-address: {s.interface} added to {s.device}")
    if s.interface.version == 4 and s.arp_count:
        try:
            sent = send_gratuitous_arp(s.device, s.address, s.arp_count, s.arp_interval)
        except OSError as exc:
            # the address is up: neighbours will learn it when their cache expires
            print(f"floating-address: gratuitous ARP on {s.device} failed: {exc}", file=sys.stderr)
            return 1
        print(f"floating-address: {sent} gratuitous ARP announcements for {s.address} on {s.device}")
    return 0


def discontinue(s: Settings) -> int:
    done = ip("addr", "del", str(s.interface), "dev", s.device)
    if done.returncode == 0:
        print(f"floating-address: {s.interface} removed from {s.device}")
        return 0
    present = ip("-o", "addr", "show", "dev", s.device, "to", str(s.interface.ip))
    if present.returncode == 0 and not present.stdout.strip():
        print(f"floating-address: {s.interface} was not on {s.device}: nothing to remove")
        return 0
    print(
        f"floating-address: cannot remove {s.interface} from {s.device}: {done.stderr.strip()}",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    environment = os.environ if env is None else env
    event = (args[0] if args else environment.get("SWITCHOVER_EVENT", "")).lower()
    if event not in ("commence", "discontinue"):
        print(
            f"floating-address: event {event!r}: expected commence or discontinue "
            "(SWITCHOVER_EVENT or the first argument)",
            file=sys.stderr,
        )
        return 2
    try:
        settings = settings_from(environment)
    except (SettingsError, OSError) as exc:
        print(f"floating-address: {exc}", file=sys.stderr)
        return 2
    return commence(settings) if event == "commence" else discontinue(settings)


if __name__ == "__main__":
    sys.exit(main())
