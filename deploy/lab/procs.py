"""Processes inside the lab's namespaces: start with a log file, signal, stop.

Every process is started as ``ip netns exec <ns> argv...`` (``ip`` execs the command in place, so the
recorded PID is the command's own), in a new session (its own process group), stdin from /dev/null and
stdout+stderr appended to ``<labdir>/logs/<name>.log``.  Its name, host, namespace, PID, create time,
argv and log path are recorded under ``procs`` in the lab state, so another process can signal it.
The create time guards against PID reuse: a recorded process whose PID now belongs to another
program is reported dead and is never signalled.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
from loguru import logger

from deploy.lab.topology import (
    Lab,
    LabError,
    reap_child,
    recorded_process,
    stop_recorded,
    track_child,
    wait_for,
)

#: how long start() waits for ``ip netns exec`` to enter the namespace and exec the command
EXEC_TIMEOUT = 5.0
_STOPPED = {psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP}


@dataclass(frozen=True)
class ProcInfo:
    name: str
    host: str
    netns: str
    pid: int
    argv: list[str]
    log: str
    started: float
    create_time: float


class Procs:
    """Start and signal processes of one lab: ``Procs(lab)``."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    # -- bookkeeping -----------------------------------------------------------------------------

    def list(self) -> dict[str, ProcInfo]:
        return {name: ProcInfo(**info) for name, info in self.lab.read_state()["procs"].items()}

    def info(self, name: str) -> ProcInfo:
        procs = self.lab.read_state()["procs"]
        if name not in procs:
            raise LabError(f"no lab process named {name!r} (known: {', '.join(sorted(procs)) or 'none'})")
        return ProcInfo(**procs[name])

    def pid(self, name: str) -> int:
        return self.info(name).pid

    def _process(self, info: ProcInfo) -> psutil.Process | None:
        """The live psutil process for ``info``, or None if it exited or its PID was reused."""
        return recorded_process(asdict(info))

    # -- start -----------------------------------------------------------------------------------

    def start(
        self,
        name: str,
        host: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log: str | os.PathLike[str] | None = None,
        replace: bool = False,
    ) -> ProcInfo:
        """Start ``argv`` in the namespace of ``host`` under ``name``; return its record.

        ``env`` is added to this process's environment.  A live process of the same name is an
        error unless ``replace=True`` (then it is terminated first).
        """
        self.lab.require_root()
        if not argv:
            raise LabError("cannot start a lab process with an empty argv")
        netns = self.lab.ns(host)
        known = self.lab.read_state()["procs"]
        if name in known and self.alive(name):
            if not replace:
                raise LabError(f"lab process {name!r} is already running (pid {known[name]['pid']})")
            self.terminate(name)
        log_path = Path(log) if log else self.lab.dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        full = ["ip", "netns", "exec", netns, *[str(a) for a in argv]]
        child_env = {**os.environ, **(env or {})}
        with open(log_path, "ab") as logf:
            logf.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} start {shlex.join(full)}\n".encode())
            logf.flush()
            try:
                child = subprocess.Popen(
                    full,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    env=child_env,
                    cwd=cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise LabError(f"cannot start {shlex.join(full)}: {exc}") from exc
        track_child(child)
        try:
            create_time = psutil.Process(child.pid).create_time()
        except psutil.NoSuchProcess:
            create_time = time.time()
        if not wait_for(lambda: self._exec_done(child, full), EXEC_TIMEOUT, interval=0.005, what="exec"):
            logger.warning(
                "lab {}: {} (pid {}) still not exec'ed in {} after {} s",
                self.lab.prefix,
                name,
                child.pid,
                netns,
                EXEC_TIMEOUT,
            )
        info = ProcInfo(
            name=name,
            host=host,
            netns=netns,
            pid=child.pid,
            argv=[str(a) for a in argv],
            log=str(log_path),
            started=time.time(),
            create_time=create_time,
        )
        with self.lab.state() as st:
            st["procs"][name] = asdict(info)
        logger.info(
            "lab {}: started {} pid {} in {} (log {})", self.lab.prefix, name, child.pid, netns, log_path
        )
        return info

    @staticmethod
    def _exec_done(child: subprocess.Popen[bytes], full: Sequence[str]) -> bool:
        """True once ``ip netns exec`` has entered the namespace and exec'ed the command (or died)."""
        if child.poll() is not None:
            return True
        try:
            return psutil.Process(child.pid).cmdline() != [*full]
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return True

    # -- signals ---------------------------------------------------------------------------------

    def alive(self, name: str) -> bool:
        """True while the process runs (a SIGSTOPped process is alive; a zombie is not)."""
        return self._process(self.info(name)) is not None

    def status(self, name: str) -> str:
        """psutil status of the process (``running``, ``sleeping``, ``stopped``...) or ``dead``."""
        proc = self._process(self.info(name))
        if proc is None:
            return "dead"
        try:
            return str(proc.status())
        except psutil.NoSuchProcess:
            return "dead"

    def signal(self, name: str, sig: int) -> bool:
        """Send ``sig``; False (and nothing sent) if the process is already gone."""
        self.lab.require_root()
        info = self.info(name)
        proc = self._process(info)
        if proc is None:
            logger.debug("lab {}: {} (pid {}) already gone, not signalled", self.lab.prefix, name, info.pid)
            return False
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            return False
        logger.info("lab {}: {} -> {} (pid {})", self.lab.prefix, signal.Signals(sig).name, name, info.pid)
        return True

    def kill9(self, name: str, *, timeout: float = 5.0) -> bool:
        """SIGKILL, then wait (up to ``timeout``) until the process is gone; True if it is."""
        self.signal(name, signal.SIGKILL)
        return self.wait_exit(name, timeout)

    def sigstop(self, name: str, *, timeout: float = 2.0) -> bool:
        """SIGSTOP, then wait (up to ``timeout``) until the kernel reports the process stopped."""
        if not self.signal(name, signal.SIGSTOP):
            return False
        return wait_for(
            lambda: self.status(name) in _STOPPED, timeout, interval=0.005, what=f"{name} stopped"
        )

    def sigcont(self, name: str, *, timeout: float = 2.0) -> bool:
        """SIGCONT, then wait (up to ``timeout``) until the process is no longer stopped."""
        if not self.signal(name, signal.SIGCONT):
            return False
        return wait_for(
            lambda: self.status(name) not in _STOPPED, timeout, interval=0.005, what=f"{name} continued"
        )

    def wait_exit(self, name: str, timeout: float) -> bool:
        """Poll until the process is gone; True if it exited within ``timeout``."""
        info = self.info(name)
        return wait_for(lambda: self._process(info) is None, timeout, what=f"{name} to exit")

    def exit_code(self, name: str) -> int | None:
        """Exit code (negative: the signal that killed it) if this Python process started it and it
        has exited; None otherwise."""
        info = self.info(name)
        self._process(info)  # reaps it if it has exited
        return reap_child(info.pid)

    def terminate(self, name: str, timeout: float = 5.0) -> bool:
        """SIGTERM (plus SIGCONT, so a stopped process can act on it), wait until ``timeout``, then
        SIGKILL.  Returns True if it exited on SIGTERM, False if it had to be killed (or was gone)."""
        self.lab.require_root()
        info = self.info(name)
        proc = self._process(info)
        if proc is None:
            return False
        try:
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGCONT)
        except psutil.NoSuchProcess:
            return True
        if self.wait_exit(name, timeout):
            logger.info("lab {}: {} (pid {}) exited on SIGTERM", self.lab.prefix, name, info.pid)
            return True
        logger.warning(
            "lab {}: {} (pid {}) ignored SIGTERM for {} s, SIGKILL", self.lab.prefix, name, info.pid, timeout
        )
        self.kill9(name)
        return False

    def stop_all(self, timeout: float = 2.0) -> None:
        """Terminate every recorded process (SIGTERM to all at once, one shared deadline, SIGKILL)."""
        stop_recorded(self.lab.read_state()["procs"], timeout, prefix=self.lab.prefix)
