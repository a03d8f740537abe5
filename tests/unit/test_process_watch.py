"""ProcessWatch: a process's exit is reported when it happens, by a pidfd (real processes, real signals)."""

from __future__ import annotations

import queue
import subprocess
import sys

from actors.monitoring.process_watch import ProcessWatch, exit_latency, pidfd_supported


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_the_exit_of_a_watched_process_is_reported_once_and_others_keep_being_watched() -> None:
    exited: queue.Queue[int] = queue.Queue()
    watch = ProcessWatch(exited.put)
    a, b = sleeper(), sleeper()
    try:
        watch.watch(a.pid)
        watch.watch(b.pid)
        assert watch.watched == 2
        a.kill()
        assert exited.get(timeout=5) == a.pid
        a.wait()
        assert watch.watched == 1 and exited.empty()
        b.terminate()
        assert exited.get(timeout=5) == b.pid
    finally:
        for p in (a, b):
            p.kill()
            p.wait()
        watch.close()


def test_a_process_already_gone_is_reported_at_once_and_an_unwatched_one_not_at_all() -> None:
    exited: queue.Queue[int] = queue.Queue()
    watch = ProcessWatch(exited.put)
    gone, kept = sleeper(), sleeper()
    gone.kill()
    gone.wait()
    try:
        watch.watch(gone.pid)
        assert exited.get(timeout=5) == gone.pid
        watch.watch(kept.pid)
        watch.unwatch(kept.pid)
        kept.kill()
        kept.wait()
        later = sleeper()  # something that does exit later: its report comes, the unwatched one's never did
        watch.watch(later.pid)
        assert watch.watched == 1 and exited.empty()
        later.kill()
        later.wait()
        assert exited.get(timeout=5) == later.pid and exited.empty()
    finally:
        watch.close()


def test_pidfds_make_the_exit_latency_zero_here() -> None:
    # this project runs on Linux >= 5.3: the event path, not the fallback polling, is what is measured
    assert pidfd_supported() and exit_latency() == 0.0
