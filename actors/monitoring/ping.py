"""The ping vocabulary the Module Monitor and the Primary Monitor share: the two notifier connections,
the answer to a ping sent through one, and the injected interfaces the monitors' logic pings through
(the actors implement them over the NotifierLink actors and ICMP; tests use fakes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

ICMP_GUARD_GRACE = 1.0
"""A pinger that has not answered ``timeout + ICMP_GUARD_GRACE`` seconds after the echo counts as a miss."""




class Connection(StrEnum):
    """The two redundant notifier connections from the backup to the primary."""

    MAIN = "main"
    AUX = "aux"

    @property
    def other(self) -> Connection:
        return Connection.AUX if self is Connection.MAIN else Connection.MAIN


class PingResultKind(StrEnum):
    OK = "ok"
    TIMEOUT = "timeout"
    REJECTED = "rejected"
    CONNECTION_LOST = "connection_lost"
    CANCELLED = "cancelled"
    NOT_REGISTERED = "not_registered"  # no module of that name has ever registered on the active


@dataclass(frozen=True)
class PingResult:
    """The answer to a ping sent through a notifier connection.

    ``pid`` is set for module pings answered by the module (``None``/``0`` means an empty reply).
    ``detail`` is free text for logs (e.g. the Notifier's rejection reason).
    """

    kind: PingResultKind
    pid: int | None = None
    detail: str = ""

    @classmethod
    def ok(cls, pid: int | None = None) -> PingResult:
        return cls(PingResultKind.OK, pid)

    @classmethod
    def timeout(cls, detail: str = "") -> PingResult:
        return cls(PingResultKind.TIMEOUT, detail=detail)

    @classmethod
    def rejected(cls, detail: str = "module not registered") -> PingResult:
        return cls(PingResultKind.REJECTED, detail=detail)

    @classmethod
    def connection_lost(cls, detail: str = "") -> PingResult:
        return cls(PingResultKind.CONNECTION_LOST, detail=detail)

    @classmethod
    def not_registered(cls, detail: str = "") -> PingResult:
        return cls(PingResultKind.NOT_REGISTERED, detail=detail)

    @classmethod
    def cancelled(cls) -> PingResult:
        return cls(PingResultKind.CANCELLED)

    @property
    def has_pid(self) -> bool:
        return self.kind is PingResultKind.OK and self.pid is not None and self.pid > 0


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class ModulePingLink(Protocol):
    """Sends a Diagnostic Ping to a module registered with the primary's Notifier.

    ``on_result`` is called exactly once with the answer (it may be called synchronously, from inside
    ``ping_module``). The logic arms its own timer at ``timeout`` as well, so a link that never answers
    is still a timeout; a result that arrives after the logic gave up, or after ``cancel()``, is
    ignored.
    """

    def ping_module(
        self,
        connection: Connection,
        module_name: str,
        timeout: float,
        on_result: Callable[[PingResult], None],
    ) -> Cancellable | None: ...


class NotifierLink(Protocol):
    """The two notifier connections to the primary, as the Primary Monitor needs them."""

    def is_connected(self, connection: Connection) -> bool:
        """The connection's current "connected" state."""
        ...

    def ping_notifier(
        self, connection: Connection, timeout: float, on_result: Callable[[PingResult], None]
    ) -> Cancellable | None:
        """Ping the Notifier itself; ``on_result`` once (OK, timeout, rejected, connection lost,
        cancelled), possibly synchronously. The logic also enforces ``timeout`` with its own timer."""
        ...


class Pinger(Protocol):
    """ICMP echo. ``on_result(True)`` when ``address`` answered within ``timeout`` seconds.

    Asynchronous on purpose: the real pinger answers from a worker thread (the actor marshals the
    callback), a fake one answers through the fake clock. A pinger that never calls back is treated
    as "no answer" after ``timeout + ICMP_GUARD_GRACE``.
    """

    def ping(self, address: str, timeout: float, on_result: Callable[[bool], None]) -> None: ...
