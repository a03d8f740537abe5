"""Is the backup's own network fine? One rule, used by the primary monitor's diagnosis and by the
supervisor's re-check at reconnect expiry (:mod:`actors.monitoring.network_check`).

The check (spec lines 380-395, the sample log runs both steps) is a generator of ICMP echoes so that
the diagnosis can run it in virtual time and the re-check can run it synchronously with the same
steps and log lines:

1. **Gateways**, when ``Switchover Disable Gateway Ping`` is No: every gateway in turn, one echo each,
   stop at the first answer (GatewayReached / GatewayUnreachable; no gateway at all is
   GatewayUnavailable). Disabled: GatewayPingDisabled.
2. **NetTest** (``Switchover NetTest A`` on server A, ``B`` on server B), unless the gateways already
   failed: every address in turn, stop at the first answer (NetTestReached / NetTestUnreachable; none
   configured is NetTestUnavailable).

:func:`local_network_ok` is the verdict: good only when every configured check answered. A WAN cut
(the gateway answers, the NetTest does not) is a bad local network, which is what the NetTest is for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from loguru import logger

log = logger.bind(topic="PrimaryMonitor")


class NetworkStatus(StrEnum):
    NOT_CHECKED = "NotChecked"
    GATEWAY_PING_DISABLED = "GatewayPingDisabled"
    GATEWAY_UNAVAILABLE = "GatewayUnavailable"
    GATEWAY_REACHED = "GatewayReached"
    GATEWAY_UNREACHABLE = "GatewayUnreachable"
    NETTEST_UNAVAILABLE = "NetTestUnavailable"
    NETTEST_REACHED = "NetTestReached"
    NETTEST_UNREACHABLE = "NetTestUnreachable"
    PRIMARY_ADDRESS_UNKNOWN = "PrimaryAddressUnknown"
    PRIMARY_REACHED = "PrimaryReached"
    PRIMARY_UNREACHABLE = "PrimaryUnreachable"

    @property
    def good(self) -> bool:
        return self not in _BAD_NETWORK

    @property
    def phrase(self) -> str:
        return re.sub(r"(?<!^)(?=[A-Z])", " ", self.value).lower().replace("net test", "nettest")


_BAD_NETWORK = frozenset(
    {NetworkStatus.GATEWAY_UNREACHABLE, NetworkStatus.NETTEST_UNREACHABLE, NetworkStatus.PRIMARY_UNREACHABLE}
)
LOCAL_FAILURES = frozenset({NetworkStatus.GATEWAY_UNREACHABLE, NetworkStatus.NETTEST_UNREACHABLE})
"""The steps that say the backup's own network is down."""


def local_network_ok(steps: Sequence[NetworkStatus]) -> bool:
    """THE rule: the backup's own network is fine when no configured check (gateway, NetTest) failed."""
    return not any(s in LOCAL_FAILURES for s in steps)


@dataclass(frozen=True)
class Icmp:
    """One ICMP echo to ``address``; the answer sent back into the generator is True when it answered."""

    address: str
    timeout: float


@dataclass(frozen=True)
class LocalChecks:
    """What to check: the gateway ping switch, the gateways, this server's NetTest addresses."""

    gateway_ping: bool
    gateways: Callable[[], Sequence[str]]
    nettest: tuple[str, ...]
    timeout: float


LocalCheck = Generator[Icmp, bool, list[NetworkStatus]]


def _first_answer(addresses: Sequence[str], timeout: float, what: str, status: str) -> Generator[Icmp, bool, bool]:
    fn = "check_local_gateway_connections" if what == "local gateway" else "check_net_test_connections"
    for address in addresses:
        ok = yield Icmp(address, timeout)
        if ok:
            log.info(
                "{} : Successfully pinged {} address [{}], setting network connection status to '{}Reached'",
                fn, what, address, status,
            )
            return True
        log.warning("{} : No reply from {} address [{}]", fn, what, address)
    log.error(
        "{} : No {} address answered {}, setting network connection status to '{}Unreachable'",
        fn, what, list(addresses), status,
    )
    return False


def check_local_network(checks: LocalChecks) -> LocalCheck:
    """The gateway step then the NetTest step; returns the statuses found, in order."""
    steps: list[NetworkStatus] = []
    if not checks.gateway_ping:
        log.debug("check_local_gateway_connections : gateway ping disabled")
        steps.append(NetworkStatus.GATEWAY_PING_DISABLED)
    else:
        gateways = clean_addresses(checks.gateways())
        if not gateways:
            log.warning(
                "check_local_gateway_connections : No local gateway addresses to ping, setting network "
                "connection status to 'GatewayUnavailable'"
            )
            steps.append(NetworkStatus.GATEWAY_UNAVAILABLE)
        else:
            reached = yield from _first_answer(gateways, checks.timeout, "local gateway", "Gateway")
            steps.append(NetworkStatus.GATEWAY_REACHED if reached else NetworkStatus.GATEWAY_UNREACHABLE)
    if NetworkStatus.GATEWAY_UNREACHABLE in steps:
        return steps
    if not checks.nettest:
        log.info(
            "check_net_test_connections : No NetTest addresses to ping, setting network connection "
            "status to 'NetTestUnavailable'"
        )
        steps.append(NetworkStatus.NETTEST_UNAVAILABLE)
    else:
        reached = yield from _first_answer(checks.nettest, checks.timeout, "NetTest", "NetTest")
        steps.append(NetworkStatus.NETTEST_REACHED if reached else NetworkStatus.NETTEST_UNREACHABLE)
    return steps


def run_sync(check: LocalCheck, ping: Callable[[str, float], bool]) -> list[NetworkStatus]:
    """Drive a check with a synchronous ``ping(address, timeout)``."""
    answer: bool | None = None
    try:
        while True:
            op = check.send(answer)  # type: ignore[arg-type]  # the first send must be None
            answer = bool(ping(op.address, op.timeout))
    except StopIteration as stop:
        result: list[NetworkStatus] = stop.value
        return result


def clean_addresses(addresses: Sequence[str]) -> list[str]:
    """Addresses stripped, without blanks and duplicates, in order."""
    seen: list[str] = []
    for a in addresses:
        a = a.strip()
        if a and a not in seen:
            seen.append(a)
    return seen
