"""The node's Supervisor: restarts failed children (see :mod:`actors.runtime.supervisor`) and owns
the switchover state machine, the only place that decides a switch.

Children come in groups started and stopped by role:

- ``core``: always running (Admin, VirtualSwitch, Notifier);
- ``backup``: while watching a primary (NotifierLink main/aux, mirrors);
- ``monitors``: PrimaryMonitor and ModuleMonitor (not in manual-switch-only or upgrade states);
- ``active``: while Primary;
- ``isolation``: the IsolationWatch, while Primary and while Stepped Down.

Events reach it as messages (from the VirtualSwitch, the monitors, timers); it feeds them to
the :class:`SwitchoverStateMachine`, logs the verdict, carries out the returned actions in
order, records the change in the event log, and publishes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from actors.mirroring.ds_mirror import DrainFinished, DrainForSwitch  # issue 10
from actors.monitoring.notifier_link import AUX, MAIN, LinkAnswering, LinkState, Probe, link_actor_name
from actors.roles.event_log import EventLog, EventRecord
from actors.roles.generation import GenerationStore
from actors.roles.hooks import HookFacts, HookResult, run_hooks
from actors.roles.isolation_watch import Isolated, NetworkReturned, PeerHeard, PeerLost
from actors.roles.state_machine import (
    Action,
    Event,
    Facts,
    Release,
    State,
    Step,
    SwitchoverStateMachine,
    compare_release,
    negotiate_startup_role,
    outranks,
)
from actors.roles.virtual_switch import (
    DiscontinueResult,
    Forwarded,
    Negotiate,
    NegotiationResult,
    PeerSeen,
    PublishRoleChange,
    SendDiscontinue,
)
from actors.runtime.base import handles
from actors.runtime.context import NodeContext, RoleSnapshot
from actors.runtime.supervision import Intensity
from actors.runtime.supervisor import ChildSpec, Supervisor
from transport.messages import (
    CommandReply,
    Discontinue,
    DiscontinueAck,
    RejoinRequest,
    SwitchRequest,
    Tick,
)

GROUPS = ("core", "backup", "monitors", "active", "isolation")


@dataclass(frozen=True)
class MonitorVerdict:
    """PrimaryMonitor -> Supervisor (actor-internal): an event for the state machine with the facts the
    diagnosis found; the Supervisor adds the reconnect timeout."""

    event: Event
    facts: Facts
    detail: str = ""


@dataclass(frozen=True)
class HooksFinished:
    kind: str
    generation: int
    failed: tuple[str, ...]
    ran: tuple[str, ...]


@dataclass(frozen=True)
class NetworkChecked:
    """A fresh check of the backup's own network (gateway / NetTest) before acting on a timeout."""

    ok: bool
    token: int


@dataclass(frozen=True)
class StopNode:
    reason: str = "stop requested"


@dataclass
class _Pending:
    """Actions waiting for the Discontinue answer of a controlled switch."""

    step: Step
    actions: list[Action]
    detail: str = ""


class NodeSupervisor(Supervisor):
    actor_name = "Supervisor"

    def __init__(
        self,
        ctx: NodeContext,
        specs: dict[str, list[ChildSpec]],
        intensity: Intensity | None = None,
        *,
        manual_switch_only: bool = False,
        force_backup: bool = False,
        keep_serving_when_isolated: bool = False,
        reconnect_timeout: Callable[[], float] = lambda: 30.0,
        reconnect_floor: Callable[[], float] = lambda: 0.0,
        on_shutdown: Callable[[str], None] | None = None,
        network_check: Callable[[], bool] | None = None,
        incarnation: int = 1,
        name: str | None = None,
    ) -> None:
        super().__init__(ctx, [], intensity, None, incarnation, name)
        self.groups: dict[str, list[str]] = {g: [] for g in GROUPS}
        for group, group_specs in specs.items():
            for spec in group_specs:
                self.add_spec(spec)
                self.groups[group].append(spec.name)
        self.on_escalate = self._escalated
        self.sm = SwitchoverStateMachine(
            manual_switch_only=manual_switch_only,
            force_backup=force_backup,
            keep_serving_when_isolated=keep_serving_when_isolated,
        )
        data = Path(ctx.config.data_dir)
        self.generation = GenerationStore(data / "generation")
        self.event_log = EventLog(data / "events.jsonl")
        ctx.event_log = self.event_log
        self.reconnect_timeout = reconnect_timeout
        self.reconnect_floor = reconnect_floor
        self.on_shutdown = on_shutdown
        self.network_check = network_check
        self.peer_generation = 0
        self.peer_role = ""
        self.peer_release = ""
        self.peer_heard_at: float | None = None
        self.peer_lost_at: float | None = None  # the connection to the peer's VirtualSwitch closed
        self.negotiations = 0
        self.reconnect_token = 0
        self.pending: _Pending | None = None
        self.bumped_for_switch = False
        self.ds_drained = False  # issue 10: the DS stream was drained for the pending controlled switch
        self.network_ok = True
        self.hooks_running: dict[str, int] = {}
        self.shutdown_after_hooks = ""
        self._publish()

    # ------------------------------------------------------------------------ life cycle

    def started(self) -> None:
        super().started()
        self.start_children(self.groups["core"])
        self._status(f"Switchover starting on {self.ctx.node} (release {self.ctx.config.release})")
        self._renegotiate(delay=0.0)

    def _escalated(self, reason: str) -> None:
        self.post(Event.FATAL_ERROR, Facts(), reason)

    # ------------------------------------------------------------------------ the machine

    def post(self, event: Event, facts: Facts, detail: str = "") -> Step:
        old_gen = self.generation.value
        step = self.sm.handle(event, facts)
        if step.switched and step.new_state is State.PRIMARY:  # issue 10: where DS replication was
            detail = "; ".join(p for p in (detail, ds_position_text(self.ctx.ds_status())) if p)
        level = "INFO" if step.changed or step.actions else "DEBUG"
        self.log.log(
            level,
            "[{} -> {}] event={}: {}{}",
            step.old_state,
            step.new_state,
            event,
            step.verdict,
            f" ({detail})" if detail else "",
        )
        if step.reason and step.switched and step.old_state is not State.INIT:
            self.log.warning("{}", step.reason)  # the spec's signpost: the reason line comes first
            self.log.warning("Switchover Service: Switch Initiated")
        self._status(step.verdict)
        self._carry_out(step, list(step.actions), detail)
        if self.pending is not None and self.pending.step is step:
            return step  # recorded and published once the active answered the Discontinue
        if step.changed or step.switched or self.generation.value != old_gen:
            self._record(step, detail)
        self._publish()
        return step

    def _carry_out(self, step: Step, actions: list[Action], detail: str = "") -> None:
        while actions:
            action = actions.pop(0)
            if action is Action.REQUEST_DISCONTINUE:
                # issue 10: first drain the DS stream to the active's last committed revision (the
                # DSMirror answers DrainFinished, bounded by Switchover DS Request Timeout). The
                # generation is bumped before the drain, so fencing never demotes this node meanwhile.
                # Only a controlled switch drains: an automatic one fences a failing active and must
                # not wait on its DS publisher too (its writes in flight count against the lag).
                if not self.ds_drained:
                    self._bump_generation()  # before the drain and the Discontinue: never demoted meanwhile
                    manual = step.event is Event.MANUAL_SWITCH_REQUEST
                    if manual and self.tell_actor("DSMirror", DrainForSwitch(step.reason or "switch")):
                        self.pending = _Pending(step, [action, *actions], detail)
                        return
                self.ds_drained = False
                self.pending = _Pending(step, actions, detail)
                self.tell_actor("VirtualSwitch", SendDiscontinue(self.generation.value, step.reason or ""))
                return  # the rest runs when the peer answered (or the wait ran out)
            self._do(action, step)

    def _do(self, action: Action, step: Step) -> None:
        if action is Action.BECOME_PRIMARY:
            if step.old_state is not State.INIT:
                self.ctx.metrics.counter(
                    "switchover_switches_total",
                    "Times this node took over, by the event that caused it",
                    ("reason",),
                ).labels(step.event.value).inc()
            self.stop_children(self.groups["monitors"] + self.groups["backup"])
            if not self.bumped_for_switch:
                self._bump_generation()
            self.bumped_for_switch = False
            self.start_children(self.groups["active"] + self.groups["isolation"])
            self._run_hooks("commence", step)
            if self.sm.starting_up:
                self.tell_self(Tick("startup-complete"))
        elif action is Action.BECOME_BACKUP:
            self.generation.observe(self.peer_generation)
            self.start_children(self.groups["backup"])
            # issue 10: with a DSMirror, start-up completes when its first compare-and-update finished
            if self.sm.starting_up and "DSMirror" not in self.groups["backup"]:
                self.tell_self(Tick("startup-complete"))
        elif action is Action.START_MONITORS:
            self.start_children(self.groups["monitors"])
        elif action is Action.STOP_MONITORS:
            self.stop_children(self.groups["monitors"])
        elif action is Action.START_RECONNECT_TIMER:
            self.reconnect_token += 1
            timeout = self.reconnect_timeout()
            if step.event is Event.NETWORK_RECOVERED and timeout < self.reconnect_floor():
                # the notifier connections could not reconnect while the network was down; they retry
                # only every Notifier Reconnect Delay: give them that long before switching
                timeout = self.reconnect_floor()
                self.log.info(
                    "the fresh reconnect period lasts {:g} s: the notifier connections retry every "
                    "Switchover Notifier Reconnect Delay and need one retry and one probe to answer",
                    timeout,
                )
            self.log.info(
                "SwitchoverState::StartReconnectTimer: Scheduling reconnect timeout to execute in "
                "{:g} second(s)",
                timeout,
            )
            self.schedule(timeout, Tick("reconnect-timeout", self.reconnect_token))
            self._probe(True)
        elif action is Action.CHECK_NETWORK:
            self._check_network(self.reconnect_token)
        elif action is Action.CANCEL_RECONNECT_TIMER:
            self.reconnect_token += 1
            self._probe(False)
        elif action is Action.RESYNC:
            self.log.info("resynchronising with the primary")
        elif action is Action.GO_STALE:
            # a stepped-down node keeps its isolation watch: it tells when the network is back
            keep = step.new_state is State.STEPPED_DOWN
            self.stop_children(self.groups["active"] + ([] if keep else self.groups["isolation"]))
            self._run_hooks("discontinue", step)
        elif action is Action.SCHEDULE_SWITCH_AFTER_STARTUP:
            self.log.warning("switch scheduled for when start-up completes ({})", step.reason)
        elif action is Action.RENEGOTIATE:
            self.stop_children(self.groups["active"] + self.groups["isolation"] + self.groups["monitors"] + self.groups["backup"])
            self.reconnect_token += 1
            self._renegotiate(delay=0.5 if step.old_state is State.INIT else 0.0)
        elif action is Action.HALT:
            self.stop_children(self.groups["active"] + self.groups["isolation"] + self.groups["monitors"] + self.groups["backup"])
            self.reconnect_token += 1
        elif action is Action.SHUT_DOWN:
            if self.hooks_running.get("discontinue"):
                self.log.info("waiting for the Discontinue hooks to finish before stopping")
                self.shutdown_after_hooks = step.verdict
            elif self.on_shutdown is not None:
                self.on_shutdown(step.verdict)

    def _probe(self, active: bool) -> None:
        for link in (MAIN, AUX):
            self.tell_actor(link_actor_name(link), Probe(active))

    def tell_self(self, msg: Any) -> None:
        self.actor_ref.tell(msg)

    def _bump_generation(self) -> None:
        self.generation.observe(self.peer_generation)
        new = self.generation.bump()
        self.bumped_for_switch = True
        self.log.info("fencing generation is now {} (stored)", new)

    def _renegotiate(self, delay: float) -> None:
        self.negotiations += 1
        if delay > 0:
            self.schedule(delay, Tick("negotiate", self.negotiations))
        else:
            self.tell_actor("VirtualSwitch", Negotiate(self.negotiations))

    # -------------------------------------------------------------------------- side effects

    def _run_hooks(self, kind: str, step: Step) -> None:
        cfg = self.ctx.config
        hooks_dir = cfg.hooks_path
        generation = self.generation.value
        facts = HookFacts(
            node=cfg.name,
            role=step.new_state.value,
            reason=step.reason or "",
            generation=generation,
            peer=cfg.peer.name,
        )
        ref = self.actor_ref

        self.hooks_running[kind] = self.hooks_running.get(kind, 0) + 1

        def work() -> None:
            results: list[HookResult] = run_hooks(hooks_dir, kind, facts, cfg.hooks.timeout)
            failed = tuple(r.name for r in results if not r.ok)
            ref.tell(HooksFinished(kind, generation, failed, tuple(r.name for r in results)))

        threading.Thread(target=work, name=f"hooks-{kind}", daemon=True).start()
        self.tell_actor("VirtualSwitch", PublishRoleChange(self._record_dict(step, ""), kind))

    def _record_dict(self, step: Step, detail: str) -> dict[str, Any]:
        record = EventRecord.from_step(step, node=self.ctx.node, generation=self.generation.value)
        if detail:
            record = replace(record, verdict=f"{step.verdict} ({detail})")
        return record.to_dict()

    def _record(self, step: Step, detail: str) -> None:
        record = self._record_dict(step, detail)
        self.event_log.append(EventRecord.from_dict(record))
        self.tell_actor("VirtualSwitch", PublishRoleChange(record))

    def _status(self, line: str) -> None:
        self.ctx.status_lines.append(f"{time.strftime('%H:%M:%S')} - {line}")

    def _publish(self) -> None:
        # while a controlled switch waits for the active's Discontinue answer, this node is not yet primary
        state = self.pending.step.old_state if self.pending is not None else self.sm.state
        self.ctx.role = RoleSnapshot(
            role=state.value,
            generation=self.generation.value,
            starting_up=self.sm.starting_up,
            reason=self.error,
            manual_switch_only=self.sm.manual_switch_only,
            force_backup=self.sm.force_backup,
            replication=self.ctx.role.replication,
        )

    # ------------------------------------------------------------------------------ messages

    @handles(NegotiationResult)
    def on_negotiation(self, msg: NegotiationResult) -> None:
        if self.sm.state is not State.INIT:
            return
        cfg = self.ctx.config
        peer_state = _state_of(msg.peer_role) if msg.answered else None
        if msg.answered:
            self.peer_generation = max(self.peer_generation, msg.peer_generation)
            self.peer_release = msg.peer_release
        decision = negotiate_startup_role(
            self.generation.value,
            peer_state,
            msg.peer_generation,
            cfg.is_server_a,
            self.sm.force_backup,
            peer_force_backup=msg.peer_force_backup,
        )
        self.log.info("{}", decision.verdict)
        facts = Facts(
            won_startup_tie=decision.won_tie,
            release=compare_release(cfg.release, msg.peer_release) if msg.answered else Release.SAME,
        )
        self.post(decision.event, facts, decision.verdict)

    @handles(PeerSeen)
    def on_peer_seen(self, msg: PeerSeen) -> None:
        self.peer_role = msg.role
        self.peer_release = msg.release
        if msg.role != "Primary":
            return
        self.peer_generation = max(self.peer_generation, msg.generation)
        cfg = self.ctx.config
        if self.sm.state is State.PRIMARY and outranks(
            msg.generation, msg.node == cfg.server_a.name, self.generation.value, cfg.is_server_a
        ):
            self.post(
                Event.HIGHER_GENERATION_SEEN,
                Facts(),
                f"{msg.node} is Primary with generation {msg.generation}, this node has "
                f"{self.generation.value}",
            )
        elif self.sm.state is not State.PRIMARY:
            self.generation.observe(msg.generation)
            self._publish()

    def peer_reachable(self) -> bool:
        """The peer's VirtualSwitch was heard within ``[timing] peer_timeout`` and its connection has not
        closed since: an automatic switch can fence it with Discontinue first."""
        heard, lost = self.peer_heard_at, self.peer_lost_at
        if heard is None or (lost is not None and lost >= heard):
            return False
        return self.ctx.clock.now() - heard <= self.ctx.config.timing.peer_timeout

    @handles(PeerHeard)
    def on_peer_heard(self, msg: PeerHeard) -> None:
        self.peer_heard_at = msg.at

    @handles(PeerLost)
    def on_peer_lost(self, msg: PeerLost) -> None:
        self.peer_lost_at = msg.at

    @handles(Isolated)
    def on_isolated(self, msg: Isolated) -> None:
        if self.sm.state is State.PRIMARY:
            step = self.post(Event.ISOLATED, Facts(peer_reachable=False), msg.detail)
            if not step.changed:  # keep-serving: the row has no action, but the operator must hear of it
                self.log.warning("{} ({})", step.verdict, msg.detail)

    @handles(NetworkReturned)
    def on_network_returned(self, msg: NetworkReturned) -> None:
        if self.sm.state is State.STEPPED_DOWN:
            self.post(Event.NETWORK_RETURNED, Facts(), msg.detail)

    @handles(MonitorVerdict)
    def on_monitor_verdict(self, msg: MonitorVerdict) -> None:
        self.network_ok = msg.facts.network_ok
        facts = replace(msg.facts, reconnect_timeout=self.reconnect_timeout(), peer_reachable=self.peer_reachable())
        self.post(msg.event, facts, msg.detail)

    @handles(Forwarded)
    def on_forwarded(self, msg: Forwarded) -> None:
        body = msg.msg
        if isinstance(body, SwitchRequest):
            how = "immediate " if body.immediate else ""
            self.log.warning("Manual Switchover requested by {} ({}switch)", body.requested_by, how)
            step = self.post(
                Event.MANUAL_SWITCH_REQUEST,
                Facts(peer_reachable=msg.peer_reachable),
                f"requested by {body.requested_by}",
            )
            ok = step.switched or Action.SCHEDULE_SWITCH_AFTER_STARTUP in step.actions
            msg.reply(CommandReply(ok, step.verdict, self.sm.state.value))
        elif isinstance(body, RejoinRequest):
            step = self.post(Event.REJOIN, Facts(), f"requested by {body.requested_by}")
            msg.reply(CommandReply(Action.RENEGOTIATE in step.actions, step.verdict, self.sm.state.value))
        elif isinstance(body, Discontinue):
            self.peer_generation = max(self.peer_generation, body.generation)
            if self.sm.state is State.PRIMARY:
                step = self.post(
                    Event.DISCONTINUE_RECEIVED,
                    Facts(),
                    f"{body.from_node} takes over with generation {body.generation}: {body.reason}",
                )
                stale = step.new_state is State.INACTIVE
                msg.reply(DiscontinueAck(self.ctx.node, self.generation.value, stale, step.verdict))
            else:
                msg.reply(
                    DiscontinueAck(
                        self.ctx.node,
                        self.generation.value,
                        True,
                        f"{self.ctx.node} is {self.sm.state}, not serving",
                    )
                )

    @handles(DiscontinueResult)
    def on_discontinue_result(self, msg: DiscontinueResult) -> None:
        pending, self.pending = self.pending, None
        if pending is None:
            return
        if msg.acked:
            self.log.info("the former primary acknowledged Discontinue: {}", msg.detail)
        else:
            self.log.warning(
                "no Discontinue acknowledgement ({}); switching alone (uncontrolled)", msg.detail
            )
        self._carry_out(pending.step, pending.actions)
        self._record(pending.step, pending.detail)
        self._publish()

    @handles(DrainFinished)
    def on_ds_drained(self, msg: DrainFinished) -> None:
        """issue 10: the DS stream is drained (or could not be): go on with the controlled switch."""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        self.ds_drained = True
        self._carry_out(pending.step, pending.actions, pending.detail)
        if self.pending is None:
            self._record(pending.step, pending.detail)
            self._publish()

    @handles(HooksFinished)
    def on_hooks_finished(self, msg: HooksFinished) -> None:
        self.hooks_running[msg.kind] = max(0, self.hooks_running.get(msg.kind, 0) - 1)
        if msg.kind == "discontinue" and not self.hooks_running[msg.kind] and self.shutdown_after_hooks:
            why, self.shutdown_after_hooks = self.shutdown_after_hooks, ""
            if self.on_shutdown is not None:
                self.on_shutdown(why)
        if msg.failed:
            self.log.error("{} hooks FAILED: {} (of {})", msg.kind, ", ".join(msg.failed), ", ".join(msg.ran))
            self._status(f"{msg.kind} hooks failed: {', '.join(msg.failed)}")
        elif msg.ran:
            self.log.info("{} hooks ran: {}", msg.kind, ", ".join(msg.ran))

    @handles(Tick)
    def on_tick(self, msg: Tick) -> None:
        if msg.name == "reconnect-timeout":
            if msg.token == self.reconnect_token:
                self.log.error("SwitchoverState::Reconnecting: Reconnect period expired")
                self.post(
                    Event.RECONNECT_TIMEOUT,
                    Facts(network_ok=self.network_ok, reconnect_timeout=1.0, peer_reachable=self.peer_reachable()),
                )
        elif msg.name == "negotiate":
            if msg.token == self.negotiations and self.sm.state is State.INIT:
                self.tell_actor("VirtualSwitch", Negotiate(self.negotiations))
        elif msg.name == "startup-complete":
            self.post(Event.STARTUP_COMPLETE, Facts(peer_reachable=self.peer_role != ""))
        else:
            super().on_tick(msg)

    def _check_network(self, token: int) -> None:
        """Carry out check-network: look at the backup's own network again, off this thread; the
        answer comes back as NetworkChecked and is posted as network-recovered / network-still-down."""
        check, ref = self.network_check, self.actor_ref

        def work() -> None:
            try:
                ok = check() if check is not None else False
            except Exception:
                self.log.exception("the network check failed; counting the network as down")
                ok = False
            ref.tell(NetworkChecked(ok, token))

        threading.Thread(target=work, name="network-check", daemon=True).start()

    @handles(NetworkChecked)
    def on_network_checked(self, msg: NetworkChecked) -> None:
        if msg.token != self.reconnect_token:
            return  # a later step restarted or cancelled the reconnect period meanwhile
        self.network_ok = msg.ok
        self.post(Event.NETWORK_RECOVERED if msg.ok else Event.NETWORK_STILL_DOWN, Facts(network_ok=msg.ok))

    @handles(LinkAnswering)
    def on_link_answering(self, msg: LinkAnswering) -> None:
        if self.sm.state is State.RECONNECTING:
            self.network_ok = True
            self.peer_generation = max(self.peer_generation, msg.generation)
            self.post(
                Event.RECONNECTED,
                Facts(),
                f"{msg.link} connection answered by {msg.node} (generation {msg.generation})",
            )
            if self.sm.state is not State.RECONNECTING:
                self._probe(False)

    @handles(LinkState)
    def on_link_state(self, msg: LinkState) -> None:
        self.log.debug("{} notifier connection {}", msg.link, "up" if msg.connected else "down")

    @handles(StopNode)
    def on_stop_node(self, msg: StopNode) -> None:
        self.post(Event.STOP, Facts(), msg.reason)


def ds_position_text(ds: Any) -> str:
    """issue 10: the backup's DS replication position for the switch's event-log record."""
    if not ds or ds.get("side") != "backup":
        return ""
    lag = ds.get("lag_revisions")
    return (f"DS replication {ds.get('state')} at revision {ds.get('applied')} of history "
            f"{str(ds.get('history', ''))[:12]}, {'?' if lag is None else lag} revision(s) behind the active "
            f"at its last heartbeat")


def _state_of(role: str) -> State:
    try:
        return State(role)
    except ValueError:
        return State.INIT
