#!/bin/sh
# switchover hook template: copy it into <hooks dir>/commence.d/ and/or discontinue.d/ under a name
# that sorts where it should run (hooks run one after the other in name order, e.g. 10-..., 50-...),
# make it executable (chmod +x), and put your commands in the two functions below.
#
# When:   commence.d/*    this node became the active server (Primary)
#         discontinue.d/* this node stops serving (controlled switch, a newer primary, a stop, an
#                         escalation; and from `switchover hooks run discontinue`, e.g. systemd's
#                         ExecStopPost after the node died). A Discontinue is not guaranteed: a
#                         machine that loses power runs nothing, so fence what must be fenced.
# Environment (besides the node's own):
#   SWITCHOVER_EVENT       commence | discontinue
#   SWITCHOVER_ROLE        the node's new role (Primary, Inactive, Stopping, Error, ...)
#   SWITCHOVER_REASON      why (e.g. "Manual Switchover", "TS Ping Failure"); may be empty
#   SWITCHOVER_GENERATION  the fencing generation after the change
#   SWITCHOVER_NODE        this server's name;  SWITCHOVER_PEER: the other server's name
# Time:   each hook is killed (process group, SIGTERM then SIGKILL) after [hooks] timeout seconds
#         (default 30); the next hook still runs.
# Result: exit 0 for success; anything else is logged at ERROR with the hook's output (first 4 KiB).
# Keep hooks idempotent: a Commence may follow a Commence (e.g. after a restart) and a Discontinue may
# run on a node that holds nothing.
set -eu

commence() {
    # e.g. mount the data volume, start the service, add the floating address
    echo "commence on $SWITCHOVER_NODE (generation $SWITCHOVER_GENERATION): ${SWITCHOVER_REASON:-no reason given}"
}

discontinue() {
    # e.g. remove the floating address, stop the service, unmount the data volume
    echo "discontinue on $SWITCHOVER_NODE, now ${SWITCHOVER_ROLE}: ${SWITCHOVER_REASON:-no reason given}"
}

case "${SWITCHOVER_EVENT:-}" in
    commence) commence ;;
    discontinue) discontinue ;;
    *) echo "unexpected SWITCHOVER_EVENT '${SWITCHOVER_EVENT:-}'" >&2; exit 2 ;;
esac
