"""The network-namespace lab: two servers, a router/gateway and two NetTest hosts.

Layout (``net`` = ``LabConfig.subnet_base``, default ``10.231``)::

    side A  net.1.0/24  bridge "br-a" in the router      side B  net.2.0/24  bridge "br-b" in the router
      router (gw)     net.1.1                              router (gw)     net.2.1
      server A  (a)   net.1.10   eth0                      server B  (b)   net.2.10   eth0
      NetTest B (ntb) net.1.20   eth0                      NetTest A (nta) net.2.20   eth0

    dedicated link (``dedicated_link=True``): direct veth A eth1 net.3.1/24 <-> B eth1 net.3.2/24

NetTest A sits on server B's segment (server A pings it when A is backup, to tell "my network is fine"
from "the peer's side is down"); NetTest B sits on server A's segment.

Naming: every namespace is ``<prefix>-<host>`` with host in ``a``, ``b``, ``gw``, ``nta``, ``ntb``.
Every veth is created directly inside the lab's namespaces (nothing is ever placed in the host's
namespace), so the interface names inside them are short and fixed: ``eth0``/``eth1`` in the hosts,
``br-a``, ``br-b`` and the bridge ports ``p-<host>`` in the router.  Deleting the namespaces therefore
deletes every link; ``cleanup_prefix`` still sweeps host-namespace links and nft tables named with the
prefix, in case a future version (or a hand-made experiment) leaves one there.

State: ``<labdir>/lab.json`` (default labdir ``/run/switchover-lab/<prefix>``) holds the configuration,
the processes started with :mod:`deploy.lab.procs` and the faults applied with :mod:`deploy.lab.faults`,
so that ``status``/``down``/``heal`` work from another process (``Lab.load(prefix)``).

Everything here needs root (``ip netns`` requires CAP_SYS_ADMIN).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from loguru import logger

ROOT_ERROR = "the lab needs root: ip netns requires CAP_SYS_ADMIN; run as root"
INSTALL_HINT = "run deploy/install-system-deps.sh as root"
DEFAULT_LAB_ROOT = Path("/run/switchover-lab")
STATE_FILE = "lab.json"
STATE_VERSION = 1

#: host keys of the lab, in creation order
HOSTS: tuple[str, ...] = ("gw", "a", "b", "nta", "ntb")
#: the two servers
SERVERS: tuple[str, ...] = ("a", "b")
#: the router's bridge for each side, and which hosts sit on each side
SIDE_OF: dict[str, str] = {"a": "a", "ntb": "a", "b": "b", "nta": "b"}
LAN_IF = "eth0"
DEDICATED_IF = "eth1"

_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,23}$")
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]
)


class LabError(RuntimeError):
    """Any failure of the lab (a command, a missing tool, a bad argument)."""


class LabPermissionError(LabError, PermissionError):
    """The lab was used without root."""


class LabCommandError(LabError):
    """A command failed; the message names the command and carries its stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr or stdout).strip() or "(no output)"
        super().__init__(f"command failed (exit {returncode}): {shlex.join(self.argv)}: {detail}")


# --------------------------------------------------------------------------------------------------
# helpers


def require_root(euid: int | None = None) -> None:
    """Raise :class:`LabPermissionError` unless running as root (``euid`` injectable for tests)."""
    if (os.geteuid() if euid is None else euid) != 0:
        raise LabPermissionError(ROOT_ERROR)


def which(tool: str) -> str | None:
    """Find ``tool`` on PATH or in the sbin directories (root tools often live there)."""
    return shutil.which(tool, path=_SEARCH_PATH)


def require_tool(tool: str, package: str, *, finder: Callable[[str], str | None] = which) -> str:
    """Return the path of ``tool`` or raise a :class:`LabError` telling how to install it."""
    path = finder(tool)
    if path is None:
        raise LabError(f"{tool!r} not found (Debian package {package}): {INSTALL_HINT}")
    return path


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = 30.0,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command (argument list, never a shell); on failure raise :class:`LabCommandError`."""
    argv = [str(a) for a in argv]
    logger.trace("lab run: {}", shlex.join(argv))
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            check=False,
        )
    except FileNotFoundError as exc:
        raise LabError(f"command not found: {argv[0]} ({exc}); {INSTALL_HINT}") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"command timed out after {timeout} s: {shlex.join(argv)}") from exc
    if check and proc.returncode != 0:
        raise LabCommandError(argv, proc.returncode, proc.stdout, proc.stderr)
    return proc


def wait_for(
    predicate: Callable[[], bool], timeout: float, *, interval: float = 0.05, what: str = "condition"
) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value.

    Never sleeps longer than ``interval`` at a time, and always evaluates at least once.
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            logger.debug("lab: {} not met within {:.1f} s", what, timeout)
            return False
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def _list_netns() -> list[str]:
    proc = run(["ip", "-j", "netns", "list"], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    try:
        return [str(entry["name"]) for entry in json.loads(proc.stdout)]
    except (ValueError, KeyError, TypeError):
        return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def _belongs(name: str, prefix: str, any_suffix: bool) -> bool:
    return name.startswith(prefix) if any_suffix else (name == prefix or name.startswith(prefix + "-"))


def nft_table_name(prefix: str) -> str:
    """The nftables table name of a lab (``inet`` family): the prefix, made a valid identifier."""
    return re.sub(r"[^A-Za-z0-9_]", "_", prefix)


#: children started by this Python process (see :mod:`deploy.lab.procs`), kept so they can be reaped
#: (no zombies, no ResourceWarning); they live here, at the bottom, because ``is_running`` reaps them
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
#: exit codes of reaped children (negative: killed by that signal)
_EXIT_CODES: dict[int, int] = {}


def track_child(child: subprocess.Popen[bytes]) -> None:
    """Remember a child this process started, so that :func:`reap_child` can collect it."""
    _CHILDREN[child.pid] = child


def reap_child(pid: int) -> int | None:
    """If ``pid`` is a child started here and has exited, collect it; return its exit code."""
    child = _CHILDREN.get(pid)
    if child is None:
        return _EXIT_CODES.get(pid)
    code = child.poll()
    if code is not None:
        _CHILDREN.pop(pid, None)
        _EXIT_CODES[pid] = code
    return code


def is_running(proc: psutil.Process) -> bool:
    """True if ``proc`` exists and is not a zombie (a stopped process counts as running)."""
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            reap_child(proc.pid)
            return False
        return proc.is_running()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def kill_pids(pids: Sequence[int], *, timeout: float = 3.0) -> list[int]:
    """SIGKILL every pid, then wait for them to be gone; return the pids still alive after ``timeout``."""
    procs: list[psutil.Process] = []
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            proc = psutil.Process(pid)
            proc.send_signal(signal.SIGKILL)
            procs.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    wait_for(lambda: not any(is_running(p) for p in procs), timeout, what="killed processes to exit")
    return [p.pid for p in procs if is_running(p)]


def recorded_process(info: Mapping[str, Any]) -> psutil.Process | None:
    """The live process of a record in the lab state (``pid``, ``create_time``), or None if it
    exited (it is reaped then) or its PID now belongs to another program."""
    pid = int(info["pid"])
    try:
        proc = psutil.Process(pid)
        create_time = info.get("create_time")
        if create_time is not None and abs(proc.create_time() - float(create_time)) > 0.5:
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        reap_child(pid)
        return None
    return proc if is_running(proc) else None


def stop_recorded(records: Mapping[str, Mapping[str, Any]], timeout: float, *, prefix: str = "") -> None:
    """Terminate the recorded processes: SIGTERM (and SIGCONT, so a stopped one can act on it) to
    all at once, one shared deadline of ``timeout`` s, then SIGKILL to those still running."""
    live = {name: proc for name, info in records.items() if (proc := recorded_process(info)) is not None}
    for proc in live.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGCONT)
    wait_for(
        lambda: all(recorded_process(records[n]) is None for n in live), timeout, what="processes to exit"
    )
    stubborn = {n: records[n] for n in live if recorded_process(records[n]) is not None}
    for name, info in stubborn.items():
        logger.warning(
            "lab {}: {} (pid {}) ignored SIGTERM for {} s, SIGKILL", prefix, name, info["pid"], timeout
        )
    left = kill_pids([int(info["pid"]) for info in stubborn.values()], timeout=5.0)
    for pid in left:
        reap_child(pid)


def netns_pids(netns: str) -> list[int]:
    """PIDs of the processes whose network namespace is ``netns``."""
    proc = run(["ip", "netns", "pids", netns], check=False)
    if proc.returncode != 0:
        return []
    return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]


def cleanup_prefix(
    prefix: str, *, any_suffix: bool = False, labdir: Path | None = None
) -> dict[str, list[str]]:
    """Remove every namespace, host link, host nft table and process of the lab named ``prefix``.

    Works without any state (after a crash of the runner): it finds the lab's namespaces by name,
    kills every process inside them, deletes them, then sweeps host-namespace links and nft tables
    named with the prefix.  A name belongs to the lab when it is ``prefix`` or starts with
    ``prefix + "-"``; with ``any_suffix=True`` every name that merely starts with ``prefix`` goes
    (use that to sweep leftovers of many labs, e.g. ``cleanup_prefix("solab", any_suffix=True)``).
    Returns what was removed.
    """
    require_root()
    removed: dict[str, list[str]] = {"netns": [], "links": [], "nft_tables": [], "pids": []}
    if labdir is not None and (labdir / STATE_FILE).exists():
        with contextlib.suppress(Exception):
            state = json.loads((labdir / STATE_FILE).read_text())
            pids = []
            for info in state.get("procs", {}).values():
                if recorded_process(info) is not None:
                    pids.append(int(info["pid"]))
            kill_pids(pids)
            removed["pids"] += [str(p) for p in pids]
    for ns in _list_netns():
        if not _belongs(ns, prefix, any_suffix):
            continue
        pids = netns_pids(ns)
        left = kill_pids(pids)
        if left:
            logger.warning("lab cleanup: processes {} in {} survived SIGKILL", left, ns)
        removed["pids"] += [str(p) for p in pids]
        proc = run(["ip", "netns", "delete", ns], check=False)
        if proc.returncode != 0 and ns in _list_netns():
            raise LabCommandError(["ip", "netns", "delete", ns], proc.returncode, proc.stdout, proc.stderr)
        removed["netns"].append(ns)
    links = run(["ip", "-j", "link", "show"], check=False)
    with contextlib.suppress(ValueError):
        for link in json.loads(links.stdout or "[]"):
            name = str(link.get("ifname", ""))
            if name and _belongs(name, prefix, any_suffix):
                run(["ip", "link", "delete", name], check=False)
                removed["links"].append(name)
    if which("nft") is not None:
        table = nft_table_name(prefix)
        tables = run(["nft", "-j", "list", "tables"], check=False)
        with contextlib.suppress(ValueError):
            for item in json.loads(tables.stdout or "{}").get("nftables", []):
                t = item.get("table")
                if t and _belongs(str(t["name"]), table, any_suffix):
                    run(["nft", "delete", "table", str(t["family"]), str(t["name"])], check=False)
                    removed["nft_tables"].append(f"{t['family']} {t['name']}")
    if any(removed.values()):
        logger.info("lab cleanup {}: {}", prefix, removed)
    return removed


# --------------------------------------------------------------------------------------------------
# configuration and state


@dataclass(frozen=True)
class LabConfig:
    """What to build.  Only ``prefix`` must differ between labs that exist at the same time."""

    prefix: str = "solab"
    #: directory for lab.json and process logs; default /run/switchover-lab/<prefix>
    labdir: str | None = None
    #: first two octets of the lab's private ranges: <base>.1.0/24 side A, .2.0/24 side B, .3.0/24 link
    subnet_base: str = "10.231"
    #: add a direct veth A eth1 <-> B eth1 for switchover traffic
    dedicated_link: bool = False
    #: ports used by the flow presets of deploy.lab.faults
    vswitch_port: int = 3633
    notifier_main_port: int = 3634
    notifier_aux_port: int = 3635

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise LabError(
                f"bad lab prefix {self.prefix!r}: a letter then up to 23 letters, digits or '_' "
                "(no '-': it separates the prefix from the host name)"
            )
        octets = self.subnet_base.split(".")
        if len(octets) != 2 or not all(o.isdigit() and 0 <= int(o) <= 255 for o in octets):
            raise LabError(f"bad subnet_base {self.subnet_base!r}: expected two octets such as '10.231'")

    @property
    def dir(self) -> Path:
        return Path(self.labdir) if self.labdir else DEFAULT_LAB_ROOT / self.prefix

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class _Addressing:
    addr: dict[str, str] = field(default_factory=dict)
    gateway: dict[str, str] = field(default_factory=dict)
    nettest: dict[str, str] = field(default_factory=dict)
    link_addr: dict[str, str] = field(default_factory=dict)


def _addressing(cfg: LabConfig) -> _Addressing:
    base = cfg.subnet_base
    out = _Addressing()
    out.addr = {
        "a": f"{base}.1.10",
        "ntb": f"{base}.1.20",
        "b": f"{base}.2.10",
        "nta": f"{base}.2.20",
        "gw_a": f"{base}.1.1",
        "gw_b": f"{base}.2.1",
    }
    out.gateway = {host: out.addr[f"gw_{side}"] for host, side in SIDE_OF.items()}
    out.nettest = {"a": out.addr["nta"], "b": out.addr["ntb"]}
    if cfg.dedicated_link:
        out.link_addr = {"a": f"{base}.3.1", "b": f"{base}.3.2"}
    return out


# --------------------------------------------------------------------------------------------------
# the lab


class Lab:
    """A lab built from a :class:`LabConfig`.

    Attributes (all dicts keyed by host key):
      ``netns``     namespace name of each host (``a``, ``b``, ``gw``, ``nta``, ``ntb``)
      ``addr``      LAN address of ``a``, ``b``, ``nta``, ``ntb``; router addresses as ``gw_a``/``gw_b``
      ``gateway``   default route of ``a``, ``b``, ``nta``, ``ntb``
      ``nettest``   the NetTest address each server pings: ``nettest["a"]`` = NetTest A (B's segment)
      ``link_addr`` dedicated-link address of ``a`` and ``b`` (empty without ``dedicated_link``)
      ``iface``     the LAN interface name inside each host (``eth0``)
    """

    def __init__(self, config: LabConfig | None = None, *, euid: int | None = None) -> None:
        self.config = config or LabConfig()
        self._euid = euid
        self.prefix = self.config.prefix
        self.dir = self.config.dir
        self.state_path = self.dir / STATE_FILE
        self.netns: dict[str, str] = {h: f"{self.prefix}-{h}" for h in HOSTS}
        adr = _addressing(self.config)
        self.addr = adr.addr
        self.gateway = adr.gateway
        self.nettest = adr.nettest
        self.link_addr = adr.link_addr
        self.iface: dict[str, str] = {h: LAN_IF for h in SIDE_OF}
        self.peer: dict[str, str] = {"a": "b", "b": "a"}
        self.nft_table = nft_table_name(self.prefix)

    # -- construction from another process -------------------------------------------------------

    @classmethod
    def load(cls, prefix_or_dir: str | os.PathLike[str] = "solab") -> Lab:
        """Re-attach to a lab made by another process, from its prefix or its lab directory."""
        candidate = Path(prefix_or_dir)
        if (candidate / STATE_FILE).exists():
            path = candidate / STATE_FILE
        else:
            path = DEFAULT_LAB_ROOT / str(prefix_or_dir) / STATE_FILE
        if not path.exists():
            raise LabError(f"no lab state at {path} (is the lab up? give its prefix or lab directory)")
        data = json.loads(path.read_text())
        cfg = LabConfig.from_dict(data["config"])
        if cfg.labdir is None and path.parent != cfg.dir:
            cfg = LabConfig.from_dict({**data["config"], "labdir": str(path.parent)})
        return cls(cfg)

    # -- helpers ---------------------------------------------------------------------------------

    def require_root(self) -> None:
        require_root(self._euid)

    def ns(self, host: str) -> str:
        """Namespace name of a host key (a namespace name is returned unchanged)."""
        if host in self.netns:
            return self.netns[host]
        if host in self.netns.values():
            return host
        raise LabError(f"unknown lab host {host!r}: expected one of {', '.join(HOSTS)}")

    def host_addrs(self, host: str) -> list[str]:
        """Every IPv4 address of a host (LAN and dedicated link; both router addresses for ``gw``)."""
        if host == "gw":
            return [self.addr["gw_a"], self.addr["gw_b"]]
        if host not in SIDE_OF:
            raise LabError(f"unknown lab host {host!r}: expected one of {', '.join(HOSTS)}")
        out = [self.addr[host]]
        if host in self.link_addr:
            out.append(self.link_addr[host])
        return out

    def resolve(self, target: str) -> str:
        """An address from a host key (``a``, ``nta``, ``gw_a``...) or an address given as is."""
        if target in self.addr:
            return self.addr[target]
        if target == "gw":
            return self.addr["gw_a"]
        return target

    def exec(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = 30.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace of host ``ns`` (key or name) via ``ip netns exec``."""
        self.require_root()
        return run(
            ["ip", "netns", "exec", self.ns(ns), *argv],
            check=check,
            timeout=timeout,
            input=input,
            env=env,
            cwd=cwd,
        )

    def _ip(self, host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["ip", "-n", self.ns(host), *args], check=check)

    def _has_link(self, host: str, ifname: str) -> bool:
        return self._ip(host, "link", "show", "dev", ifname, check=False).returncode == 0

    # -- state -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def state(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write the lab state under an exclusive lock (safe across processes)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "lab.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = self._read_state()
                yield data
                tmp = self.state_path.with_suffix(".json.tmp")
                tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
                os.replace(tmp, self.state_path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read_state(self) -> dict[str, Any]:
        """A snapshot of the lab state (no lock held afterwards)."""
        return self._read_state()

    def _read_state(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.state_path.exists():
            try:
                data = json.loads(self.state_path.read_text())
            except ValueError:
                logger.warning("lab: unreadable state {}, starting afresh", self.state_path)
        data.setdefault("version", STATE_VERSION)
        data["config"] = asdict(self.config)
        data.setdefault("up", False)
        data.setdefault("procs", {})
        data.setdefault("faults", {})
        return data

    # -- up / down -------------------------------------------------------------------------------

    def up(self) -> Lab:
        """Build the lab (idempotent: converges whatever part of it already exists)."""
        self.require_root()
        require_tool("ip", "iproute2")
        t0 = time.monotonic()
        existing = set(_list_netns())
        for host in HOSTS:
            ns = self.netns[host]
            if ns not in existing:
                run(["ip", "netns", "add", ns])
            self._ip(host, "link", "set", "lo", "up")
        gw = "gw"
        for side in ("a", "b"):
            br = f"br-{side}"
            if not self._has_link(gw, br):
                self._ip(gw, "link", "add", br, "type", "bridge", "forward_delay", "0", "stp_state", "0")
            self._ip(gw, "addr", "replace", f"{self.addr[f'gw_{side}']}/24", "dev", br)
            self._ip(gw, "link", "set", br, "up")
        for host, side in SIDE_OF.items():
            port = f"p-{host}"
            has_host, has_port = self._has_link(host, LAN_IF), self._has_link(gw, port)
            if has_host != has_port:  # half of a pair left from a namespace being destroyed
                if has_host:
                    self._ip(host, "link", "delete", LAN_IF, check=False)
                if has_port:
                    self._ip(gw, "link", "delete", port, check=False)
                has_host = has_port = False
            if not has_host:
                self._ip(
                    host, "link", "add", LAN_IF, "type", "veth", "peer", "name", port, "netns", self.netns[gw]
                )
            self._ip(gw, "link", "set", port, "master", f"br-{side}")
            self._ip(gw, "link", "set", port, "up")
            self._ip(host, "addr", "replace", f"{self.addr[host]}/24", "dev", LAN_IF)
            self._ip(host, "link", "set", LAN_IF, "up")
            self._ip(host, "route", "replace", "default", "via", self.gateway[host], "dev", LAN_IF)
        if self.config.dedicated_link:
            if self._has_link("a", DEDICATED_IF) != self._has_link("b", DEDICATED_IF):
                self._ip("a", "link", "delete", DEDICATED_IF, check=False)
                self._ip("b", "link", "delete", DEDICATED_IF, check=False)
            if not self._has_link("a", DEDICATED_IF):
                self._ip(
                    "a",
                    "link",
                    "add",
                    DEDICATED_IF,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    DEDICATED_IF,
                    "netns",
                    self.netns["b"],
                )
            for host in SERVERS:
                self._ip(host, "addr", "replace", f"{self.link_addr[host]}/24", "dev", DEDICATED_IF)
                self._ip(host, "link", "set", DEDICATED_IF, "up")
        self.exec(gw, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        with self.state() as st:
            st["up"] = True
            st.setdefault("created", time.time())
        logger.info("lab {} up in {:.2f} s (state {})", self.prefix, time.monotonic() - t0, self.state_path)
        return self

    def down(self, *, grace: float = 1.0) -> dict[str, list[str]]:
        """Stop the lab's processes (SIGTERM, ``grace`` s, SIGKILL), then remove everything it made."""
        self.require_root()
        if self.state_path.exists():
            with contextlib.suppress(LabError):
                stop_recorded(self.read_state()["procs"], grace, prefix=self.prefix)
        removed = cleanup_prefix(self.prefix, labdir=self.dir)
        if self.dir.exists():
            with self.state() as st:
                st["up"] = False
                st["procs"] = {}
                st["faults"] = {}
                st["down_at"] = time.time()
        logger.info("lab {} down", self.prefix)
        return removed

    def is_up(self) -> bool:
        existing = set(_list_netns())
        return all(ns in existing for ns in self.netns.values())

    # -- inspection ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Namespaces, links (up/down, addresses), routes, processes and faults of the lab."""
        self.require_root()
        existing = set(_list_netns())
        namespaces: dict[str, Any] = {}
        for host in HOSTS:
            ns = self.netns[host]
            entry: dict[str, Any] = {"name": ns, "exists": ns in existing, "links": {}, "routes": []}
            if entry["exists"]:
                addrs = self._ip(host, "-j", "addr", "show", check=False)
                with contextlib.suppress(ValueError):
                    for link in json.loads(addrs.stdout or "[]"):
                        flags = link.get("flags", [])
                        entry["links"][link["ifname"]] = {
                            "up": "UP" in flags,
                            "carrier": "NO-CARRIER" not in flags and "LOWER_UP" in flags,
                            "state": "up" if "UP" in flags and "LOWER_UP" in flags else "down",
                            "operstate": link.get("operstate"),
                            "master": link.get("master"),
                            "addresses": [
                                f"{a['local']}/{a['prefixlen']}"
                                for a in link.get("addr_info", [])
                                if a.get("family") == "inet"
                            ],
                        }
                routes = self._ip(host, "-j", "route", "show", check=False)
                with contextlib.suppress(ValueError):
                    entry["routes"] = [
                        {k: r[k] for k in ("dst", "gateway", "dev") if k in r}
                        for r in json.loads(routes.stdout or "[]")
                    ]
            namespaces[host] = entry
        state = self.read_state()
        processes = {}
        for name, info in state["procs"].items():
            processes[name] = {**info, "alive": recorded_process(info) is not None}
        return {
            "prefix": self.prefix,
            "labdir": str(self.dir),
            "up": all(n["exists"] for n in namespaces.values()),
            "dedicated_link": self.config.dedicated_link,
            "namespaces": namespaces,
            "addresses": dict(self.addr),
            "link_addresses": dict(self.link_addr),
            "gateway": dict(self.gateway),
            "nettest": dict(self.nettest),
            "processes": processes,
            "faults": state["faults"],
        }

    # -- probes (real ICMP / TCP from inside a namespace) ----------------------------------------

    _PING = (
        "import sys\n"
        "from icmplib import ping\n"
        "try:\n"
        "    h = ping(sys.argv[1], count=int(sys.argv[2]), interval=0.05, timeout=float(sys.argv[3]),"
        " privileged=True)\n"
        "except Exception as exc:\n"
        "    print(repr(exc), file=sys.stderr)\n"
        "    sys.exit(2)\n"
        "sys.exit(0 if h.packets_received > 0 else 1)\n"
    )
    _CONNECT = (
        "import socket, sys\n"
        "try:\n"
        "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()\n"
        "except OSError as exc:\n"
        "    print(repr(exc), file=sys.stderr)\n"
        "    sys.exit(1)\n"
    )

    def ping(self, src: str, dst: str, *, timeout: float = 0.5, count: int = 1) -> bool:
        """True if ``src`` (host key) gets an ICMP echo reply from ``dst`` (host key or address)."""
        proc = self.exec(
            src,
            [sys.executable, "-c", self._PING, self.resolve(dst), str(count), str(timeout)],
            check=False,
            timeout=timeout * count + 10,
        )
        return proc.returncode == 0

    def tcp_connect(self, src: str, dst: str, port: int, *, timeout: float = 0.5) -> bool:
        """True if ``src`` (host key) completes a TCP connect to ``dst``:``port``."""
        proc = self.exec(
            src,
            [sys.executable, "-c", self._CONNECT, self.resolve(dst), str(port), str(timeout)],
            check=False,
            timeout=timeout + 10,
        )
        return proc.returncode == 0

    def __repr__(self) -> str:
        return f"Lab(prefix={self.prefix!r}, labdir={str(self.dir)!r})"


# --------------------------------------------------------------------------------------------------
# command line (``python -m deploy.lab.topology up|down|status|cleanup``)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.lab.topology", description="build, inspect or remove the namespace lab"
    )
    parser.add_argument("command", choices=["up", "down", "status", "cleanup"])
    parser.add_argument("--prefix", default="solab")
    parser.add_argument("--labdir", default=None)
    parser.add_argument("--dedicated-link", action="store_true")
    parser.add_argument("--subnet-base", default="10.231")
    args = parser.parse_args(argv)
    try:
        if args.command == "cleanup":
            print(json.dumps(cleanup_prefix(args.prefix), indent=2))
            return 0
        cfg = LabConfig(
            prefix=args.prefix,
            labdir=args.labdir,
            dedicated_link=args.dedicated_link,
            subnet_base=args.subnet_base,
        )
        if args.command == "up":
            lab = Lab(cfg).up()
            print(json.dumps(lab.status(), indent=2))
        else:
            lab = Lab(cfg)
            with contextlib.suppress(LabError):  # prefer the recorded configuration when there is one
                lab = Lab.load(args.labdir or args.prefix)
            result = lab.down() if args.command == "down" else lab.status()
            print(json.dumps(result, indent=2))
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # run the copy imported as deploy.lab.topology, so that its LabError is the one procs/faults raise
    from deploy.lab.topology import main as _main

    raise SystemExit(_main())
