"""The monitors' parameters: one path from the server parameter catalog to the monitor logic.

:class:`replication.params.ServerParams` parses, clamps, inherits and resolves special values (Primary
Monitor Timeout 0 = half the module timeout, Ping Delay 0 = 1 s, Unreachable Primary Ping Count unset =
switch at once, ...). This module only *selects* the resolved values a monitor needs and puts them in
the typed objects its logic takes (:class:`ModuleMonitorParams`, :class:`PrimaryMonitorParams`); it
parses nothing (``Switchover NetTest A``/``B`` may list several hosts; :func:`nettest_addresses` splits
the list).

:class:`AppliedParams` is what a monitor actor holds: the values it uses now. It subscribes to
``ServerParams`` changes; a change that the catalog says applies at once (``ParamChange.dynamic``: the
parameter is dynamic, or it follows a dynamic one it inherits or depends on) is applied, any other is
remembered as pending until the monitor restarts. ``admin monitors`` shows both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from loguru import logger

from actors.monitoring.module_monitor_logic import ModuleMonitorParams, RejectedRetry
from replication.params import ParamChange, ServerParams, jsonable, module_param_names, monitors_ip


@dataclass(frozen=True)
class PrimaryMonitorParams:
    """The Primary Monitor's parameters as the catalog resolved them (seconds as floats); ``module``
    holds the Module Monitor's. Built by :func:`primary_monitor_params`
    from :class:`replication.params.ServerParams`; special values are already resolved there
    (``ping_delay`` 0 = 1 s, ``timeout`` 0 = half the module timeout, ``extra_unreachable_ping_sets``:
    ``None`` = unlimited, 0 = switch at once).
    """

    module: ModuleMonitorParams = field(default_factory=ModuleMonitorParams)
    ping_delay: float = 1.0
    timeout: float = 5.0
    retry_count: int = 2
    retry_ping_delay: float = 0.0
    disable_gateway_ping: bool = True
    nettest_a: str = ""
    nettest_b: str = ""
    this_server: Literal["A", "B"] = "A"
    nettest_timeout: float = 1.0
    extra_unreachable_ping_sets: int | None = 0
    unreachable_primary_ping_delay: float = 10.0
    primary_pings_per_set: int = 3

    def __post_init__(self) -> None:
        if self.this_server not in ("A", "B"):
            raise ValueError(f"this_server must be 'A' or 'B' (got {self.this_server!r})")

    @property
    def nettest_addresses(self) -> tuple[str, ...]:
        return nettest_addresses(self.nettest_a if self.this_server == "A" else self.nettest_b)

    @property
    def module_monitor_max_silence(self) -> float:
        m = self.module
        return m.interval + 2 * m.max_failures * (m.ping_timeout + m.retry_delay) + m.ping_timeout

    def with_module(self, module: ModuleMonitorParams) -> PrimaryMonitorParams:
        return replace(self, module=module)


def nettest_addresses(text: str) -> tuple[str, ...]:
    """``Switchover NetTest A``/``B`` may name several hosts separated by ';', ',' or spaces."""
    return tuple(a for a in re.split(r"[;,\s]+", text.strip()) if a)


MODULE_MONITOR_PARAMS: tuple[str, ...] = (
    "Switchover Monitoring",
    "Switchover TS Timeout",
    "Switchover TS Failure Retry Delay",
    "Switchover IP Timeout",
    "Switchover IP Retry Delay",
    "Switchover Max TS Failures",
    "Switchover Max Restarts",
    "Switchover Max Restarts Period",
    "Switchover Max Sequential Restarts",
    "Switchover Ping on Aux Connection",
)
"""The server parameters the Module Monitor reads."""

PRIMARY_MONITOR_PARAMS: tuple[str, ...] = (
    *MODULE_MONITOR_PARAMS,
    "Switchover Primary Monitor Ping Delay",
    "Switchover Primary Monitor Timeout",
    "Switchover Primary Monitor Retry Count",
    "Switchover Primary Monitor Retry Ping Delay",
    "Switchover Disable Gateway Ping",
    "Switchover NetTest A",
    "Switchover NetTest B",
    "Switchover NetTest Timeout",
    "Switchover Unreachable Primary Ping Count",
    "Switchover Unreachable Primary Ping Delay",
)
"""The server parameters the Primary Monitor (and the network check) reads."""


def module_monitor_params(
    values: Mapping[str, Any], *, rejected_retry: RejectedRetry = RejectedRetry.RETRY_DELAY
) -> ModuleMonitorParams:
    """The Module Monitor's parameters from resolved catalog values keyed by specification name."""
    monitoring = str(values["Switchover Monitoring"]).strip()
    timeout_name, retry_name = module_param_names(monitoring)
    return ModuleMonitorParams(
        module_name="IP" if monitors_ip(monitoring) else monitoring,
        ping_timeout=float(values[timeout_name]),
        retry_delay=float(values[retry_name]),
        max_failures=int(values["Switchover Max TS Failures"]),
        max_restarts=int(values["Switchover Max Restarts"]),
        max_restarts_period=float(values["Switchover Max Restarts Period"]),
        max_sequential_restarts=int(values["Switchover Max Sequential Restarts"]),
        ping_on_aux=bool(values["Switchover Ping on Aux Connection"]),
        rejected_retry=rejected_retry,
    )


def primary_monitor_params(values: Mapping[str, Any], *, this_server: Literal["A", "B"]) -> PrimaryMonitorParams:
    """The Primary Monitor's parameters from resolved catalog values keyed by specification name."""
    return PrimaryMonitorParams(
        module=module_monitor_params(values),
        ping_delay=float(values["Switchover Primary Monitor Ping Delay"]),
        timeout=float(values["Switchover Primary Monitor Timeout"]),
        retry_count=int(values["Switchover Primary Monitor Retry Count"]),
        retry_ping_delay=float(values["Switchover Primary Monitor Retry Ping Delay"]),
        disable_gateway_ping=bool(values["Switchover Disable Gateway Ping"]),
        nettest_a=str(values["Switchover NetTest A"]),
        nettest_b=str(values["Switchover NetTest B"]),
        this_server=this_server,
        nettest_timeout=float(values["Switchover NetTest Timeout"]),
        extra_unreachable_ping_sets=values["Switchover Unreachable Primary Ping Count"],
        unreachable_primary_ping_delay=float(values["Switchover Unreachable Primary Ping Delay"]),
    )


def resolved_values(server_params: ServerParams, names: tuple[str, ...]) -> dict[str, Any]:
    """The catalog's resolved value of each of ``names``."""
    return {name: server_params.resolved(name) for name in names}


class AppliedParams:
    """The parameter values one monitor uses, following the catalog's dynamic changes.

    ``on_change`` is called (from the thread that changed the store; an actor wraps it with
    ``on_own_thread``) after a dynamic change was applied to :attr:`values`.
    """

    def __init__(self, owner: str, server_params: ServerParams, names: tuple[str, ...]) -> None:
        self.owner = owner
        self.names = names
        self.values: dict[str, Any] = resolved_values(server_params, names)
        self.pending: dict[str, Any] = {}
        self._server_params = server_params
        self._unsubscribe: Callable[[], None] | None = None

    def follow(self, on_change: Callable[[ParamChange], None]) -> None:
        """Subscribe to changes of :attr:`names`; ``on_change`` must call :meth:`apply`."""
        self._unsubscribe = self._server_params.subscribe(self.names, on_change)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def apply(self, change: ParamChange) -> bool:
        """Take ``change`` into :attr:`values` when it applies now; True when it did."""
        if change.name not in self.values:
            return False
        if not change.dynamic:
            self.pending[change.name] = change.new
            logger.info(
                "{}: server parameter {} changed to {!r}; it takes effect after the switchover service "
                "restarts, still using {!r}",
                self.owner, change.name, jsonable(change.new), jsonable(self.values[change.name]),
            )
            return False
        self.pending.pop(change.name, None)
        self.values[change.name] = change.new
        logger.info(
            "{}: server parameter {} changed from {!r} to {!r}, applied from the next ping",
            self.owner, change.name, jsonable(change.old), jsonable(change.new),
        )
        return True

    def report(self) -> dict[str, Any]:
        """For ``admin monitors``: the values in use and those waiting for a restart."""
        return {
            "params": {n: jsonable(v) for n, v in self.values.items()},
            "pending_restart": {n: jsonable(v) for n, v in self.pending.items()},
        }
