#!/bin/sh
# switchover hook: start a systemd unit on Commence, stop it on Discontinue.
#
# Install it as both hooks (same file or a symlink), with the unit to manage in its settings:
#   install -m 755 systemd_unit.sh /var/lib/switchover/hooks/commence.d/50-service
#   ln -s ../commence.d/50-service /var/lib/switchover/hooks/discontinue.d/50-service
#   echo 'SWITCHOVER_UNIT=nginx.service' > /etc/switchover/systemd-unit.conf
#
# Settings (environment, or KEY=VALUE lines in $SWITCHOVER_UNIT_CONF,
# default /etc/switchover/systemd-unit.conf; the environment wins):
#   SWITCHOVER_UNIT   the unit(s) to start/stop, space separated (required)
#
# The event comes from SWITCHOVER_EVENT (set by the node) or the first argument.
# Commence: `systemctl start UNIT` (waits until the unit is started; bounded by the node's hook
# timeout, [hooks] timeout). Discontinue: `systemctl stop UNIT`.
# Exit codes: 0 done, 2 bad settings, otherwise systemctl's status.
set -u

event=${1:-${SWITCHOVER_EVENT:-}}
units=${SWITCHOVER_UNIT:-}
conf=${SWITCHOVER_UNIT_CONF:-/etc/switchover/systemd-unit.conf}
if [ -z "$units" ] && [ -r "$conf" ]; then
    units=$(sed -n 's/^[[:space:]]*\(export[[:space:]]\{1,\}\)\{0,1\}SWITCHOVER_UNIT=//p' "$conf" | tail -n 1 | tr -d "\"'")
fi
if [ -z "$units" ]; then
    echo "systemd-unit: SWITCHOVER_UNIT is not set (expected a unit name, e.g. nginx.service; or set it in $conf)" >&2
    exit 2
fi
case "$event" in
    commence) action=start ;;
    discontinue) action=stop ;;
    *)
        echo "systemd-unit: event '$event': expected commence or discontinue (SWITCHOVER_EVENT or the first argument)" >&2
        exit 2
        ;;
esac
# shellcheck disable=SC2086 # several units, space separated
systemctl "$action" $units
rc=$?
if [ "$rc" -eq 0 ]; then
    echo "systemd-unit: $action $units: done"
else
    echo "systemd-unit: systemctl $action $units failed with status $rc" >&2
fi
exit "$rc"
