"""The randomized fault run (issue 16): the seeded schedule, the judges, and a short real run in the lab."""

from __future__ import annotations

import itertools

import pytest

from deploy.lab import chaos
from deploy.lab.chaos import Ack, PlannedFault, fault_steps, judge_switches, judge_writes, make_schedule
from deploy.lab.checks import History, Transition
from deploy.lab.scenario import _parse_step
from deploy.lab.topology import cleanup_prefix
from tests.lab.conftest import PREFIX


def test_the_schedule_is_a_function_of_the_seed() -> None:
    assert make_schedule(7, 300) == make_schedule(7, 300)
    assert make_schedule(7, 300) != make_schedule(8, 300)
    plan = make_schedule(7, 300)
    assert len(plan) >= 10
    assert all(f.kind in chaos.FAULT_KINDS and f.node in ("a", "b") for f in plan)
    assert all(b.at >= a.at + a.duration + chaos.RECOVERY for a, b in itertools.pairwise(plan))
    assert plan[-1].at + plan[-1].duration <= 300
    # over a long run every fault of the set is drawn
    assert {f.kind for f in make_schedule(7, 3000)} == set(chaos.FAULT_KINDS)


@pytest.mark.parametrize("kind", (*chaos.FAULT_KINDS, "drop-all"))
def test_every_fault_has_a_heal_the_scenario_loader_accepts(kind: str) -> None:
    ids: dict[str, str] = {}
    fault, heal = fault_steps(PlannedFault(3, 1.0, kind, "b", 2.0))
    f = _parse_step(fault, "<test>", "fault", ids)
    h = _parse_step(heal, "<test>", "heal", ids)
    assert f.is_fault_action and (h.is_heal_action or h.action in ("restart", "sigcont"))


def test_writes_on_the_final_active_or_lost_or_not_replicated() -> None:
    acks = [Ack(1, "a", 1.0), Ack(2, "a", 2.0), Ack(3, "b", 3.0), Ack(4, "b", 4.0)]
    # B is the final active and has its own two writes; A's two were never replicated
    no_repl = judge_writes(acks, {3, 4}, "b", replication=False)
    assert (no_repl.present, no_repl.not_replicated, no_repl.lost) == (2, 2, 0)
    assert no_repl.check().ok and "not replicated yet" in no_repl.check().detail
    # with replication they count as lost
    repl = judge_writes(acks, {3, 4}, "b", replication=True)
    assert repl.lost == 2 and not repl.check().ok
    # a write the final active acknowledged itself and does not have is lost either way
    own = judge_writes(acks, {3}, "b", replication=False)
    assert own.lost == 1 and not own.check().ok


def test_a_switch_long_after_the_last_fault_is_a_violation() -> None:
    t0 = 1000.0
    transitions = [Transition(t0 + 10, "b", "Backup", "Primary", "TS Ping Failure", 2)]
    h = History(t0=t0, t_end=t0 + 100, transitions=transitions, fault_time=t0 + 5)
    assert judge_switches(h, [t0 + 5]).ok
    assert not judge_switches(h, [t0 + 5], bound=2.0).ok
    late = History(t0=t0, t_end=t0 + 100, transitions=[Transition(t0 + 60, "b", "Backup", "Primary", "x", 2)],
                   fault_time=t0 + 5)
    assert not judge_switches(late, [t0 + 5]).ok


@pytest.mark.timeout(400)
def test_a_short_chaos_run_holds_every_check(lab_prereqs: None, tmp_path_factory: pytest.TempPathFactory) -> None:
    """CI's short run (1.5 min of faults): every check passes, with the figures printed."""
    prefix = f"{PREFIX}x90"
    try:
        result = chaos.run_chaos(minutes=1.5, seed=3, prefix=prefix, labdir=tmp_path_factory.mktemp("chaos"))
    finally:
        cleanup_prefix(prefix)
    print(result.summary())
    assert result.applied, "no fault was applied"
    assert result.passed, result.summary()
