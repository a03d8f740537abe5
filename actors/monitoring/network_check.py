"""A one-shot check of the backup's own network, as the primary monitor does it: the gateways
when gateway ping is enabled, else the NetTest address; no check configured means ok."""

from __future__ import annotations

from actors.monitoring.primary_monitor_logic import PrimaryMonitorParams
from transport.icmp import IcmpPinger, gateways


def backup_network_ok(params: PrimaryMonitorParams, pinger: IcmpPinger) -> bool:
    if not params.disable_gateway_ping:
        addresses = gateways()
        return not addresses or any(pinger.ping_sync(a, params.nettest_timeout) for a in addresses)
    if params.nettest_addresses:
        return any(pinger.ping_sync(a, params.nettest_timeout) for a in params.nettest_addresses)
    return True
