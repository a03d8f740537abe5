"""The switchover state machine: one transition table, pure.

The Supervisor owns one :class:`SwitchoverStateMachine`. It posts an :class:`Event` together with the
:class:`Facts` it knows at that moment (network status, connection status, reachability of the peer,
the reconnect timeout, ...) and carries out the :class:`Action` values of the returned :class:`Step`
in order. The machine does no I/O, starts no threads and never reads a clock.

``TABLE`` below is the documentation: for a ``(state, event)`` pair the *first* row whose guard holds
decides the new state, the actions, the verdict (logged verbatim) and, for switches, the reason
(the specification's signposts: "Loss of Connection to Notifier", "TS Ping Failure", ...). A pair
without a matching row changes nothing and says ``"ignored <event> in <state>"``.

Besides its state the machine remembers four things, updated after each step (not in the table):

* ``starting_up``: true from construction (and again whenever the node goes back to Init) until
  ``startup-complete``. A switch that falls due meanwhile is scheduled, not performed (spec: a
  switchover does not occur while the backup server is starting).
* ``pending_switch``: the reason of that scheduled switch. ``startup-complete`` consumes it;
  ``reconnected`` drops it unless it was a manual request (the primary is back); leaving the
  watching states (Backup, Upgrade Higher/Lower, Reconnecting) drops it.
* ``home``: the backup role (Backup, Upgrade Higher or Upgrade Lower) that Reconnecting returns to.
  Automatic switching is allowed only when ``home`` is Backup and manual-switch-only is off.
* ``shutting_down``: set once a step asked for SHUT_DOWN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum, StrEnum


class State(StrEnum):
    """Switchover states; values are the display names."""

    INIT = "Init"
    PRIMARY = "Primary"
    BACKUP = "Backup"
    RECONNECTING = "Reconnecting"
    UPGRADE_HIGHER = "Upgrade Higher"  # backup on a newer release than the primary: manual switch only
    UPGRADE_LOWER = "Upgrade Lower"  # backup on an older release than the primary: manual switch only
    INACTIVE = "Inactive"  # stale former active: serves nothing until rejoin or restart
    STEPPED_DOWN = "Stepped Down"  # isolated former active: serves nothing, renegotiates when its network returns
    STOPPING = "Stopping"
    ERROR = "Error"


class Event(StrEnum):
    """What the Supervisor posts to the machine."""

    PEER_IS_PRIMARY = "peer-is-primary"  # start-up: the peer answers port 3633 as Primary
    PEER_IS_BACKUP = "peer-is-backup"  # start-up: the peer answers but is neither primary nor starting
    PEER_UNREACHABLE_AT_START = "peer-unreachable-at-start"  # start-up: nobody answers port 3633
    STARTUP_TIE = "startup-tie"  # start-up: both starting; Facts.won_startup_tie says who won
    MODULE_DOWN = "module-down"  # primary monitor: connections fine, the monitored module is down
    NOTIFIER_DOWN = "notifier-down"  # primary monitor: the remote notifier does not answer
    NETWORK_DOWN = "network-down"  # primary monitor: the backup's own network is down
    PRIMARY_UNREACHABLE = "primary-unreachable"  # primary monitor: the primary's host does not answer
    RECONNECTED = "reconnected"  # notifier connections to the primary are back
    RECONNECT_TIMEOUT = "reconnect-timeout"  # the reconnect timer expired
    NETWORK_RECOVERED = "network-recovered"  # check-network: the backup's own network is fine again
    NETWORK_STILL_DOWN = "network-still-down"  # check-network: the backup's own network is still down
    MANUAL_SWITCH_REQUEST = "manual-switch-request"  # control panel Switch or /Immediate
    DISCONTINUE_RECEIVED = "discontinue-received"  # the peer took over and asks this node to stop serving
    HIGHER_GENERATION_SEEN = "higher-generation-seen"  # a primary that outranks this one exists
    STARTUP_COMPLETE = "startup-complete"  # the node finished starting (initial synchronisation done)
    REJOIN = "rejoin"  # operator's `ctl rejoin`: renegotiate the role without restarting
    ISOLATED = "isolated"  # isolation watch: the active lost the backup and its own network (or carrier)
    NETWORK_RETURNED = "network-returned"  # isolation watch: a stepped-down node hears the peer or its network is fine
    STOP = "stop"  # orderly shutdown
    FATAL_ERROR = "fatal-error"  # supervisor escalation: children keep failing


class Action(StrEnum):
    """What the Supervisor carries out, in the order given by the step."""

    BECOME_PRIMARY = "become-primary"
    """Stop the backup-side actors, bump the generation, start the active-side actors, announce the
    new generation to the peer (best effort: it fences a live former primary) and run the Commence
    hooks with the step's reason."""
    BECOME_BACKUP = "become-backup"
    """Start the backup-side actors against the primary: notifier links, DS and file mirrors,
    interaction shadows."""
    START_MONITORS = "start-monitors"
    """Start the PrimaryMonitor and the ModuleMonitor (never in manual-switch-only or upgrade states)."""
    STOP_MONITORS = "stop-monitors"
    """Stop the PrimaryMonitor and the ModuleMonitor."""
    START_RECONNECT_TIMER = "start-reconnect-timer"
    """(Re)arm the reconnect timer with Switchover Reconnect Timeout; on expiry post reconnect-timeout."""
    CANCEL_RECONNECT_TIMER = "cancel-reconnect-timer"
    """Cancel the reconnect timer, if armed."""
    CHECK_NETWORK = "check-network"
    """Check the backup's own network again (gateway / NetTest, off the Supervisor's thread, the same
    rule as the primary monitor's diagnosis) and post network-recovered or network-still-down."""
    RESYNC = "resync"
    """Re-run the DS compare-and-update (and file/interaction full sync) against the primary."""
    REQUEST_DISCONTINUE = "request-discontinue"
    """Controlled switch: ask the peer's VirtualSwitch to Discontinue and wait for its answer, bounded;
    go on with the next actions whatever the outcome."""
    GO_STALE = "go-stale"
    """Stop the active-side actors (serve nothing) and run the Discontinue hooks with the step's reason."""
    SCHEDULE_SWITCH_AFTER_STARTUP = "schedule-switch-after-startup"
    """Informational: the machine now holds a switch to perform on startup-complete."""
    RENEGOTIATE = "renegotiate"
    """Stop the current role's actors and timers, ask the peer on port 3633 again and post the event
    :func:`negotiate_startup_role` picks (after a short delay when repeating)."""
    HALT = "halt"
    """Stop every role actor and timer; keep the VirtualSwitch and the admin socket answering."""
    SHUT_DOWN = "shut-down"
    """Stop every actor and exit the process."""


class Reason(StrEnum):
    """Why a node became primary or stopped serving (hooks get it as SWITCHOVER_REASON)."""

    LOSS_OF_NOTIFIER = "Loss of Connection to Notifier"
    TS_PING_FAILURE = "TS Ping Failure"
    MANUAL = "Manual Switchover"
    PRIMARY_UNREACHABLE = "Primary Unreachable"
    RECONNECT_TIMEOUT = "Reconnect Timeout"
    FIRST_STARTED = "First Started Becomes Active"
    STARTUP_TIE_WON = "Won Start-up Negotiation"
    DISCONTINUE = "Discontinue Received"
    HIGHER_GENERATION = "Higher Generation Seen"
    SHUTDOWN = "Shutdown"
    FATAL_ERROR = "Supervisor Escalation"
    ISOLATED = "Isolated from the Network and from the Backup"


class Release(StrEnum):
    """The local release compared with the peer's."""

    SAME = "same"
    HIGHER = "higher"
    LOWER = "lower"


class _Deferred(Enum):
    REASON = "the reason of the scheduled switch"


DEFERRED = _Deferred.REASON
"""A row's reason placeholder: use the reason remembered when the switch was scheduled."""


@dataclass(frozen=True)
class Facts:
    """What the Supervisor knows when it posts an event (defaults: all is well)."""

    network_ok: bool = True  # the backup's own network (gateway / NetTest reached)
    main_up: bool = True  # main notifier connection to the primary
    aux_up: bool = True  # auxiliary notifier connection to the primary
    peer_reachable: bool = True  # the peer's VirtualSwitch answers (a controlled switch is possible)
    reconnect_timeout: float = 30.0  # Switchover Reconnect Timeout; 0 = switch at once
    release: Release = Release.SAME  # for peer-is-primary at start-up
    won_startup_tie: bool = False  # for startup-tie


@dataclass(frozen=True)
class Situation:
    """Everything a guard may look at: the event's facts plus what the machine remembers."""

    network_ok: bool = True
    main_up: bool = True
    aux_up: bool = True
    peer_reachable: bool = True
    reconnect_now: bool = False
    release: Release = Release.SAME
    won_startup_tie: bool = False
    manual_switch_only: bool = False
    force_backup: bool = False
    starting_up: bool = False
    home: State = State.BACKUP
    switch_pending: bool = False
    shutting_down: bool = False
    keep_serving_when_isolated: bool = False

    @property
    def auto_switch(self) -> bool:
        """Automatic switching is allowed: not manual-switch-only and not an upgrade state."""
        return not self.manual_switch_only and self.home is State.BACKUP


@dataclass(frozen=True)
class Guard:
    text: str
    test: Callable[[Situation], bool]

    def __call__(self, situation: Situation) -> bool:
        return self.test(situation)

    def __repr__(self) -> str:
        return self.text


ALWAYS = Guard("always", lambda s: True)
FORCE_BACKUP = Guard("force backup", lambda s: s.force_backup)
WON_TIE = Guard("won the start-up tie", lambda s: s.won_startup_tie and not s.force_backup)
RELEASE_HIGHER = Guard("local release higher", lambda s: s.release is Release.HIGHER)
RELEASE_LOWER = Guard("local release lower", lambda s: s.release is Release.LOWER)
MANUAL_ONLY = Guard("manual switch only", lambda s: s.manual_switch_only)
NO_AUTO_SWITCH = Guard("no automatic switch (manual only or upgrade)", lambda s: not s.auto_switch)
NETWORK_DOWN = Guard("own network down", lambda s: not s.network_ok)
STARTING_UP = Guard("starting up", lambda s: s.starting_up)
SWITCH_AT_ONCE_FENCED = Guard(
    "reconnect timeout 0, network ok, automatic, started, the old active reachable on port 3633",
    lambda s: s.reconnect_now and s.network_ok and s.auto_switch and not s.starting_up and s.peer_reachable,
)
SWITCH_AT_ONCE = Guard(
    "reconnect timeout 0, network ok, automatic, started",
    lambda s: s.reconnect_now and s.network_ok and s.auto_switch and not s.starting_up,
)
BOTH_LINKS_DOWN = Guard("main and aux connections down", lambda s: not s.main_up and not s.aux_up)
PEER_REACHABLE = Guard("peer reachable", lambda s: s.peer_reachable)
HOME_UPGRADE_HIGHER = Guard("home is Upgrade Higher", lambda s: s.home is State.UPGRADE_HIGHER)
HOME_UPGRADE_LOWER = Guard("home is Upgrade Lower", lambda s: s.home is State.UPGRADE_LOWER)
PENDING_NETWORK_DOWN = Guard("scheduled, network down", lambda s: s.switch_pending and not s.network_ok)
PENDING_PEER_REACHABLE = Guard("scheduled, peer reachable", lambda s: s.switch_pending and s.peer_reachable)
PENDING = Guard("switch scheduled", lambda s: s.switch_pending)
SHUTTING_DOWN = Guard("shutting down", lambda s: s.shutting_down)
NOT_SHUTTING_DOWN = Guard("not shutting down", lambda s: not s.shutting_down)
KEEP_SERVING = Guard("isolation policy keep-serving", lambda s: s.keep_serving_when_isolated)
AUTO_PEER_REACHABLE = Guard(
    "started, the old active reachable on port 3633", lambda s: s.peer_reachable and not s.starting_up
)


@dataclass(frozen=True)
class Row:
    states: tuple[State, ...]
    event: Event
    guard: Guard
    target: State | None  # None: stay in the current state
    actions: tuple[Action, ...]
    verdict: str
    reason: Reason | _Deferred | None = None


S, E, A, R = State, Event, Action, Reason
BACKUP_ROLES = (S.BACKUP, S.UPGRADE_HIGHER, S.UPGRADE_LOWER)
WATCHING = (*BACKUP_ROLES, S.RECONNECTING)
TO_RECONNECTING = (A.STOP_MONITORS, A.START_RECONNECT_TIMER)
RESUME = (A.CANCEL_RECONNECT_TIMER, A.RESYNC)
# an automatic switch while the old active still answers port 3633: fence it first (Discontinue, bounded wait)
FENCED_SWITCH = (A.STOP_MONITORS, A.CANCEL_RECONNECT_TIMER, A.REQUEST_DISCONTINUE, A.BECOME_PRIMARY)

# fmt: off
TABLE: tuple[Row, ...] = (
    # --- Init: start-up role negotiation (negotiate_startup_role picks the event) -------------------------
    Row((S.INIT,), E.PEER_IS_PRIMARY, RELEASE_HIGHER, S.UPGRADE_HIGHER, (A.BECOME_BACKUP,),
        "Peer is primary on an older release: going to StateUpgradeHigher (manual switch only)"),
    Row((S.INIT,), E.PEER_IS_PRIMARY, RELEASE_LOWER, S.UPGRADE_LOWER, (A.BECOME_BACKUP,),
        "Peer is primary on a newer release: going to StateUpgradeLower (manual switch only)"),
    Row((S.INIT,), E.PEER_IS_PRIMARY, MANUAL_ONLY, S.BACKUP, (A.BECOME_BACKUP,),
        "Peer is primary: going to StateBackup in manual switch only mode (not monitoring)"),
    Row((S.INIT,), E.PEER_IS_PRIMARY, ALWAYS, S.BACKUP, (A.BECOME_BACKUP, A.START_MONITORS),
        "Peer is primary: going to StateBackup"),
    Row((S.INIT,), E.PEER_IS_BACKUP, FORCE_BACKUP, None, (A.RENEGOTIATE,),
        "Peer is up but not primary and force backup is set: waiting in StateInit for a primary"),
    Row((S.INIT,), E.PEER_IS_BACKUP, ALWAYS, S.PRIMARY, (A.BECOME_PRIMARY,),
        "Peer is up but not primary: going to StatePrimary", R.FIRST_STARTED),
    Row((S.INIT,), E.PEER_UNREACHABLE_AT_START, FORCE_BACKUP, None, (A.RENEGOTIATE,),
        "Peer unreachable at start-up but force backup is set: waiting in StateInit for a primary"),
    Row((S.INIT,), E.PEER_UNREACHABLE_AT_START, ALWAYS, S.PRIMARY, (A.BECOME_PRIMARY,),
        "Peer unreachable at start-up: going to StatePrimary (first started becomes active)",
        R.FIRST_STARTED),
    Row((S.INIT,), E.STARTUP_TIE, WON_TIE, S.PRIMARY, (A.BECOME_PRIMARY,),
        "Both servers starting and this one wins (generation, then server A): going to StatePrimary",
        R.STARTUP_TIE_WON),
    Row((S.INIT,), E.STARTUP_TIE, ALWAYS, None, (A.RENEGOTIATE,),
        "Both servers starting and the peer wins: waiting in StateInit for it to become primary"),

    # --- Primary -------------------------------------------------------------------------------------------
    Row((S.PRIMARY,), E.DISCONTINUE_RECEIVED, ALWAYS, S.INACTIVE, (A.GO_STALE,),
        "Discontinue received: going Inactive (stale)", R.DISCONTINUE),
    Row((S.PRIMARY,), E.HIGHER_GENERATION_SEEN, ALWAYS, S.INACTIVE, (A.GO_STALE,),
        "A primary with a higher generation exists: going Inactive (stale)", R.HIGHER_GENERATION),
    Row((S.PRIMARY,), E.MANUAL_SWITCH_REQUEST, ALWAYS, None, (),
        "Manual switch refused: this server is the primary; request the switch on the backup"),
    Row((S.PRIMARY,), E.ISOLATED, KEEP_SERVING, None, (),
        "isolated from the network and from the backup: keeping serving (isolation policy keep-serving, "
        "the specification's behaviour; the backup may take over)"),
    Row((S.PRIMARY,), E.ISOLATED, ALWAYS, S.STEPPED_DOWN, (A.GO_STALE,),
        "isolated from the network and from the backup: stepping down", R.ISOLATED),

    # --- Stepped Down: an isolated former active serves nothing until its network returns ------------------
    Row((S.STEPPED_DOWN,), E.NETWORK_RETURNED, ALWAYS, S.INIT, (A.RENEGOTIATE,),
        "Network is back after stepping down: renegotiating on port 3633 (Backup if the peer took over, "
        "Primary again if it never switched)"),
    Row((S.STEPPED_DOWN,), E.DISCONTINUE_RECEIVED, ALWAYS, None, (),
        "Discontinue received while stepped down: already serving nothing"),
    Row((S.STEPPED_DOWN,), E.MANUAL_SWITCH_REQUEST, ALWAYS, None, (),
        "Manual switch refused: this server stepped down (isolated); it renegotiates when its network returns"),
    Row((S.PRIMARY,), E.REJOIN, ALWAYS, None, (),
        "Rejoin refused: this server is the primary; rejoin is for a stale or backup server"),

    # --- Backup roles: primary monitor events (spec: how the Backup state processes them) ------------------
    Row(BACKUP_ROLES, E.NETWORK_DOWN, ALWAYS, S.RECONNECTING, TO_RECONNECTING,
        "Backup's own network is down: going to StateReconnecting, will not switch while it is down"),
    Row(BACKUP_ROLES, E.MODULE_DOWN, NETWORK_DOWN, S.RECONNECTING, TO_RECONNECTING,
        "Module is down but the backup's own network is down: going to StateReconnecting, will not switch"),
    Row(BACKUP_ROLES, E.MODULE_DOWN, NO_AUTO_SWITCH, S.STOPPING, (A.HALT,),
        "Module is down but manual switch only: NOT switching; going to StateStopping "
        "(halted; `ctl rejoin` resumes as backup)"),
    Row((S.BACKUP,), E.MODULE_DOWN, STARTING_UP, None, (A.SCHEDULE_SWITCH_AFTER_STARTUP,),
        "Module is down while starting up: switch scheduled for when start-up completes", R.TS_PING_FAILURE),
    Row((S.BACKUP,), E.MODULE_DOWN, AUTO_PEER_REACHABLE, S.PRIMARY, FENCED_SWITCH,
        "Module is down and the primary still answers port 3633: asking it to discontinue, then going "
        "to StatePrimary", R.TS_PING_FAILURE),
    Row((S.BACKUP,), E.MODULE_DOWN, ALWAYS, S.PRIMARY, (A.BECOME_PRIMARY,),
        "Module is down, switching now and going to StatePrimary", R.TS_PING_FAILURE),
    Row(BACKUP_ROLES, E.NOTIFIER_DOWN, NETWORK_DOWN, S.RECONNECTING, TO_RECONNECTING,
        "Notifier is down and the backup's own network is down: going to StateReconnecting"),
    Row(BACKUP_ROLES, E.NOTIFIER_DOWN, NO_AUTO_SWITCH, S.RECONNECTING, TO_RECONNECTING,
        "Notifier is down (manual switch only): going to StateReconnecting"),
    Row((S.BACKUP,), E.NOTIFIER_DOWN, SWITCH_AT_ONCE_FENCED, S.PRIMARY, FENCED_SWITCH,
        "Notifier is down and the reconnect timeout is 0, the primary still answers port 3633: asking it "
        "to discontinue, then going to StatePrimary", R.LOSS_OF_NOTIFIER),
    Row((S.BACKUP,), E.NOTIFIER_DOWN, SWITCH_AT_ONCE, S.PRIMARY, (A.BECOME_PRIMARY,),
        "Notifier is down and the reconnect timeout is 0: switching now and going to StatePrimary",
        R.LOSS_OF_NOTIFIER),
    Row((S.BACKUP,), E.NOTIFIER_DOWN, BOTH_LINKS_DOWN, S.RECONNECTING, TO_RECONNECTING,
        "Notifier is down on both connections: going to StateReconnecting"),
    Row((S.BACKUP,), E.NOTIFIER_DOWN, ALWAYS, S.RECONNECTING, TO_RECONNECTING,
        "Notifier is down (a connection is still up): going to StateReconnecting"),
    # The primary monitor posts primary-unreachable only after the Unreachable Primary Ping Count's ping
    # sets all failed with the backup's own network good ("the server is considered unreachable and a
    # switchover is initiated"); with a count of -1 it never posts it.
    Row(BACKUP_ROLES, E.PRIMARY_UNREACHABLE, NETWORK_DOWN, S.RECONNECTING, TO_RECONNECTING,
        "Primary is unreachable but the backup's own network is down: going to StateReconnecting, will not switch"),
    Row(BACKUP_ROLES, E.PRIMARY_UNREACHABLE, NO_AUTO_SWITCH, S.RECONNECTING, TO_RECONNECTING,
        "Primary is unreachable (manual switch only): going to StateReconnecting"),
    Row((S.BACKUP,), E.PRIMARY_UNREACHABLE, STARTING_UP, None, (A.SCHEDULE_SWITCH_AFTER_STARTUP,),
        "Primary is unreachable while starting up: switch scheduled for when start-up completes",
        R.PRIMARY_UNREACHABLE),
    Row((S.BACKUP,), E.PRIMARY_UNREACHABLE, AUTO_PEER_REACHABLE, S.PRIMARY, FENCED_SWITCH,
        "Primary is unreachable on the monitored paths but answers port 3633: asking it to discontinue, "
        "then going to StatePrimary", R.PRIMARY_UNREACHABLE),
    Row((S.BACKUP,), E.PRIMARY_UNREACHABLE, ALWAYS, S.PRIMARY, (A.BECOME_PRIMARY,),
        "Primary is unreachable after the unreachable-primary ping sets: switching now and going to "
        "StatePrimary", R.PRIMARY_UNREACHABLE),

    # --- Reconnecting --------------------------------------------------------------------------------------
    Row((S.RECONNECTING,), E.RECONNECTED, HOME_UPGRADE_HIGHER, S.UPGRADE_HIGHER, RESUME,
        "Reconnected to the primary: going back to StateUpgradeHigher and resynchronising"),
    Row((S.RECONNECTING,), E.RECONNECTED, HOME_UPGRADE_LOWER, S.UPGRADE_LOWER, RESUME,
        "Reconnected to the primary: going back to StateUpgradeLower and resynchronising"),
    Row((S.RECONNECTING,), E.RECONNECTED, MANUAL_ONLY, S.BACKUP, RESUME,
        "Reconnected to the primary: going back to StateBackup (manual switch only) and resynchronising"),
    Row((S.RECONNECTING,), E.RECONNECTED, ALWAYS, S.BACKUP, (*RESUME, A.START_MONITORS),
        "Reconnected to the primary: going back to StateBackup and resynchronising"),
    Row((S.RECONNECTING,), E.RECONNECT_TIMEOUT, NETWORK_DOWN, None, (A.CHECK_NETWORK,),
        "Reconnect period expired while the backup's own network was down: checking it again before deciding"),
    Row((S.RECONNECTING,), E.NETWORK_RECOVERED, ALWAYS, None, (A.START_RECONNECT_TIMER,),
        "Backup's own network is back: starting a fresh reconnect period (the connections could not "
        "reconnect while it was down)"),
    Row((S.RECONNECTING,), E.NETWORK_STILL_DOWN, ALWAYS, None, (A.START_RECONNECT_TIMER,),
        "Backup's own network is still down: staying Reconnecting, will not switch"),
    Row((S.RECONNECTING,), E.RECONNECT_TIMEOUT, NO_AUTO_SWITCH, None, (),
        "Reconnect period expired but manual switch only: NOT switching, staying in StateReconnecting"),
    Row((S.RECONNECTING,), E.RECONNECT_TIMEOUT, STARTING_UP, None, (A.SCHEDULE_SWITCH_AFTER_STARTUP,),
        "Reconnect period expired while starting up: switch scheduled for when start-up completes",
        R.RECONNECT_TIMEOUT),
    Row((S.RECONNECTING,), E.RECONNECT_TIMEOUT, AUTO_PEER_REACHABLE, S.PRIMARY, FENCED_SWITCH,
        "Reconnect period expired but the primary still answers port 3633: asking it to discontinue, "
        "then going to StatePrimary", R.RECONNECT_TIMEOUT),
    Row((S.RECONNECTING,), E.RECONNECT_TIMEOUT, ALWAYS, S.PRIMARY, (A.BECOME_PRIMARY,),
        "Reconnect period expired: lost connections to the primary, going to StatePrimary and switching now",
        R.RECONNECT_TIMEOUT),
    Row((S.RECONNECTING,), E.NETWORK_DOWN, ALWAYS, None, (),
        "Backup's own network is down: staying Reconnecting, will not switch"),
    Row((S.RECONNECTING,), E.NOTIFIER_DOWN, ALWAYS, None, (),
        "Notifier is still down: staying in StateReconnecting"),
    Row((S.RECONNECTING,), E.PRIMARY_UNREACHABLE, ALWAYS, None, (),
        "Primary is still unreachable: staying in StateReconnecting until reconnected or the period expires"),

    # --- Manual switch (control panel Switch, /Immediate): only a watching backup takes over -------------
    Row(WATCHING, E.MANUAL_SWITCH_REQUEST, STARTING_UP, None, (A.SCHEDULE_SWITCH_AFTER_STARTUP,),
        "Manual switch requested while starting up: switch scheduled for when start-up completes", R.MANUAL),
    Row(WATCHING, E.MANUAL_SWITCH_REQUEST, PEER_REACHABLE, S.PRIMARY,
        (A.STOP_MONITORS, A.CANCEL_RECONNECT_TIMER, A.REQUEST_DISCONTINUE, A.BECOME_PRIMARY),
        "Manual switch requested: asking the primary to discontinue, then going to StatePrimary", R.MANUAL),
    Row(WATCHING, E.MANUAL_SWITCH_REQUEST, ALWAYS, S.PRIMARY,
        (A.STOP_MONITORS, A.CANCEL_RECONNECT_TIMER, A.BECOME_PRIMARY),
        "Manual switch requested and the primary is unreachable: switching immediately to StatePrimary",
        R.MANUAL),
    Row((S.INACTIVE,), E.MANUAL_SWITCH_REQUEST, ALWAYS, None, (),
        "Manual switch refused: this server is stale (Inactive); `ctl rejoin` makes it a backup first"),
    Row((S.INIT, S.STOPPING, S.ERROR), E.MANUAL_SWITCH_REQUEST, ALWAYS, None, (),
        "Manual switch refused: only a backup watching a primary can switch to StatePrimary"),

    # --- Start-up complete: a switch that fell due while starting happens now ------------------------------
    Row(WATCHING, E.STARTUP_COMPLETE, PENDING_NETWORK_DOWN, None, (),
        "Start-up complete but the backup's own network is down: scheduled switch dropped, NOT switching"),
    Row(WATCHING, E.STARTUP_COMPLETE, PENDING_PEER_REACHABLE, S.PRIMARY,
        (A.STOP_MONITORS, A.CANCEL_RECONNECT_TIMER, A.REQUEST_DISCONTINUE, A.BECOME_PRIMARY),
        "Start-up complete: performing the scheduled switch, asking the primary to discontinue, "
        "then going to StatePrimary", DEFERRED),
    Row(WATCHING, E.STARTUP_COMPLETE, PENDING, S.PRIMARY,
        (A.STOP_MONITORS, A.CANCEL_RECONNECT_TIMER, A.BECOME_PRIMARY),
        "Start-up complete: performing the scheduled switch now, going to StatePrimary", DEFERRED),
    Row(tuple(State), E.STARTUP_COMPLETE, ALWAYS, None, (),
        "Start-up complete"),

    # --- Rejoin (operator's `ctl rejoin`) -----------------------------------------------------------------
    Row((S.STOPPING,), E.REJOIN, SHUTTING_DOWN, None, (),
        "Rejoin refused: shutting down"),
    Row((S.INIT, *WATCHING, S.INACTIVE, S.STEPPED_DOWN, S.STOPPING, S.ERROR), E.REJOIN, ALWAYS, S.INIT,
        (A.RENEGOTIATE,),
        "Rejoin requested: going to StateInit to renegotiate the role"),

    # --- Stop and supervisor escalation --------------------------------------------------------------------
    Row((S.PRIMARY,), E.STOP, ALWAYS, S.STOPPING, (A.GO_STALE, A.SHUT_DOWN),
        "Stop requested: discontinuing and going to StateStopping", R.SHUTDOWN),
    Row((S.INIT, *WATCHING, S.INACTIVE, S.STEPPED_DOWN, S.STOPPING, S.ERROR), E.STOP, NOT_SHUTTING_DOWN,
        S.STOPPING,
        (A.SHUT_DOWN,),
        "Stop requested: going to StateStopping"),
    Row((S.PRIMARY,), E.FATAL_ERROR, ALWAYS, S.ERROR, (A.GO_STALE,),
        "Supervisor escalation: this primary stops serving and goes to StateError", R.FATAL_ERROR),
    Row((S.INIT, *WATCHING, S.INACTIVE, S.STEPPED_DOWN), E.FATAL_ERROR, ALWAYS, S.ERROR, (A.HALT,),
        "Supervisor escalation: going to StateError"),
)
# fmt: on

_INDEX: dict[tuple[State, Event], tuple[Row, ...]] = {}
for _row in TABLE:
    for _state in _row.states:
        _INDEX[(_state, _row.event)] = (*_INDEX.get((_state, _row.event), ()), _row)


def rows_for(state: State, event: Event) -> tuple[Row, ...]:
    """The rows declared for ``(state, event)``, in table order."""
    return _INDEX.get((state, event), ())


def decide(state: State, event: Event, situation: Situation) -> Row | None:
    """The first row for ``(state, event)`` whose guard holds, or None (the event is ignored)."""
    for row in rows_for(state, event):
        if row.guard(situation):
            return row
    return None


@dataclass(frozen=True)
class Step:
    """The outcome of one event: carry out ``actions`` in order, log ``verdict``."""

    old_state: State
    new_state: State
    event: Event
    actions: tuple[Action, ...]
    verdict: str
    reason: str | None = None

    @property
    def changed(self) -> bool:
        return self.old_state is not self.new_state

    @property
    def switched(self) -> bool:
        """This step makes the node primary."""
        return Action.BECOME_PRIMARY in self.actions


class SwitchoverStateMachine:
    """State, flags and the scheduled switch; :meth:`handle` applies :data:`TABLE`."""

    def __init__(
        self,
        *,
        manual_switch_only: bool = False,
        force_backup: bool = False,
        keep_serving_when_isolated: bool = False,
        state: State = State.INIT,
        starting_up: bool = True,
        home: State = State.BACKUP,
        pending_switch: Reason | None = None,
        shutting_down: bool = False,
    ) -> None:
        if home not in BACKUP_ROLES:
            raise ValueError(f"home must be one of {[s.value for s in BACKUP_ROLES]}, got {home!r}")
        self.manual_switch_only = manual_switch_only
        self.force_backup = force_backup
        self.keep_serving_when_isolated = keep_serving_when_isolated
        self._state = state
        self._starting_up = starting_up
        self._home = state if state in BACKUP_ROLES else home
        self._pending = pending_switch
        self._shutting_down = shutting_down

    @property
    def state(self) -> State:
        return self._state

    @property
    def starting_up(self) -> bool:
        return self._starting_up

    @property
    def home(self) -> State:
        return self._home

    @property
    def pending_switch(self) -> Reason | None:
        return self._pending

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def situation(self, facts: Facts) -> Situation:
        return Situation(
            network_ok=facts.network_ok,
            main_up=facts.main_up,
            aux_up=facts.aux_up,
            peer_reachable=facts.peer_reachable,
            reconnect_now=facts.reconnect_timeout <= 0,
            release=facts.release,
            won_startup_tie=facts.won_startup_tie,
            manual_switch_only=self.manual_switch_only,
            force_backup=self.force_backup,
            starting_up=self._starting_up,
            home=self._home,
            switch_pending=self._pending is not None,
            shutting_down=self._shutting_down,
            keep_serving_when_isolated=self.keep_serving_when_isolated,
        )

    def handle(self, event: Event | str, facts: Facts | None = None) -> Step:
        """Apply ``event``; return what to do and why. Never raises for an unexpected pair."""
        ev = Event(event)
        old = self._state
        row = decide(old, ev, self.situation(facts or Facts()))
        if row is None:
            return Step(old, old, ev, (), f"ignored {ev} in {old}")
        reason = self._pending if row.reason is DEFERRED else row.reason
        step = Step(old, row.target or old, ev, row.actions, row.verdict, reason)
        return self._remember(step)

    def _remember(self, step: Step) -> Step:
        new = step.new_state
        self._state = new
        if new in BACKUP_ROLES:
            self._home = new
        if new is State.INIT:
            self._starting_up = True
        if Action.SHUT_DOWN in step.actions:
            self._shutting_down = True
        if Action.SCHEDULE_SWITCH_AFTER_STARTUP in step.actions and self._pending is None and step.reason:
            self._pending = Reason(step.reason)
        if step.event is Event.STARTUP_COMPLETE:
            self._starting_up = False
            self._pending = None
        if new not in WATCHING:
            self._pending = None
        if step.event is Event.RECONNECTED and self._pending not in (None, Reason.MANUAL):
            self._pending = None
            return replace(step, verdict=f"{step.verdict} (scheduled switch dropped: the primary is back)")
        return step


def compare_release(local: str, peer: str) -> Release:
    """The local release compared with the peer's (``1.10.0`` is higher than ``1.9.2``; numeric parts
    compare as numbers, others as text). An unknown peer release counts as the same."""

    def key(v: str) -> tuple[tuple[int, int | str], ...]:
        # (0, n) for numbers, (1, text) otherwise: a number sorts before text, never a TypeError
        return tuple((0, int(p)) if p.isdigit() else (1, p) for p in v.replace("-", ".").split("."))

    if not peer or local == peer:
        return Release.SAME
    return Release.HIGHER if key(local) > key(peer) else Release.LOWER


@dataclass(frozen=True)
class StartupDecision:
    """What start-up negotiation concluded: post ``event`` with ``Facts(won_startup_tie=won_tie)``."""

    event: Event
    won_tie: bool
    verdict: str


def outranks(gen_a: int, a_is_server_a: bool, gen_b: int, b_is_server_a: bool) -> bool:
    """Whether a primary at ``gen_a`` wins over one at ``gen_b``: higher generation, then server A."""
    return gen_a > gen_b or (gen_a == gen_b and a_is_server_a and not b_is_server_a)


def negotiate_startup_role(
    local_gen: int,
    peer_state: State | None,
    peer_gen: int,
    local_is_server_a: bool,
    force_backup: bool,
    *,
    peer_force_backup: bool = False,
) -> StartupDecision:
    """Pick the start-up event from the peer's answer on port 3633 (``None``: no answer).

    Peer primary: become backup. Peer unreachable: first started becomes active (fail-safe) unless
    force backup. Peer up but not primary and not starting: become primary unless force backup. Both
    starting: the higher generation wins, on a tie SwitchoverServer A; a force-backup node never wins
    and always lets a peer that is not force-backup win.
    """
    if peer_state is None:
        verdict = "Peer did not answer on the virtual switch port: " + (
            "force backup, waiting for a primary" if force_backup else "starting as primary"
        )
        return StartupDecision(Event.PEER_UNREACHABLE_AT_START, False, verdict)
    if peer_state is State.PRIMARY:
        return StartupDecision(
            Event.PEER_IS_PRIMARY, False, f"Peer is primary (generation {peer_gen}): starting as backup"
        )
    if peer_state is not State.INIT:
        return StartupDecision(
            Event.PEER_IS_BACKUP, False, f"Peer is {peer_state} (not primary): no primary to watch"
        )
    if force_backup:
        won, why = False, "force backup never takes the primary role at start-up"
    elif peer_force_backup:
        won, why = True, "the peer is force backup"
    elif local_gen != peer_gen:
        won = local_gen > peer_gen
        why = f"generation {local_gen} vs peer's {peer_gen}"
    else:
        won = local_is_server_a
        why = f"equal generation {local_gen}, SwitchoverServer A wins"
    verdict = f"Both servers starting: {'this one' if won else 'the peer'} becomes primary ({why})"
    return StartupDecision(Event.STARTUP_TIE, won, verdict)
