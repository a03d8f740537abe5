"""The switchover server parameter catalog and typed access to parameter values in the DS tree.

Every parameter of the specification's "Switchover Server parameters" (required and optional tables),
the interaction-recovery flags, the upgrade-state parameters of Appendix C and the path parameters
(``Handler Path``, ``Resource Path``, ``I3Tables Path``) is described by a :class:`Param`: exact name,
type, default, range, special values, whether it is *dynamic* (re-read on the fly; exactly the four the
specification lists), and where the specification defines it.

Values live in the DS tree at ``/Server/Parameters/<name>``, attribute ``value`` (one string). Names are
matched case-insensitively, as the specification itself spells some names in two ways
("Switchover Use QoS For Ping" / "... for Ping").

Reading never raises: :class:`ServerParams` returns the *effective* value. An unparsable stored value
gives the default, an out-of-range one the nearest bound (or the default when the bound is exclusive,
e.g. "greater than 0"), and a loguru warning names the parameter, the bad value and what is used
instead (once per distinct bad value). Writing goes through :func:`validate`, which refuses bad values
with a message naming the expected form and range.
"""

from __future__ import annotations

import difflib
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from loguru import logger

from replication.store import Change, DeleteOp, InvalidKey, Op, SetOp, Store, validate_key

__all__ = [
    "CATALOG",
    "DEFAULT_PRIMARY_MONITOR_PING_DELAY",
    "DYNAMIC_PARAMS",
    "PARAMS_ROOT",
    "PATH_PARAMS",
    "UPGRADE_LOWER_BUILTIN_DS_PATHS",
    "VALUE_ATTR",
    "AttrExceptions",
    "MirrorPath",
    "Param",
    "ParamChange",
    "ParamError",
    "ParamType",
    "ServerParams",
    "close_matches",
    "default_text",
    "find_param",
    "format_value",
    "jsonable",
    "module_param_names",
    "monitors_ip",
    "param_key",
    "parse_value",
    "seed_from_config",
    "validate",
]

PARAMS_ROOT = "/Server/Parameters"
VALUE_ATTR = "value"


class ParamError(ValueError):
    """A parameter name is unknown or a value is not acceptable; the message says what is expected."""


class ParamType(Enum):
    BOOL = "bool"
    INT = "int"
    SECONDS = "seconds"
    STRING = "string"
    PATH = "path"
    PATH_LIST = "path list"
    EXT_LIST = "extension list"
    DS_PATH_LIST = "DS path list"
    ATTR_EXCEPTIONS = "attribute exception list"


@dataclass(frozen=True)
class MirrorPath:
    """One entry of a mirrored-directory list: ``+/srv/app/data`` is ``MirrorPath('/srv/app/data', True)``."""

    path: str
    recursive: bool

    def __str__(self) -> str:
        return ("+" if self.recursive else "") + self.path


AttrExceptions = tuple[tuple[str, tuple[str, ...]], ...]
"""``User(Workgroups, Extension);Workgroup(Members)`` is ``(("User", ("Workgroups", "Extension")),
("Workgroup", ("Members",)))``."""


@dataclass(frozen=True)
class Param:
    """One server parameter of the catalog.

    ``default`` is the text form (what an operator would type); ``minimum``/``maximum`` bound numbers,
    ``min_exclusive`` makes the lower bound strict ("set this value greater than 0").
    ``inherits`` names the parameter whose effective value is used while this one is not set.
    """

    name: str
    type: ParamType
    default: str
    description: str
    spec_lines: str
    minimum: float | None = None
    maximum: float | None = None
    min_exclusive: bool = False
    dynamic: bool = False
    required: bool = False
    nonempty: bool = False
    special: str = ""
    inherits: str | None = None
    depends_on: tuple[str, ...] = ()
    local: bool = False  # per-node value: never replicated from the active (issue 10)

    @property
    def range_text(self) -> str:
        """Human description of the accepted range ('' if none)."""
        if self.type not in (ParamType.INT, ParamType.SECONDS):
            return ""
        unit = " s" if self.type is ParamType.SECONDS else ""
        lo, hi = self.minimum, self.maximum
        if lo is not None and hi is not None:
            if self.min_exclusive:
                return f"> {_num(lo)} and <= {_num(hi)}{unit}"
            return f"{_num(lo)}-{_num(hi)}{unit}"
        if lo is not None:
            return f"{'>' if self.min_exclusive else '>='} {_num(lo)}{unit}"
        if hi is not None:
            return f"<= {_num(hi)}{unit}"
        return ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


B, INT, S, STR = ParamType.BOOL, ParamType.INT, ParamType.SECONDS, ParamType.STRING
PL, EL, DL, AE, P = (ParamType.PATH_LIST, ParamType.EXT_LIST, ParamType.DS_PATH_LIST,
                     ParamType.ATTR_EXCEPTIONS, ParamType.PATH)

# The Custom Upgrade Synchronization Directories defaults of Appendix C (${CONFIG} -> /Config,
# ${SERVER} -> /Server). The parameter's own value is replicated *in addition to* these.
UPGRADE_LOWER_BUILTIN_DS_PATHS: tuple[str, ...] = (
    "/Config/Users",
    "/Config/Passwords",
    "/Config/Workgroups",
    "/Config/Roles",
    "/Config/Default User",
    "/Server/Workstations",
    "/Config/ProcessAutomation",
)

_RECOVERY = ("Set to 1 (or Yes, or any non-zero integer) to shadow {what} on the backup so they survive "
             "a switch.")

_PARAMS: list[Param] = [
    # --- required ------------------------------------------------------------------------------------
    Param("SwitchoverServer A", STR, "", "Host name of the server designated as the initial active server.",
          "1531-1539, 1729-1746", required=True, nonempty=True),
    Param("SwitchoverServer B", STR, "", "Host name of the server designated as the initial backup server.",
          "1531-1536", required=True, nonempty=True),
    # --- path parameters (mirrored directories) -----------------------------------------------------
    # Local (issue 10): each node's own directory, seeded from its configuration's [paths]; the DS
    # tree replicates, these keys do not (a pair on one machine has a directory per node).
    Param("Handler Path", P, "", "Published handler directory; mirrored once, when the backup starts.",
          "224-226", local=True),
    Param("Resource Path", P, "", "Resources directory (prompts, white pages); mirrored continuously.",
          "234-236", local=True),
    Param("I3Tables Path", P, "", "Data tables directory; mirrored continuously.", "234, 237",
          local=True),
    # --- optional table, in the specification's order -----------------------------------------------
    Param("Callback Interaction Recovery Enabled", B, "0", _RECOVERY.format(what="callback interactions"),
          "1548-1549"),
    Param("Chat Interaction Recovery Enabled", B, "0", _RECOVERY.format(what="chat interactions"),
          "1550-1555"),
    Param("CustomMirrorDir", PL, "",
          "Directories mirrored continuously in addition to the defaults; ';'-separated, '+' prefix = "
          "recursive. (The vendor's default list names its own install directories; here it is empty.)",
          "243-263, 277-285, 1554-1559, 1641-1646", dynamic=True),
    Param("Custom Upgrade Attribute Exceptions", AE, "",
          "Upgrade Lower: attributes excluded from replication, e.g. 'User(Workgroups, Extension);"
          "Workgroup(Members)'.", "1560, 2939-2941"),
    Param("Custom Upgrade File Synchronization Directories", PL, "",
          "Upgrade Lower: directories whose files are replicated (opt-in); same form as CustomMirrorDir. "
          "(The vendor default is its Flows directory; here it is empty.)", "1561, 2942-2943"),
    Param("Custom Upgrade File Synchronization Exceptions", EL, "",
          "Upgrade state: file extensions not replicated from the Custom Upgrade File Synchronization "
          "Directories; while unset, MirrorExceptions applies.", "1562, 2944-2946",
          inherits="MirrorExceptions"),
    Param("Custom Upgrade Synchronization Directories", DL, "",
          "Upgrade Lower: DS paths replicated recursively (opt-in), in addition to the built-in ones "
          "(/Config/Users, /Config/Passwords, /Config/Workgroups, /Config/Roles, /Config/Default User, "
          "/Server/Workstations, /Config/ProcessAutomation). '${CONFIG}\\Users' is accepted for "
          "/Config/Users.",
          "1563, 2929-2938"),
    Param("Directmessage Interaction Recovery Enabled", B, "0",
          _RECOVERY.format(what="social media direct messages"), "1565"),
    Param("ForceSwitchoverFQDNs", B, "No",
          "Yes/1: use SwitchoverServerFQDN A/B instead of resolving the pair's names.", "1566"),
    Param("InitialMirrorDir", PL, "",
          "Directories mirrored once, when the backup starts; same form as CustomMirrorDir.",
          "265-285, 1567-1568"),
    Param("Mail Interaction Recovery Enabled", B, "0", _RECOVERY.format(what="email interactions"),
          "1569-1574"),
    Param("Mail Interaction Recovery Filter Enabled", B, "0",
          "1: shadow only emails already assigned to an agent's queue (needs Mail Interaction Recovery "
          "Enabled).", "1573-1576"),
    Param("MirrorExceptions", EL, "", "File extensions not mirrored, ';'-separated (e.g. 'txt; gif; myext').",
          "314-316, 1577"),
    Param("Server A Address", STR, "",
          "IP address of the dedicated switchover NIC of server A; with Server B Address, all switchover "
          "traffic uses these addresses.", "1579"),
    Param("Server B Address", STR, "", "IP address of the dedicated switchover NIC of server B.", "1580"),
    Param("SMS Interaction Recovery Enabled", B, "0", _RECOVERY.format(what="SMS interactions"), "1581"),
    Param("Socialconversation Interaction Recovery Enabled", B, "0",
          _RECOVERY.format(what="social media conversations"), "1582"),
    Param("StatServer_DisableQPSLoggingOnBackup", B, "No",
          "Yes: the backup does not write its statistics log data.", "1583, 1065"),
    Param("Switchover Disable Gateway Ping", B, "Yes",
          "Yes/1 disables the backup's gateway ping during network diagnosis (default); No/0 enables it.",
          "594, 1584"),
    Param("Switchover DS Request Timeout", S, "120",
          "Timeout of DS requests from the backup to the active (initial sync and resync).", "1585",
          minimum=0, min_exclusive=True),
    Param("Switchover File Monitor Health Check Interval", S, "60",
          "Seconds between File Monitor health checks; 0 turns them off.", "1586-1588", minimum=0,
          special="0 = health checks off"),
    Param("Switchover File Monitor Health Check Timeout", S, "10",
          "Seconds the File Monitor has to answer a health check.", "1589-1590", minimum=0,
          min_exclusive=True),
    Param("Switchover IP Retry Delay", S, "1",
          "When monitoring IP: as Switchover TS Failure Retry Delay (inherits it while unset).",
          "410, 1591-1593", minimum=0, min_exclusive=True, inherits="Switchover TS Failure Retry Delay"),
    Param("Switchover IP Timeout", S, "10",
          "When monitoring IP: as Switchover TS Timeout (inherits it while unset).", "409, 1594-1597",
          minimum=0, min_exclusive=True, inherits="Switchover TS Timeout"),
    Param("Switchover Max Restarts", INT, "2",
          "Times a new module PID may be seen within the restart period before it counts as a restart.",
          "1598", minimum=0),
    Param("Switchover Max Restarts Period", S, "300",
          "Period over which new module PIDs are counted (Switchover Max Restarts).", "1599", minimum=0,
          min_exclusive=True),
    Param("Switchover Max Sequential Restarts", INT, "2",
          "Sequential new module PIDs tolerated before a switch.", "1600", minimum=0),
    Param("Switchover Max TS Failures", INT, "2",
          "Module ping failures tolerated before a switch (reset on every success); greater than 0.",
          "338-342, 1601-1603", minimum=1, dynamic=True),
    Param("Switchover Monitoring", STR, "TsServer",
          "Name of the monitored module ('IP' selects the IP ping parameters).", "408, 1605",
          nonempty=True),
    Param("Switchover NetTest A", STR, "",
          "Host pinged (ICMP) by server A, when backup, to tell a WAN failure from a dead active.",
          "1606, 1779-1800"),
    Param("Switchover NetTest B", STR, "",
          "Host pinged (ICMP) by server B, when backup, to tell a WAN failure from a dead active.",
          "1607, 1779-1800"),
    Param("Switchover NetTest Timeout", S, "1", "Seconds to wait for the NetTest ICMP echo.",
          "1608, 1795-1797", minimum=0, min_exclusive=True),
    Param("Switchover Notifier Reconnect Delay", S, "5",
          "Seconds the Notifier connections wait before reconnecting after a loss.", "1609",
          minimum=5, maximum=60),
    Param("Switchover Ping on Aux Connection", B, "0",
          "1/Yes: send the module ping on the auxiliary connection instead of the main one.", "1611, 1825"),
    Param("Switchover Primary Monitor Ping Delay", S, "0",
          "Delay between the primary monitor's pings to the active's Notifier; 0 = 1 s (pinging back to "
          "back would flood the link).", "1612", minimum=0, maximum=300, special="0 = 1 s"),
    Param("Switchover Primary Monitor Retry Ping Delay", S, "0",
          "Delay between the primary monitor's pings in retry mode.", "1613", minimum=0, maximum=300),
    Param("Switchover Primary Monitor Retry Count", INT, "2",
          "Retry pings sent before the primary monitor diagnoses the connections.", "1614", minimum=1,
          maximum=50),
    Param("Switchover Primary Monitor Timeout", S, "0",
          "Timeout of a primary monitor ping; 0 = half the monitored module timeout (Switchover TS Timeout, "
          "or Switchover IP Timeout when monitoring IP).", "1615", minimum=0, maximum=300,
          special="0 = half the module timeout",
          depends_on=("Switchover TS Timeout", "Switchover IP Timeout", "Switchover Monitoring")),
    Param("Switchover QoS DSCP", INT, "34",
          "DSCP value (6 bits) marking the ping traffic when Switchover Use QoS For Ping is on; "
          "default AF41 (34).", "1616, 1629", minimum=0, maximum=63),
    Param("Switchover Reconnect Timeout", S, "30",
          "How long the backup tries to reconnect before switching; 0 = switch at once.", "1618-1620",
          minimum=0, special="0 = switch immediately when the connection is lost"),
    Param("Switchover TS Failure Retry Delay", S, "1",
          "Delay after a module ping failure before the next ping; greater than 0.", "332-336, 1621-1622",
          minimum=0, min_exclusive=True, dynamic=True),
    Param("Switchover TS Timeout", S, "10",
          "Module ping timeout, and the wait after a success before the next ping.", "331, 1623-1626",
          minimum=5, maximum=60, dynamic=True),
    Param("Switchover Unreachable Primary Ping Count", INT, "0",
          "More ping sets sent to an unreachable primary before switching: unset = none (switch at once, "
          "spec line 620: 'the default is to switch over immediately'); 0-3 = 3; -1 = unlimited (never "
          "switch while the primary is unreachable). The resolved value is the number of extra ping "
          "sets (none = unlimited).", "620, 1627", minimum=-1,
          special="unset = switch at once; 0-3 = 3; -1 = unlimited"),
    Param("Switchover Unreachable Primary Ping Delay", S, "10",
          "Seconds between ping sets to an unreachable primary.", "1628", minimum=1, maximum=300),
    Param("Switchover Upgrade Higher DS Exclusions", DL, "",
          "Upgrade Higher: additional DS paths not replicated (opt-out).", "2950-2958"),
    Param("Switchover Upgrade Higher File Exclusions", PL, "",
          "Upgrade Higher: additional directories not mirrored (opt-out); same form as CustomMirrorDir.",
          "2950-2959"),
    Param("Switchover Use QoS For Ping", B, "0",
          "Yes/1: mark the ping traffic with Switchover QoS DSCP (only with Switchover Ping on Aux "
          "Connection).", "1629, 1826"),
    Param("SwitchoverServerFQDN A", STR, "", "FQDN of server A, used when ForceSwitchoverFQDNs is on.",
          "1630"),
    Param("SwitchoverServerFQDN B", STR, "", "FQDN of server B, used when ForceSwitchoverFQDNs is on.",
          "1632"),
]

CATALOG: dict[str, Param] = {p.name: p for p in _PARAMS}
DEFAULT_PRIMARY_MONITOR_PING_DELAY = 1.0
"""Seconds between the primary monitor's pings when ``Switchover Primary Monitor Ping Delay`` is 0."""


def monitors_ip(monitoring: str) -> bool:
    """``Switchover Monitoring = IP`` selects the IP ping parameters (any case)."""
    return monitoring.strip().casefold() == "ip"


def module_param_names(monitoring: str) -> tuple[str, str]:
    """The (timeout, retry delay) parameters of the monitored module named by ``Switchover Monitoring``."""
    if monitors_ip(monitoring):
        return "Switchover IP Timeout", "Switchover IP Retry Delay"
    return "Switchover TS Timeout", "Switchover TS Failure Retry Delay"
DYNAMIC_PARAMS: frozenset[str] = frozenset(p.name for p in _PARAMS if p.dynamic)
PATH_PARAMS: tuple[str, ...] = ("Handler Path", "Resource Path", "I3Tables Path")
_BY_FOLD: dict[str, Param] = {p.name.casefold(): p for p in _PARAMS}

# Old names still honoured (with a warning) while the new name is not set.
RENAMED: dict[str, str] = {"Switchover Reconnect Delay": "Switchover Reconnect Timeout"}

assert DYNAMIC_PARAMS == {"CustomMirrorDir", "Switchover Max TS Failures",
                          "Switchover TS Failure Retry Delay", "Switchover TS Timeout"}


# ----------------------------------------------------------------------------------------- lookups
def close_matches(name: str, n: int = 1) -> list[str]:
    """Catalog names close to ``name`` (case-insensitive), best first."""
    folded = {p.name.casefold(): p.name for p in _PARAMS}
    return [folded[m] for m in difflib.get_close_matches(name.casefold(), list(folded), n=n, cutoff=0.75)]


def find_param(name: str) -> Param:
    """The catalog entry for ``name`` (case-insensitive), or :class:`ParamError` with a suggestion."""
    p = _BY_FOLD.get(name.strip().casefold()) if isinstance(name, str) else None
    if p is None:
        if isinstance(name, str) and name.strip() in RENAMED:
            new = RENAMED[name.strip()]
            raise ParamError(f"server parameter {name!r} was renamed {new!r}; use that name")
        close = close_matches(str(name))
        hint = f"; did you mean {close[0]!r}?" if close else "; 'param list' shows every parameter"
        raise ParamError(f"unknown server parameter {name!r}{hint}")
    return p


def param_key(name: str) -> str:
    """DS key of a parameter (``/Server/Parameters/<name>``)."""
    return validate_key(f"{PARAMS_ROOT}/{name}")


# ----------------------------------------------------------------------------------------- parsing
_INT_RE = re.compile(r"[+-]?\d+")
_DEC_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_TRUE = {"yes", "true", "on", "y", "t"}
_FALSE = {"no", "false", "off", "n", "f"}
_ATTR_EXC_RE = re.compile(r"\s*([^();,]+?)\s*\(([^()]*)\)\s*")
_DS_VARS = {"${config}": "/Config", "${server}": "/Server"}


class _Bad(Exception):
    """Unparsable (the whole value is rejected)."""


def _quoted(items: list[str]) -> str:
    return ", ".join(f"'{x}'" for x in items)


def _expected(p: Param) -> str:
    t = p.type
    if t is ParamType.BOOL:
        return "Yes/No, 1/0, true/false or on/off (any non-zero integer means yes)"
    if t is ParamType.INT:
        return "an integer" + (f" ({p.range_text})" if p.range_text else "")
    if t is ParamType.SECONDS:
        return "seconds, decimals allowed (e.g. 10 or 0.5)" + (f", {p.range_text}" if p.range_text else "")
    if t is ParamType.PATH:
        return "an absolute path (e.g. /srv/app/handlers) or nothing"
    if t is ParamType.PATH_LIST:
        return "absolute directories separated by ';', '+' in front = recursive (e.g. '+/srv/a; /srv/b')"
    if t is ParamType.EXT_LIST:
        return "file extensions separated by ';' (e.g. 'txt; gif; myext')"
    if t is ParamType.DS_PATH_LIST:
        return "DS paths separated by ';' (e.g. '/Config/Users; ${CONFIG}\\Workgroups')"
    if t is ParamType.ATTR_EXCEPTIONS:
        return "'Class(attr, attr);Class(attr)' (e.g. 'User(Workgroups, Extension)')"
    return "a non-empty string" if p.nonempty else "a string"


def _parse_bool(text: str) -> bool:
    t = text.strip().casefold()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    if _INT_RE.fullmatch(t):
        return int(t) != 0
    raise _Bad


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(";") if part.strip()]


def _parse_path_list(text: str, bad: list[str]) -> tuple[MirrorPath, ...]:
    out: list[MirrorPath] = []
    for part in _split(text):
        recursive = part.startswith("+")
        path = part[1:].strip() if recursive else part
        if not path.startswith("/") or "\x00" in path:
            bad.append(part)
            continue
        out.append(MirrorPath(path.rstrip("/") or "/", recursive))
    return tuple(out)


def _parse_ext_list(text: str, bad: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for part in _split(text):
        ext = part[2:] if part.startswith("*.") else part.lstrip(".")
        if not ext or "/" in ext or "\x00" in ext or any(c.isspace() for c in ext):
            bad.append(part)
            continue
        out.append(ext)
    return tuple(out)


def _parse_ds_list(text: str, bad: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for part in _split(text):
        path = part.replace("\\", "/")
        low = path.casefold()
        for var, repl in _DS_VARS.items():
            if low.startswith(var):
                path = repl + path[len(var):]
                break
        if not path.startswith("/"):
            path = "/" + path
        path = path.rstrip("/") or "/"
        try:
            out.append(validate_key(path))
        except InvalidKey:
            bad.append(part)
    return tuple(out)


def _parse_attr_exceptions(text: str, bad: list[str]) -> AttrExceptions:
    out: list[tuple[str, tuple[str, ...]]] = []
    for part in _split(text):
        m = _ATTR_EXC_RE.fullmatch(part)
        attrs = tuple(a.strip() for a in m.group(2).split(",") if a.strip()) if m else ()
        if m is None or not attrs:
            bad.append(part)
            continue
        out.append((m.group(1), attrs))
    return tuple(out)


def _parse_raw(p: Param, text: str, bad: list[str]) -> Any:
    """Parse without range checks; raises _Bad if unparsable; list types append bad entries to ``bad``."""
    t = p.type
    if t is ParamType.BOOL:
        return _parse_bool(text)
    if t is ParamType.INT:
        s = text.strip()
        if not _INT_RE.fullmatch(s):
            raise _Bad
        return int(s)
    if t is ParamType.SECONDS:
        s = text.strip()
        if not _DEC_RE.fullmatch(s):
            raise _Bad
        v = float(s)
        if not math.isfinite(v):
            raise _Bad
        return v
    if t is ParamType.PATH:
        s = text.strip()
        if s and (not s.startswith("/") or "\x00" in s):
            raise _Bad
        return s.rstrip("/") or s
    if t is ParamType.PATH_LIST:
        return _parse_path_list(text, bad)
    if t is ParamType.EXT_LIST:
        return _parse_ext_list(text, bad)
    if t is ParamType.DS_PATH_LIST:
        return _parse_ds_list(text, bad)
    if t is ParamType.ATTR_EXCEPTIONS:
        return _parse_attr_exceptions(text, bad)
    s = text.strip()
    if p.nonempty and not s:
        raise _Bad
    return s


def _range_problem(p: Param, v: Any) -> tuple[str, Any] | None:
    """``(reason, replacement)`` if ``v`` is out of range, else ``None``. Replacement ``None`` = default."""
    if p.type not in (ParamType.INT, ParamType.SECONDS):
        return None
    lo, hi = p.minimum, p.maximum
    conv = int if p.type is ParamType.INT else float
    if lo is not None:
        if p.min_exclusive and v <= lo:
            return f"must be greater than {_num(lo)}", None
        if not p.min_exclusive and v < lo:
            return f"is below the minimum {_num(lo)}", conv(lo)
    if hi is not None and v > hi:
        return f"is above the maximum {_num(hi)}", conv(hi)
    return None


def validate(name: str, text: str) -> Any:
    """Parse ``text`` for parameter ``name`` strictly (for writes): the typed value, or :class:`ParamError`.

    The error names the parameter, the value, the expected form and the range.
    """
    p = find_param(name)
    if not isinstance(text, str):
        raise ParamError(f"{p.name}: value must be text, got {type(text).__name__}")
    if "\x00" in text:
        raise ParamError(f"{p.name}: value contains a NUL character")
    bad: list[str] = []
    try:
        v = _parse_raw(p, text, bad)
    except _Bad:
        raise ParamError(f"{p.name}: {text!r} is not valid; expected {_expected(p)}") from None
    if bad:
        raise ParamError(f"{p.name}: invalid entr{'y' if len(bad) == 1 else 'ies'} "
                         f"{_quoted(bad)}; expected {_expected(p)}")
    problem = _range_problem(p, v)
    if problem is not None:
        raise ParamError(f"{p.name}: {text.strip()!r} {problem[0]}; expected {_expected(p)}")
    return v


def parse_value(name: str, text: str | None, fallback: Any = None) -> tuple[Any, str | None]:
    """Lenient parse used for reading: ``(effective value, problem or None)``. Never raises for values.

    ``None`` text (not set) gives the default. Unparsable gives the default; out of range gives the
    clamped bound (or the default for an exclusive bound); list entries that are invalid are dropped.
    ``fallback`` replaces the default when given (for parameters that inherit another's value).
    """
    p = find_param(name)
    default = _default_value(p) if fallback is None else fallback
    what_default = "the default" if fallback is None else f"the value of {p.inherits!r}"
    if text is None:
        return default, None
    bad: list[str] = []
    try:
        v = _parse_raw(p, text, bad)
    except _Bad:
        return default, (f"server parameter {p.name!r} has invalid value {text!r} (expected {_expected(p)}); "
                         f"using {what_default} {format_value(p.name, default)!r}")
    if bad:
        return v, (f"server parameter {p.name!r}: ignoring invalid entr{'y' if len(bad) == 1 else 'ies'} "
                   f"{_quoted(bad)} (expected {_expected(p)}); "
                   f"using {format_value(p.name, v)!r}")
    problem = _range_problem(p, v)
    if problem is not None:
        reason, repl = problem
        used = default if repl is None else repl
        what = what_default if repl is None else "the bound"
        return used, (f"server parameter {p.name!r} value {text.strip()!r} {reason} ({p.range_text}); "
                      f"using {what} {format_value(p.name, used)!r}")
    return v, None


_DEFAULTS: dict[str, Any] = {}


def _default_value(p: Param) -> Any:
    if p.name not in _DEFAULTS:
        _DEFAULTS[p.name] = validate(p.name, p.default) if p.default or p.type is not ParamType.STRING \
            else ""
    return _DEFAULTS[p.name]


def default_text(name: str) -> str:
    """The default in canonical form (``No`` rather than ``0`` for a flag), as ``param list`` shows it."""
    return format_value(name, _default_value(find_param(name)))


def format_value(name: str, value: Any) -> str:
    """Canonical text of a typed value (what ``param set`` would store for it)."""
    p = find_param(name)
    if p.type is ParamType.BOOL:
        return "Yes" if value else "No"
    if p.type is ParamType.SECONDS:
        return _num(float(value))
    if p.type is ParamType.PATH_LIST:
        return "; ".join(str(m) for m in value)
    if p.type in (ParamType.EXT_LIST, ParamType.DS_PATH_LIST):
        return "; ".join(value)
    if p.type is ParamType.ATTR_EXCEPTIONS:
        return ";".join(f"{cls}({', '.join(attrs)})" for cls, attrs in value)
    return str(value)


def jsonable(value: Any) -> Any:
    """A typed value as plain JSON data (paths as '+/dir' strings, exceptions as {class: [attrs]})."""
    if isinstance(value, tuple) and value and isinstance(value[0], MirrorPath):
        return [str(m) for m in value]
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return {cls: list(attrs) for cls, attrs in value}
    if isinstance(value, tuple):
        return list(value)
    return value


# ------------------------------------------------------------------------------------ typed access
@dataclass(frozen=True)
class ParamChange:
    """A parameter's effective value changed. ``dynamic``: actors re-read it now; otherwise it takes
    effect after the switchover service restarts."""

    name: str
    old: Any
    new: Any
    dynamic: bool
    revision: int

    @property
    def applies(self) -> str:
        return "immediately" if self.dynamic else "after restart"


@dataclass(frozen=True)
class Effective:
    """What a reader gets for a parameter, and why."""

    name: str
    value: Any
    stored: str | None
    stored_name: str | None
    problem: str | None
    source: str  # "stored", "default", "fallback" (invalid stored value), "inherited", "renamed"


@dataclass
class _Sub:
    names: frozenset[str]
    callback: Callable[[ParamChange], None]


@dataclass
class _Snapshot:
    stored: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # casefold -> (name, text)


class ServerParams:
    """Typed, validated, cached access to the server parameters of a :class:`Store`.

    Thread-safe. Reads are cached and revalidated with the subtree hash of ``/Server/Parameters``;
    subscribers are told about changes the store reports under it. Call :meth:`close` to stop
    listening to the store.
    """

    def __init__(self, store: Store, root: str = PARAMS_ROOT) -> None:
        self.store = store
        self.root = validate_key(root)
        self._lock = threading.RLock()
        self._snap: _Snapshot | None = None
        self._snap_hash: str | None = None
        self._warned: set[tuple[str, str]] = set()
        self._subs: list[_Sub] = []
        self._last: dict[str, Any] = {}
        self._last_texts: dict[str, str | None] = {}
        self._unsubscribe = store.subscribe(self._on_change)

    def close(self) -> None:
        self._unsubscribe()

    # ------------------------------------------------------------------------------------ reading
    def _snapshot(self) -> _Snapshot:
        """The stored parameters, re-read only when the subtree hash of the parameters key changed
        (one indexed read per access, so a value written a moment ago is always seen)."""
        with self._lock:
            digest = self.store.subtree_hash(self.root)
            if self._snap is None or self._snap_hash != digest:
                self._snap = self._load()
                self._snap_hash = digest
            return self._snap

    def _load(self) -> _Snapshot:
        snap = _Snapshot()
        for child in self.store.children(self.root):
            attrs = self.store.get(f"{self.root}/{child}") or {}
            values = attrs.get(VALUE_ATTR)
            text: str | None
            if not values:
                text = None
            else:
                text = values[0]
                if len(values) > 1:
                    self._warn_once(child, repr(values),
                                    f"server parameter {child!r} has {len(values)} values "
                                    f"{values!r}; using the first, {values[0]!r}")
            fold = child.casefold()
            if fold in snap.stored:
                # Two spellings of one name: the catalog spelling wins.
                other = snap.stored[fold][0]
                canon = _BY_FOLD[fold].name if fold in _BY_FOLD else min(other, child)
                self._warn_once(child, "dup", f"server parameter stored twice, as {other!r} and {child!r}; "
                                f"using {canon!r}")
                if child != canon:
                    continue
            snap.stored[fold] = (child, text)
            if fold not in _BY_FOLD and child not in RENAMED:
                close = close_matches(child)
                if close:
                    self._warn_once(child, "unknown",
                                    f"unknown server parameter {child!r} under {self.root}: "
                                    f"did you mean {close[0]!r}? It is ignored")
        return snap

    def _texts(self) -> dict[str, str | None]:
        """The stored text of every catalog parameter (``None`` = not set)."""
        stored = self._snapshot().stored
        return {name: stored.get(name.casefold(), (name, None))[1] for name in CATALOG}

    def _warn_once(self, name: str, value: str, message: str) -> None:
        key = (name, value)
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)

    def effective(self, name: str) -> Effective:
        """The effective value of ``name`` with its provenance (raises :class:`ParamError` if unknown)."""
        p = find_param(name)
        snap = self._snapshot()
        entry = snap.stored.get(p.name.casefold())
        source = "stored"
        if entry is None or entry[1] is None:
            for old, new in RENAMED.items():
                old_entry = snap.stored.get(old.casefold())
                if new == p.name and old_entry is not None and old_entry[1] is not None:
                    entry = old_entry
                    source = "renamed"
                    self._warn_once(old, "renamed", f"server parameter {old!r} was renamed {p.name!r}; "
                                    f"using its value until {p.name!r} is set")
        if entry is None or entry[1] is None:
            if p.inherits is not None:
                inh = self.effective(p.inherits)
                return Effective(p.name, inh.value, None, None, None, "inherited")
            return Effective(p.name, _default_value(p), None, None, None, "default")
        stored_name, text = entry
        assert text is not None
        fallback = self.effective(p.inherits).value if p.inherits is not None else None
        value, problem = parse_value(p.name, text, fallback)
        if problem is not None:
            self._warn_once(p.name, text, problem)
            source = "fallback"
        return Effective(p.name, value, text, stored_name, problem, source)

    def get(self, name: str) -> Any:
        """Effective typed value of ``name`` (default if unset or invalid, clamped if out of range)."""
        return self.effective(name).value

    def stored(self, name: str) -> str | None:
        """The stored text of ``name``, or ``None`` if not set."""
        return self.effective(name).stored

    def _typed(self, name: str, t: ParamType) -> Any:
        p = find_param(name)
        if p.type is not t:
            raise ParamError(f"{p.name} is a {p.type.value} parameter, not {t.value}")
        return self.get(p.name)

    def seconds(self, name: str) -> float:
        return float(self._typed(name, ParamType.SECONDS))

    def integer(self, name: str) -> int:
        return int(self._typed(name, ParamType.INT))

    def flag(self, name: str) -> bool:
        return bool(self._typed(name, ParamType.BOOL))

    def text(self, name: str) -> str:
        p = find_param(name)
        if p.type not in (ParamType.STRING, ParamType.PATH):
            raise ParamError(f"{p.name} is a {p.type.value} parameter, not a string")
        return str(self.get(p.name))

    def paths(self, name: str) -> tuple[MirrorPath, ...]:
        return tuple(self._typed(name, ParamType.PATH_LIST))

    def ds_paths(self, name: str) -> tuple[str, ...]:
        return tuple(self._typed(name, ParamType.DS_PATH_LIST))

    def extensions(self, name: str) -> tuple[str, ...]:
        return tuple(self._typed(name, ParamType.EXT_LIST))

    def attr_exceptions(self, name: str) -> AttrExceptions:
        return tuple(self._typed(name, ParamType.ATTR_EXCEPTIONS))

    # ------------------------------------------------------------------------------ resolved values
    def monitors_ip(self) -> bool:
        return monitors_ip(self.text("Switchover Monitoring"))

    def module_timeout(self) -> float:
        """Module ping timeout: Switchover IP Timeout when monitoring IP, else Switchover TS Timeout."""
        return self.seconds(module_param_names(self.text("Switchover Monitoring"))[0])

    def module_retry_delay(self) -> float:
        return self.seconds(module_param_names(self.text("Switchover Monitoring"))[1])

    def primary_monitor_timeout(self) -> float:
        """Switchover Primary Monitor Timeout, with 0 meaning half the module timeout."""
        v = self.seconds("Switchover Primary Monitor Timeout")
        return v if v > 0 else self.module_timeout() / 2

    def primary_monitor_ping_delay(self) -> float:
        """Switchover Primary Monitor Ping Delay, with 0 meaning 1 s."""
        v = self.seconds("Switchover Primary Monitor Ping Delay")
        return v if v > 0 else DEFAULT_PRIMARY_MONITOR_PING_DELAY

    def unreachable_primary_ping_count(self) -> int | None:
        """Ping sets sent after the first one to a primary that does not answer before switching.

        Unset (or unusable) = 0: switch at once (spec line 620, "the default is to switch over
        immediately"); -1 = ``None``: unlimited; 0-3 = 3; N > 3 = N.
        """
        eff = self.effective("Switchover Unreachable Primary Ping Count")
        if eff.stored is None or not _INT_RE.fullmatch(eff.stored.strip()):
            return 0  # unset, or unusable (its problem is logged): the default, switch at once
        v = int(eff.value)
        if v < 0:
            return None
        return max(v, 3)

    def file_health_check_interval(self) -> float | None:
        """Seconds between File Monitor health checks, ``None`` when turned off (0)."""
        v = self.seconds("Switchover File Monitor Health Check Interval")
        return v if v > 0 else None

    def upgrade_sync_ds_paths(self) -> tuple[str, ...]:
        """Upgrade Lower opt-in DS paths: built-in ones, then Custom Upgrade Synchronization Directories."""
        builtin = UPGRADE_LOWER_BUILTIN_DS_PATHS
        extra = self.ds_paths("Custom Upgrade Synchronization Directories")
        return builtin + tuple(x for x in extra if x not in builtin)

    def resolved(self, name: str) -> Any:
        """The value an actor should use: special values resolved (see the accessors above)."""
        p = find_param(name)
        if p.name == "Switchover Primary Monitor Timeout":
            return self.primary_monitor_timeout()
        if p.name == "Switchover Primary Monitor Ping Delay":
            return self.primary_monitor_ping_delay()
        if p.name == "Switchover Unreachable Primary Ping Count":
            return self.unreachable_primary_ping_count()
        if p.name == "Switchover File Monitor Health Check Interval":
            return self.file_health_check_interval()
        if p.name == "Custom Upgrade Synchronization Directories":
            return self.upgrade_sync_ds_paths()
        return self.get(p.name)

    def snapshot(self) -> dict[str, Any]:
        """Every parameter's resolved value."""
        return {p.name: self.resolved(p.name) for p in _PARAMS}

    def unknown(self) -> list[tuple[str, str | None, str | None]]:
        """Names stored under the parameters key that are not in the catalog: (name, text, suggestion)."""
        out = []
        for fold, (name, text) in sorted(self._snapshot().stored.items()):
            if fold not in _BY_FOLD:
                close = close_matches(name)
                out.append((name, text, close[0] if close else None))
        return out

    # ---------------------------------------------------------------------------------- writing
    def set(self, name: str, text: str) -> int:
        """Validate and store ``text`` for ``name`` (under its catalog spelling). Returns the revision."""
        p = find_param(name)
        validate(p.name, text)
        ops: list[Op] = [SetOp(param_key(p.name), {VALUE_ATTR: [text.strip()]})]
        ops += [DeleteOp(param_key(n)) for n in self._other_spellings(p.name)]
        return self.store.batch(ops)

    def unset(self, name: str) -> int | None:
        """Remove ``name`` (every spelling) from the tree; the revision, or ``None`` if it was not set."""
        p = find_param(name)
        names = [n for n in self.store.children(self.root) if n.casefold() == p.name.casefold()]
        if not names:
            return None
        return self.store.batch([DeleteOp(param_key(n)) for n in names])

    def _other_spellings(self, canonical: str) -> list[str]:
        fold = canonical.casefold()
        return [n for n in self.store.children(self.root) if n.casefold() == fold and n != canonical]

    # ---------------------------------------------------------------------------- subscriptions
    def subscribe(self, names: Iterable[str], callback: Callable[[ParamChange], None]) -> Callable[[], None]:
        """Call ``callback(ParamChange)`` when the resolved value of one of ``names`` changes.

        Changes of dynamic parameters are meant to be applied at once; for the others
        ``ParamChange.dynamic`` is False ("takes effect after restart").
        """
        resolved = frozenset(find_param(n).name for n in names)
        sub = _Sub(resolved, callback)
        with self._lock:
            watched = {n for s in self._subs for n in s.names}
            for n in resolved - watched:
                self._last[n] = self.resolved(n)
            if not self._subs:
                self._last_texts = self._texts()
            self._subs.append(sub)

        def unsubscribe() -> None:
            with self._lock:
                if sub in self._subs:
                    self._subs.remove(sub)

        return unsubscribe

    def _touches(self, change: Change) -> bool:
        if change.op == "reset":
            return True
        k, root = change.key, self.root
        return k == root or k.startswith(root + "/") or root.startswith(k.rstrip("/") + "/") or k == "/"

    def _on_change(self, change: Change) -> None:
        if not self._touches(change):
            return
        with self._lock:
            self._snap = None
            watched = {n for s in self._subs for n in s.names}
            before = {n: self._last.get(n) for n in watched}
            after = {n: self.resolved(n) for n in watched}
            changed = {n for n in watched if before[n] != after[n]}
            for n in changed:
                self._last[n] = after[n]
            texts = self._texts()
            edited = {n for n in CATALOG if self._last_texts.get(n) != texts.get(n)}
            self._last_texts = texts
            dynamic = {n: _applies_now(n, edited) for n in changed}
            subs = list(self._subs)
        for n in sorted(changed):
            when = "takes effect immediately" if dynamic[n] else "takes effect after restart"
            logger.info("server parameter {!r} changed from {!r} to {!r} ({})", n, jsonable(before[n]),
                        jsonable(after[n]), when)
        for s in subs:
            for n in sorted(changed & s.names):
                event = ParamChange(n, before[n], after[n], dynamic[n], change.revision)
                try:
                    s.callback(event)
                except Exception:
                    logger.exception("server parameter subscriber {!r} failed on {}", s.callback, n)


def _sources(name: str) -> set[str]:
    """The parameters whose values ``name``'s resolved value is derived from (inherited or depended on)."""
    p = CATALOG[name]
    direct = ({p.inherits} if p.inherits else set()) | set(p.depends_on)
    out = set(direct)
    for d in direct:
        out |= _sources(d)
    return out


def _applies_now(name: str, edited: set[str]) -> bool:
    """A change of ``name``'s resolved value is dynamic when ``name`` is dynamic, or when ``name`` itself
    was not edited and every edited parameter it derives from is dynamic (``Switchover IP Timeout``
    unset follows a live change of ``Switchover TS Timeout``)."""
    if CATALOG[name].dynamic:
        return True
    if name in edited:
        return False
    causes = _sources(name) & edited
    return bool(causes) and all(CATALOG[c].dynamic for c in causes)


def seed_from_config(store: Store, server_a: str, server_b: str, paths: Mapping[str, str],
                     parameters: Mapping[str, str] | None = None) -> list[str]:
    """On first start, write SwitchoverServer A/B, the path parameters and any configured parameters that
    are absent from the tree. Existing values are never overwritten. Returns the names written.

    ``paths`` keys are ``Handler Path``, ``Resource Path``, ``I3Tables Path``. Every value is validated
    first (:class:`ParamError`); nothing is written if one is invalid.
    """
    wanted: dict[str, str] = {"SwitchoverServer A": server_a, "SwitchoverServer B": server_b}
    for name, value in paths.items():
        p = find_param(name)
        if p.name not in PATH_PARAMS:
            raise ParamError(f"{name!r} is not a path parameter; expected one of {', '.join(PATH_PARAMS)}")
        wanted[p.name] = value
    for name, value in (parameters or {}).items():
        wanted[find_param(name).name] = value
    for name, value in wanted.items():
        validate(name, value)
    existing = {n.casefold(): n for n in store.children(PARAMS_ROOT)}
    ops: list[Op] = []
    written: list[str] = []
    for name, value in wanted.items():
        stored_name = existing.get(name.casefold())
        attrs = store.get(param_key(stored_name)) if stored_name else None
        if attrs and attrs.get(VALUE_ATTR):
            continue
        ops.append(SetOp(param_key(name), {VALUE_ATTR: [value.strip()]}))
        written.append(name)
    if ops:
        store.batch(ops)
        logger.info("seeded server parameters from the node configuration: {}", ", ".join(written))
    return written
