"""``ctl status --watch`` against a real pair: the live view in a pseudo-terminal shows the role change
after ``ctl switch``; without a terminal it repeats plain text; ``--json`` streams one object a line."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.pair import LocalPair, child_env
from tests.conftest import wait_until
from tests.integration.test_roles import QUIET_PARAMETERS, SETTLE, TIMING, start_both, stop_pairs

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[LocalPair]:
    local = LocalPair(tmp_path / "pair", parameters=dict(QUIET_PARAMETERS), extra={"timing": dict(TIMING)})
    try:
        yield local
    finally:
        stop_pairs([local])


def watch_argv(pair: LocalPair, *extra: str) -> list[str]:
    config = str(pair.a.config)
    return [sys.executable, "-m", "cli.main", "ctl", "--config", config, "status", "--watch", *extra]


class PtyReader:
    """Everything the child wrote to its terminal so far (escape sequences removed)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.raw = fd, b""

    def text(self) -> str:
        while select.select([self.fd], [], [], 0)[0]:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            self.raw += chunk
        return ANSI.sub("", self.raw.decode(errors="replace"))


def test_watch_in_a_terminal_shows_the_role_change_after_a_switch(pair: LocalPair) -> None:
    primary, backup = start_both(pair)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        watch_argv(pair, "--interval", "0.2"),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**child_env(), "TERM": "xterm-256color"},
        start_new_session=True,
    )
    os.close(slave)
    screen = PtyReader(master)
    try:
        wait_until(lambda: f"Active:  {primary} (connected)" in screen.text(), 10, message="the first view")
        assert "\x1b[" in screen.raw.decode(errors="replace")  # drawn by rich's live display, not plain lines
        assert (
            "switchover control panel" in screen.text() and f"Backup:  {backup} (connected)" in screen.text()
        )
        done = pair.ctl("switch", "--yes")
        assert done.returncode == 0, done.stderr
        mark = len(screen.text())
        wait_until(
            lambda: f"Active:  {backup} (connected)" in screen.text()[mark:],
            SETTLE,
            message=f"the live view to show {backup} active",
        )
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(5) == 0

    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)

    # the same switch drawn by the lab's timeline drawer
    png = pair.base / "history.png"
    drawn = pair.ctl("history", "--png", str(png))
    assert drawn.returncode == 0, drawn.stderr
    assert f"{primary}" in drawn.stdout and "drawn into" in drawn.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1400 and height > 100


def test_watch_without_a_terminal_repeats_plain_text_and_json_streams_lines(pair: LocalPair) -> None:
    primary, _ = start_both(pair)
    started = time.monotonic()
    plain = subprocess.run(
        watch_argv(pair, "--interval", "0.1", "--count", "3"),
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=30,
    )
    assert plain.returncode == 0, plain.stderr
    assert "\x1b[" not in plain.stdout
    assert plain.stdout.count("switchover control panel") == 3
    assert plain.stdout.count(f"Active:  {primary} (connected)") == 3
    assert time.monotonic() - started >= 0.2  # two pauses between three refreshes

    streamed = subprocess.run(
        watch_argv(pair, "--interval", "0.1", "--count", "2", "--json"),
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=30,
    )
    assert streamed.returncode == 0, streamed.stderr
    objects = [json.loads(line) for line in streamed.stdout.splitlines()]
    assert len(objects) == 2
    assert all(o["active"] == primary and o["pair_state"] == "Active" for o in objects)
    assert objects[0]["time"] < objects[1]["time"]
