"""Run the switchover pair in the lab, and run fault scenarios against it.

:class:`LabPair` puts a ``switchover node`` and the reference module into each server namespace of a
:class:`~deploy.lab.topology.Lab`: configs with the lab's addresses (ports 3633/3634/3635 on both
servers), the fast parameter profile plus the NetTest hosts, and a recording hook in ``commence.d`` and
``discontinue.d`` that appends one JSON line per run to ``<data_dir>/hooks.jsonl``.

:class:`RoleSampler` asks both admin sockets for the role 25 times a second (one thread, one
persistent DEALER per node, every request with its own id; an answer later than ``timeout`` counts as
no answer, so a frozen node that wakes up cannot back-date its role).

:func:`run_scenario` builds a fresh lab for one :class:`~deploy.lab.scenario.Scenario`, runs its steps
while sampling, then reads both event logs, hook logs and node logs, tears everything down and returns
a :class:`ScenarioResult`: the recorded :class:`~deploy.lab.checks.History`, the checks, the measured
times and a text timeline (``history.json`` and ``timeline.txt`` are saved in the run directory).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import zmq
from loguru import logger

from actors.roles import event_log
from deploy.lab import checks
from deploy.lab.checks import (
    AppRecord,
    CheckResult,
    DsLag,
    DsReadback,
    DsWrite,
    History,
    HookRun,
    InteractionsReadback,
    LogLine,
    Measurements,
    Resources,
    Sample,
    StepRun,
)
from deploy.lab.faults import DropHandle, Faults, Flow, LinkHandle, require_nft
from deploy.lab.procs import Procs
from deploy.lab.scenario import NODES, UNREACHABLE, Scenario, Step
from deploy.lab.topology import Lab, LabConfig, LabError, cleanup_prefix, require_root
from deploy.pair import FAST_PARAMETERS, child_env, make_keys, render_config
from transport.admin_client import AdminCallError, admin_address, admin_call
from transport.codec import REPLY, REQUEST, DecodeError, Envelope, decode, encode
from transport.messages import AdminReply, AdminRequest

PORTS = {"vswitch_port": 3633, "notifier_port": 3634, "notifier_aux_port": 3635}
SERVER_NAMES = {"a": "A", "b": "B"}
BACKUP_ROLES = ("Backup", "Reconnecting", "Upgrade Higher", "Upgrade Lower")
HOOKS_LOG = "hooks.jsonl"
#: the recording hook; {out} is the hooks.jsonl path.  -S: no site import, it starts in a few ms
HOOK_SCRIPT = """#!{python} -S
# switchover lab: records one JSON line per hook run (installed by deploy/lab/runner.py)
import json, os, time
env = os.environ
record = {{
    "t": time.time(),
    "event": env.get("SWITCHOVER_EVENT", ""),
    "role": env.get("SWITCHOVER_ROLE", ""),
    "generation": env.get("SWITCHOVER_GENERATION", ""),
    "reason": env.get("SWITCHOVER_REASON", ""),
    "node": env.get("SWITCHOVER_NODE", ""),
    "peer": env.get("SWITCHOVER_PEER", ""),
    "pid": os.getpid(),
}}
fd = os.open({out!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
try:
    os.write(fd, (json.dumps(record) + "\\n").encode())
finally:
    os.close(fd)
"""
#: a unix socket path longer than this does not fit sockaddr_un
MAX_IPC_PATH = 100
SAMPLE_INTERVAL = 0.04
SAMPLE_TIMEOUT = 0.3
HOOK_SETTLE = 5.0
_LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \| (\w+)\s*\| ([^|]*?)\s*\| ([^|]*?)\s*\| (.*)$"
)
_LOUD = ("WARNING", "ERROR", "CRITICAL")
#: warnings that only acknowledge the runner's own action (not a detection of anything)
_ECHOES = re.compile(r"^fault hooks of \S+ set to ")


#: the checkout this module belongs to: child processes run its code, whatever ``pip install -e``
#: points at (another clone may have been installed in editable mode since)
REPO_ROOT = Path(__file__).resolve().parents[2]


def switchover_argv(*args: str) -> list[str]:
    """``python -m cli.main ARGS`` with this interpreter (works in any namespace, any cwd)."""
    return [sys.executable, "-m", "cli.main", *args]


# --------------------------------------------------------------------------------------------------
# the pair inside a lab


class LabPair:
    """A node (and optionally the reference module) per server of ``lab``, with data under ``root``."""

    def __init__(
        self,
        lab: Lab,
        root: Path,
        *,
        parameters: Mapping[str, str] | None = None,
        node_args: Mapping[str, Sequence[str]] | None = None,
        modules: Mapping[str, bool] | None = None,
        log_level: str = "INFO",
        hook_timeout: float = 10.0,
    ) -> None:
        self.lab = lab
        self.root = Path(root)
        self.extra_parameters = dict(parameters or {})
        self.node_args = {n: list((node_args or {}).get(n, ())) for n in NODES}
        self.modules = {n: bool((modules or {}).get(n, True)) for n in NODES}
        self.log_level = log_level
        self.hook_timeout = hook_timeout
        #: logical process name (node-a, module-a) -> lab process name currently standing for it
        self.alias: dict[str, str] = {
            f"{kind}-{n}": f"{kind}-{n}" for kind in ("node", "module") for n in NODES
        }
        self._generation = itertools.count(2)

    # -- files -----------------------------------------------------------------------------------

    def data_dir(self, node: str) -> Path:
        return self.root / node

    def config_path(self, node: str) -> Path:
        return self.root / f"{node}.toml"

    def hooks_dir(self, node: str) -> Path:
        return self.data_dir(node) / "hooks"

    def hooks_log(self, node: str) -> Path:
        return self.data_dir(node) / HOOKS_LOG

    def parameters(self) -> dict[str, str]:
        """The fast profile, the NetTest hosts of the lab, then the scenario's own values."""
        params = dict(FAST_PARAMETERS)
        params["Switchover NetTest A"] = self.lab.nettest["a"]
        params["Switchover NetTest B"] = self.lab.nettest["b"]
        params.update(self.extra_parameters)
        return params

    def write_configs(self) -> None:
        """Both node configs, data dirs and recording hooks (overwrites earlier ones)."""
        servers = {
            f"server_{n}": {"name": SERVER_NAMES[n], "address": self.lab.addr[n], **PORTS} for n in NODES
        }
        params = self.parameters()
        # CURVE like a real pair: one keypair for the group; the lab's tools (ctl on each server,
        # the reference modules) share one client key with the admin, module and app rights
        security = make_keys(self.root / "keys", (("lab", "admin,module,app"),), client_key="lab")
        for node in NODES:
            data = self.data_dir(node)
            data.mkdir(parents=True, exist_ok=True)
            sock = str(Path(admin_address(data)).name)
            if len(admin_address(data)) - len("ipc://") > MAX_IPC_PATH:
                raise LabError(
                    f"data directory {data} is too deep for a unix socket ({sock}); use a shorter labdir"
                )
            for kind in ("commence", "discontinue"):
                hook_dir = self.hooks_dir(node) / f"{kind}.d"
                hook_dir.mkdir(parents=True, exist_ok=True)
                hook = hook_dir / "50-lab-record"
                hook.write_text(HOOK_SCRIPT.format(python=sys.executable, out=str(self.hooks_log(node))))
                hook.chmod(0o755)
            extra = {"hooks": {"dir": str(self.hooks_dir(node)), "timeout": self.hook_timeout}}
            text = render_config(
                SERVER_NAMES[node], data, servers, params, extra, log_level=self.log_level, security=security
            )
            self.config_path(node).write_text(text)
        with self.lab.state() as st:  # so that `switchover lab status` finds the nodes
            st["pair_dir"] = str(self.root)

    # -- processes -------------------------------------------------------------------------------

    def proc(self, logical: str) -> str:
        """The lab process name that currently stands for ``node-a``, ``module-b``..."""
        return self.alias.get(logical, logical)

    def start_node(self, node: str, args: Sequence[str] | None = None) -> None:
        if args is not None:
            self.node_args[node] = list(args)
        argv = switchover_argv("node", "--config", str(self.config_path(node)), *self.node_args[node])
        Procs(self.lab).start(self.proc(f"node-{node}"), node, argv, env=child_env())

    def start_module(self, node: str, name: str | None = None) -> str:
        name = name or self.proc(f"module-{node}")
        argv = switchover_argv("module", "run", "--name", "TsServer", "--config", str(self.config_path(node)))
        Procs(self.lab).start(name, node, argv, env=child_env())
        return name

    def restart_module_overlapping(self, node: str, timeout: float) -> str:
        """Start a new module, wait until it registered with the notifier, then kill -9 the old one."""
        logical = f"module-{node}"
        old = self.proc(logical)
        new = f"{logical}.{next(self._generation)}"
        info = Procs(self.lab).start(
            new,
            node,
            switchover_argv("module", "run", "--name", "TsServer", "--config", str(self.config_path(node))),
            env=child_env(),
        )
        log = Path(info.log)

        def registered() -> bool:
            with contextlib.suppress(OSError):
                return "registered with the notifier" in log.read_text(errors="replace")
            return False

        if not poll(registered, timeout):
            raise LabError(f"the new module {new} did not register with the notifier within {timeout:g} s")
        Procs(self.lab).kill9(old)
        self.alias[logical] = new
        return new

    def pid(self, logical: str) -> int:
        return Procs(self.lab).pid(self.proc(logical))

    def stop_all(self, timeout: float = 3.0) -> None:
        Procs(self.lab).stop_all(timeout=timeout)

    # -- admin and control panel -----------------------------------------------------------------

    def status(self, node: str, timeout: float = 1.0) -> dict[str, Any] | None:
        try:
            return admin_call(str(self.data_dir(node)), "status", {}, timeout=timeout)
        except AdminCallError:
            return None

    def roles(self) -> dict[str, str | None]:
        return {n: (s or {}).get("role") for n in NODES for s in [self.status(n, 0.5)]}

    def wait_pair(self, timeout: float) -> dict[str, str | None]:
        """Until one node is Primary and the other Backup; returns the roles (raises on timeout)."""
        last: dict[str, str | None] = {}

        def ready() -> bool:
            nonlocal last
            last = self.roles()
            return sorted(str(r) for r in last.values()) == ["Backup", "Primary"]

        if not poll(ready, timeout, interval=0.1):
            raise LabError(f"the pair did not settle into Primary + Backup within {timeout:g} s: {last}")
        return last

    def ctl(self, node: str, args: Sequence[str], timeout: float = 30.0) -> tuple[int, str]:
        """``switchover ctl --config <node's config> ARGS`` inside ``node``'s namespace: (rc, output)."""
        argv = switchover_argv("ctl", "--config", str(self.config_path(node)), *args)
        done = self.lab.exec(node, argv, check=False, timeout=timeout, env=child_env())
        return done.returncode, (done.stdout + done.stderr).strip()

    def up(self, timeout: float = 30.0) -> dict[str, str | None]:
        """Configs, then node + module on A and on B together (A wins the start-up tie as server A);
        wait until one is Primary and the other Backup."""
        self.write_configs()
        for node in NODES:
            self.start_node(node)
            if self.modules[node]:
                self.start_module(node)
        return self.wait_pair(timeout)

    def node_log(self, node: str) -> Path:
        return self.data_dir(node) / "switchover.log"


def poll(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Evaluate ``predicate`` until it is true or ``timeout`` passes (a poll with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(interval, left))  # the pause between two polls


# --------------------------------------------------------------------------------------------------
# role sampling


class RoleSampler:
    """Samples ``status`` of every node's admin socket every ``interval`` seconds, in one thread."""

    def __init__(
        self,
        data_dirs: Mapping[str, Path],
        interval: float = SAMPLE_INTERVAL,
        timeout: float = SAMPLE_TIMEOUT,
    ) -> None:
        self.data_dirs = dict(data_dirs)
        self.interval = interval
        self.timeout = timeout
        self.samples: list[Sample] = []
        self._latest: dict[str, Sample] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lab-role-sampler", daemon=True)
        self._error: BaseException | None = None

    def start(self) -> RoleSampler:
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(5.0)
        if self._error is not None:
            raise LabError(f"the role sampler failed: {self._error!r}")
        with self._lock:
            return list(self.samples)

    def latest(self) -> dict[str, Sample]:
        with self._lock:
            return dict(self._latest)

    def _record(self, sample: Sample) -> None:
        with self._lock:
            self.samples.append(sample)
            self._latest[sample.node] = sample

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # reported by stop()
            self._error = exc
            logger.exception("lab role sampler failed")

    def _loop(self) -> None:
        ctx: zmq.Context[Any] = zmq.Context()
        socks: dict[str, zmq.Socket[Any]] = {}
        try:
            for node, data in self.data_dirs.items():
                sock = ctx.socket(zmq.DEALER)
                sock.linger = 0
                sock.sndhwm = 50
                sock.connect(admin_address(data))
                socks[node] = sock
            by_sock = {s: n for n, s in socks.items()}
            poller = zmq.Poller()
            for s in socks.values():
                poller.register(s, zmq.POLLIN)
            pending: dict[int, tuple[str, float]] = {}
            corr = itertools.count(1)
            next_tick = time.monotonic()
            while not self._stop.is_set():
                now_m = time.monotonic()
                if now_m >= next_tick:
                    next_tick += self.interval
                    if next_tick < now_m:  # fell behind (a slow machine): do not burst
                        next_tick = now_m + self.interval
                    for node, sock in socks.items():
                        cid = next(corr)
                        frames = encode(
                            Envelope(AdminRequest("status", {}), "lab-sampler", 0, None, REQUEST, cid)
                        )
                        try:
                            sock.send_multipart(frames, flags=zmq.NOBLOCK)
                            pending[cid] = (node, time.time())
                        except zmq.Again:
                            self._record(Sample(time.time(), node, None, None, "no connection"))
                now = time.time()
                for cid, (node, sent) in list(pending.items()):
                    if now - sent > self.timeout:
                        del pending[cid]
                        self._record(Sample(sent, node, None, None, "no answer"))
                wait_ms = max(0, int((next_tick - time.monotonic()) * 1000))
                for sock, _ in poller.poll(wait_ms):
                    while True:
                        try:
                            frames = sock.recv_multipart(flags=zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._answer(by_sock[sock], frames, pending)
        finally:
            for s in socks.values():
                s.close(0)
            ctx.term()

    def _answer(self, node: str, frames: list[bytes], pending: dict[int, tuple[str, float]]) -> None:
        try:
            env = decode(frames)
        except DecodeError:
            return
        if env.kind != REPLY or env.corr is None or env.corr not in pending:
            return  # late (already counted as unanswered) or not ours
        _, sent = pending.pop(env.corr)
        now = time.time()
        if now - sent > self.timeout:
            self._record(Sample(sent, node, None, None, "late answer"))
            return
        reply = env.msg
        if isinstance(reply, AdminReply) and reply.ok:
            role = reply.result.get("role")
            gen = reply.result.get("generation")
            self._record(Sample(now, node, str(role), int(gen) if isinstance(gen, int) else None))
        else:
            detail = reply.error if isinstance(reply, AdminReply) else type(reply).__name__
            self._record(Sample(now, node, None, None, f"refused: {detail}"))


# --------------------------------------------------------------------------------------------------
# workloads


class DsWriter:
    """Writes ``<path>/w<seq>`` = ``{"v": "<seq>"}`` through the node that is Primary (admin op
    ``ds.set``), ``rate`` a second, in one thread; each write is recorded with whether the node
    acknowledged it.  A second thread samples the other node's ``ds.replication`` state every
    ``lag_interval`` seconds.  ``primary()`` says which node is Primary (None: none, or two)."""

    def __init__(
        self,
        data_dirs: Mapping[str, Path],
        primary: Callable[[], str | None],
        *,
        rate: float,
        path: str,
        lag_interval: float = 0.1,
        timeout: float = 1.0,
    ) -> None:
        self.data_dirs = dict(data_dirs)
        self.primary = primary
        self.interval = 1.0 / rate
        self.path = path.rstrip("/") or ""
        self.lag_interval = lag_interval
        self.timeout = timeout
        self.writes: list[DsWrite] = []
        self.lags: list[DsLag] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._guard, args=(self._write_loop,), name="lab-ds-writer", daemon=True),
            threading.Thread(target=self._guard, args=(self._lag_loop,), name="lab-ds-lag", daemon=True),
        ]
        self._error: BaseException | None = None

    def start(self) -> DsWriter:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5.0)
        if self._error is not None:
            raise LabError(f"the DS writer failed: {self._error!r}")

    def _guard(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except BaseException as exc:  # reported by stop()
            self._error = exc
            logger.exception("lab DS writer failed")

    def _write_loop(self) -> None:
        seq = 0
        next_write = time.monotonic()
        while not self._stop.is_set():
            seq += 1
            self._write(seq)
            next_write = max(next_write + self.interval, time.monotonic())  # late: no burst
            self._stop.wait(max(0.0, next_write - time.monotonic()))  # the pacing

    def _lag_loop(self) -> None:
        while not self._stop.is_set():
            self._sample_lag()
            self._stop.wait(self.lag_interval)  # the sampling period

    def _write(self, seq: int) -> None:
        key, value = f"{self.path}/w{seq:06d}", str(seq)
        node = self.primary()
        t = time.time()
        if node is None:
            self.writes.append(DsWrite(t, seq, key, value, "", False, None, "no single Primary"))
            return
        try:
            result = admin_call(
                str(self.data_dirs[node]), "ds.set", {"key": key, "attrs": {"v": value}}, self.timeout
            )
        except AdminCallError as exc:
            self.writes.append(DsWrite(t, seq, key, value, node, False, None, str(exc)[:200]))
            return
        rev = result.get("revision")
        self.writes.append(DsWrite(t, seq, key, value, node, True, rev if isinstance(rev, int) else None))

    def _sample_lag(self) -> None:
        for node, data in self.data_dirs.items():
            if node == self.primary():
                continue
            try:
                r = admin_call(str(data), "ds.replication", {}, 0.3)
            except AdminCallError:
                continue
            lag, ms, rev = r.get("lag_revisions"), r.get("lag_ms_last"), r.get("revision")
            self.lags.append(
                DsLag(
                    time.time(),
                    node,
                    str(r.get("role", "")),
                    str(r.get("state", "")),
                    lag if isinstance(lag, int) else None,
                    float(ms) if isinstance(ms, (int, float)) else None,
                    rev if isinstance(rev, int) else None,
                )
            )


def read_ds_keys(data_dir: Path, node: str, path: str, timeout: float) -> DsReadback:
    """The children of ``path`` on a node (admin op ``ds.ls``), as full keys."""
    t = time.time()
    role = ""
    try:
        role = str(admin_call(str(data_dir), "status", {}, timeout).get("role", ""))
        r = admin_call(str(data_dir), "ds.ls", {"key": path, "limit": 10_000_000}, timeout)
    except AdminCallError as exc:
        if "no such DS key" in str(exc):
            return DsReadback(t, node, role)
        return DsReadback(t, node, role, error=str(exc))
    return DsReadback(t, node, role, tuple(str(c["key"]) for c in r.get("children", [])))


def read_interactions(data_dir: Path, node: str, timeout: float) -> InteractionsReadback:
    """Every live interaction of a node (admin op ``interactions``) with its transcript's texts."""
    t = time.time()
    try:
        r = admin_call(str(data_dir), "interactions", {}, timeout)
    except AdminCallError as exc:
        return InteractionsReadback(t, node, "", error=str(exc))
    transcripts = {
        str(i["id"]): tuple(str(m.get("text", "")) for m in i.get("transcript", []))
        for i in r.get("items", [])
    }
    return InteractionsReadback(t, node, str(r.get("role", "")), transcripts)


def read_journal(app: str, path: Path) -> list[AppRecord]:
    """The lines of a reference application's journal (cli/app_cmd.py) as records."""
    out: list[AppRecord] = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(errors="replace").splitlines():
            try:
                d = json.loads(line)
                if d.get("event") == "resumed":
                    msgs = {str(k): int(v) for k, v in dict(d.get("messages", {})).items()}
                    out.append(AppRecord(float(d["at"]), app, "resumed", messages=msgs))
                    continue
                data = d.get("data") or {}
                rev = d.get("rev")
                out.append(
                    AppRecord(
                        float(d["at"]),
                        app,
                        "op",
                        str(d["op"]),
                        str(d["id"]),
                        rev if isinstance(rev, int) else None,
                        bool(d.get("shadowed")),
                        str(data.get("text", "")) if isinstance(data, dict) else "",
                    )
                )
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a torn last line
    return out


# --------------------------------------------------------------------------------------------------
# reading what the nodes wrote


def read_transitions(node: str, data_dir: Path) -> list[checks.Transition]:
    out = []
    for r in event_log.read(data_dir / "events.jsonl"):
        out.append(
            checks.Transition(r.epoch, node, r.old_state, r.new_state, r.reason or "", r.generation, r.event)
        )
    return out


def read_hooks(node: str, path: Path) -> list[HookRun]:
    out: list[HookRun] = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(errors="replace").splitlines():
            try:
                d = json.loads(line)
                gen = int(d.get("generation") or 0)
                out.append(
                    HookRun(
                        float(d["t"]),
                        node,
                        str(d["event"]),
                        str(d.get("role", "")),
                        gen,
                        str(d.get("reason", "")),
                    )
                )
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line: the hook is still writing
    return out


def read_loud_log_lines(node: str, path: Path, since: float) -> list[LogLine]:
    """WARNING and worse lines of a node log (loguru's local-time format), at or after ``since``."""
    out: list[LogLine] = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(errors="replace").splitlines():
            m = _LOG_LINE.match(line)
            if not m or m.group(2) not in _LOUD or _ECHOES.match(m.group(5)):
                continue
            t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            if t >= since:
                out.append(LogLine(t, node, m.group(2), m.group(4), m.group(5)))
    return out


def measure_process(pid: int) -> Resources:
    proc = psutil.Process(pid)
    sockets = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    fds = 0
    for entry in fd_dir.iterdir():
        fds += 1
        with contextlib.suppress(OSError):
            if os.readlink(entry).startswith("socket:"):
                sockets += 1
    return Resources(threads=proc.num_threads(), fds=fds, sockets=sockets, rss=proc.memory_info().rss)


# --------------------------------------------------------------------------------------------------
# scenario runs


class StepFailed(Exception):
    """A step could not do its job; the run stops there (the checks still run)."""


@dataclass
class ScenarioResult:
    scenario: Scenario
    history: History
    checks: list[CheckResult]
    measurements: Measurements
    run_dir: Path
    duration: float
    timeline: str = ""
    png: Path | None = None
    hints: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return checks.passed(self.checks)

    def summary(self) -> str:
        m = self.measurements
        h = self.history
        head = f"=== {self.scenario.name}: {'PASS' if self.passed else 'FAIL'} ({self.duration:.1f} s)"
        lines = [head + (f" - {self.scenario.description}" if self.scenario.description else "")]
        fault = next((s for s in h.steps if s.fault), None)
        if fault is not None and h.fault_time is not None:
            parts = [f"fault: {fault.text} at t={h.fault_time - h.t0:+.3f} s"]
            parts.append(f"detection {m.detection:+.3f} s" if m.detection is not None else "no detection")
            parts.append(f"switch {m.switch:+.3f} s" if m.switch is not None else "no switch")
            if m.switches > 1:
                parts.append(f"{m.switches} switches")
            parts.append(f"dual Primary max {m.dual_primary_max:.3f} s")
            lines.append("  " + "; ".join(parts))
        rates = ", ".join(
            f"{n.upper()} {r:.0f}/s ({m.unreachable_samples.get(n, 0)} unanswered)"
            for n, r in m.samples_per_second.items()
        )
        lines.append(f"  sampling: {rates or 'none'}")
        lines += [f"  {c.line()}" for c in self.checks]
        lines += [f"  note: {n}" for n in [*h.notes, *self.hints]]
        lines.append(f"  run dir: {self.run_dir}")
        return "\n".join(lines)


class ScenarioRun:
    """One run of one scenario against a lab that is up (see :func:`run_scenario`)."""

    def __init__(
        self,
        scenario: Scenario,
        lab: Lab,
        run_dir: Path,
        echo: Callable[[str], None] | None = None,
        keep: bool = False,
    ):
        self.keep = keep
        self.scenario = scenario
        self.lab = lab
        self.run_dir = run_dir
        self.echo = echo or (lambda _line: None)
        self.pair = LabPair(
            lab,
            run_dir,
            parameters=scenario.parameters,
            node_args={n: scenario.nodes[n].args for n in NODES},
            modules={n: scenario.nodes[n].module for n in NODES},
            log_level=scenario.log_level,
        )
        self.sampler = RoleSampler({n: self.pair.data_dir(n) for n in NODES})
        self.t0 = 0.0
        self.deadline = 0.0
        self.steps: list[StepRun] = []
        self.fault_time: float | None = None
        self.heal_time: float | None = None
        self.baseline_time: float | None = None
        self.flagged_fault = any(s.fault for s in scenario.walk())
        self.flagged_heal = any(s.heal for s in scenario.walk())
        self.handles: dict[str, list[DropHandle | LinkHandle] | tuple[str, str]] = {}
        self.partitions: dict[str, float] = {}
        self.excused: list[tuple[float, float]] = []
        self.resources: dict[str, dict[str, Resources]] = {}
        self.notes: list[str] = []
        self.actors_seen: dict[str, tuple[str, list[str]]] = {}
        self._auto_id = itertools.count(1)
        self.ds_writer: DsWriter | None = None
        self.ds_path = ""
        self.ds_readback: DsReadback | None = None
        self.apps: list[str] = []
        self.app_records: list[AppRecord] = []
        self.interactions_readback: InteractionsReadback | None = None

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> History:
        self.t0 = time.time()
        self.deadline = time.monotonic() + self.scenario.timeout
        aborted = ""
        self.pair.write_configs()
        self.sampler.start()
        try:
            try:
                self._steps(self.scenario.steps)
            except StepFailed as exc:
                aborted = str(exc)
            except LabError as exc:
                aborted = f"lab error: {exc}"
            self._settle_hooks()
        finally:
            try:
                samples = self.sampler.stop()
                history = self._collect(samples, time.time(), aborted)
            finally:
                self._teardown()
        return history

    def _steps(self, steps: Sequence[Step]) -> None:
        for step in steps:
            if step.action == "repeat":
                for i in range(int(step.params["count"])):
                    self._check_deadline(step, f" (iteration {i + 1})")
                    self._steps(step.steps)
                continue
            self._check_deadline(step, "")
            self._run_step(step)

    def _check_deadline(self, step: Step, extra: str) -> None:
        if time.monotonic() > self.deadline:
            raise StepFailed(
                f"the scenario's time budget of {self.scenario.timeout:g} s ran out before {step.where}{extra}"
            )

    def _left(self, timeout: float) -> float:
        return max(0.0, min(timeout, self.deadline - time.monotonic()))

    def _run_step(self, step: Step) -> None:
        start = time.time()
        is_fault = self.fault_time is None and (
            step.fault or (not self.flagged_fault and step.is_fault_action)
        )
        if is_fault:
            self.fault_time = start
        is_heal = (
            not is_fault
            and self.fault_time is not None
            and self.heal_time is None
            and (step.heal or (not self.flagged_heal and step.is_heal_action))
        )
        if is_heal:
            self.heal_time = start
        text = step.describe()
        self.echo(f"  {start - self.t0:+8.3f}  {step.where:<12} {text}")
        error = ""
        suffix = ""
        try:
            suffix = getattr(self, f"_do_{step.action}")(step) or ""
        except StepFailed as exc:
            error = str(exc)
        except (LabError, AdminCallError, OSError, psutil.Error) as exc:
            error = f"{type(exc).__name__}: {exc}"
        end = time.time()
        run = StepRun(step.where, step.action, text + suffix, start, end, not error, error, is_fault, is_heal)
        self.steps.append(run)
        if suffix:
            self.echo(f"  {end - self.t0:+8.3f}  {'':<12} {suffix.strip()}")
        if error:
            self.echo(f"  {end - self.t0:+8.3f}  {step.where:<12} FAILED: {error}")
            raise StepFailed(f"{step.where} ({text}) failed: {error}")

    # -- helpers ---------------------------------------------------------------------------------

    def _latest_roles(self) -> dict[str, str | None]:
        latest = self.sampler.latest()
        return {n: latest[n].role if n in latest else None for n in NODES}

    def _roles_text(self) -> str:
        return ", ".join(f"{n.upper()} {r or UNREACHABLE}" for n, r in self._latest_roles().items())

    def _wait(self, predicate: Callable[[], bool], timeout: float, what: str, required: bool = True) -> str:
        took_from = time.monotonic()
        if poll(predicate, self._left(timeout)):
            return f" -> reached in {time.monotonic() - took_from:.3f} s"
        if required:
            raise StepFailed(f"{what} not reached within {timeout:g} s (roles now: {self._roles_text()})")
        return f" -> NOT reached within {timeout:g} s (roles now: {self._roles_text()})"

    def _target(self, step: Step) -> str:
        return self.pair.proc(str(step.params["target"]))

    def _note_actors(self) -> None:
        """Which actors each node runs once the pair is up (explains a missing automatic switch)."""
        for node in NODES:
            with contextlib.suppress(AdminCallError):
                result = admin_call(str(self.pair.data_dir(node)), "actors", {}, timeout=2.0)
                names = [str(r.get("name")) for r in result.get("actors", []) if r.get("alive", True)]
                role = str(result.get("role"))
                self.actors_seen[node] = (role, names)
                self.notes.append(f"{node.upper()} ({role}) runs actors: {', '.join(names)}")

    # -- actions ---------------------------------------------------------------------------------

    def _do_start_pair(self, step: Step) -> str:
        timeout = float(step.params["timeout"])
        for node in NODES:
            self.pair.start_node(node)
            if self.pair.modules[node]:
                self.pair.start_module(node)
            if node == "a" and step.params["sequential"]:
                self._wait(lambda: self._latest_roles()["a"] == "Primary", timeout, "A Primary")
        return self._wait(lambda: self._latest_roles()["a"] == "Primary", timeout, "A Primary")

    def _do_start(self, step: Step) -> str:
        node = str(step.params["node"])
        args = step.params.get("args")
        self.pair.start_node(node, list(args) if args is not None else None)
        module = step.params.get("module")
        if module if module is not None else self.pair.modules[node]:
            self.pair.start_module(node)
        return ""

    def _do_start_module(self, step: Step) -> str:
        self.pair.start_module(str(step.params["node"]))
        return ""

    def _do_stop(self, step: Step) -> str:
        name = self._target(step)
        if not Procs(self.lab).alive(name):
            raise StepFailed(f"{name} is not running")
        graceful = Procs(self.lab).terminate(name)
        return "" if graceful else " (ignored SIGTERM: killed)"

    def _do_kill9(self, step: Step) -> str:
        name = self._target(step)
        if not Procs(self.lab).alive(name):
            raise StepFailed(f"{name} is not running")
        if not Procs(self.lab).kill9(name):
            raise StepFailed(f"{name} still runs after SIGKILL")
        return ""

    def _do_sigstop(self, step: Step) -> str:
        name = self._target(step)
        if not Procs(self.lab).sigstop(name):
            raise StepFailed(f"{name} did not stop (is it running? status {Procs(self.lab).status(name)})")
        return ""

    def _do_sigcont(self, step: Step) -> str:
        name = self._target(step)
        if not Procs(self.lab).sigcont(name):
            raise StepFailed(f"{name} did not resume (status {Procs(self.lab).status(name)})")
        return ""

    def _do_restart(self, step: Step) -> str:
        logical = str(step.params["target"])
        kind, node = logical.split("-")
        how = str(step.params["how"])
        if how == "overlap":
            new = self.pair.restart_module_overlapping(node, float(step.params["timeout"]))
            return f" -> {new} pid {Procs(self.lab).pid(new)}"
        name = self.pair.proc(logical)
        if Procs(self.lab).alive(name):
            if how == "kill9":
                Procs(self.lab).kill9(name)
            else:
                Procs(self.lab).terminate(name, timeout=float(step.params["timeout"]))
        if kind == "node":
            self.pair.start_node(node)
        else:
            self.pair.start_module(node)
        return f" -> pid {Procs(self.lab).pid(name)}"

    def _fault_id(self, step: Step) -> str:
        return str(step.params.get("id") or f"fault{next(self._auto_id)}")

    def _do_drop(self, step: Step) -> str:
        p = step.params
        flow_spec = p["flow"]
        if isinstance(flow_spec, str):
            flow = Faults(self.lab).flow(flow_spec, src=p.get("src") or "a", dst=p.get("dst") or "b")
        else:
            flow = Flow(
                flow_spec["proto"],
                flow_spec.get("ports"),
                flow_spec["src"],
                flow_spec["dst"],
                flow_spec.get("name", ""),
            )
        handle = Faults(self.lab).drop(flow, str(p["direction"]), at=p["at"])
        fid = self._fault_id(step)
        self.handles[fid] = [handle]
        if p.get("partition"):
            self.partitions[fid] = time.time()
        return f" [{fid}]"

    def _do_link_down(self, step: Step) -> str:
        p = step.params
        handles: list[DropHandle | LinkHandle] = []
        for host in p["host"]:
            handles.append(Faults(self.lab).link_down(host, end=p["end"], link=p["link"]))
        fid = self._fault_id(step)
        self.handles[fid] = handles
        if p.get("partition"):
            self.partitions[fid] = time.time()
        return f" [{fid}]"

    def _do_link_up(self, step: Step) -> str:
        p = step.params
        for host in p["host"]:
            Faults(self.lab).link_up(host, end=p["end"], link=p["link"])
        for fid, handles in list(self.handles.items()):
            if (
                isinstance(handles, list)
                and handles
                and all(
                    isinstance(h, LinkHandle) and h.host in p["host"] and h.end == p["end"] for h in handles
                )
            ):
                self._end_partition(fid)
                del self.handles[fid]
        return ""

    def _end_partition(self, fid: str) -> None:
        started = self.partitions.pop(fid, None)
        if started is not None:
            self.excused.append((started, time.time()))

    def _do_heal(self, step: Step) -> str:
        p = step.params
        ids = list(self.handles) if p.get("all") else [str(p["id"])]
        for fid in ids:
            handles = self.handles.pop(fid, None)
            if handles is None:
                raise StepFailed(f"fault {fid!r} is not in force (healed already?)")
            if isinstance(handles, tuple):
                node, endpoint = handles
                admin_call(str(self.pair.data_dir(node)), "inject", {"endpoint": endpoint, "faults": {}}, 3.0)
            else:
                for h in handles:
                    Faults(self.lab).heal(h)
            self._end_partition(fid)
        if p.get("all"):
            Faults(self.lab).heal_all()
        return ""

    def _do_inject(self, step: Step) -> str:
        p = step.params
        node, endpoint = str(p["node"]), str(p["endpoint"])
        result = admin_call(
            str(self.pair.data_dir(node)), "inject", {"endpoint": endpoint, "faults": dict(p["faults"])}, 3.0
        )
        fid = self._fault_id(step)
        self.handles[fid] = (node, endpoint)
        return f" [{fid}] -> {result.get('faults', result)}"

    def _do_ctl(self, step: Step) -> str:
        p = step.params
        rc, out = self.pair.ctl(
            str(p["node"]), list(p["args"]), timeout=self._left(float(p["timeout"])) or 1.0
        )
        last = out.splitlines()[-1] if out else ""
        if rc != int(p["expect_rc"]):
            raise StepFailed(f"ctl exited {rc}, expected {p['expect_rc']}: {out[-600:]}")
        return f" -> rc {rc}: {last[:120]}"

    def _do_switch(self, step: Step) -> str:
        p = step.params
        timeout = float(p["timeout"])
        roles = self._latest_roles()
        primary = [n for n, r in roles.items() if r == "Primary"]
        backup = [n for n, r in roles.items() if r in BACKUP_ROLES]
        if len(primary) != 1 or len(backup) != 1:
            raise StepFailed(f"a manual switch needs one Primary and one backup; roles: {self._roles_text()}")
        old, new = primary[0], backup[0]
        args = ["--timeout", "2", "switch", "--yes", "--wait", f"{timeout:g}"]
        if p.get("immediate"):
            args.append("--immediate")
        rc, out = self.pair.ctl(new, args, timeout=self._left(timeout + 10) or 1.0)
        if rc != 0:
            raise StepFailed(f"ctl switch on {new.upper()} exited {rc}: {out[-600:]}")
        self._wait(lambda: self._latest_roles()[new] == "Primary", timeout, f"{new.upper()} Primary")
        if not p.get("rejoin"):
            return f" -> {new.upper()} Primary"
        self._wait(
            lambda: self._latest_roles()[old] in ("Inactive", "Stopping", "Error"),
            timeout,
            f"{old.upper()} stale",
        )
        args = ["--timeout", "2", "rejoin", "--server", SERVER_NAMES[old], "--wait", f"{timeout:g}"]
        rc, out = self.pair.ctl(new, args, timeout=self._left(timeout + 10) or 1.0)
        if rc != 0:
            raise StepFailed(f"ctl rejoin of {old.upper()} exited {rc}: {out[-600:]}")
        self._wait(
            lambda: self._latest_roles() == {new: "Primary", old: "Backup"},
            timeout,
            f"{new.upper()} Primary and {old.upper()} Backup",
        )
        return f" -> {new.upper()} Primary, {old.upper()} Backup"

    def _do_sleep(self, step: Step) -> str:
        seconds = float(step.params["seconds"])
        threading.Event().wait(self._left(seconds))  # an observation window, not a wait for something
        return ""

    def _do_wait_roles(self, step: Step) -> str:
        p = step.params
        wanted: Mapping[str, tuple[str, ...]] = p["roles"]
        stable = float(p["stable"])
        since: float | None = None

        def matches() -> bool:
            nonlocal since
            latest = self.sampler.latest()
            for node, allowed in wanted.items():
                s = latest.get(node)
                role = UNREACHABLE if s is None or s.role is None else s.role
                if role not in allowed:
                    since = None
                    return False
            now = time.monotonic()
            if since is None:
                since = now
            return now - since >= stable

        what = ", ".join(f"{n.upper()} {'|'.join(r)}" for n, r in wanted.items())
        result = self._wait(matches, float(p["timeout"]), what, bool(p["required"]))
        if self.baseline_time is None and self.fault_time is None and "NOT" not in result:
            self.baseline_time = time.time()
            self._note_actors()
        return result

    def _do_wait_event(self, step: Step) -> str:
        p = step.params
        since = time.time()

        def seen() -> bool:
            for node in NODES:
                if p.get("node") and node != p["node"]:
                    continue
                for t in read_transitions(node, self.pair.data_dir(node)):
                    if t.t < since or (p.get("new_state") and t.new != p["new_state"]):
                        continue
                    if p.get("reason") and str(p["reason"]).casefold() not in t.reason.casefold():
                        continue
                    return True
            return False

        what = " ".join(f"{k}={p[k]}" for k in ("node", "new_state", "reason") if p.get(k))
        return self._wait(seen, float(p["timeout"]), f"event {what}", bool(p["required"]))

    def _do_measure(self, step: Step) -> str:
        label = str(step.params["label"])
        snap = {}
        for node in NODES:
            name = self.pair.proc(f"node-{node}")
            if not Procs(self.lab).alive(name):
                raise StepFailed(f"cannot measure {name}: it is not running")
            snap[node] = measure_process(Procs(self.lab).pid(name))
        self.resources[label] = snap
        return " -> " + "; ".join(
            f"{n.upper()} threads {r.threads} fds {r.fds} sockets {r.sockets} rss {r.rss / 2**20:.1f} MB"
            for n, r in snap.items()
        )

    def _single_primary(self) -> str | None:
        primaries = [n for n, r in self._latest_roles().items() if r == "Primary"]
        return primaries[0] if len(primaries) == 1 else None

    def _final_primary(self, timeout: float) -> str:
        self._wait(lambda: self._single_primary() is not None, timeout, "a single Primary")
        node = self._single_primary()
        if node is None:
            raise StepFailed(f"no single Primary to read back from (roles now: {self._roles_text()})")
        return node

    def _do_ds_writer(self, step: Step) -> str:
        if self.ds_writer is not None:
            raise StepFailed("a DS writer is already running")
        self.ds_path = str(step.params["path"])
        self.ds_writer = DsWriter(
            {n: self.pair.data_dir(n) for n in NODES},
            self._single_primary,
            rate=float(step.params["rate"]),
            path=self.ds_path,
        ).start()
        return ""

    def _do_ds_writer_stop(self, step: Step) -> str:
        writer = self.ds_writer
        if writer is None:
            raise StepFailed("no DS writer is running (a ds_writer step comes first)")
        writer.stop()
        node = self._final_primary(float(step.params["timeout"]))
        self.ds_readback = read_ds_keys(self.pair.data_dir(node), node, self.ds_path, 5.0)
        if self.ds_readback.error:
            raise StepFailed(
                f"cannot read the writer's keys back from {node.upper()}: {self.ds_readback.error}"
            )
        acked = sum(1 for w in writer.writes if w.acked)
        return (
            f" -> {len(writer.writes)} writes, {acked} acknowledged; {len(self.ds_readback.keys)} keys on "
            f"{node.upper()}"
        )

    def journal(self, node: str) -> Path:
        return self.run_dir / f"app-{node}.jsonl"

    def _do_app(self, step: Step) -> str:
        if self.apps:
            raise StepFailed("the reference apps are already running")
        p = step.params
        for node in NODES:
            argv = switchover_argv(
                "app",
                "--config",
                str(self.pair.config_path(node)),
                "--rate",
                f"{float(p['rate']):g}",
                "--journal",
                str(self.journal(node)),
                "--seed",
                str(int(p["seed"]) + ord(node)),
                *(["--wait-backup"] if p["wait_backup"] else []),
            )
            name = f"app-{node}"
            Procs(self.lab).start(name, node, argv, env=child_env())
            self.apps.append(name)
        return ""

    def _do_app_stop(self, step: Step) -> str:
        if not self.apps:
            raise StepFailed("no reference app is running (an app step comes first)")
        # together: an app blocked in a publish the old active never answers exits only on SIGKILL
        stoppers = [
            threading.Thread(target=Procs(self.lab).terminate, args=(name, 3.0), name=f"stop-{name}")
            for name in self.apps
        ]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        self.apps = []
        for node in NODES:
            self.app_records += read_journal(node, self.journal(node))
        node = self._final_primary(float(step.params["timeout"]))
        self.interactions_readback = read_interactions(self.pair.data_dir(node), node, 5.0)
        if self.interactions_readback.error:
            raise StepFailed(
                f"cannot read the interactions of {node.upper()}: {self.interactions_readback.error}"
            )
        ops = sum(1 for r in self.app_records if r.kind == "op")
        return f" -> {ops} acknowledged operations; {len(self.interactions_readback.transcripts)} on {node.upper()}"

    # -- the end ---------------------------------------------------------------------------------

    def _read(self) -> tuple[list[checks.Transition], list[HookRun]]:
        transitions: list[checks.Transition] = []
        hooks: list[HookRun] = []
        for node in NODES:
            with contextlib.suppress(event_log.EventLogCorrupt):
                transitions += read_transitions(node, self.pair.data_dir(node))
            hooks += read_hooks(node, self.pair.hooks_log(node))
        return transitions, hooks

    def _settle_hooks(self) -> None:
        """Hooks run in the background: give the due ones a moment to finish (bounded)."""

        def settled() -> bool:
            transitions, hooks = self._read()
            missing, _ = checks.hook_mismatch(transitions, hooks)
            return not missing

        poll(settled, HOOK_SETTLE, interval=0.05)

    def _collect(self, samples: list[Sample], t_end: float, aborted: str) -> History:
        if self.ds_writer is not None:
            with contextlib.suppress(LabError):
                self.ds_writer.stop()  # a run that stopped early: no write after the record is taken
        for fid in list(self.partitions):
            self._end_partition(fid)
        transitions, hooks = self._read()
        logs: list[LogLine] = []
        for node in NODES:
            logs += read_loud_log_lines(node, self.pair.node_log(node), self.t0)
        return History(
            t0=self.t0,
            t_end=t_end,
            samples=sorted(samples, key=lambda s: s.t),
            transitions=sorted(transitions, key=lambda t: t.t),
            hooks=sorted(hooks, key=lambda h: h.t),
            steps=self.steps,
            logs=sorted(logs, key=lambda ln: ln.t),
            fault_time=self.fault_time,
            heal_time=self.heal_time,
            baseline_time=self.baseline_time,
            excused=sorted(self.excused),
            resources=self.resources,
            notes=self.notes,
            aborted=aborted,
            ds_writes=list(self.ds_writer.writes) if self.ds_writer else [],
            ds_lag=list(self.ds_writer.lags) if self.ds_writer else [],
            ds_readback=self.ds_readback,
            app_records=sorted(self.app_records, key=lambda r: r.t),
            interactions_readback=self.interactions_readback,
        )

    def _teardown(self) -> None:
        if self.ds_writer is not None:
            with contextlib.suppress(LabError):
                self.ds_writer.stop()
        if self.keep:
            return
        with contextlib.suppress(LabError):
            Faults(self.lab).heal_all()
        with contextlib.suppress(LabError):
            self.pair.stop_all(timeout=3.0)


def _hints(result_checks: Sequence[CheckResult], actors: Mapping[str, tuple[str, list[str]]]) -> list[str]:
    """Explain failures that come from a missing feature rather than a wrong behaviour."""
    hints = []
    failed = {c.name for c in result_checks if not c.ok}
    if failed & {"switch", "reason", "switch count", "visits"}:
        monitors = {"PrimaryMonitor", "ModuleMonitor"}
        lacking = [
            f"{n.upper()} ({role})"
            for n, (role, names) in actors.items()
            if role in BACKUP_ROLES and not monitors <= set(names)
        ]
        if lacking:
            hints.append(
                f"automatic failover is not available: the backup {', '.join(lacking)} ran no PrimaryMonitor "
                "and ModuleMonitor actors, so no switch can follow a failure of the primary"
            )
    return hints


def run_scenario(
    scenario: Scenario,
    *,
    prefix: str,
    labdir: str | Path | None = None,
    run_dir: Path | None = None,
    png_dir: Path | None = None,
    echo: Callable[[str], None] | None = None,
    keep: bool = False,
) -> ScenarioResult:
    """Build a fresh lab named ``prefix``, run ``scenario`` in it, take the lab down (unless ``keep``).

    Needs root and nftables (:class:`~deploy.lab.topology.LabPermissionError` /
    :class:`~deploy.lab.topology.LabError` with what to do otherwise).
    """
    from deploy.lab import timeline

    require_root()
    require_nft()
    cleanup_prefix(prefix)  # leftovers of a crashed earlier run with this prefix
    lab = Lab(
        LabConfig(
            prefix=prefix, labdir=str(labdir) if labdir else None, dedicated_link=scenario.dedicated_link
        )
    )
    started = time.monotonic()
    run_dir = run_dir or next_run_dir(lab.dir, scenario.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    (echo or (lambda _l: None))(f"--- {scenario.name}: lab {prefix}, run dir {run_dir}")
    try:
        lab.up()
        run = ScenarioRun(scenario, lab, run_dir, echo, keep=keep)
        history = run.run()
    finally:
        if not keep:
            lab.down(grace=1.0)
    results = checks.evaluate(history, scenario.expect)
    result = ScenarioResult(
        scenario=scenario,
        history=history,
        checks=results,
        measurements=checks.measure(history),
        run_dir=run_dir,
        duration=time.monotonic() - started,
        hints=_hints(results, run.actors_seen),
    )
    result.timeline = timeline.render_text(result.history, scenario.name, result.checks)
    (run_dir / "history.json").write_text(json.dumps(checks.history_to_dict(history), indent=1))
    (run_dir / "timeline.txt").write_text(result.timeline + "\n\n" + result.summary() + "\n")
    if png_dir is not None:
        png_dir.mkdir(parents=True, exist_ok=True)
        result.png = png_dir / f"{run_dir.name}.png"
        timeline.render_png(
            result.history,
            result.png,
            title=f"{scenario.name}: {'PASS' if result.passed else 'FAIL'}",
            checks=result.checks,
        )
    return result


def next_run_dir(labdir: Path, name: str) -> Path:
    """``<labdir>/runs/<n>-<name>`` with the next free ``n``."""
    runs = labdir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in runs.iterdir() if (m := re.match(r"^(\d+)-", p.name))]
    return runs / f"{max(taken, default=0) + 1:02d}-{name}"


@contextlib.contextmanager
def lab_pair(prefix: str, labdir: str | Path | None = None, **pair_kw: Any) -> Iterator[LabPair]:
    """A lab with the pair up (Primary + Backup) for the duration of the block; removed afterwards."""
    require_root()
    cleanup_prefix(prefix)
    lab = Lab(LabConfig(prefix=prefix, labdir=str(labdir) if labdir else None)).up()
    try:
        pair = LabPair(lab, lab.dir / "pair", **pair_kw)
        pair.up()
        yield pair
    finally:
        lab.down(grace=1.0)
