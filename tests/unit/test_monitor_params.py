"""One parameter path: the monitors' parameter objects come from the catalog's resolved values, and a
dynamic change reaches them (issue 9, defect 1)."""

from __future__ import annotations

from typing import Any

from actors.monitoring.monitor_params import (
    MODULE_MONITOR_PARAMS,
    PRIMARY_MONITOR_PARAMS,
    AppliedParams,
    PrimaryMonitorParams,
    module_monitor_params,
    primary_monitor_params,
    resolved_values,
)
from actors.monitoring.ping import Connection
from replication.params import ParamChange, ServerParams, param_key
from replication.store import Store


def pm(params: ServerParams, server: str = "A") -> PrimaryMonitorParams:
    return primary_monitor_params(resolved_values(params, PRIMARY_MONITOR_PARAMS), this_server=server)  # type: ignore[arg-type]


def test_the_defaults_are_the_catalogs_resolved_values(params: ServerParams) -> None:
    p = pm(params)
    assert p == PrimaryMonitorParams()
    assert (p.ping_delay, p.timeout, p.retry_count, p.retry_ping_delay) == (1.0, 5.0, 2, 0.0)
    assert p.disable_gateway_ping and p.extra_unreachable_ping_sets == 0
    assert p.module.module_name == "TsServer" and p.module.ping_timeout == 10.0


def test_ip_monitoring_with_ip_timeout_unset_inherits_the_ts_timeout(params: ServerParams) -> None:
    # Reproduced in issue 9: the catalog said 20 s, the monitor used 10 s.
    params.set("Switchover Monitoring", "IP")
    params.set("Switchover TS Timeout", "20")
    m = module_monitor_params(resolved_values(params, MODULE_MONITOR_PARAMS))
    assert (m.module_name, m.ping_timeout, m.retry_delay) == ("IP", 20.0, 1.0)
    assert m.ping_timeout == params.seconds("Switchover IP Timeout")
    assert pm(params).timeout == 10.0  # half the module timeout


def test_unreachable_primary_ping_count_unset_sends_no_extra_set_and_zero_sends_three(
    params: ServerParams,
) -> None:
    assert pm(params).extra_unreachable_ping_sets == 0
    params.set("Switchover Unreachable Primary Ping Count", "0")
    assert pm(params).extra_unreachable_ping_sets == 3
    params.set("Switchover Unreachable Primary Ping Count", "-1")
    assert pm(params).extra_unreachable_ping_sets is None
    params.set("Switchover Unreachable Primary Ping Count", "7")
    assert pm(params).extra_unreachable_ping_sets == 7


def test_values_are_taken_as_the_catalog_clamps_them(store: Store, params: ServerParams) -> None:
    store.set(param_key("Switchover TS Timeout"), {"value": ["500"]})
    store.set(param_key("Switchover Primary Monitor Retry Count"), {"value": ["80"]})
    store.set(param_key("Switchover Ping on Aux Connection"), {"value": ["Yes"]})
    store.set(param_key("Switchover NetTest B"), {"value": ["10.2.0.1; 10.2.0.2"]})
    p = pm(params, "B")
    assert p.module.ping_timeout == 60.0 and p.retry_count == 50
    assert p.module.first_connection is Connection.AUX
    assert p.nettest_addresses == ("10.2.0.1", "10.2.0.2")


def changes(applied: AppliedParams) -> list[ParamChange]:
    seen: list[ParamChange] = []

    def on_change(change: ParamChange) -> None:
        seen.append(change)
        applied.apply(change)

    applied.follow(on_change)
    return seen


def test_a_dynamic_change_is_applied_and_a_static_one_waits_for_a_restart(params: ServerParams) -> None:
    applied = AppliedParams("PrimaryMonitor", params, PRIMARY_MONITOR_PARAMS)
    seen = changes(applied)
    params.set("Switchover Max TS Failures", "4")
    params.set("Switchover Primary Monitor Retry Count", "5")
    assert applied.values["Switchover Max TS Failures"] == 4
    assert applied.values["Switchover Primary Monitor Retry Count"] == 2
    assert applied.pending == {"Switchover Primary Monitor Retry Count": 5}
    assert [(c.name, c.dynamic) for c in seen] == [
        ("Switchover Max TS Failures", True),
        ("Switchover Primary Monitor Retry Count", False),
    ]
    report: dict[str, Any] = applied.report()
    assert report["pending_restart"] == {"Switchover Primary Monitor Retry Count": 5}
    applied.close()


def test_values_derived_from_a_dynamic_parameter_follow_it_live(params: ServerParams) -> None:
    # Primary Monitor Timeout 0 = half the module timeout; IP Timeout unset = TS Timeout: both follow a
    # live TS Timeout change, as the catalog's resolved values do.
    params.set("Switchover Monitoring", "IP")
    applied = AppliedParams("PrimaryMonitor", params, PRIMARY_MONITOR_PARAMS)
    changes(applied)
    params.set("Switchover TS Timeout", "30")
    p = primary_monitor_params(applied.values, this_server="A")
    assert p.module.ping_timeout == 30.0 and p.timeout == 15.0
    assert applied.pending == {}
    # setting the static Primary Monitor Timeout itself waits for a restart
    params.set("Switchover Primary Monitor Timeout", "4")
    assert applied.values["Switchover Primary Monitor Timeout"] == 15.0
    assert applied.pending == {"Switchover Primary Monitor Timeout": 4.0}
    applied.close()


def test_the_monitors_follow_exactly_the_catalogs_dynamic_parameters(params: ServerParams) -> None:
    from replication.params import CATALOG

    applied = AppliedParams("ModuleMonitor", params, MODULE_MONITOR_PARAMS)
    changes(applied)
    new = {"Switchover TS Timeout": "12", "Switchover TS Failure Retry Delay": "2",
           "Switchover Max TS Failures": "3", "Switchover Max Restarts": "4",
           "Switchover IP Retry Delay": "3"}
    for name, value in new.items():
        params.set(name, value)
    live = {n for n in new if n not in applied.pending}
    assert live == {n for n in new if CATALOG[n].dynamic}
    applied.close()
