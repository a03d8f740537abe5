"""The shipped floating-address hook's pure parts: settings (environment and file), the ARP frame, and
the clear errors for bad settings (the lab test runs it for real: tests/lab/test_shipped_hooks.py)."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest

from deploy.hooks.floating_address import SettingsError, arp_announcement, main, settings_from


def test_settings_from_a_file_and_the_environment_wins(tmp_path: Path) -> None:
    conf = tmp_path / "floating.conf"
    conf.write_text(
        "# the service address\nSWITCHOVER_FLOATING_ADDRESS='192.0.2.10/24'\n"
        "export SWITCHOVER_FLOATING_DEVICE=eth0\nSWITCHOVER_FLOATING_ARP_COUNT=5\n"
    )
    s = settings_from({"SWITCHOVER_FLOATING_CONF": str(conf), "SWITCHOVER_FLOATING_ARP_COUNT": "1"})
    assert s.interface == ipaddress.ip_interface("192.0.2.10/24") and s.device == "eth0"
    assert (s.arp_count, s.arp_interval, s.address) == (1, 0.2, "192.0.2.10")


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({}, "SWITCHOVER_FLOATING_ADDRESS is not set"),
        ({"SWITCHOVER_FLOATING_ADDRESS": "192.0.2.10"}, "give the prefix length too"),
        ({"SWITCHOVER_FLOATING_ADDRESS": "192.0.2.300/24"}, "does not appear to be an IPv4 or IPv6"),
        ({"SWITCHOVER_FLOATING_ADDRESS": "192.0.2.10/24"}, "SWITCHOVER_FLOATING_DEVICE is not set"),
        (
            {
                "SWITCHOVER_FLOATING_ADDRESS": "192.0.2.10/24",
                "SWITCHOVER_FLOATING_DEVICE": "eth0",
                "SWITCHOVER_FLOATING_ARP_COUNT": "many",
            },
            "expected numbers",
        ),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        settings_from({"SWITCHOVER_FLOATING_CONF": "/nonexistent", **env})


def test_a_bad_line_in_the_file_names_the_file_and_line(tmp_path: Path) -> None:
    conf = tmp_path / "floating.conf"
    conf.write_text("SWITCHOVER_FLOATING_DEVICE=eth0\njust words\n")
    with pytest.raises(SettingsError, match=rf"{conf}:2: expected KEY=VALUE"):
        settings_from({"SWITCHOVER_FLOATING_CONF": str(conf)})


def test_gratuitous_arp_frame() -> None:
    mac = bytes.fromhex("020000000001")
    frame = arp_announcement(mac, "192.0.2.10")
    assert len(frame) == 42
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == mac and frame[12:14] == b"\x08\x06"
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = struct.unpack("!HHBBH6s4s6s4s", frame[14:])
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 1)  # Ethernet/IPv4 ARP request
    assert sha == mac and spa == tpa == bytes([192, 0, 2, 10]) and tha == b"\x00" * 6


def test_main_refuses_an_unknown_event_and_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], {"SWITCHOVER_EVENT": "restart"}) == 2
    assert "expected commence or discontinue" in capsys.readouterr().err
    assert main(["commence"], {"SWITCHOVER_FLOATING_CONF": "/nonexistent"}) == 2
    assert "SWITCHOVER_FLOATING_ADDRESS is not set" in capsys.readouterr().err
