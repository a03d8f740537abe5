"""A monitored module: registers with its node's Notifier and answers Diagnostic Pings.

``run_module`` is the loop of both the reference module (``switchover module run``) and the
sidecar that answers for an existing service (``switchover module watch``): the sidecar
passes a health check, and the module answers a ping only while the check passes, so a dead
or unhealthy service looks exactly like a dead module to the backup.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
import zmq
from loguru import logger

from transport.codec import REPLY, REQUEST, DecodeError, Envelope, decode, encode
from transport.messages import CommandReply, ErrorReply, ModulePing, ModulePingReply, RegisterModule
from transport.security import Security

HealthCheck = Callable[[], tuple[bool, int, str]]  # (healthy, pid to report, detail)


def own_process() -> tuple[bool, int, str]:
    return True, os.getpid(), "reference module"


@dataclass
class ProcessHealth:
    """Healthy while the watched process lives (psutil) and the health command passes.

    The command runs at most every ``interval`` seconds, off the ping path, with a timeout.
    """

    pid: int | None = None
    pidfile: str | None = None
    health_cmd: str | None = None
    interval: float = 2.0
    timeout: float = 5.0

    def __post_init__(self) -> None:
        self._cmd_ok = True
        self._cmd_detail = "no health command"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        if self.health_cmd:
            self._cmd_ok, self._cmd_detail = self._run_cmd()
            threading.Thread(target=self._loop, name="health-cmd", daemon=True).start()

    def _target_pid(self) -> int | None:
        if self.pid is not None:
            return self.pid
        if self.pidfile:
            try:
                return int(open(self.pidfile).read().strip())
            except (OSError, ValueError):
                return None
        return os.getpid()

    def _run_cmd(self) -> tuple[bool, str]:
        assert self.health_cmd is not None
        try:
            done = subprocess.run(self.health_cmd, shell=True, capture_output=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            return False, f"health command timed out after {self.timeout:g} s"
        return done.returncode == 0, f"health command exited {done.returncode}"

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            ok, detail = self._run_cmd()
            with self._lock:
                if ok != self._cmd_ok:
                    logger.warning("health command now {}: {}", "passing" if ok else "FAILING", detail)
                self._cmd_ok, self._cmd_detail = ok, detail

    def stop(self) -> None:
        self._stop.set()

    def __call__(self) -> tuple[bool, int, str]:
        pid = self._target_pid()
        if pid is None:
            return False, 0, f"cannot read a PID from {self.pidfile}"
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False, pid, f"process {pid} is a zombie"
        except psutil.Error:
            return False, pid, f"process {pid} is not running"
        with self._lock:
            return self._cmd_ok, pid, self._cmd_detail


def run_module(
    notifier: str,
    name: str,
    health: HealthCheck = own_process,
    stop: threading.Event | None = None,
    renew: float = 1.0,
    ready: Callable[[], None] | None = None,
    security: Security | None = None,
) -> None:
    """Register ``name`` at ``notifier`` (tcp://host:port) and answer pings until ``stop`` is set.

    ``security`` is the node's (CURVE with this module's key, or plain text when the node is)."""
    stop = stop or threading.Event()
    ctx: zmq.Context[Any] = zmq.Context.instance()
    sock: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
    sock.linger = 0
    (security or Security.plain()).apply(sock, server=False)
    sock.connect(notifier)
    log = logger.bind(actor=f"module {name}")
    registered = False
    next_renew = 0.0
    try:
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_renew:
                healthy, pid, _ = health()
                frames = encode(Envelope(RegisterModule(name, pid), name, 0, None, REQUEST, 0))
                try:
                    sock.send_multipart(frames, flags=zmq.NOBLOCK)
                except zmq.Again:
                    pass
                next_renew = now + renew
            if not sock.poll(100):
                continue
            try:
                env = decode(sock.recv_multipart())
            except DecodeError as exc:
                log.warning("malformed frame from the notifier: {}", exc)
                continue
            if env.kind == REPLY and isinstance(env.msg, ErrorReply):
                log.error("the notifier refused to register {}: {}", name, env.msg.error)
                continue
            if env.kind == REPLY and isinstance(env.msg, CommandReply) and not registered:
                registered = True
                log.info("registered with the notifier at {}", notifier)
                if ready is not None:
                    ready()
            if env.kind == REQUEST and isinstance(env.msg, ModulePing):
                healthy, pid, detail = health()
                if not healthy:
                    log.warning("not answering ping: {}", detail)
                    continue
                reply = ModulePingReply(name, "ok", pid)
                sock.send_multipart(encode(Envelope(reply, name, 0, None, REPLY, env.corr)))
    finally:
        sock.close()
