"""The scenario checks over recorded histories (pure: no lab, no root, no processes)."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from deploy.lab import checks, timeline
from deploy.lab.checks import (
    AppRecord,
    CheckResult,
    DsLag,
    DsReadback,
    DsWrite,
    History,
    HookRun,
    InteractionsReadback,
    LogLine,
    Resources,
    Sample,
    StepRun,
    Transition,
)
from deploy.lab.scenario import Expect, ResourceBounds

T0 = 1_800_000_000.0
DT = 0.04  # the runner samples every 40 ms


def track(node: str, spans: Sequence[tuple[float, float, str | None]], dt: float = DT) -> list[Sample]:
    """Samples of ``node`` every ``dt`` from (start, end, role) spans (seconds after T0; role None: silent)."""
    out: list[Sample] = []
    for start, end, role in spans:
        n = round((end - start) / dt)
        out += [Sample(T0 + start + i * dt, node, role, 1 if role else None) for i in range(n)]
    return out


def tr(t: float, node: str, old: str, new: str, reason: str = "", gen: int = 1) -> Transition:
    return Transition(T0 + t, node, old, new, reason, gen)


def hook(t: float, node: str, kind: str, gen: int, role: str = "", reason: str = "") -> HookRun:
    return HookRun(T0 + t, node, kind, role or ("Primary" if kind == "commence" else "Inactive"), gen, reason)


def history(
    samples: list[Sample],
    transitions: Sequence[Transition] = (),
    hooks: Sequence[HookRun] = (),
    *,
    fault: float | None = 5.0,
    end: float = 20.0,
    baseline: float | None = 3.0,
    excused: Sequence[tuple[float, float]] = (),
    logs: Sequence[LogLine] = (),
    steps: Sequence[StepRun] = (),
) -> History:
    return History(
        t0=T0,
        t_end=T0 + end,
        samples=sorted(samples, key=lambda s: s.t),
        transitions=sorted(transitions, key=lambda t: t.t),
        hooks=list(hooks),
        steps=list(steps),
        logs=list(logs),
        fault_time=None if fault is None else T0 + fault,
        baseline_time=None if baseline is None else T0 + baseline,
        excused=[(T0 + s, T0 + e) for s, e in excused],
    )


def by_name(results: Sequence[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


# A failover recorded as it happens: A Primary, B Backup; the fault at 5 s; B takes over at 8 s and A
# steps down at ``a_stale`` (so two Primaries from 8 s to ``a_stale``).
def failover(a_stale: float = 8.2) -> History:
    samples = track("a", [(0, a_stale, "Primary"), (a_stale, 20, "Inactive")])
    samples += track("b", [(0, 8.0, "Backup"), (8.0, 20, "Primary")])
    transitions = [
        tr(1.0, "a", "Init", "Primary", "Won Start-up Negotiation", 1),
        tr(1.2, "b", "Init", "Backup", "", 1),
        tr(6.0, "b", "Backup", "Reconnecting", "", 1),
        tr(8.0, "b", "Reconnecting", "Primary", "Reconnect Timeout", 2),
        tr(a_stale, "a", "Primary", "Inactive", "Higher Generation Seen", 1),
    ]
    hooks = [
        hook(1.05, "a", "commence", 1, reason="Won Start-up Negotiation"),
        hook(8.05, "b", "commence", 2, reason="Reconnect Timeout"),
        hook(a_stale + 0.05, "a", "discontinue", 1, reason="Higher Generation Seen"),
    ]
    return history(samples, transitions, hooks)


# ------------------------------------------------------------------------------------- dual primary


def test_two_overlapping_primaries_beyond_the_fencing_window_fail() -> None:
    """The required case: a recorded history where both nodes report Primary for 3 s."""
    h = failover(a_stale=11.0)
    result = checks.check_dual_primary(h, max_window=1.0)
    assert not result.ok
    assert result.value == pytest.approx(3.0, abs=2 * DT)
    assert "beyond the fencing window of 1 s" in result.detail
    assert "t=+8.000 s" in result.detail
    # and the whole evaluation fails on it, whatever else is fine
    results = by_name(checks.evaluate(h, Expect(switch=True, max_dual_primary=1.0)))
    assert not results["dual primary"].ok
    assert results["switch"].ok
    assert not checks.passed(results.values())


def test_an_overlap_within_the_fencing_window_passes_and_is_measured() -> None:
    h = failover(a_stale=8.2)
    result = checks.check_dual_primary(h, max_window=0.5)
    assert result.ok, result.detail
    assert result.value == pytest.approx(0.2, abs=DT)
    assert checks.measure(h).dual_primary_max == pytest.approx(0.2, abs=DT)


def test_two_primaries_inside_a_declared_partition_are_counted() -> None:
    """Issue 16: a checker never excuses what it exists to catch; the partition share is reported."""
    samples = track("a", [(0, 12.0, "Primary"), (12.0, 20, "Inactive")])
    samples += track("b", [(0, 7.0, "Backup"), (7.0, 20, "Primary")])
    inside = history(samples, excused=[(5.0, 11.9)])
    result = checks.check_dual_primary(inside, max_window=0.5)
    assert not result.ok
    assert result.value == pytest.approx(5.0, abs=DT)
    assert "inside declared partitions (counted)" in result.detail
    assert checks.measure(inside).dual_primary_max == pytest.approx(5.0, abs=DT)


def test_an_isolated_primary_that_resumes_is_not_a_switch_and_owes_its_hooks() -> None:
    samples = track("a", [(0, 5.2, "Primary"), (5.2, 12.0, "Stepped Down"), (12.0, 12.5, "Init"),
                          (12.5, 20, "Primary")])
    samples += track("b", [(0, 20, "Backup")])
    transitions = [
        tr(1.0, "a", "Init", "Primary", "First Started Becomes Active", 1),
        tr(5.2, "a", "Primary", "Stepped Down", "Isolated from the Network and from the Backup", 1),
        tr(12.0, "a", "Stepped Down", "Init", "", 1),
        tr(12.5, "a", "Init", "Primary", "First Started Becomes Active", 2),
    ]
    hooks = [
        hook(1.05, "a", "commence", 1, reason="First Started Becomes Active"),
        hook(5.25, "a", "discontinue", 1, role="Stepped Down", reason="Isolated from the Network and from the Backup"),
        hook(12.55, "a", "commence", 2, reason="First Started Becomes Active"),
    ]
    h = history(samples, transitions, hooks)
    assert checks.switches(h.transitions, h.fault_time) == []
    assert checks.check_hooks(h).ok, checks.check_hooks(h).detail
    # the Discontinue hook of the step-down is due: without it the check fails
    assert not checks.check_hooks(history(samples, transitions, [hooks[0], hooks[2]])).ok
    # after B took over in between, A becoming Primary again is a switch
    took = [*transitions[:3], tr(9.0, "b", "Backup", "Primary", "Primary Unreachable", 2),
            tr(12.5, "a", "Init", "Primary", "First Started Becomes Active", 3)]
    assert len(checks.switches(took, h.fault_time)) == 2


def test_a_node_that_does_not_answer_is_not_counted_as_primary() -> None:
    """A frozen primary serves nothing: its unanswered samples end its last Primary sample."""
    samples = track(
        "a", [(0, 5.0, "Primary"), (5.0, 11.0, None), (11.0, 11.2, "Primary"), (11.2, 20, "Inactive")]
    )
    samples += track("b", [(0, 8.0, "Backup"), (8.0, 20, "Primary")])
    h = history(samples)
    result = checks.check_dual_primary(h, max_window=0.5)
    assert result.ok, result.detail
    assert result.value == pytest.approx(0.2, abs=DT)


def test_interval_helpers() -> None:
    assert checks.intersect([(0, 5), (7, 9)], [(4, 8)]) == [(4, 5), (7, 8)]
    assert checks.subtract([(0, 10)], [(2, 3), (5, 6)]) == [(0, 2), (3, 5), (6, 10)]
    assert checks.subtract([(0, 1)], [(0, 1)]) == []
    samples = [Sample(0.0, "a", "Primary"), Sample(1.0, "a", "Primary"), Sample(2.0, "a", "Backup")]
    assert checks.role_intervals(samples, "a", "Primary", 3.0) == [(0.0, 2.0)]
    assert checks.role_intervals(samples, "a", "Backup", 3.0) == [(2.0, 3.0)]


# ------------------------------------------------------------------------------------------ switch


def test_a_switch_within_its_bound_passes_and_a_late_one_fails() -> None:
    h = failover()
    ok = checks.check_switch(h, Expect(switch=True, switch_within=4.0))
    assert ok is not None and ok.ok and ok.value == pytest.approx(3.0)
    late = checks.check_switch(h, Expect(switch=True, switch_within=2.0))
    assert late is not None and not late.ok
    assert "later than the bound of 2 s" in late.detail


def test_no_switch_when_one_was_expected_fails_with_the_roles() -> None:
    samples = track("a", [(0, 20, "Primary")]) + track("b", [(0, 20, "Backup")])
    h = history(samples, [tr(1.0, "a", "Init", "Primary", "x", 1), tr(1.2, "b", "Init", "Backup")])
    result = checks.check_switch(h, Expect(switch=True))
    assert result is not None and not result.ok
    assert "expected a switch, none happened" in result.detail
    assert "A Primary, B Backup" in result.detail


def test_a_switch_when_the_fault_was_within_tolerance_fails() -> None:
    h = failover()
    result = checks.check_switch(h, Expect(switch=False))
    assert result is not None and not result.ok
    assert "expected no switch" in result.detail and "Reconnect Timeout" in result.detail


def test_a_switch_before_the_fault_is_reported() -> None:
    h = failover()
    h.fault_time = T0 + 9.0  # the switch at 8 s came before the fault
    result = checks.check_no_switch_before_fault(h)
    assert result is not None and not result.ok
    assert "a switch before the fault" in result.detail


def test_switch_count_and_reasons() -> None:
    h = failover()
    count = checks.check_switch_count(h, 1)
    assert count is not None and count.ok
    wrong_count = checks.check_switch_count(h, 20)
    assert wrong_count is not None and not wrong_count.ok
    reason = checks.check_reason(h, ("Reconnect Timeout",))
    assert reason is not None and reason.ok
    either = checks.check_reason(h, ("Primary Unreachable", "reconnect timeout"))  # any, case-insensitive
    assert either is not None and either.ok
    wrong = checks.check_reason(h, ("TS Ping Failure",))
    assert wrong is not None and not wrong.ok and "'Reconnect Timeout'" in wrong.detail
    demote = checks.check_demote_reason(h, ("Higher Generation Seen",))
    assert demote is not None and demote.ok
    bad_demote = checks.check_demote_reason(h, ("Discontinue Received",))
    assert bad_demote is not None and not bad_demote.ok


def test_visits() -> None:
    h = failover()
    ok = checks.check_visits(h, {"b": ("Reconnecting", "Primary")})
    assert ok is not None and ok.ok and "Reconnecting -> Primary" in ok.detail
    missing = checks.check_visits(h, {"a": ("Reconnecting",)})
    assert missing is not None and not missing.ok and "A never entered Reconnecting" in missing.detail


# ------------------------------------------------------------------------------------- final roles


def test_final_roles_use_the_last_samples_and_know_unreachable() -> None:
    samples = track("a", [(0, 5, "Primary"), (5, 20, None)]) + track("b", [(0, 20, "Backup")])
    h = history(samples)
    assert checks.final_roles(h.samples) == {"a": "unreachable", "b": "Backup"}
    ok = checks.check_final_roles(h, {"a": ("unreachable",), "b": ("Backup", "Reconnecting")})
    assert ok is not None and ok.ok
    bad = checks.check_final_roles(h, {"a": ("Primary",)})
    assert bad is not None and not bad.ok and "A is unreachable, expected Primary" in bad.detail


# ------------------------------------------------------------------------------------------- hooks


def test_hooks_once_per_role_change_pass() -> None:
    result = checks.check_hooks(failover())
    assert result.ok, result.detail
    assert "A commence 1 discontinue 1, B commence 1 discontinue 0" in result.detail


def test_a_missing_discontinue_hook_fails() -> None:
    h = failover()
    h.hooks = [x for x in h.hooks if x.kind != "discontinue"]
    result = checks.check_hooks(h)
    assert not result.ok
    assert "A discontinue hook did not run for the change at generation 1" in result.detail


def test_a_hook_that_ran_twice_fails() -> None:
    h = failover()
    h.hooks.append(hook(8.3, "b", "commence", 2, reason="Reconnect Timeout"))
    result = checks.check_hooks(h)
    assert not result.ok
    assert "B commence hook ran 1 time(s) too many at generation 2" in result.detail


def test_a_hook_told_another_reason_than_the_event_log_fails() -> None:
    h = failover()
    h.hooks = [
        HookRun(x.t, x.node, x.kind, x.role, x.generation, "Manual Switchover" if x.node == "b" else x.reason)
        for x in h.hooks
    ]
    result = checks.check_hooks(h)
    assert not result.ok
    assert "B commence hook got role 'Primary' reason 'Manual Switchover'" in result.detail
    assert "'Reconnect Timeout'" in result.detail


def test_hooks_count_every_kind_of_leaving_primary() -> None:
    transitions = [
        tr(1, "a", "Init", "Primary", gen=1),
        tr(2, "a", "Primary", "Error", gen=1),
        tr(3, "a", "Error", "Init", gen=1),
        tr(4, "a", "Init", "Primary", gen=2),
        tr(5, "a", "Primary", "Stopping", gen=2),
        tr(6, "b", "Init", "Backup", gen=2),
        tr(7, "b", "Backup", "Reconnecting", gen=2),  # no hook for leaving a backup role
    ]
    due = checks.expected_hooks(transitions)
    assert due == {
        ("a", "commence", 1): 1,
        ("a", "discontinue", 1): 1,
        ("a", "commence", 2): 1,
        ("a", "discontinue", 2): 1,
    }


def test_a_killed_primary_owes_no_discontinue_hook() -> None:
    """kill -9 leaves no transition out of Primary in its log, so no Discontinue is due."""
    transitions = [tr(1, "a", "Init", "Primary", gen=1), tr(9, "a", "Init", "Backup", gen=2)]
    h = history([], transitions, [hook(1.1, "a", "commence", 1)])
    assert checks.check_hooks(h).ok


# ------------------------------------------------------------------------------------ detection etc


def test_first_detection_is_the_earliest_record_or_warning_after_the_fault() -> None:
    h = failover()
    h.logs = [
        LogLine(T0 + 4.0, "b", "WARNING", "PrimaryMonitor", "before the fault: ignored"),
        LogLine(T0 + 5.4, "b", "WARNING", "PrimaryMonitor", "Ping to the notifier timed out"),
    ]
    det = checks.first_detection(h)
    assert det is not None and det[0] == pytest.approx(T0 + 5.4)
    assert "Ping to the notifier timed out" in det[1]
    m = checks.measure(h)
    assert m.detection == pytest.approx(0.4) and m.switch == pytest.approx(3.0) and m.switches == 1
    bound = checks.check_detection(h, 0.3)
    assert bound is not None and not bound.ok


def test_sampling_rate_check() -> None:
    fast = history(track("a", [(0, 10, "Primary")]) + track("b", [(0, 10, "Backup")]))
    assert checks.check_sampling(fast).ok
    slow = history(track("a", [(0, 10, "Primary")], dt=0.1) + track("b", [(0, 10, "Backup")]))
    result = checks.check_sampling(slow)
    assert not result.ok and "A 10.0/s" in result.detail
    assert not checks.check_sampling(history([])).ok


def test_a_step_that_failed_fails_the_run() -> None:
    h = failover()
    h.steps = [StepRun("steps[1]", "start_pair", "start pair", T0, T0 + 1, False, "A did not start")]
    result = checks.check_steps(h)
    assert not result.ok and "A did not start" in result.detail
    h.steps, h.aborted = [], "the scenario's time budget ran out"
    assert "time budget" in checks.check_steps(h).detail


def test_resources_growth_is_bounded() -> None:
    h = failover()
    before = {"a": Resources(13, 47, 10, 40 << 20), "b": Resources(19, 57, 10, 41 << 20)}
    h.resources = {"before": before, "after": {"a": Resources(13, 48, 10, 42 << 20), "b": before["b"]}}
    bounds = ResourceBounds(max_thread_growth=2, max_fd_growth=8, max_socket_growth=6, max_rss_growth_mb=20)
    ok = checks.check_resources(h, Expect(resources=bounds))
    assert ok is not None
    assert ok.ok, ok.detail
    h.resources["after"]["b"] = Resources(40, 90, 30, 80 << 20)
    bad = checks.check_resources(h, Expect(resources=bounds))
    assert bad is not None and not bad.ok
    for text in ("B threads grew by 21", "B fds grew by 33", "B sockets grew by 20", "B rss grew by 39.0 MB"):
        assert text in bad.detail
    missing = checks.check_resources(h, Expect(resources=ResourceBounds(after="later")))
    assert missing is not None and not missing.ok and "'later'" in missing.detail


def test_evaluate_picks_the_checks_the_expectations_ask_for() -> None:
    names = [r.name for r in checks.evaluate(failover(), Expect())]
    assert names == ["steps", "sampling", "dual primary", "no early switch", "hooks once"]
    full = Expect(
        switch=True,
        switch_within=5,
        switches=1,
        reason=("Reconnect Timeout",),
        demote_reason=("Higher Generation Seen",),
        final_roles={"a": ("Inactive",), "b": ("Primary",)},
        visits={"b": ("Reconnecting",)},
        detect_within=2.0,
    )
    results = checks.evaluate(failover(), full)
    assert checks.passed(results), "\n".join(r.line() for r in results)
    assert len(results) == 12


def test_history_round_trips_through_json() -> None:
    h = failover()
    h.resources = {"before": {"a": Resources(1, 2, 3, 4)}}
    h.steps = [StepRun("steps[1]", "kill9", "kill -9 node-a", T0 + 5, T0 + 5.01, fault=True)]
    h.logs = [LogLine(T0 + 5.5, "b", "ERROR", "Supervisor", "x")]
    again = checks.history_from_dict(json.loads(json.dumps(checks.history_to_dict(h))))
    assert again == h


# ------------------------------------------------------------------------------------ workloads


def ds_writes(spans: Sequence[tuple[float, float, str, bool]], rate: float = 50.0) -> list[DsWrite]:
    """Writes every 1/rate s from (start, end, node, acked) spans; acknowledged ones get revisions."""
    out: list[DsWrite] = []
    rev = 0
    for start, end, node, acked in spans:
        for i in range(round((end - start) * rate)):
            seq = len(out) + 1
            rev += 1 if acked else 0
            out.append(
                DsWrite(
                    T0 + start + i / rate,
                    seq,
                    f"/Lab/Writer/w{seq:06d}",
                    str(seq),
                    node,
                    acked,
                    rev if acked else None,
                    "" if acked else "refused",
                )
            )
    return out


def ds_history(writes: list[DsWrite], present: Sequence[str], lags: Sequence[DsLag] = ()) -> History:
    h = failover()
    h.ds_writes = writes
    h.ds_lag = list(lags)
    h.ds_readback = DsReadback(T0 + 19.0, "b", "Primary", tuple(present))
    return h


def test_a_controlled_switch_that_keeps_every_acknowledged_write_passes() -> None:
    # A acknowledges until 5.2 s, the switch refuses writes until 8 s, then B acknowledges
    writes = ds_writes([(3.0, 5.2, "a", True), (5.2, 8.0, "a", False), (8.0, 10.0, "b", True)])
    present = [w.key for w in writes if w.acked]
    lags = [DsLag(T0 + 4.9, "b", "Backup", "streaming", 2, 1.5, 99)]
    result = checks.check_ds_writes(ds_history(writes, present, lags), max_lost=0)
    assert result is not None and result.ok, result.detail
    assert result.value == 0
    for text in (
        "210 acknowledged writes (A 110, B 100)",
        "0 lost on the final active B",
        "140 not acknowledged (0 not sent: no single Primary; 0 present anyway)",
        "2 revision(s) behind",
        "last apply lag 1.5 ms",
        "applied revision 99, last acknowledged before the fault 100",
    ):
        assert text in result.detail, result.detail


def test_an_acknowledged_write_missing_on_the_final_active_fails_a_bounded_run() -> None:
    writes = ds_writes([(3.0, 5.0, "a", True), (8.0, 9.0, "b", True)])
    lost = {writes[98].key, writes[99].key, writes[100].key}  # the last two of A, the first of B
    present = [w.key for w in writes if w.key not in lost]
    h = ds_history(writes, present)
    result = checks.check_ds_writes(h, max_lost=0)
    assert result is not None and not result.ok
    assert result.value == 3
    assert "3 lost on the final active B" in result.detail
    assert "/Lab/Writer/w000099 (acked by A)" in result.detail
    # a crash run sets no bound: the same loss is reported, and passes
    report = checks.check_ds_writes(h, max_lost=None)
    assert report is not None and report.ok and report.value == 3
    assert "no replication state of the backup was recorded" in report.detail
    assert not checks.passed(checks.evaluate(h, Expect(max_lost_ds_writes=0)))


def test_unacknowledged_writes_never_count_as_lost_and_the_lag_is_the_last_before_the_fault() -> None:
    writes = ds_writes([(3.0, 4.0, "a", True), (4.0, 5.0, "a", False), (5.0, 5.1, "", False)])
    present = [w.key for w in writes if w.acked] + [writes[60].key]  # one unacknowledged arrived anyway
    lags = [
        DsLag(T0 + 4.8, "b", "Backup", "streaming", 7, 30.0, 40),
        DsLag(T0 + 4.95, "b", "Backup", "streaming", 12, 41.0, 38),
        DsLag(T0 + 5.2, "b", "Reconnecting", "stopped", None, None, 38),  # after the fault: not it
        DsLag(T0 + 4.97, "a", "Primary", "", None, None, 50),  # not a backup
    ]
    result = checks.check_ds_writes(ds_history(writes, present, lags), max_lost=0)
    assert result is not None and result.ok, result.detail
    assert "55 not acknowledged (5 not sent: no single Primary; 1 present anyway)" in result.detail
    assert "reported 12 revision(s) behind, last apply lag 41.0 ms at t=+4.950 s" in result.detail
    assert checks.lag_at(lags, T0 + 5.0) == lags[1]


def test_ds_check_needs_a_readback_and_applies_only_to_writer_runs() -> None:
    h = failover()
    assert checks.check_ds_writes(h, max_lost=None) is None
    missing = checks.check_ds_writes(h, max_lost=0)
    assert missing is not None and not missing.ok and "no DS write was recorded" in missing.detail
    h.ds_writes = ds_writes([(3.0, 4.0, "a", True)])
    no_readback = checks.check_ds_writes(h, max_lost=0)
    assert no_readback is not None and not no_readback.ok and "not read back" in no_readback.detail
    h.ds_readback = DsReadback(T0 + 19, "b", "Primary", error="node did not answer")
    failed = checks.check_ds_writes(h, max_lost=None)
    assert failed is not None and not failed.ok and "node did not answer" in failed.detail


def op(t: float, app: str, name: str, iid: str, shadowed: bool = True, text: str = "") -> AppRecord:
    return AppRecord(T0 + t, app, "op", name, iid, None, shadowed, text)


def journal_a() -> list[AppRecord]:
    """A's app before the switch: chat-1 (2 messages), mail-2 (1), callback-3 disconnected."""
    return [
        AppRecord(T0 + 1.5, "a", "resumed", messages={}),
        op(2.0, "a", "create", "chat-1"),
        op(2.1, "a", "append", "chat-1", text="hello"),
        op(2.2, "a", "create", "mail-2"),
        op(2.3, "a", "append", "mail-2", text="dear"),
        op(2.4, "a", "create", "callback-3"),
        op(2.5, "a", "append", "chat-1", text="how are you"),
        op(2.6, "a", "disconnect", "callback-3"),
        op(4.9, "a", "create", "chat-4", shadowed=False),  # acknowledged without the backup
    ]


def app_history(records: list[AppRecord], transcripts: dict[str, tuple[str, ...]]) -> History:
    h = failover()
    h.app_records = records
    h.interactions_readback = InteractionsReadback(T0 + 19, "b", "Primary", transcripts)
    return h


def test_every_shadowed_interaction_and_message_on_the_new_active_passes() -> None:
    records = [*journal_a(), AppRecord(T0 + 8.1, "b", "resumed", messages={"chat-1": 2, "mail-2": 1})]
    records.append(op(8.5, "b", "append", "chat-1", text="B here"))
    transcripts = {"chat-1": ("hello", "how are you", "B here"), "mail-2": ("dear",)}
    result = checks.check_interactions(app_history(records, transcripts), max_lost=0)
    assert result is not None and result.ok, result.detail
    for text in (
        "9 acknowledged operations (A 8, B 1)",
        "0 of 2 shadowed interactions lost",
        "0 of 3 shadowed messages lost",
        "1 operation(s) acknowledged without the backup",
    ):
        assert text in result.detail, result.detail


def test_a_missing_interaction_or_message_fails() -> None:
    records = [*journal_a(), AppRecord(T0 + 8.1, "b", "resumed", messages={"chat-1": 1})]
    transcripts = {"chat-1": ("hello",)}  # mail-2 gone, and chat-1 lacks "how are you"
    h = app_history(records, transcripts)
    assert h.interactions_readback is not None
    loss = checks.interaction_loss(h.app_records, h.interactions_readback)
    assert loss.lost == ["mail-2"] and loss.lost_messages == 2 and loss.expected == 2
    result = checks.check_interactions(h, max_lost=0)
    assert result is not None and not result.ok and result.value == 3
    assert "1 of 2 shadowed interactions lost, 2 of 3 shadowed messages lost" in result.detail
    assert "first lost: mail-2" in result.detail
    assert not checks.passed(checks.evaluate(h, Expect(max_lost_interactions=0)))


def test_an_interaction_the_new_active_ended_since_is_judged_by_its_resume() -> None:
    records = [*journal_a(), AppRecord(T0 + 8.1, "b", "resumed", messages={"chat-1": 2, "mail-2": 0})]
    records.append(op(8.6, "b", "disconnect", "chat-1"))
    records.append(op(8.7, "b", "disconnect", "mail-2"))
    h = app_history(records, {})
    rb = h.interactions_readback
    assert rb is not None
    loss = checks.interaction_loss(h.app_records, rb)
    # chat-1 had both its messages when B resumed; mail-2 had lost its one
    assert loss.lost == [] and loss.ended_after == 2 and loss.lost_messages == 1


def test_interactions_check_needs_a_journal_and_a_readback() -> None:
    h = failover()
    assert checks.check_interactions(h, max_lost=None) is None
    missing = checks.check_interactions(h, max_lost=0)
    assert missing is not None and not missing.ok and "no application journal" in missing.detail
    h.app_records = journal_a()
    no_rb = checks.check_interactions(h, max_lost=0)
    assert no_rb is not None and not no_rb.ok and "not read back" in no_rb.detail


def test_workload_records_round_trip_through_json() -> None:
    h = ds_history(
        ds_writes([(3.0, 3.2, "a", True)]),
        ["/Lab/Writer/w000001"],
        [DsLag(T0 + 3.1, "b", "Backup", "streaming", 0, 1.0, 5)],
    )
    h.app_records = [*journal_a(), AppRecord(T0 + 8.1, "b", "resumed", messages={"chat-1": 2})]
    h.interactions_readback = InteractionsReadback(T0 + 19, "b", "Primary", {"chat-1": ("hello",)})
    again = checks.history_from_dict(json.loads(json.dumps(checks.history_to_dict(h))))
    assert again == h


# ---------------------------------------------------------------------------------------- timeline


def test_text_timeline_shows_fault_detection_changes_hooks_and_overlaps() -> None:
    h = failover(a_stale=8.3)
    h.steps = [StepRun("steps[3]", "kill9", "SIGSTOP node-a", T0 + 5, T0 + 5.01, fault=True)]
    h.logs = [LogLine(T0 + 5.4, "b", "WARNING", "PrimaryMonitor", "notifier ping timed out")]
    text = timeline.render_text(h, "node-freeze-long")
    lines = text.splitlines()
    assert lines[0].startswith("timeline of node-freeze-long")
    assert any("FAULT" in ln and "SIGSTOP node-a" in ln for ln in lines)
    assert any("DETECT" in ln and "+0.400 s after the fault" in ln for ln in lines)
    assert any(
        "Reconnecting -> Primary (Reconnect Timeout) gen 2" in ln and "switch +3.000 s" in ln for ln in lines
    )
    assert any("hook commence ran" in ln for ln in lines)
    assert any("two Primaries for 0.3" in ln for ln in lines)
    times = [float(ln.split()[0]) for ln in lines[1:]]
    assert times == sorted(times)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_png_timeline_is_a_valid_png(tmp_path: Path) -> None:
    h = failover(a_stale=8.3)
    h.steps = [
        StepRun("steps[3]", "kill9", "kill -9 node-a", T0 + 5, T0 + 5.01, fault=True),
        StepRun("steps[4]", "heal", "heal all", T0 + 9, T0 + 9.01, heal=True),
    ]
    results = checks.evaluate(h, Expect(switch=True))
    path = timeline.render_png(h, tmp_path / "run.png", title="node-crash: PASS", checks=results)
    data = path.read_bytes()
    width, height = _png_size(data)
    assert width == 1400 and height > 200
    # the image data inflates to exactly one filter byte plus RGB per pixel and row
    idat = b""
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(kind + body)
        if kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + 3 * width)
    primary_green = bytes(timeline.ROLE_COLOURS["Primary"])
    assert primary_green in raw and bytes(timeline.RED) in raw
