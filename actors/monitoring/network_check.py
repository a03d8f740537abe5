"""A one-shot check of the backup's own network, exactly as the primary monitor's diagnosis does it
(:func:`actors.monitoring.local_network.check_local_network`, same steps, same verdict), run
synchronously with ICMP: the supervisor re-checks the network with it when the reconnect period
expires while the network was down."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from actors.monitoring.local_network import LocalChecks, check_local_network, local_network_ok, run_sync
from actors.monitoring.monitor_params import PrimaryMonitorParams


def backup_network_ok(
    params: PrimaryMonitorParams, ping: Callable[[str, float], bool], gateways: Callable[[], Sequence[str]]
) -> bool:
    checks = LocalChecks(not params.disable_gateway_ping, gateways, params.nettest_addresses, params.nettest_timeout)
    return local_network_ok(run_sync(check_local_network(checks), ping))
