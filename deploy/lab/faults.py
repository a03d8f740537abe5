"""Network faults for the lab: link down/up and nftables drops of one flow.

Flows
    A :class:`Flow` is the set of IPv4 packets of one protocol (``tcp``, ``udp``, ``icmp`` or ``any``)
    between two lab hosts ``src`` and ``dst`` (host keys; all their addresses, dedicated link
    included), optionally limited to a service port range.  A port range matches the packet's
    destination port *or* its source port, so "main" means the whole TCP connection to the notifier's
    main port whichever server listens: the SYNs and data towards it as well as its answers.
    Presets (:data:`FLOW_PRESETS`, ports from the :class:`~deploy.lab.topology.LabConfig`):

    ========  =========================================================
    main      TCP, port ``notifier_main_port`` (3634), between A and B
    aux       TCP, port ``notifier_aux_port`` (3635), between A and B
    vswitch   TCP, port ``vswitch_port`` (3633), between A and B
    icmp      ICMP only, between A and B
    all       every packet between A and B
    ========  =========================================================

Directions
    ``forward`` drops the flow's packets travelling src -> dst, ``reverse`` those travelling dst -> src,
    ``both`` both.  ``"a->b"`` style strings are accepted too and are resolved against the flow.

Where the rules live (``at``)
    ``input`` (default): in the *receiving* host's namespace, chain ``input`` (hook input, priority -10)
    of table ``inet <prefix>``.  A dropped packet is lost silently on arrival, exactly like loss on the
    wire: a TCP connect times out rather than failing fast, and the dedicated A<->B link is cut too.
    ``router``: in the router's namespace, chain ``forward`` of the same table; only traffic routed
    through the gateway is affected (the dedicated link is not).
    Every rule carries a comment with its handle id, so :meth:`Faults.heal` removes exactly the rules
    of that handle, even from another process (the handles are kept in the lab state).

Link faults
    :meth:`Faults.link_down` sets a host's NIC down inside its namespace (``end="host"``; the kernel
    drops its routes, :meth:`Faults.link_up` puts the default route back) or the router's bridge port
    facing it (``end="router"``; the host sees carrier loss).  On the dedicated link ``end`` is
    ``host`` or ``peer``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, get_args

from loguru import logger

from deploy.lab.topology import (
    DEDICATED_IF,
    LAN_IF,
    SERVERS,
    SIDE_OF,
    Lab,
    LabError,
    require_tool,
    which,
)

Proto = Literal["tcp", "udp", "icmp", "any"]
Direction = Literal["forward", "reverse", "both"]
At = Literal["input", "router"]
LinkEnd = Literal["host", "router", "peer"]
LinkKind = Literal["lan", "dedicated"]

FLOW_PRESETS: tuple[str, ...] = ("main", "aux", "vswitch", "icmp", "all")
DEFAULT_PORTS: dict[str, int] = {"vswitch": 3633, "main": 3634, "aux": 3635}


@dataclass(frozen=True)
class Flow:
    """Packets of ``proto`` between hosts ``src`` and ``dst``, optionally on service ports ``ports``."""

    proto: Proto = "any"
    #: inclusive service port range (lo, hi), matched as destination or source port; tcp/udp only
    ports: tuple[int, int] | None = None
    src: str = "a"
    dst: str = "b"
    name: str = ""

    def __post_init__(self) -> None:
        if self.proto not in get_args(Proto):
            raise LabError(f"bad flow protocol {self.proto!r}: expected one of {get_args(Proto)}")
        if self.ports is not None:
            if self.proto not in ("tcp", "udp"):
                raise LabError(f"a port range needs proto tcp or udp, not {self.proto!r}")
            lo, hi = self.ports
            if not (0 < lo <= hi < 65536):
                raise LabError(f"bad port range {self.ports!r}")
            object.__setattr__(self, "ports", (int(lo), int(hi)))
        if self.src == self.dst:
            raise LabError(f"a flow needs two different hosts, got {self.src!r} twice")

    @classmethod
    def tcp(cls, port: int | tuple[int, int], src: str = "a", dst: str = "b", name: str = "") -> Flow:
        ports = (port, port) if isinstance(port, int) else port
        return cls("tcp", ports, src, dst, name or f"tcp/{_port_text(ports)}")

    @classmethod
    def udp(cls, port: int | tuple[int, int], src: str = "a", dst: str = "b", name: str = "") -> Flow:
        ports = (port, port) if isinstance(port, int) else port
        return cls("udp", ports, src, dst, name or f"udp/{_port_text(ports)}")

    def between(self, src: str, dst: str) -> Flow:
        return replace(self, src=src, dst=dst)

    def describe(self) -> str:
        what = self.proto if self.ports is None else f"{self.proto}/{_port_text(self.ports)}"
        return f"{self.name or what} ({what} {self.src}<->{self.dst})"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Flow:
        ports = data.get("ports")
        return cls(
            data["proto"], tuple(ports) if ports else None, data["src"], data["dst"], data.get("name", "")
        )


def _port_text(ports: tuple[int, int]) -> str:
    return str(ports[0]) if ports[0] == ports[1] else f"{ports[0]}-{ports[1]}"


def preset(
    name: str,
    *,
    main_port: int = DEFAULT_PORTS["main"],
    aux_port: int = DEFAULT_PORTS["aux"],
    vswitch_port: int = DEFAULT_PORTS["vswitch"],
    src: str = "a",
    dst: str = "b",
) -> Flow:
    """A named flow (see :data:`FLOW_PRESETS`) between ``src`` and ``dst``."""
    if name == "main":
        return Flow("tcp", (main_port, main_port), src, dst, "main")
    if name == "aux":
        return Flow("tcp", (aux_port, aux_port), src, dst, "aux")
    if name == "vswitch":
        return Flow("tcp", (vswitch_port, vswitch_port), src, dst, "vswitch")
    if name == "icmp":
        return Flow("icmp", None, src, dst, "icmp")
    if name == "all":
        return Flow("any", None, src, dst, "all")
    raise LabError(f"unknown flow preset {name!r}: expected one of {', '.join(FLOW_PRESETS)}")


@dataclass(frozen=True)
class DropHandle:
    """Rules installed by one :meth:`Faults.drop`: (host key, chain) of each, all tagged ``id``."""

    id: str
    flow: Flow
    direction: Direction
    at: At
    rules: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class LinkHandle:
    id: str
    host: str
    end: LinkEnd
    link: LinkKind


Handle = DropHandle | LinkHandle


def require_nft(*, finder: Callable[[str], str | None] = which) -> str:
    """Path of ``nft``, or a :class:`LabError` telling to run deploy/install-system-deps.sh."""
    return require_tool("nft", "nftables", finder=finder)


class Faults:
    """Fault primitives of one lab: ``Faults(lab)``."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.table = lab.nft_table

    # -- flows -----------------------------------------------------------------------------------

    def flow(self, name: str, *, src: str = "a", dst: str = "b") -> Flow:
        """A preset flow with this lab's configured ports."""
        cfg = self.lab.config
        return preset(
            name,
            main_port=cfg.notifier_main_port,
            aux_port=cfg.notifier_aux_port,
            vswitch_port=cfg.vswitch_port,
            src=src,
            dst=dst,
        )

    def _direction(self, flow: Flow, direction: str) -> Direction:
        if direction in get_args(Direction):
            return direction  # type: ignore[return-value]
        compact = direction.replace(" ", "")
        if compact == f"{flow.src}->{flow.dst}":
            return "forward"
        if compact == f"{flow.dst}->{flow.src}":
            return "reverse"
        raise LabError(
            f"bad direction {direction!r} for flow {flow.describe()}: expected forward, reverse, both, "
            f"'{flow.src}->{flow.dst}' or '{flow.dst}->{flow.src}'"
        )

    def _nft(self, host: str, *args: str, script: str | None = None) -> str:
        require_nft()
        argv = ["nft", *args] if script is None else ["nft", *args, "-f", "-"]
        return self.lab.exec(host, argv, input=script).stdout

    def _ensure_chain(self, host: str, chain: str) -> None:
        hook = "forward" if chain == "forward" else "input"
        self._nft(
            host,
            script=(
                f"add table inet {self.table}\n"
                f"add chain inet {self.table} {chain} "
                f"{{ type filter hook {hook} priority -10; policy accept; }}\n"
            ),
        )

    def _match(self, flow: Flow, sender: str, receiver: str) -> list[str]:
        """nft match expressions (one per rule) for packets of ``flow`` from sender to receiver."""
        saddr = ", ".join(self.lab.host_addrs(sender))
        daddr = ", ".join(self.lab.host_addrs(receiver))
        base = f"ip saddr {{ {saddr} }} ip daddr {{ {daddr} }}"
        if flow.proto == "any":
            return [base]
        if flow.proto == "icmp":
            return [f"{base} meta l4proto icmp"]
        if flow.ports is None:
            return [f"{base} meta l4proto {flow.proto}"]
        ports = _port_text(flow.ports)
        return [f"{base} {flow.proto} dport {ports}", f"{base} {flow.proto} sport {ports}"]

    def drop(self, flow: Flow | str, direction: Direction | str = "both", *, at: At = "input") -> DropHandle:
        """Drop ``flow`` (a :class:`Flow` or a preset name) in ``direction``; return its handle."""
        self.lab.require_root()
        if isinstance(flow, str):
            flow = self.flow(flow)
        for host in (flow.src, flow.dst):
            self.lab.host_addrs(host)  # validates the host keys
        d = self._direction(flow, direction)
        if at not in get_args(At):
            raise LabError(f"bad rule placement {at!r}: expected input or router")
        legs: list[tuple[str, str]] = []
        if d in ("forward", "both"):
            legs.append((flow.src, flow.dst))
        if d in ("reverse", "both"):
            legs.append((flow.dst, flow.src))
        hid = f"so-{uuid.uuid4().hex[:10]}"
        rules: list[tuple[str, str]] = []
        handle = DropHandle(hid, flow, d, at, ())
        try:
            for sender, receiver in legs:
                host, chain = (receiver, "input") if at == "input" else ("gw", "forward")
                self._ensure_chain(host, chain)
                script = "".join(
                    f'add rule inet {self.table} {chain} {m} counter drop comment "{hid}"\n'
                    for m in self._match(flow, sender, receiver)
                )
                self._nft(host, script=script)
                rules.append((host, chain))
        except LabError:
            self._delete_rules(replace(handle, rules=tuple(rules)))
            raise
        handle = replace(handle, rules=tuple(rules))
        with self.lab.state() as st:
            st["faults"][hid] = {
                "kind": "drop",
                "flow": asdict(flow),
                "direction": d,
                "at": at,
                "rules": [list(r) for r in rules],
                "since": time.time(),
            }
        logger.info("lab {}: drop {} {} at {} -> {}", self.lab.prefix, flow.describe(), d, at, hid)
        return handle

    def _delete_rules(self, handle: DropHandle) -> None:
        for host, chain in dict.fromkeys(handle.rules):
            listing = self.lab.exec(
                host, ["nft", "-j", "-a", "list", "chain", "inet", self.table, chain], check=False
            )
            if listing.returncode != 0:
                continue  # table or chain gone: nothing to remove
            for item in json.loads(listing.stdout).get("nftables", []):
                rule = item.get("rule")
                if rule and rule.get("comment") == handle.id:
                    self._nft(
                        host, "delete", "rule", "inet", self.table, chain, "handle", str(rule["handle"])
                    )

    # -- links -----------------------------------------------------------------------------------

    def _link_target(self, host: str, end: LinkEnd, link: LinkKind) -> tuple[str, str]:
        if link == "lan":
            if host not in SIDE_OF:
                raise LabError(f"no LAN NIC for host {host!r}: expected one of {', '.join(SIDE_OF)}")
            if end == "host":
                return host, LAN_IF
            if end == "router":
                return "gw", f"p-{host}"
            raise LabError("a LAN link's end is 'host' or 'router'")
        if link == "dedicated":
            if not self.lab.config.dedicated_link:
                raise LabError("this lab has no dedicated link (LabConfig(dedicated_link=True))")
            if host not in SERVERS:
                raise LabError(f"the dedicated link joins a and b, not {host!r}")
            if end == "host":
                return host, DEDICATED_IF
            if end == "peer":
                return self.lab.peer[host], DEDICATED_IF
            raise LabError("a dedicated link's end is 'host' or 'peer'")
        raise LabError(f"bad link kind {link!r}: expected lan or dedicated")

    def link_down(self, host: str, *, end: LinkEnd = "host", link: LinkKind = "lan") -> LinkHandle:
        """Set a NIC down: ``host``'s own (``end="host"``) or the router's port facing it."""
        self.lab.require_root()
        ns_host, ifname = self._link_target(host, end, link)
        run_ip = self.lab.exec
        run_ip(ns_host, ["ip", "link", "set", ifname, "down"])
        handle = LinkHandle(f"so-{uuid.uuid4().hex[:10]}", host, end, link)
        with self.lab.state() as st:
            st["faults"][handle.id] = {"kind": "link", **asdict(handle), "since": time.time()}
        logger.info(
            "lab {}: link down {} {} end {} ({} in {})", self.lab.prefix, host, link, end, ifname, ns_host
        )
        return handle

    def link_up(self, host: str, *, end: LinkEnd = "host", link: LinkKind = "lan") -> None:
        """Set the NIC up again and, for a host's own LAN NIC, restore its default route."""
        self.lab.require_root()
        ns_host, ifname = self._link_target(host, end, link)
        self.lab.exec(ns_host, ["ip", "link", "set", ifname, "up"])
        if link == "lan" and end == "host":
            gateway = self.lab.gateway[host]
            self.lab.exec(host, ["ip", "route", "replace", "default", "via", gateway, "dev", LAN_IF])
        with self.lab.state() as st:
            for fid, f in list(st["faults"].items()):
                if f.get("kind") == "link" and (f["host"], f["end"], f["link"]) == (host, end, link):
                    del st["faults"][fid]
        logger.info("lab {}: link up {} {} end {}", self.lab.prefix, host, link, end)

    # -- healing ---------------------------------------------------------------------------------

    def handles(self) -> list[Handle]:
        """Every fault in force, as handles (also those applied by another process)."""
        out: list[Handle] = []
        for fid, f in self.lab.read_state()["faults"].items():
            out.append(self._handle_from_state(fid, f))
        return out

    @staticmethod
    def _handle_from_state(fid: str, f: dict[str, Any]) -> Handle:
        if f["kind"] == "link":
            return LinkHandle(fid, f["host"], f["end"], f["link"])
        return DropHandle(
            fid, Flow.from_dict(f["flow"]), f["direction"], f["at"], tuple((h, c) for h, c in f["rules"])
        )

    def heal(self, handle: Handle | str) -> None:
        """Undo one fault: remove exactly the rules of a drop, or set a downed link up."""
        self.lab.require_root()
        if isinstance(handle, str):
            faults = self.lab.read_state()["faults"]
            if handle not in faults:
                raise LabError(f"no fault {handle!r} in force in lab {self.lab.prefix}")
            handle = self._handle_from_state(handle, faults[handle])
        if isinstance(handle, LinkHandle):
            self.link_up(handle.host, end=handle.end, link=handle.link)
        else:
            self._delete_rules(handle)
            logger.info("lab {}: healed {} ({})", self.lab.prefix, handle.id, handle.flow.describe())
        with self.lab.state() as st:
            st["faults"].pop(handle.id, None)

    def heal_all(self) -> None:
        """Remove every drop (the lab's nft tables in every namespace) and set every downed link up."""
        self.lab.require_root()
        for h in self.handles():
            if isinstance(h, LinkHandle):
                self.link_up(h.host, end=h.end, link=h.link)
        if which("nft") is not None:
            for host in self.lab.netns:
                listing = self.lab.exec(host, ["nft", "list", "table", "inet", self.table], check=False)
                if listing.returncode == 0:
                    self._nft(host, "delete", "table", "inet", self.table)
        with self.lab.state() as st:
            st["faults"] = {}
        logger.info("lab {}: healed all faults", self.lab.prefix)

    def ruleset(self, host: str) -> str:
        """The lab table in ``host``'s namespace as nft prints it ("" when there is none)."""
        listing = self.lab.exec(host, ["nft", "-a", "list", "table", "inet", self.table], check=False)
        return listing.stdout if listing.returncode == 0 else ""
