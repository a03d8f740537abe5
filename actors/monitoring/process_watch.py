"""Learn that a process exited the moment it does, without polling: one thread waiting on pidfds.

``os.pidfd_open`` (Linux 5.3) gives a file descriptor that becomes readable when the process exits
(also for a process that is not our child, such as a module registered with the Notifier). One daemon
thread ``poll``s all of them plus a wake-up pipe; it sleeps until something exits or the set changes,
so watching costs nothing while nothing happens.

``on_exit(pid)`` is called on the watcher's thread (an actor wraps it with ``on_own_thread``), once per
:meth:`ProcessWatch.watch`, also at once when the process is already gone. Where pidfds are not
available the watcher falls back to checking the watched PIDs every ``fallback_interval`` seconds.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable

import psutil
from loguru import logger

log = logger.bind(topic="ProcessWatch")
FALLBACK_INTERVAL = 1.0


def pidfd_supported() -> bool:
    try:
        fd = os.pidfd_open(os.getpid())
    except (AttributeError, OSError):
        return False
    os.close(fd)
    return True


def exit_latency() -> float:
    """Worst-case seconds from a watched process's exit to ``on_exit`` on this system."""
    return 0.0 if pidfd_supported() else FALLBACK_INTERVAL


def process_gone(pid: int) -> bool:
    """True when ``pid`` does not run any more (exited, or a zombie waiting for its parent)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


class ProcessWatch:
    def __init__(self, on_exit: Callable[[int], None], *, fallback_interval: float = FALLBACK_INTERVAL) -> None:
        self._on_exit = on_exit
        self._fallback_interval = fallback_interval
        self._pidfd = pidfd_supported()
        self._lock = threading.Lock()
        self._fds: dict[int, int] = {}  # fd -> pid (pidfd mode)
        self._pids: set[int] = set()  # fallback mode
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="process-watch", daemon=True)
        self._thread.start()

    @property
    def event_driven(self) -> bool:
        return self._pidfd

    @property
    def watched(self) -> int:
        with self._lock:
            return len(self._fds) + len(self._pids)

    def watch(self, pid: int) -> None:
        """Call ``on_exit(pid)`` when ``pid`` exits (at once when it is already gone)."""
        if self._pidfd:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                self._on_exit(pid)
                return
            except OSError as exc:
                log.warning("cannot watch pid {} with a pidfd ({}); checking it every {:g} s", pid, exc,
                            self._fallback_interval)
                with self._lock:
                    self._pids.add(pid)
                self._wake()
                return
            with self._lock:
                self._fds[fd] = pid
        else:
            with self._lock:
                self._pids.add(pid)
        self._wake()

    def unwatch(self, pid: int) -> None:
        with self._lock:
            for fd, watched in list(self._fds.items()):
                if watched == pid:
                    del self._fds[fd]
                    os.close(fd)
            self._pids.discard(pid)
        self._wake()

    def close(self) -> None:
        self._stopped = True
        self._wake()
        self._thread.join(timeout=2)
        with self._lock:
            for fd in self._fds:
                os.close(fd)
            self._fds.clear()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # already awake (the pipe is full) or closing

    def _run(self) -> None:
        while not self._stopped:
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            with self._lock:
                fds = dict(self._fds)
                fallback = bool(self._pids)
            for fd in fds:
                poller.register(fd, select.POLLIN)
            timeout_ms = int(self._fallback_interval * 1000) if fallback else None
            ready = poller.poll(timeout_ms)
            gone: list[int] = []
            for fd, _ in ready:
                if fd == self._wake_r:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                with self._lock:
                    pid = self._fds.pop(fd, None)
                    if pid is not None:
                        os.close(fd)
                if pid is not None:
                    gone.append(pid)
            if fallback:
                with self._lock:
                    exited = {pid for pid in self._pids if process_gone(pid)}
                    self._pids -= exited
                gone += sorted(exited)
            for pid in gone:
                if self._stopped:
                    return
                try:
                    self._on_exit(pid)
                except Exception:
                    log.exception("process exit callback for pid {} failed", pid)
