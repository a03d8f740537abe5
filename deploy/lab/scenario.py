"""Fault scenarios for the lab: the model and its TOML loader (strict, with clear errors).

A scenario file (``deploy/scenarios/<name>.toml``) says how to set the pair up, what to do to it, step
by step, and what must be true afterwards::

    description = "kill -9 of the primary node: the backup takes over"
    timeout = 60                       # the whole run, seconds (default 120)

    [pair]                             # optional
    parameters = { "Switchover Reconnect Timeout" = "2" }   # on top of the fast profile
    a = { args = [] }                  # extra `switchover node` arguments of server A
    b = { args = ["--manual-switch-only"], module = true }

    [[steps]]
    action = "start_pair"              # node + module on A, A Primary, then node + module on B

    [[steps]]
    action = "wait_roles"
    roles = { a = "Primary", b = "Backup" }
    stable = 1.0
    timeout = 20

    [[steps]]
    action = "kill9"
    target = "node-a"
    fault = true                       # the time switches and detection are measured from

    [[steps]]
    action = "wait_roles"
    roles = { b = "Primary" }
    timeout = 15
    required = false                   # a timeout here is reported by the checks, not as a broken step

    [expect]
    switch = true
    switch_within = 8
    reason = "Reconnect Timeout"
    final_roles = { a = "unreachable", b = "Primary" }

Every action, its keys and their meaning are in :data:`ACTIONS`; every expectation in :data:`EXPECT_KEYS`.
Keys common to every step: ``action`` (required), ``fault`` / ``heal`` (mark the step as the fault or
the heal; by default the first step of a fault action is the fault and the first healing step after
it the heal), ``note`` (free text shown in the timeline).

Loading never half-accepts a file: an unknown key (with a suggestion), a missing key, a value of the
wrong type or outside its choices, a heal of an unknown id... raise :class:`ScenarioError` naming the
file, the step (``steps[3]``, ``steps[5].steps[1]`` inside a ``repeat``) and the key.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.lab.faults import FLOW_PRESETS

#: where the shipped scenarios live
SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"

NODES: tuple[str, ...] = ("a", "b")
#: processes a step can signal: a node or its module, on server a or b
TARGETS: tuple[str, ...] = ("node-a", "node-b", "module-a", "module-b")
#: role names a node reports (actors/roles/state_machine.py State values), plus "unreachable" (no answer)
ROLES: tuple[str, ...] = (
    "Init",
    "Primary",
    "Backup",
    "Reconnecting",
    "Upgrade Higher",
    "Upgrade Lower",
    "Inactive",
    "Stepped Down",
    "Stopping",
    "Error",
)
UNREACHABLE = "unreachable"
ENDPOINTS: tuple[str, ...] = (
    "vswitch.server",
    "vswitch.peer",
    "notifier.main",
    "notifier.aux",
    "notifier.link.main",
    "notifier.link.aux",
    "admin",
)
LAN_HOSTS: tuple[str, ...] = ("a", "b", "nta", "ntb")
FLOW_HOSTS: tuple[str, ...] = ("a", "b", "gw", "nta", "ntb")
#: actions that change the pair or its network: the first one run is the fault unless a step says so
FAULT_ACTIONS: frozenset[str] = frozenset(
    {"kill9", "sigstop", "stop", "restart", "drop", "link_down", "inject", "ctl", "switch"}
)
#: actions that undo a fault: the first one after the fault is the heal unless a step says so
HEAL_ACTIONS: frozenset[str] = frozenset({"heal", "link_up", "sigcont"})
COMMON_KEYS = ("action", "fault", "heal", "note")


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the text names the file, the step and the key."""


# --------------------------------------------------------------------------------------------------
# value checkers: each returns the cleaned value or raises _Bad with what was expected


class _Bad(Exception):
    pass


Checker = Callable[[Any], Any]


def _type_name(value: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise _Bad(f"expected true or false, got {_type_name(v)} {v!r}")
    return v


def _int(lo: int | None = None) -> Checker:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Bad(f"expected an integer, got {_type_name(v)} {v!r}")
        if lo is not None and v < lo:
            raise _Bad(f"expected an integer >= {lo}, got {v}")
        return v

    return check


def _num(lo: float = 0.0, *, exclusive: bool = False) -> Checker:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _Bad(f"expected a number of seconds, got {_type_name(v)} {v!r}")
        if v < lo or (exclusive and v == lo):
            raise _Bad(f"expected a number {'>' if exclusive else '>='} {lo:g}, got {v!r}")
        return float(v)

    return check


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise _Bad(f"expected a non-empty string, got {_type_name(v)} {v!r}")
    return v


def _choice(*choices: str) -> Checker:
    def check(v: Any) -> str:
        if not isinstance(v, str) or v not in choices:
            close = difflib.get_close_matches(str(v), choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _Bad(f"expected one of {', '.join(choices)}; got {v!r}{hint}")
        return v

    return check


def _str_list(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _Bad(f"expected an array of strings, got {_type_name(v)} {v!r}")
    return tuple(v)


def _str_or_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, str) and v:
        return (v,)
    if isinstance(v, list) and v and all(isinstance(x, str) and x for x in v):
        return tuple(v)
    raise _Bad(f"expected a string or a non-empty array of strings, got {_type_name(v)} {v!r}")


def _hosts(v: Any) -> tuple[str, ...]:
    hosts = _str_or_list(v)
    for h in hosts:
        _choice(*LAN_HOSTS)(h)
    return hosts


def _role_spec(v: Any) -> tuple[str, ...]:
    roles = _str_or_list(v)
    for r in roles:
        _choice(*ROLES, UNREACHABLE)(r)
    return roles


def _roles_table(v: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(v, dict) or not v:
        raise _Bad(f'expected a table like {{ a = "Primary", b = "Backup" }}, got {_type_name(v)} {v!r}')
    out: dict[str, tuple[str, ...]] = {}
    for node, spec in v.items():
        if node not in NODES:
            raise _Bad(f"unknown node {node!r}: expected a or b")
        try:
            out[node] = _role_spec(spec)
        except _Bad as exc:
            raise _Bad(f"{node}: {exc}") from None
    return out


_FLOW_KEYS = ("proto", "ports", "src", "dst", "name")


def _flow(v: Any) -> str | dict[str, Any]:
    if isinstance(v, str):
        return _choice(*FLOW_PRESETS)(v)
    if not isinstance(v, dict):
        raise _Bad(f"expected a preset name ({', '.join(FLOW_PRESETS)}) or a table, got {_type_name(v)}")
    _unknown_keys(v, _FLOW_KEYS)
    out: dict[str, Any] = {"proto": _choice("tcp", "udp", "icmp", "any")(v.get("proto", "any"))}
    for key in ("src", "dst"):
        if key not in v:
            raise _Bad(f"{key}: missing key (one of {', '.join(FLOW_HOSTS)})")
        out[key] = _choice(*FLOW_HOSTS)(v[key])
    if out["src"] == out["dst"]:
        raise _Bad("src and dst must differ")
    if "ports" in v:
        ports = v["ports"]
        if isinstance(ports, int) and not isinstance(ports, bool):
            ports = [ports, ports]
        if (
            not isinstance(ports, list)
            or len(ports) != 2
            or not all(isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in ports)
            or ports[0] > ports[1]
        ):
            raise _Bad(f"ports: expected a port or [low, high] (1-65535), got {v['ports']!r}")
        if out["proto"] not in ("tcp", "udp"):
            raise _Bad("ports: a port range needs proto tcp or udp")
        out["ports"] = (ports[0], ports[1])
    if "name" in v:
        out["name"] = _str(v["name"])
    return out


_FAULT_SETTINGS = {"drop_all": _bool, "drop_fraction": _num(), "delay_ms": _num(), "cut": _bool}


def _endpoint_faults(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _Bad(f"expected a table of endpoint faults ({', '.join(_FAULT_SETTINGS)}), got {_type_name(v)}")
    _unknown_keys(v, tuple(_FAULT_SETTINGS))
    out = {}
    for key, value in v.items():
        try:
            out[key] = _FAULT_SETTINGS[key](value)
        except _Bad as exc:
            raise _Bad(f"{key}: {exc}") from None
    if out.get("drop_fraction", 0.0) > 1.0:
        raise _Bad("drop_fraction: expected a fraction between 0 and 1")
    return out


def _unknown_keys(data: Mapping[str, Any], known: Sequence[str]) -> None:
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"
            raise _Bad(f"{key}: unknown key{hint}")


# --------------------------------------------------------------------------------------------------
# actions


@dataclass(frozen=True)
class Key:
    check: Checker
    required: bool = False
    default: Any = None
    help: str = ""


@dataclass(frozen=True)
class ActionSpec:
    help: str
    keys: dict[str, Key]


_TIMEOUT = Key(_num(0.0, exclusive=True), default=20.0, help="seconds before the wait gives up")
_REQUIRED = Key(_bool, default=True, help="false: a timeout is left to the checks instead of ending the run")

ACTIONS: dict[str, ActionSpec] = {
    "start_pair": ActionSpec(
        "start nodes (and modules) on A and B together and wait until A is Primary (it wins the start-up "
        "tie as server A); with sequential = true, start A, wait until it is Primary, then start B",
        {"timeout": _TIMEOUT, "sequential": Key(_bool, default=False)},
    ),
    "start": ActionSpec(
        "start one node (and its module unless module = false)",
        {
            "node": Key(_choice(*NODES), required=True),
            "args": Key(_str_list, help="node arguments instead of the [pair] ones"),
            "module": Key(_bool, help="start the module too (default: the [pair] setting)"),
        },
    ),
    "start_module": ActionSpec("start the reference module of a node", {"node": Key(_choice(*NODES), True)}),
    "stop": ActionSpec("SIGTERM a process (SIGKILL after 5 s)", {"target": Key(_choice(*TARGETS), True)}),
    "kill9": ActionSpec("kill -9 a process", {"target": Key(_choice(*TARGETS), True)}),
    "sigstop": ActionSpec("freeze a process (SIGSTOP)", {"target": Key(_choice(*TARGETS), True)}),
    "sigcont": ActionSpec("resume a frozen process (SIGCONT)", {"target": Key(_choice(*TARGETS), True)}),
    "restart": ActionSpec(
        "restart a process: term (SIGTERM, then start), kill9 (kill -9, then start) or, for a module, "
        "overlap (start a new one, wait until it registered, then kill -9 the old one: a new PID, no gap)",
        {
            "target": Key(_choice(*TARGETS), True),
            "how": Key(_choice("term", "kill9", "overlap"), default="term"),
            "timeout": Key(_num(0.0, exclusive=True), default=10.0),
        },
    ),
    "drop": ActionSpec(
        "drop a flow with nftables (deploy/lab/faults.py)",
        {
            "flow": Key(
                _flow, True, help=f"preset ({', '.join(FLOW_PRESETS)}) or {{proto, ports, src, dst}}"
            ),
            "direction": Key(_str, default="both", help="both, forward, reverse, or 'a->b'"),
            "at": Key(_choice("input", "router"), default="input"),
            "src": Key(_choice(*FLOW_HOSTS), help="a preset's first host (default a)"),
            "dst": Key(_choice(*FLOW_HOSTS), help="a preset's second host (default b)"),
            "id": Key(_str, help="name for a later heal"),
            "partition": Key(_bool, default=False, help="two Primaries are expected while it lasts"),
        },
    ),
    "link_down": ActionSpec(
        "set NICs down: a host's own (end = host) or the router's port facing it (end = router)",
        {
            "host": Key(_hosts, True, help="a, b, nta, ntb, or an array of them"),
            "end": Key(_choice("host", "router", "peer"), default="host"),
            "link": Key(_choice("lan", "dedicated"), default="lan"),
            "id": Key(_str),
            "partition": Key(_bool, default=False),
        },
    ),
    "link_up": ActionSpec(
        "set NICs up again",
        {
            "host": Key(_hosts, True),
            "end": Key(_choice("host", "router", "peer"), default="host"),
            "link": Key(_choice("lan", "dedicated"), default="lan"),
        },
    ),
    "heal": ActionSpec(
        "undo the fault named id (a drop, a link_down or an inject), or every fault (all = true)",
        {"id": Key(_str), "all": Key(_bool, default=False)},
    ),
    "inject": ActionSpec(
        "in-process fault on one endpoint of a node, through its admin socket",
        {
            "node": Key(_choice(*NODES), True),
            "endpoint": Key(_choice(*ENDPOINTS), True),
            "faults": Key(_endpoint_faults, True, help="drop_all, drop_fraction, delay_ms, cut"),
            "id": Key(_str),
        },
    ),
    "ctl": ActionSpec(
        "run `switchover ctl --config <node's config> ARGS` inside the node's namespace",
        {
            "node": Key(_choice(*NODES), True),
            "args": Key(_str_list, True),
            "expect_rc": Key(_int(), default=0, help="the exit code that counts as success"),
            "timeout": Key(_num(0.0, exclusive=True), default=30.0),
        },
    ),
    "switch": ActionSpec(
        "manual switch: `ctl switch --yes` on the current backup, wait until it is Primary; with rejoin, "
        "`ctl rejoin` the former primary and wait until it is Backup",
        {
            "immediate": Key(_bool, default=False),
            "rejoin": Key(_bool, default=False),
            "timeout": Key(_num(0.0, exclusive=True), default=15.0),
        },
    ),
    "sleep": ActionSpec(
        "observe for a while (nothing else happens)", {"seconds": Key(_num(0.0, exclusive=True), True)}
    ),
    "wait_roles": ActionSpec(
        "wait until the nodes report these roles (each a role or an array of roles), for `stable` seconds",
        {
            "roles": Key(_roles_table, True),
            "stable": Key(_num(), default=0.0),
            "timeout": _TIMEOUT,
            "required": _REQUIRED,
        },
    ),
    "wait_event": ActionSpec(
        "wait until an event-log record appears (after this step starts) that matches",
        {
            "node": Key(_choice(*NODES)),
            "new_state": Key(_choice(*ROLES)),
            "reason": Key(_str, help="substring of the record's reason"),
            "timeout": _TIMEOUT,
            "required": _REQUIRED,
        },
    ),
    "measure": ActionSpec(
        "record threads, open fds, sockets and RSS of both node processes under a label",
        {"label": Key(_str, True)},
    ),
    "ds_writer": ActionSpec(
        "start writing DS keys <path>/w<seq> through the current Primary in the background (admin op "
        "ds.set, each write recorded with its key, value and whether it was acknowledged), and sample "
        "the backup's replication state (ds.replication) meanwhile",
        {
            "rate": Key(_num(0.0, exclusive=True), default=50.0, help="writes per second"),
            "path": Key(_str, default="/Lab/Writer", help="the DS key the writes go under"),
        },
    ),
    "ds_writer_stop": ActionSpec(
        "stop the DS writer and read its keys back from the node that is Primary now",
        {"timeout": Key(_num(0.0, exclusive=True), default=10.0)},
    ),
    "app": ActionSpec(
        "start the reference application (switchover app --journal) beside both nodes; each publishes "
        "interactions while its node is Primary",
        {
            "rate": Key(_num(0.0, exclusive=True), default=20.0, help="operations per second"),
            "wait_backup": Key(_bool, default=True, help="publish with wait-for-the-backup"),
            "seed": Key(_int(), default=1),
        },
    ),
    "app_stop": ActionSpec(
        "stop both applications, read their journals and the interactions of the node that is Primary now",
        {"timeout": Key(_num(0.0, exclusive=True), default=10.0)},
    ),
    "repeat": ActionSpec(
        "run the nested steps count times", {"count": Key(_int(1), True), "steps": Key(lambda v: v, True)}
    ),
}


# --------------------------------------------------------------------------------------------------
# model


@dataclass(frozen=True)
class Step:
    """One step: ``params`` holds every key of its action (defaults filled in)."""

    action: str
    where: str  # "steps[3]" or "steps[5].steps[1]"
    params: Mapping[str, Any]
    fault: bool = False
    heal: bool = False
    note: str = ""
    steps: tuple[Step, ...] = ()  # repeat only

    def get(self, key: str) -> Any:
        return self.params.get(key)

    def describe(self) -> str:
        """A one-line description for timelines and error messages."""
        p = self.params
        a = self.action
        text: str
        if a in ("stop", "kill9", "sigstop", "sigcont"):
            verb = {"kill9": "kill -9", "stop": "SIGTERM", "sigstop": "SIGSTOP", "sigcont": "SIGCONT"}[a]
            text = f"{verb} {p['target']}"
        elif a == "restart":
            text = f"restart {p['target']} ({p['how']})"
        elif a == "drop":
            flow = p["flow"]
            what = flow if isinstance(flow, str) else f"{flow['proto']} {flow['src']}<->{flow['dst']}"
            text = f"drop {what} {p['direction']} at {p['at']}"
        elif a in ("link_down", "link_up"):
            text = f"{a.replace('_', ' ')} {','.join(p['host'])} ({p['link']}, end {p['end']})"
        elif a == "heal":
            text = "heal all faults" if p.get("all") else f"heal {p.get('id')}"
        elif a == "inject":
            text = f"inject {p['faults']} into {p['node']}:{p['endpoint']}"
        elif a == "ctl":
            text = f"ctl {' '.join(p['args'])} (from {p['node']})"
        elif a == "switch":
            text = (
                "manual switch"
                + (" --immediate" if p.get("immediate") else "")
                + (" + rejoin" if p.get("rejoin") else "")
            )
        elif a == "sleep":
            text = f"observe {p['seconds']:g} s"
        elif a == "wait_roles":
            roles = ", ".join(f"{n}={'|'.join(r)}" for n, r in p["roles"].items())
            text = f"wait for {roles}" + (f" stable {p['stable']:g} s" if p["stable"] else "")
        elif a in ("start", "start_module"):
            text = f"{a.replace('_', ' ')} {p['node']}"
        elif a == "repeat":
            text = f"repeat {p['count']} x"
        elif a == "measure":
            text = f"measure resources '{p['label']}'"
        elif a == "ds_writer":
            text = f"DS writer on {p['path']} at {p['rate']:g}/s"
        elif a == "app":
            text = f"reference app at {p['rate']:g}/s" + (" with wait-backup" if p["wait_backup"] else "")
        elif a in ("ds_writer_stop", "app_stop"):
            text = f"stop the {'DS writer' if a == 'ds_writer_stop' else 'reference apps'} and read back"
        else:
            text = a.replace("_", " ")
        return f"{text} ({self.note})" if self.note else text

    @property
    def is_fault_action(self) -> bool:
        return self.action in FAULT_ACTIONS

    @property
    def is_heal_action(self) -> bool:
        return self.action in HEAL_ACTIONS


@dataclass(frozen=True)
class NodeSetup:
    args: tuple[str, ...] = ()
    module: bool = True


@dataclass(frozen=True)
class ResourceBounds:
    before: str = "before"
    after: str = "after"
    max_thread_growth: int | None = None
    max_fd_growth: int | None = None
    max_socket_growth: int | None = None
    max_rss_growth_mb: float | None = None


@dataclass(frozen=True)
class Expect:
    """What must hold after the run (see :mod:`deploy.lab.checks`)."""

    switch: bool | None = None  # a node became Primary after the fault (None: not checked)
    switch_within: float | None = None  # ... within this many seconds of the fault
    switches: int | None = None  # exactly this many switches after the fault
    final_roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    visits: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # states entered after the fault
    reason: tuple[str, ...] = ()  # each switch's reason contains one of these
    demote_reason: tuple[str, ...] = ()  # the first Primary -> not Primary after the fault, likewise
    max_dual_primary: float = 1.0  # fencing window: longest time both nodes report Primary
    hooks_once: bool = True  # each hook ran exactly once per role change
    detect_within: float | None = None  # first detection within this many seconds of the fault
    no_switch_before_fault: bool = True
    resources: ResourceBounds | None = None
    max_lost_ds_writes: int | None = None  # acknowledged DS writes missing on the final active
    max_lost_interactions: int | None = None  # shadowed interactions + messages missing on the new active


EXPECT_KEYS: dict[str, Key] = {
    "switch": Key(_bool, help="a switch happens after the fault (true) or none does (false)"),
    "switch_within": Key(_num(0.0, exclusive=True), help="seconds from the fault to the switch"),
    "switches": Key(_int(0), help="exact number of switches after the fault"),
    "final_roles": Key(_roles_table, default={}, help='roles at the end, e.g. { a = "Inactive" }'),
    "visits": Key(_roles_table, default={}, help="states each node must enter after the fault"),
    "reason": Key(_str_or_list, default=(), help="substring(s) of the switch reason"),
    "demote_reason": Key(_str_or_list, default=(), help="substring(s) of the former primary's reason"),
    "max_dual_primary": Key(_num(), default=1.0, help="longest two-Primary window outside partitions"),
    "hooks_once": Key(_bool, default=True),
    "detect_within": Key(_num(0.0, exclusive=True)),
    "no_switch_before_fault": Key(_bool, default=True),
    "resources": Key(lambda v: v),
    "max_lost_ds_writes": Key(_int(0), help="acknowledged DS writes the final active may lack (ds_writer)"),
    "max_lost_interactions": Key(
        _int(0), help="shadowed interactions + messages the new active may lack (app)"
    ),
}
RESOURCE_KEYS: dict[str, Key] = {
    "before": Key(_str, default="before"),
    "after": Key(_str, default="after"),
    "max_thread_growth": Key(_int()),
    "max_fd_growth": Key(_int()),
    "max_socket_growth": Key(_int()),
    "max_rss_growth_mb": Key(_num()),
}
TOP_KEYS = ("name", "description", "timeout", "lab", "pair", "steps", "expect")
PAIR_KEYS = ("parameters", "log_level", "a", "b")
NODE_KEYS = ("args", "module")
LAB_KEYS = ("dedicated_link",)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    steps: tuple[Step, ...]
    expect: Expect
    timeout: float = 120.0
    parameters: Mapping[str, str] = field(default_factory=dict)
    log_level: str = "INFO"
    nodes: Mapping[str, NodeSetup] = field(default_factory=lambda: {n: NodeSetup() for n in NODES})
    dedicated_link: bool = False
    source: str = ""

    def walk(self) -> Iterator[Step]:
        """Every step, nested ones included, in file order (a repeat before its steps)."""
        yield from _walk(self.steps)


def _walk(steps: Sequence[Step]) -> Iterator[Step]:
    for step in steps:
        yield step
        yield from _walk(step.steps)


# --------------------------------------------------------------------------------------------------
# parsing


def _fail(source: str, where: str, message: str) -> ScenarioError:
    return ScenarioError(f"{source}: {where}: {message}" if where else f"{source}: {message}")


def _take(data: Mapping[str, Any], keys: Mapping[str, Key], source: str, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, key in keys.items():
        if name not in data:
            if key.required:
                raise _fail(source, where, f"{name}: missing key" + (f" ({key.help})" if key.help else ""))
            out[name] = key.default
            continue
        try:
            out[name] = key.check(data[name])
        except _Bad as exc:
            raise _fail(source, where, f"{name}: {exc}") from None
    return out


def _parse_step(raw: Any, source: str, where: str, ids: dict[str, str]) -> Step:
    if not isinstance(raw, dict):
        raise _fail(source, where, f"expected a table ([[steps]]), got {_type_name(raw)}")
    action = raw.get("action")
    if action is None:
        raise _fail(source, where, f"action: missing key (one of {', '.join(ACTIONS)})")
    try:
        action = _choice(*ACTIONS)(action)
    except _Bad as exc:
        raise _fail(source, where, f"action: {exc}") from None
    where = f"{where} ({action})"
    spec = ACTIONS[action]
    try:
        _unknown_keys(raw, (*COMMON_KEYS, *spec.keys))
    except _Bad as exc:
        raise _fail(source, where, str(exc)) from None
    common = _take(
        raw,
        {
            "fault": Key(_bool, default=False),
            "heal": Key(_bool, default=False),
            "note": Key(_str, default=""),
        },
        source,
        where,
    )
    params = _take(raw, spec.keys, source, where)
    nested: tuple[Step, ...] = ()
    if action == "repeat":
        inner = raw["steps"]
        if not isinstance(inner, list) or not inner:
            raise _fail(source, where, "steps: expected a non-empty array of step tables ([[steps.steps]])")
        base = where.split(" (")[0]
        nested = tuple(
            _parse_step(item, source, f"{base}.steps[{i}]", ids) for i, item in enumerate(inner, start=1)
        )
        if any(s.action == "start_pair" for s in _walk(nested)):
            raise _fail(source, where, "start_pair cannot be repeated")
        params = {"count": params["count"]}
    _cross_check(action, params, source, where, ids)
    return Step(action, where.split(" (")[0], params, common["fault"], common["heal"], common["note"], nested)


def _cross_check(action: str, params: dict[str, Any], source: str, where: str, ids: dict[str, str]) -> None:
    if action in ("drop", "link_down", "inject") and params.get("id"):
        if params["id"] in ids:
            raise _fail(source, where, f"id: {params['id']!r} is already used by {ids[params['id']]}")
        ids[params["id"]] = where
    if action == "heal":
        if params["all"] == bool(params["id"]):
            raise _fail(source, where, 'give either id = "<name of a fault>" or all = true')
        if params["id"] and params["id"] not in ids:
            known = ", ".join(sorted(ids)) or "none declared so far"
            raise _fail(
                source,
                where,
                f"id: no earlier drop, link_down or inject has id {params['id']!r} (known: {known})",
            )
    if action == "drop" and isinstance(params["flow"], str) is False and (params["src"] or params["dst"]):
        raise _fail(source, where, "src/dst: only for a preset flow; a flow table has its own src and dst")
    if action == "drop":
        direction = str(params["direction"]).replace(" ", "")
        if direction not in ("both", "forward", "reverse") and "->" not in direction:
            raise _fail(
                source, where, f"direction: expected both, forward, reverse or 'a->b', got {direction!r}"
            )
    if action == "link_down" or action == "link_up":
        if params["link"] == "dedicated" and params["end"] == "router":
            raise _fail(source, where, "end: a dedicated link's end is host or peer")
        if params["link"] == "lan" and params["end"] == "peer":
            raise _fail(source, where, "end: a LAN link's end is host or router")
    if action == "restart" and params["how"] == "overlap" and not params["target"].startswith("module-"):
        raise _fail(source, where, "how: overlap restarts a module (two nodes cannot share a server)")
    if action == "wait_event" and not any(params.get(k) for k in ("node", "new_state", "reason")):
        raise _fail(source, where, "give at least one of node, new_state, reason")


def _parse_expect(raw: Any, source: str, steps: Sequence[Step]) -> Expect:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _fail(source, "expect", f"expected a table [expect], got {_type_name(raw)}")
    try:
        _unknown_keys(raw, tuple(EXPECT_KEYS))
    except _Bad as exc:
        raise _fail(source, "expect", str(exc)) from None
    v = _take(raw, EXPECT_KEYS, source, "expect")
    resources: ResourceBounds | None = None
    if v["resources"] is not None:
        r = v["resources"]
        if not isinstance(r, dict):
            raise _fail(source, "expect.resources", f"expected a table, got {_type_name(r)}")
        try:
            _unknown_keys(r, tuple(RESOURCE_KEYS))
        except _Bad as exc:
            raise _fail(source, "expect.resources", str(exc)) from None
        rv = _take(r, RESOURCE_KEYS, source, "expect.resources")
        labels = {s.params["label"] for s in _walk(steps) if s.action == "measure"}
        for key in ("before", "after"):
            if rv[key] not in labels:
                known = ", ".join(sorted(labels)) or "none"
                text = f"{key}: no measure step has label {rv[key]!r} (labels: {known})"
                raise _fail(source, "expect.resources", text)
        resources = ResourceBounds(**rv)
    expect = Expect(
        switch=v["switch"],
        switch_within=v["switch_within"],
        switches=v["switches"],
        final_roles=v["final_roles"],
        visits=v["visits"],
        reason=v["reason"],
        demote_reason=v["demote_reason"],
        max_dual_primary=v["max_dual_primary"],
        hooks_once=v["hooks_once"],
        detect_within=v["detect_within"],
        no_switch_before_fault=v["no_switch_before_fault"],
        resources=resources,
        max_lost_ds_writes=v["max_lost_ds_writes"],
        max_lost_interactions=v["max_lost_interactions"],
    )
    workloads = {s.action for s in _walk(steps)}
    for key, start, stop in (
        ("max_lost_ds_writes", "ds_writer", "ds_writer_stop"),
        ("max_lost_interactions", "app", "app_stop"),
    ):
        if getattr(expect, key) is not None and not {start, stop} <= workloads:
            raise _fail(source, "expect", f"{key}: needs a {start} step and a {stop} step")
    if expect.switch_within is not None and expect.switch is not True:
        raise _fail(source, "expect", "switch_within: needs switch = true")
    if expect.switch is False and (expect.reason or expect.switches):
        raise _fail(source, "expect", "reason/switches: make no sense with switch = false")
    needs_fault = (
        expect.switch is not None
        or expect.switches is not None
        or expect.reason
        or expect.demote_reason
        or expect.visits
        or expect.detect_within is not None
    )
    if needs_fault and not any(s.fault or s.is_fault_action for s in _walk(steps)):
        raise _fail(
            source,
            "expect",
            "switch/reason/detection expectations are measured from the fault, but no step is a fault "
            f"(mark one with fault = true, or use one of: {', '.join(sorted(FAULT_ACTIONS))})",
        )
    return expect


def parse_scenario(data: Mapping[str, Any], source: str = "<scenario>", name: str = "") -> Scenario:
    """A :class:`Scenario` from parsed TOML; ``name`` defaults to ``data['name']``."""
    try:
        _unknown_keys(data, TOP_KEYS)
    except _Bad as exc:
        raise _fail(source, "", str(exc)) from None
    top = _take(
        data,
        {
            "name": Key(_str, default=name or ""),
            "description": Key(_str, default=""),
            "timeout": Key(_num(0.0, exclusive=True), default=120.0),
        },
        source,
        "",
    )
    if not top["name"]:
        raise _fail(source, "name", "missing key (or load the scenario from a file named after it)")
    lab = data.get("lab", {})
    if not isinstance(lab, dict):
        raise _fail(source, "lab", f"expected a table [lab], got {_type_name(lab)}")
    try:
        _unknown_keys(lab, LAB_KEYS)
    except _Bad as exc:
        raise _fail(source, "lab", str(exc)) from None
    lab_v = _take(lab, {"dedicated_link": Key(_bool, default=False)}, source, "lab")
    pair = data.get("pair", {})
    if not isinstance(pair, dict):
        raise _fail(source, "pair", f"expected a table [pair], got {_type_name(pair)}")
    try:
        _unknown_keys(pair, PAIR_KEYS)
    except _Bad as exc:
        raise _fail(source, "pair", str(exc)) from None
    params = pair.get("parameters", {})
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise _fail(
            source, "pair.parameters", 'expected a table of strings, e.g. { "Switchover TS Timeout" = "5" }'
        )
    log_level = _take(
        pair, {"log_level": Key(_choice("TRACE", "DEBUG", "INFO", "WARNING"), default="INFO")}, source, "pair"
    )["log_level"]
    nodes: dict[str, NodeSetup] = {}
    for node in NODES:
        raw_node = pair.get(node, {})
        where = f"pair.{node}"
        if not isinstance(raw_node, dict):
            raise _fail(source, where, f"expected a table, got {_type_name(raw_node)}")
        try:
            _unknown_keys(raw_node, NODE_KEYS)
        except _Bad as exc:
            raise _fail(source, where, str(exc)) from None
        nv = _take(
            raw_node, {"args": Key(_str_list, default=()), "module": Key(_bool, default=True)}, source, where
        )
        nodes[node] = NodeSetup(tuple(nv["args"]), nv["module"])
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise _fail(source, "steps", "missing or empty: give at least one [[steps]] table")
    ids: dict[str, str] = {}
    steps = tuple(_parse_step(raw, source, f"steps[{i}]", ids) for i, raw in enumerate(raw_steps, start=1))
    faults = [s for s in _walk(steps) if s.fault]
    if len(faults) > 1:
        raise _fail(
            source, faults[1].where, f"fault: only one step can be the fault ({faults[0].where} already is)"
        )
    heals = [s for s in _walk(steps) if s.heal]
    if len(heals) > 1:
        raise _fail(
            source, heals[1].where, f"heal: only one step can be the heal ({heals[0].where} already is)"
        )
    expect = _parse_expect(data.get("expect"), source, steps)
    return Scenario(
        name=top["name"],
        description=top["description"],
        steps=steps,
        expect=expect,
        timeout=top["timeout"],
        parameters=dict(params),
        log_level=log_level,
        nodes=nodes,
        dedicated_link=lab_v["dedicated_link"],
        source=source,
    )


def load_scenario(path: str | Path) -> Scenario:
    """Load and check one scenario file; the name defaults to the file's stem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"cannot read scenario {p}: not UTF-8 ({exc.reason})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p}: not valid TOML: {exc}") from None
    return parse_scenario(data, str(p), name=p.stem)


def scenario_files(directory: Path = SCENARIO_DIR) -> list[Path]:
    """The scenario files of a directory, sorted by name."""
    return sorted(directory.glob("*.toml"))


def find_scenario(name_or_path: str, directory: Path = SCENARIO_DIR) -> Path:
    """A scenario file from its name (``node-crash``) or its path; a clear error lists the known ones."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        if not candidate.exists():
            raise ScenarioError(f"no scenario file {candidate}")
        return candidate
    path = directory / f"{name_or_path}.toml"
    if path.exists():
        return path
    known = [p.stem for p in scenario_files(directory)]
    close = difflib.get_close_matches(name_or_path, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ScenarioError(f"no scenario named {name_or_path!r}{hint}; known: {', '.join(known) or 'none'}")
