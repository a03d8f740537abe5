"""ICMP echo for the Primary Monitor (gateway, NetTest and primary pings) and gateway discovery.

:class:`IcmpPinger` implements :class:`actors.monitoring.primary_monitor_logic.Pinger` with icmplib. It never
blocks the caller: each echo runs on a small worker thread pool and ``on_result(bool)`` is called
**on that worker thread**; an actor wraps the callback so that it turns into a message to itself.

Socket kinds, chosen at construction (``privileged=None``) and checked there:

* raw ICMP sockets (``privileged=True``): root, or the ``CAP_NET_RAW`` capability;
* unprivileged ICMP datagram sockets (``privileged=False``): allowed when the process's group is in
  ``net.ipv4.ping_group_range``.

If neither works, :class:`IcmpUnavailableError` says what to do (run as root, grant CAP_NET_RAW, or
widen the sysctl), so a node fails at start-up rather than at its first diagnosis.

:func:`gateways` lists the backup's gateways from the kernel routing tables (``/proc/net/route`` and
``/proc/net/ipv6_route``): default routes first, then other routes through a gateway; loopback and
empty (``0.0.0.0`` / ``::``) addresses excluded; deduplicated; link-local IPv6 gateways carry their
interface (``fe80::1%eth0``) so that they can be pinged. The parsers take text, for tests.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import icmplib
from loguru import logger

log = logger.bind(topic="Icmp")

IcmpMode = Literal["privileged", "unprivileged"]

RTF_UP = 0x0001
RTF_GATEWAY = 0x0002
RTF_REJECT = 0x0200

PING_GROUP_RANGE = Path("/proc/sys/net/ipv4/ping_group_range")


class IcmpUnavailableError(RuntimeError):
    """Neither raw nor unprivileged ICMP sockets can be opened by this process."""


def _ping_group_range() -> str:
    try:
        return PING_GROUP_RANGE.read_text().strip().replace("\t", " ")
    except OSError:
        return "unknown"


def _can_open(privileged: bool) -> str | None:
    """``None`` if an ICMPv4 socket of that kind opens, else the reason."""
    try:
        sock = icmplib.ICMPv4Socket(privileged=privileged)
    except icmplib.SocketPermissionError as exc:
        return f"permission denied ({exc})"
    except (icmplib.ICMPSocketError, OSError) as exc:
        return str(exc)
    sock.close()
    return None


def unavailable_message(raw_reason: str, dgram_reason: str) -> str:
    gid = os.getegid()
    return (
        "Cannot send ICMP echo requests (needed for the gateway, NetTest and primary pings). "
        f"Raw ICMP sockets: {raw_reason}; they need root or the CAP_NET_RAW capability. "
        f"Unprivileged ICMP sockets: {dgram_reason}; they need the process group (gid {gid}) inside "
        f"net.ipv4.ping_group_range (now '{_ping_group_range()}'). Fix one of: run the node as root; grant "
        "CAP_NET_RAW (AmbientCapabilities=CAP_NET_RAW in the systemd unit, or setcap cap_net_raw+ep on the "
        "Python interpreter); or allow ping sockets with "
        "`sysctl -w net.ipv4.ping_group_range='0 2147483647'` (persist it in /etc/sysctl.d/)."
    )


def detect_icmp_mode() -> IcmpMode:
    """The kind of ICMP socket this process can use: raw first, else unprivileged."""
    raw = _can_open(True)
    if raw is None:
        return "privileged"
    dgram = _can_open(False)
    if dgram is None:
        return "unprivileged"
    raise IcmpUnavailableError(unavailable_message(raw, dgram))


class IcmpPinger:
    """Asynchronous ICMP echo on a worker thread pool (see the module docstring).

    ``dscp`` marks echo requests (``Switchover QoS DSCP``) through the IP TOS / traffic class byte.
    """

    def __init__(
        self,
        *,
        privileged: bool | None = None,
        max_workers: int = 4,
        dscp: int | None = None,
        source: str | None = None,
    ) -> None:
        if privileged is None:
            self.mode: IcmpMode = detect_icmp_mode()
        else:
            if _can_open(privileged) is not None:
                raw, dgram = _can_open(True) or "available", _can_open(False) or "available"
                raise IcmpUnavailableError(
                    f"{'Raw' if privileged else 'Unprivileged'} ICMP sockets were asked for. "
                    + unavailable_message(raw, dgram)
                )
            self.mode = "privileged" if privileged else "unprivileged"
        self._privileged = self.mode == "privileged"
        self._traffic_class = (dscp << 2) & 0xFF if dscp else 0
        self._source = source
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="icmp")
        self._closed = False
        self._lock = threading.Lock()
        log.info("ICMP pinger ready ({} sockets, {} worker threads)", self.mode, max_workers)

    def ping(self, address: str, timeout: float, on_result: Callable[[bool], None]) -> None:
        """Send one echo to ``address``; ``on_result(True)`` if it answered within ``timeout`` s.

        Returns at once; ``on_result`` runs on a worker thread. A name is resolved first (on the worker).
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("IcmpPinger is closed")
            self._pool.submit(self._ping_and_report, address, timeout, on_result)

    def _ping_and_report(self, address: str, timeout: float, on_result: Callable[[bool], None]) -> None:
        try:
            answered = self.ping_sync(address, timeout)
        except Exception:  # whatever goes wrong, the caller hears "no answer"
            log.exception("ICMP echo to {} failed unexpectedly", address)
            answered = False
        try:
            on_result(answered)
        except Exception:  # a faulty callback must not kill the worker
            log.exception("ICMP result callback for {} failed", address)

    def ping_sync(self, address: str, timeout: float) -> bool:
        """Blocking echo (for tools and the worker threads); never raises for network errors."""
        try:
            host = icmplib.ping(
                address,
                count=1,
                timeout=timeout,
                privileged=self._privileged,
                source=self._source,
                traffic_class=self._traffic_class,
            )
        except icmplib.NameLookupError as exc:
            log.warning("ICMP echo to {}: cannot resolve the name ({})", address, exc)
            return False
        except (icmplib.ICMPLibError, OSError, ValueError) as exc:  # ValueError: e.g. a malformed name
            log.debug("ICMP echo to {} failed: {}", address, exc)
            return False
        log.debug("ICMP echo to {}: {}", address, "answered" if host.is_alive else "no answer")
        return bool(host.is_alive)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> IcmpPinger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------------
# Gateways
# --------------------------------------------------------------------------------------------------


def _usable(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not (addr.is_unspecified or addr.is_loopback)


def parse_proc_net_route(text: str) -> list[str]:
    """IPv4 gateways from ``/proc/net/route`` text: default routes first, then by metric."""
    found: list[tuple[bool, int, str]] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            dest = int(fields[1], 16)
            gw = int(fields[2], 16)
            flags = int(fields[3], 16)
            metric = int(fields[6])
        except ValueError:
            continue
        if not (flags & RTF_UP and flags & RTF_GATEWAY) or flags & RTF_REJECT:
            continue
        # the kernel prints the network-order address as a host-order number: unpack natively
        addr = ipaddress.IPv4Address(struct.pack("=I", gw))
        if _usable(addr):
            found.append((dest != 0, metric, str(addr)))
    return _dedupe(a for _, _, a in sorted(found, key=lambda t: (t[0], t[1])))


def parse_proc_net_ipv6_route(text: str) -> list[str]:
    """IPv6 gateways from ``/proc/net/ipv6_route`` text; link-local ones get ``%interface``."""
    found: list[tuple[bool, int, str]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            prefix_len = int(fields[1], 16)
            next_hop = ipaddress.IPv6Address(bytes.fromhex(fields[4]))
            metric = int(fields[5], 16)
            flags = int(fields[8], 16)
        except ValueError:
            continue
        if not (flags & RTF_UP and flags & RTF_GATEWAY) or flags & RTF_REJECT or not _usable(next_hop):
            continue
        name = f"{next_hop}%{fields[9]}" if next_hop.is_link_local else str(next_hop)
        found.append((prefix_len != 0, metric, name))
    return _dedupe(a for _, _, a in sorted(found, key=lambda t: (t[0], t[1])))


def gateways(
    route_path: str | Path = "/proc/net/route", ipv6_route_path: str | Path = "/proc/net/ipv6_route"
) -> list[str]:
    """All gateways of this host (IPv4 first); a missing or unreadable table contributes nothing."""
    result: list[str] = []
    for path, parse in ((route_path, parse_proc_net_route), (ipv6_route_path, parse_proc_net_ipv6_route)):
        try:
            text = Path(path).read_text()
        except OSError as exc:
            log.debug("Cannot read {}: {}", path, exc)
            continue
        result.extend(parse(text))
    return _dedupe(result)


def _dedupe(addresses: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for a in addresses:
        if a not in seen:
            seen.append(a)
    return seen


def resolve_address(name: str) -> str | None:
    """The first address of ``name`` (for the primary's host), or ``None`` if it cannot be resolved."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_DGRAM)
    except (OSError, ValueError) as exc:
        log.warning("Cannot resolve {}: {}", name, exc)
        return None
    return str(infos[0][4][0]) if infos else None
