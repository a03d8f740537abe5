"""One rule for "is the backup's own network fine" (issue 9, defect 2): the diagnosis and the re-check
at reconnect expiry run the same steps and reach the same verdict."""

from __future__ import annotations

import itertools

import pytest

from actors.monitoring.local_network import (
    LocalChecks,
    NetworkStatus,
    check_local_network,
    local_network_ok,
    run_sync,
)
from actors.monitoring.monitor_params import PrimaryMonitorParams
from actors.monitoring.network_check import backup_network_ok

GATEWAY, NETTEST = "10.0.9.1", "10.1.0.1"


def steps(gateway_ping: bool, reachable: set[str], nettest: tuple[str, ...] = (NETTEST,),
          gateways: tuple[str, ...] = (GATEWAY,)) -> list[NetworkStatus]:
    pinged: list[str] = []

    def ping(address: str, timeout: float) -> bool:
        pinged.append(address)
        return address in reachable

    return run_sync(check_local_network(LocalChecks(gateway_ping, lambda: gateways, nettest, 0.2)), ping)


def test_a_wan_cut_is_a_bad_local_network() -> None:
    # the gateway answers, the NetTest does not: the case the NetTest exists for
    found = steps(True, {GATEWAY})
    assert found == [NetworkStatus.GATEWAY_REACHED, NetworkStatus.NETTEST_UNREACHABLE]
    assert not local_network_ok(found)


def test_the_network_recheck_says_a_wan_cut_is_not_fine() -> None:
    # Before issue 9 the re-check looked only at the gateway when gateway ping was on: "fine", and
    # the backup switched after two reconnect periods.
    params = PrimaryMonitorParams(disable_gateway_ping=False, nettest_a=NETTEST)
    assert not backup_network_ok(params, lambda a, t: a == GATEWAY, lambda: [GATEWAY])
    assert backup_network_ok(params, lambda a, t: True, lambda: [GATEWAY])


def test_an_unreachable_gateway_skips_the_nettest() -> None:
    assert steps(True, {NETTEST}) == [NetworkStatus.GATEWAY_UNREACHABLE]


def test_nothing_configured_is_fine() -> None:
    found = steps(False, set(), nettest=())
    assert found == [NetworkStatus.GATEWAY_PING_DISABLED, NetworkStatus.NETTEST_UNAVAILABLE]
    assert local_network_ok(found)


@pytest.mark.parametrize(
    ("gateway_ping", "gateway_up", "nettest", "nettest_up"),
    list(itertools.product([True, False], repeat=4)),
)
def test_good_only_when_every_configured_check_answers(
    gateway_ping: bool, gateway_up: bool, nettest: bool, nettest_up: bool
) -> None:
    reachable = {a for a, up in ((GATEWAY, gateway_up), (NETTEST, nettest_up)) if up}
    expected = (not gateway_ping or gateway_up) and (not nettest or nettest_up)
    found = steps(gateway_ping, reachable, nettest=(NETTEST,) if nettest else ())
    assert local_network_ok(found) is expected
    params = PrimaryMonitorParams(disable_gateway_ping=not gateway_ping, nettest_a=NETTEST if nettest else "")
    assert backup_network_ok(params, lambda a, t: a in reachable, lambda: [GATEWAY]) is expected
