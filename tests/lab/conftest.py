"""Fixtures for the network-namespace lab tests: real namespaces, real ICMP, real TCP (needs root).

One lab (prefix ``solt<pid>``, dedicated link on) is shared by the session; tests that need a lab of
their own use ``solt<pid>x<n>``.  Labs left behind by a crashed earlier run (their pid is dead) are
removed at the start, and every lab made here is removed at the end.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from deploy.lab.faults import require_nft
from deploy.lab.procs import Procs
from deploy.lab.topology import ROOT_ERROR, Lab, LabConfig, LabError, _list_netns, cleanup_prefix, wait_for

PREFIX = f"solt{os.getpid()}"
_LEFTOVER = re.compile(r"^(solt(\d+)(?:x\d+)?)-")

#: a tiny TCP server: listens on every port given, accepts and closes connections forever
LISTENER = """
import selectors, socket, sys
sel = selectors.DefaultSelector()
for port in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    s.listen(64)
    sel.register(s, selectors.EVENT_READ)
print("listening on", sys.argv[1:], flush=True)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept()
        conn.close()
"""
LISTEN_PORTS = (3633, 3634, 3635)


def _check_prerequisites() -> None:
    if os.geteuid() != 0:
        pytest.fail(f"{ROOT_ERROR} (the lab tests build real network namespaces)")
    try:
        require_nft()
    except LabError as exc:
        pytest.fail(str(exc))


def _cleanup_leftovers() -> None:
    """Remove labs of earlier test runs whose process is gone."""
    seen: set[str] = set()
    for ns in _list_netns():
        m = _LEFTOVER.match(ns)
        if m and m.group(1) not in seen and not psutil.pid_exists(int(m.group(2))):
            seen.add(m.group(1))
            cleanup_prefix(m.group(1))


@pytest.fixture(scope="session")
def lab_prereqs() -> None:
    _check_prerequisites()
    _cleanup_leftovers()


@pytest.fixture(scope="session")
def lab(lab_prereqs: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The session's lab, up, with TCP listeners on 3633-3635 in A and in B."""
    labdir = tmp_path_factory.mktemp("lab")
    the_lab = Lab(LabConfig(prefix=PREFIX, labdir=str(labdir), dedicated_link=True))
    try:
        the_lab.up()
        for host in ("a", "b"):
            Procs(the_lab).start(
                f"listen-{host}", host, [sys.executable, "-c", LISTENER, *map(str, LISTEN_PORTS)]
            )
        for host, peer in (("a", "b"), ("b", "a")):
            probe = functools.partial(the_lab.tcp_connect, host, peer, 3634)
            assert wait_for(probe, 10.0), f"listener in {peer} not reachable from {host}"
        yield the_lab
    finally:
        the_lab.down(grace=0.5)
        cleanup_prefix(PREFIX)


class LabFactory:
    """Makes extra, short-lived labs (``solt<pid>x<n>``) and removes them at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: list[Lab] = []

    def make(self, **kw: object) -> Lab:
        prefix = f"{PREFIX}x{len(self.made)}"
        new = Lab(LabConfig(prefix=prefix, labdir=str(self.root / prefix), **kw))  # type: ignore[arg-type]
        self.made.append(new)
        return new

    def close(self) -> None:
        for made in self.made:
            cleanup_prefix(made.prefix)


@pytest.fixture
def lab_factory(lab_prereqs: None, tmp_path: Path) -> Iterator[LabFactory]:
    factory = LabFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.close()
