"""Checks over a recorded scenario run: pure functions of data (no clock, no files, no sockets).

The runner (:mod:`deploy.lab.runner`) records a :class:`History`: role samples of both nodes taken
through their admin sockets (at least 20 a second), both event logs (:class:`Transition`), both hook
logs (:class:`HookRun`), warning lines of both node logs, what each step did and when, and resource
snapshots.  :func:`evaluate` turns it and the scenario's :class:`~deploy.lab.scenario.Expect` into a
list of :class:`CheckResult`; tests feed recorded histories straight in.

Definitions
    switch          a transition into Primary (event log) at or after the fault time
    demotion        a transition out of Primary
    dual Primary    both nodes *report* Primary in their samples: a sample holds until the next sample
                    of that node; an unanswered sample (a frozen or dead node serves nothing) ends it.
                    Every window counts, inside a declared partition (a fault step with
                    ``partition = true``, until its heal) too: two serving actives are what this check
                    exists to catch (issue 16); the part inside partitions is only reported apart.
    resume          an isolated Primary that stepped down (Stepped Down) and, its network back,
                    became Primary again with no other Primary in between: not a switch.
    hooks once      per node, the Commence hook runs once per transition into Primary and the
                    Discontinue hook once per transition Primary -> Inactive/Error/Stopping, each
                    with the generation of that transition.
    detection       the first event-log record or WARNING/ERROR log line of either node after the fault.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from deploy.lab.scenario import UNREACHABLE, Expect

PRIMARY = "Primary"
#: where a Discontinue hook is due when a Primary goes there
DISCONTINUE_STATES = frozenset({"Inactive", "Error", "Stopping", "Stepped Down"})
STEPPED_DOWN = "Stepped Down"


# --------------------------------------------------------------------------------------------------
# recorded data


@dataclass(frozen=True)
class Sample:
    """A node's role as its admin socket answered at time ``t`` (``role`` None: no answer)."""

    t: float
    node: str
    role: str | None
    generation: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class Transition:
    """One record of a node's event log."""

    t: float
    node: str
    old: str
    new: str
    reason: str = ""
    generation: int = 0
    event: str = ""

    @property
    def into_primary(self) -> bool:
        return self.new == PRIMARY and self.old != PRIMARY

    @property
    def out_of_primary(self) -> bool:
        return self.old == PRIMARY and self.new != PRIMARY


@dataclass(frozen=True)
class HookRun:
    """One run of the recording hook (``kind`` commence or discontinue)."""

    t: float
    node: str
    kind: str
    role: str = ""
    generation: int = 0
    reason: str = ""


@dataclass(frozen=True)
class LogLine:
    t: float
    node: str
    level: str
    actor: str
    message: str


@dataclass(frozen=True)
class StepRun:
    """What one executed step did: its time span, and an error if it failed."""

    where: str
    action: str
    text: str
    start: float
    end: float
    ok: bool = True
    error: str = ""
    fault: bool = False
    heal: bool = False


@dataclass(frozen=True)
class Resources:
    threads: int
    fds: int
    sockets: int
    rss: int  # bytes


@dataclass(frozen=True)
class DsWrite:
    """One write of the DS writer workload: ``acked`` when the node answered it with a revision."""

    t: float
    seq: int
    key: str
    value: str
    node: str  # the node it was sent to ("" if no node was Primary)
    acked: bool
    revision: int | None = None
    error: str = ""


@dataclass(frozen=True)
class DsLag:
    """The replication state a node reported (admin op ``ds.replication``) at time ``t``."""

    t: float
    node: str
    role: str
    state: str = ""
    lag_revisions: int | None = None
    lag_ms: float | None = None  # the last apply lag the backup measured
    revision: int | None = None


@dataclass(frozen=True)
class DsReadback:
    """The writer's keys present on a node when the workload stopped (``error``: it could not tell)."""

    t: float
    node: str
    role: str
    keys: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class AppRecord:
    """One journal line of a reference application (``switchover app --journal``).

    ``kind`` is ``op`` (an acknowledged operation) or ``resumed`` (the app took over its node's
    interactions: ``messages`` maps each id to its transcript length then)."""

    t: float
    app: str  # the node the app runs beside
    kind: str
    op: str = ""
    iid: str = ""
    rev: int | None = None
    shadowed: bool = False
    text: str = ""
    messages: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class InteractionsReadback:
    """The interactions of a node (admin op ``interactions``): id -> the texts of its transcript."""

    t: float
    node: str
    role: str
    transcripts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    error: str = ""


@dataclass
class History:
    """Everything recorded during one run; times are Unix epoch seconds."""

    t0: float
    t_end: float
    samples: list[Sample] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    hooks: list[HookRun] = field(default_factory=list)
    steps: list[StepRun] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)
    fault_time: float | None = None
    heal_time: float | None = None
    baseline_time: float | None = None  # the pair was up and stable (end of the first wait)
    excused: list[tuple[float, float]] = field(default_factory=list)  # declared partitions
    resources: dict[str, dict[str, Resources]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # runner diagnostics shown with the result
    aborted: str = ""  # why the run stopped early ("" if it ran to the end)
    ds_writes: list[DsWrite] = field(default_factory=list)  # the DS writer workload
    ds_lag: list[DsLag] = field(default_factory=list)
    ds_readback: DsReadback | None = None
    app_records: list[AppRecord] = field(default_factory=list)  # the reference applications' journals
    interactions_readback: InteractionsReadback | None = None


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    value: float | None = None

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


@dataclass(frozen=True)
class Measurements:
    detection: float | None  # seconds from the fault
    detection_what: str
    switch: float | None  # seconds from the fault to the first switch
    switches: int
    dual_primary_max: float  # longest window, declared partitions included
    dual_primary_total: float  # every window, partitions included
    samples_per_second: dict[str, float]
    unreachable_samples: dict[str, int]


# --------------------------------------------------------------------------------------------------
# interval arithmetic


Interval = tuple[float, float]


def role_intervals(samples: Iterable[Sample], node: str, role: str, t_end: float) -> list[Interval]:
    """When ``node`` reported ``role``: each sample holds until the node's next sample (or ``t_end``)."""
    own = sorted((s for s in samples if s.node == node), key=lambda s: s.t)
    out: list[Interval] = []
    for i, s in enumerate(own):
        if s.role != role:
            continue
        end = own[i + 1].t if i + 1 < len(own) else max(t_end, s.t)
        if out and abs(out[-1][1] - s.t) < 1e-9:
            out[-1] = (out[-1][0], end)
        else:
            out.append((s.t, end))
    return out


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for s1, e1 in a:
        for s2, e2 in b:
            s, e = max(s1, s2), min(e1, e2)
            if e > s:
                out.append((s, e))
    return sorted(out)


def subtract(intervals: Sequence[Interval], holes: Sequence[Interval]) -> list[Interval]:
    out = list(intervals)
    for hs, he in holes:
        nxt: list[Interval] = []
        for s, e in out:
            if he <= s or hs >= e:
                nxt.append((s, e))
                continue
            if s < hs:
                nxt.append((s, hs))
            if he < e:
                nxt.append((he, e))
        out = nxt
    return sorted(out)


def dual_primary(
    samples: Sequence[Sample], t_end: float, excused: Sequence[Interval] = ()
) -> tuple[list[Interval], list[Interval]]:
    """(every window where both nodes reported Primary, the parts outside ``excused``)."""
    nodes = sorted({s.node for s in samples})
    if len(nodes) < 2:
        return [], []
    both = role_intervals(samples, nodes[0], PRIMARY, t_end)
    for node in nodes[1:]:
        both = intersect(both, role_intervals(samples, node, PRIMARY, t_end))
    return both, subtract(both, excused)


# --------------------------------------------------------------------------------------------------
# derived facts


def resumes(transitions: Iterable[Transition]) -> list[Transition]:
    """Transitions into Primary of a node that had stepped down (isolated) and no other node became
    Primary since: the same primary resuming, not a switch."""
    ordered = sorted(transitions, key=lambda t: t.t)
    out: list[Transition] = []
    stepped: set[str] = set()
    for t in ordered:
        if t.old == PRIMARY and t.new == STEPPED_DOWN:
            stepped.add(t.node)
        elif t.into_primary:
            if t.node in stepped:
                out.append(t)
            stepped = set()  # any new Primary ends every pending resume
    return out


def switches(transitions: Iterable[Transition], since: float | None) -> list[Transition]:
    """Transitions into Primary at or after ``since`` (None: none, there was no fault), resumes apart."""
    if since is None:
        return []
    ts = list(transitions)
    back = set(resumes(ts))
    return sorted((t for t in ts if t.into_primary and t.t >= since and t not in back), key=lambda t: t.t)


def demotions(transitions: Iterable[Transition], since: float | None) -> list[Transition]:
    if since is None:
        return []
    return sorted((t for t in transitions if t.out_of_primary and t.t >= since), key=lambda t: t.t)


def final_roles(samples: Iterable[Sample]) -> dict[str, str]:
    """Each node's last sampled role (``unreachable`` if its last sample went unanswered)."""
    last: dict[str, Sample] = {}
    for s in sorted(samples, key=lambda s: s.t):
        last[s.node] = s
    return {n: (s.role if s.role is not None else UNREACHABLE) for n, s in last.items()}


def first_detection(history: History) -> tuple[float, str] | None:
    """(time, what) of the first event-log record or WARNING+ log line after the fault."""
    if history.fault_time is None:
        return None
    ft = history.fault_time
    found: list[tuple[float, str]] = [
        (t.t, f"{t.node.upper()} {t.old} -> {t.new}" + (f" ({t.reason})" if t.reason else ""))
        for t in history.transitions
        if t.t >= ft
    ]
    found += [
        (ln.t, f"{ln.node.upper()} {ln.level} {ln.actor}: {ln.message}") for ln in history.logs if ln.t >= ft
    ]
    return min(found, key=lambda x: x[0]) if found else None


def sampling_rates(samples: Sequence[Sample]) -> tuple[dict[str, float], dict[str, int]]:
    rates: dict[str, float] = {}
    unreachable: dict[str, int] = {}
    for node in sorted({s.node for s in samples}):
        own = [s for s in samples if s.node == node]
        span = own[-1].t - own[0].t if len(own) > 1 else 0.0
        rates[node] = (len(own) - 1) / span if span > 0 else 0.0
        unreachable[node] = sum(1 for s in own if s.role is None)
    return rates, unreachable


def measure(history: History) -> Measurements:
    det = first_detection(history)
    sw = switches(history.transitions, history.fault_time)
    every, _ = dual_primary(history.samples, history.t_end, history.excused)
    rates, unreachable = sampling_rates(history.samples)
    ft = history.fault_time
    return Measurements(
        detection=None if det is None or ft is None else det[0] - ft,
        detection_what=det[1] if det else "",
        switch=sw[0].t - ft if sw and ft is not None else None,
        switches=len(sw),
        dual_primary_max=max((e - s for s, e in every), default=0.0),
        dual_primary_total=sum(e - s for s, e in every),
        samples_per_second=rates,
        unreachable_samples=unreachable,
    )


# --------------------------------------------------------------------------------------------------
# checks


def _rel(history: History, t: float) -> str:
    return f"t={t - history.t0:+.3f} s"


def _fmt_t(t: Transition, history: History) -> str:
    why = f" ({t.reason})" if t.reason else ""
    return f"{t.node.upper()} {t.old} -> {t.new}{why} at {_rel(history, t.t)}"


def check_steps(history: History) -> CheckResult:
    failed = [s for s in history.steps if not s.ok]
    if history.aborted or failed:
        first = failed[0] if failed else None
        detail = history.aborted or (f"{first.where} {first.text}: {first.error}" if first else "")
        return CheckResult("steps", False, f"the scenario could not run to its end: {detail}")
    return CheckResult("steps", True, f"{len(history.steps)} steps ran")


def check_sampling(history: History, minimum: float = 20.0) -> CheckResult:
    rates, unreachable = sampling_rates(history.samples)
    if not rates:
        return CheckResult("sampling", False, "no role samples were recorded")
    slow = {n: r for n, r in rates.items() if r < minimum}
    text = ", ".join(f"{n.upper()} {r:.1f}/s ({unreachable[n]} unanswered)" for n, r in rates.items())
    if slow:
        return CheckResult("sampling", False, f"fewer than {minimum:g} samples a second: {text}")
    return CheckResult("sampling", True, text)


def check_dual_primary(history: History, max_window: float) -> CheckResult:
    every, outside = dual_primary(history.samples, history.t_end, history.excused)
    longest = max(every, key=lambda w: w[1] - w[0], default=None)
    worst = longest[1] - longest[0] if longest else 0.0
    total = sum(e - s for s, e in every)
    inside_total = total - sum(e - s for s, e in outside)
    extra = f"; {inside_total:.3f} s of it inside declared partitions (counted)" if inside_total > 0 else ""
    if longest is None:
        return CheckResult("dual primary", True, "never two Primaries at once", 0.0)
    where = f"{worst:.3f} s from {_rel(history, longest[0])}"
    if worst > max_window:
        return CheckResult(
            "dual primary",
            False,
            f"two Primaries for {where}, beyond the fencing window of {max_window:g} s "
            f"({len(every)} window(s)){extra}",
            worst,
        )
    return CheckResult(
        "dual primary",
        True,
        f"longest two-Primary window {where} (fencing window {max_window:g} s){extra}",
        worst,
    )


def check_switch(history: History, expect: Expect) -> CheckResult | None:
    if expect.switch is None:
        return None
    ft = history.fault_time
    if ft is None:
        return CheckResult("switch", False, "no fault was applied, so no switch can be judged")
    sw = switches(history.transitions, ft)
    if not expect.switch:
        if sw:
            return CheckResult(
                "switch",
                False,
                f"expected no switch, but {_fmt_t(sw[0], history)} ({sw[0].t - ft:.3f} s after the fault)",
                sw[0].t - ft,
            )
        return CheckResult("switch", True, f"no switch in the {history.t_end - ft:.1f} s after the fault")
    if not sw:
        return CheckResult(
            "switch",
            False,
            f"expected a switch, none happened in the {history.t_end - ft:.1f} s after the fault"
            + _roles_hint(history),
        )
    took = sw[0].t - ft
    if expect.switch_within is not None and took > expect.switch_within:
        return CheckResult(
            "switch",
            False,
            f"{_fmt_t(sw[0], history)}: {took:.3f} s after the fault, later than the bound "
            f"of {expect.switch_within:g} s",
            took,
        )
    bound = f" (bound {expect.switch_within:g} s)" if expect.switch_within is not None else ""
    return CheckResult("switch", True, f"{_fmt_t(sw[0], history)}, {took:.3f} s after the fault{bound}", took)


def _roles_hint(history: History) -> str:
    roles = final_roles(history.samples)
    return "; roles at the end: " + ", ".join(f"{n.upper()} {r}" for n, r in sorted(roles.items()))


def check_switch_count(history: History, expected: int | None) -> CheckResult | None:
    if expected is None:
        return None
    n = len(switches(history.transitions, history.fault_time))
    ok = n == expected
    return CheckResult("switch count", ok, f"{n} switch(es) after the fault, expected {expected}", float(n))


def check_no_switch_before_fault(history: History) -> CheckResult | None:
    if history.baseline_time is None or history.fault_time is None:
        return None
    early = [
        t for t in history.transitions if t.into_primary and history.baseline_time <= t.t < history.fault_time
    ]
    if early:
        return CheckResult(
            "no early switch", False, f"a switch before the fault: {_fmt_t(early[0], history)}"
        )
    return CheckResult("no early switch", True, "no switch between the stable start and the fault")


def check_reason(history: History, expected: Sequence[str]) -> CheckResult | None:
    if not expected:
        return None
    sw = switches(history.transitions, history.fault_time)
    if not sw:
        return CheckResult(
            "reason", False, f"no switch after the fault to carry the reason {' or '.join(expected)!r}"
        )
    wrong = [t for t in sw if not any(e.casefold() in (t.reason or "").casefold() for e in expected)]
    want = " or ".join(repr(e) for e in expected)
    if wrong:
        return CheckResult(
            "reason", False, f"expected {want}, got {wrong[0].reason!r} ({_fmt_t(wrong[0], history)})"
        )
    got = sorted({t.reason for t in sw})
    return CheckResult("reason", True, f"{', '.join(repr(r) for r in got)} matches {want}")


def check_demote_reason(history: History, expected: Sequence[str]) -> CheckResult | None:
    if not expected:
        return None
    dem = demotions(history.transitions, history.fault_time)
    want = " or ".join(repr(e) for e in expected)
    if not dem:
        return CheckResult(
            "demote reason", False, f"no Primary stepped down after the fault (expected {want})"
        )
    first = dem[0]
    if not any(e.casefold() in (first.reason or "").casefold() for e in expected):
        return CheckResult("demote reason", False, f"expected {want}, got {_fmt_t(first, history)}")
    return CheckResult("demote reason", True, _fmt_t(first, history))


def check_final_roles(history: History, expected: Mapping[str, Sequence[str]]) -> CheckResult | None:
    if not expected:
        return None
    got = final_roles(history.samples)
    bad = [
        f"{n.upper()} is {got.get(n, 'never sampled')}, expected {' or '.join(want)}"
        for n, want in sorted(expected.items())
        if got.get(n) not in want
    ]
    text = ", ".join(f"{n.upper()} {r}" for n, r in sorted(got.items()))
    if bad:
        return CheckResult("final roles", False, "; ".join(bad))
    return CheckResult("final roles", True, text)


def check_visits(history: History, expected: Mapping[str, Sequence[str]]) -> CheckResult | None:
    if not expected:
        return None
    ft = history.fault_time
    if ft is None:
        return CheckResult("visits", False, "no fault was applied")
    entered = {n: [t.new for t in history.transitions if t.node == n and t.t >= ft] for n in expected}
    bad = [
        f"{n.upper()} never entered {state} after the fault"
        for n, states in sorted(expected.items())
        for state in states
        if state not in entered[n]
    ]
    seen = "; ".join(f"{n.upper()}: {' -> '.join(s) or 'no change'}" for n, s in sorted(entered.items()))
    if bad:
        return CheckResult("visits", False, "; ".join(bad) + f" (after the fault: {seen})")
    return CheckResult("visits", True, seen)


def expected_hooks(transitions: Iterable[Transition]) -> Counter[tuple[str, str, int]]:
    """(node, kind, generation) of every hook run the transitions call for."""
    due: Counter[tuple[str, str, int]] = Counter()
    for t in transitions:
        if t.into_primary:
            due[(t.node, "commence", t.generation)] += 1
        elif t.old == PRIMARY and t.new in DISCONTINUE_STATES:
            due[(t.node, "discontinue", t.generation)] += 1
    return due


def hook_mismatch(
    transitions: Iterable[Transition], hooks: Iterable[HookRun]
) -> tuple[Counter[tuple[str, str, int]], Counter[tuple[str, str, int]]]:
    """(hook runs due but missing, hook runs without a role change to justify them)."""
    due = expected_hooks(transitions)
    ran: Counter[tuple[str, str, int]] = Counter((h.node, h.kind, h.generation) for h in hooks)
    return due - ran, ran - due


def check_hooks(history: History) -> CheckResult:
    missing, extra = hook_mismatch(history.transitions, history.hooks)
    due = expected_hooks(history.transitions)
    counts = Counter((h.node, h.kind) for h in history.hooks)
    summary = (
        ", ".join(
            f"{n.upper()} commence {counts[(n, 'commence')]} discontinue {counts[(n, 'discontinue')]}"
            for n in sorted({k[0] for k in due} | {k[0] for k in counts})
        )
        or "no role change, no hook"
    )
    problems: list[str] = []
    for (n, k, g), c in sorted(missing.items()):
        problems.append(f"{n.upper()} {k} hook did not run for the change at generation {g} (missing {c})")
    for (n, k, g), c in sorted(extra.items()):
        problems.append(f"{n.upper()} {k} hook ran {c} time(s) too many at generation {g}")
    # what the hook was told must be what the event log says
    told: dict[tuple[str, str, int], set[tuple[str, str]]] = {}
    for t in history.transitions:
        if t.into_primary:
            told.setdefault((t.node, "commence", t.generation), set()).add((t.new, t.reason))
        elif t.old == PRIMARY and t.new in DISCONTINUE_STATES:
            told.setdefault((t.node, "discontinue", t.generation), set()).add((t.new, t.reason))
    for h in history.hooks:
        facts = told.get((h.node, h.kind, h.generation))
        if facts and (h.role, h.reason) not in facts:
            role, reason = sorted(facts)[0]
            problems.append(
                f"{h.node.upper()} {h.kind} hook got role {h.role!r} reason {h.reason!r}, the event log says "
                f"{role!r} {reason!r}"
            )
    if problems:
        return CheckResult("hooks once", False, "; ".join(problems) + f" (ran: {summary})")
    return CheckResult("hooks once", True, f"once per role change: {summary}")


def check_detection(history: History, within: float | None) -> CheckResult | None:
    if within is None:
        return None
    det = first_detection(history)
    if det is None or history.fault_time is None:
        return CheckResult("detection", False, "nothing was detected after the fault")
    took = det[0] - history.fault_time
    ok = took <= within
    return CheckResult("detection", ok, f"{took:.3f} s after the fault (bound {within:g} s): {det[1]}", took)


def check_resources(history: History, expect: Expect) -> CheckResult | None:
    bounds = expect.resources
    if bounds is None:
        return None
    before, after = history.resources.get(bounds.before), history.resources.get(bounds.after)
    if before is None or after is None:
        missing = bounds.before if before is None else bounds.after
        return CheckResult("resources", False, f"no resource measurement {missing!r} was taken")
    problems: list[str] = []
    lines: list[str] = []
    limits: list[tuple[str, int | float | None, float]] = [
        ("threads", bounds.max_thread_growth, 1),
        ("fds", bounds.max_fd_growth, 1),
        ("sockets", bounds.max_socket_growth, 1),
        ("rss", bounds.max_rss_growth_mb, 1024 * 1024),
    ]
    for node in sorted(before):
        if node not in after:
            problems.append(f"{node.upper()} was not measured at {bounds.after!r}")
            continue
        b, a = before[node], after[node]
        parts = []
        for name, limit, scale in limits:
            grow = (getattr(a, name) - getattr(b, name)) / scale
            unit = " MB" if name == "rss" else ""
            parts.append(f"{name} {getattr(b, name) / scale:.0f}->{getattr(a, name) / scale:.0f}{unit}")
            if limit is not None and grow > limit:
                problems.append(f"{node.upper()} {name} grew by {grow:.1f}{unit} (bound {limit:g}{unit})")
        lines.append(f"{node.upper()}: " + ", ".join(parts))
    if problems:
        return CheckResult("resources", False, "; ".join(problems) + " [" + "; ".join(lines) + "]")
    return CheckResult("resources", True, "; ".join(lines))


# --------------------------------------------------------------------------------------------------
# workloads: acknowledged DS writes, shadowed interactions


BACKUP_STATES = frozenset({"Backup", "Reconnecting", "Upgrade Higher", "Upgrade Lower"})


def lost_ds_writes(writes: Iterable[DsWrite], readback: DsReadback) -> list[DsWrite]:
    """Acknowledged writes whose key is not on the node read back (each key is written once)."""
    present = set(readback.keys)
    return [w for w in writes if w.acked and w.key not in present]


def lag_at(lags: Iterable[DsLag], t: float) -> DsLag | None:
    """The last replication state a backup reported at or before ``t``."""
    before = [g for g in lags if g.t <= t and g.role in BACKUP_STATES]
    return max(before, key=lambda g: g.t, default=None)


def _lag_text(lag: DsLag | None, history: History) -> str:
    if lag is None:
        return "no replication state of the backup was recorded before the fault"
    ms = f", last apply lag {lag.lag_ms:.1f} ms" if lag.lag_ms is not None else ""
    revs = "unknown" if lag.lag_revisions is None else str(lag.lag_revisions)
    return (
        f"the backup {lag.node.upper()} ({lag.state or 'state unknown'}) reported {revs} revision(s) behind"
        f"{ms} at {_rel(history, lag.t)}"
    )


def check_ds_writes(history: History, max_lost: int | None) -> CheckResult | None:
    """Acknowledged DS writes missing on the final active; with ``max_lost``, more fails."""
    writes = history.ds_writes
    if not writes:
        if max_lost is None:
            return None
        return CheckResult("ds writes", False, "no DS write was recorded (no ds_writer step ran?)")
    rb = history.ds_readback
    if rb is None or rb.error:
        why = rb.error if rb is not None else "the keys were not read back (no ds_writer_stop step ran?)"
        return CheckResult("ds writes", False, f"cannot count lost writes: {why}")
    acked = [w for w in writes if w.acked]
    lost = lost_ds_writes(writes, rb)
    unacked = [w for w in writes if not w.acked]
    present = set(rb.keys)
    kept_unacked = sum(1 for w in unacked if w.key in present)
    by_node = Counter(w.node.upper() for w in acked)
    text = (
        f"{len(acked)} acknowledged writes ({', '.join(f'{n} {c}' for n, c in sorted(by_node.items()))}), "
        f"{len(lost)} lost on the final active {rb.node.upper()} ({rb.role}); "
        f"{len(unacked)} not acknowledged ({sum(1 for w in unacked if not w.node)} not sent: no single Primary; "
        f"{kept_unacked} present anyway)"
    )
    if history.fault_time is not None:
        lag = lag_at(history.ds_lag, history.fault_time)
        text += "; at the fault " + _lag_text(lag, history)
        last = max(
            (w.revision for w in acked if w.t < history.fault_time and w.revision is not None), default=None
        )
        if last is not None and lag is not None and lag.revision is not None:
            text += f" (applied revision {lag.revision}, last acknowledged before the fault {last})"
        after = sum(1 for w in acked if w.t >= history.fault_time)
        text += f"; {after} acknowledged after the fault"
    if lost:
        text += "; first lost: " + ", ".join(f"{w.key} (acked by {w.node.upper()})" for w in lost[:3])
    ok = max_lost is None or len(lost) <= max_lost
    if max_lost is not None:
        text += f" (bound {max_lost})"
    return CheckResult("ds writes", ok, text, float(len(lost)))


@dataclass(frozen=True)
class InteractionLoss:
    """What a switch lost of the interactions the former active acknowledged as shadowed."""

    new_active: str
    expected: int  # created shadowed, not disconnected before the switch
    lost: list[str]  # ids missing on the new active
    messages: int  # messages appended (acknowledged shadowed) to the expected interactions
    lost_messages: int
    unshadowed: int  # operations acknowledged without the backup's confirmation
    ended_after: int  # expected interactions the new active's app disconnected afterwards


def interaction_loss(records: Sequence[AppRecord], readback: InteractionsReadback) -> InteractionLoss:
    """Compare the former active's acknowledged-and-shadowed operations with the new active.

    The apps beside the other node(s) published on the former active (an app publishes only while
    its node is Primary).  An interaction created with ``shadowed`` and not disconnected there must
    exist on the new active with the text of every shadowed append; if the new active's app
    disconnected it since, the transcript length its ``resumed`` record saw stands in for the texts.
    """
    new = readback.node
    old_ops = sorted((r for r in records if r.app != new and r.kind == "op"), key=lambda r: r.t)
    created: dict[str, bool] = {}
    texts: dict[str, list[str]] = {}
    ended: set[str] = set()
    unshadowed = 0
    for r in old_ops:
        if not r.shadowed:
            unshadowed += 1
        if r.op == "create":
            created[r.iid] = r.shadowed
        elif r.op == "disconnect":
            ended.add(r.iid)
        elif r.op == "append" and r.shadowed:
            texts.setdefault(r.iid, []).append(r.text)
    expected = [i for i, shadowed in created.items() if shadowed and i not in ended]
    new_records = sorted((r for r in records if r.app == new), key=lambda r: r.t)
    resumed = next((r for r in new_records if r.kind == "resumed"), None)
    closed_by_new = {r.iid for r in new_records if r.kind == "op" and r.op == "disconnect"}
    lost: list[str] = []
    lost_messages = 0
    ended_after = 0
    for iid in expected:
        want = texts.get(iid, [])
        if iid in readback.transcripts:
            have = set(readback.transcripts[iid])
            lost_messages += sum(1 for t in want if t not in have)
        elif iid in closed_by_new and resumed is not None and iid in resumed.messages:
            ended_after += 1
            lost_messages += max(0, len(want) - resumed.messages[iid])
        else:
            lost.append(iid)
            lost_messages += len(want)
    return InteractionLoss(
        new,
        len(expected),
        lost,
        sum(len(texts.get(i, [])) for i in expected),
        lost_messages,
        unshadowed,
        ended_after,
    )


def check_interactions(history: History, max_lost: int | None) -> CheckResult | None:
    """Interactions and messages acknowledged as shadowed but missing on the new active."""
    if not history.app_records:
        if max_lost is None:
            return None
        return CheckResult("interactions", False, "no application journal was recorded (no app step ran?)")
    rb = history.interactions_readback
    if rb is None or rb.error:
        why = rb.error if rb is not None else "the new active was not read back (no app_stop step ran?)"
        return CheckResult("interactions", False, f"cannot count lost interactions: {why}")
    loss = interaction_loss(history.app_records, rb)
    ops = Counter(r.app.upper() for r in history.app_records if r.kind == "op")
    text = (
        f"{sum(ops.values())} acknowledged operations ({', '.join(f'{n} {c}' for n, c in sorted(ops.items()))}); "
        f"on the new active {rb.node.upper()}: {len(loss.lost)} of {loss.expected} shadowed interactions "
        f"lost, {loss.lost_messages} of {loss.messages} shadowed messages lost; "
        f"{loss.unshadowed} operation(s) acknowledged without the backup"
    )
    if loss.ended_after:
        text += f"; {loss.ended_after} disconnected by the new active's app since (counted from its resume)"
    if loss.lost:
        text += "; first lost: " + ", ".join(loss.lost[:3])
    total = len(loss.lost) + loss.lost_messages
    ok = max_lost is None or total <= max_lost
    if max_lost is not None:
        text += f" (bound {max_lost} lost)"
    return CheckResult("interactions", ok, text, float(total))


def evaluate(history: History, expect: Expect, *, min_sample_rate: float = 20.0) -> list[CheckResult]:
    """Every check that applies to ``expect``, in a fixed order."""
    results: list[CheckResult | None] = [
        check_steps(history),
        check_sampling(history, min_sample_rate),
        check_dual_primary(history, expect.max_dual_primary),
        check_no_switch_before_fault(history) if expect.no_switch_before_fault else None,
        check_switch(history, expect),
        check_switch_count(history, expect.switches),
        check_reason(history, expect.reason),
        check_demote_reason(history, expect.demote_reason),
        check_detection(history, expect.detect_within),
        check_visits(history, expect.visits),
        check_final_roles(history, expect.final_roles),
        check_hooks(history) if expect.hooks_once else None,
        check_resources(history, expect),
        check_ds_writes(history, expect.max_lost_ds_writes),
        check_interactions(history, expect.max_lost_interactions),
    ]
    return [r for r in results if r is not None]


def passed(results: Iterable[CheckResult]) -> bool:
    return all(r.ok for r in results)


def history_to_dict(history: History) -> dict[str, Any]:
    """JSON-ready form of a history (the runner saves it next to the run as history.json)."""
    return asdict(history)


def history_from_dict(data: Mapping[str, Any]) -> History:
    """The inverse of :func:`history_to_dict` (replays a saved run through the checks)."""
    return History(
        t0=float(data["t0"]),
        t_end=float(data["t_end"]),
        samples=[Sample(**s) for s in data.get("samples", [])],
        transitions=[Transition(**t) for t in data.get("transitions", [])],
        hooks=[HookRun(**h) for h in data.get("hooks", [])],
        steps=[StepRun(**s) for s in data.get("steps", [])],
        logs=[LogLine(**ln) for ln in data.get("logs", [])],
        fault_time=data.get("fault_time"),
        heal_time=data.get("heal_time"),
        baseline_time=data.get("baseline_time"),
        excused=[(float(s), float(e)) for s, e in data.get("excused", [])],
        resources={
            label: {node: Resources(**r) for node, r in per_node.items()}
            for label, per_node in data.get("resources", {}).items()
        },
        notes=list(data.get("notes", [])),
        aborted=str(data.get("aborted", "")),
        ds_writes=[DsWrite(**w) for w in data.get("ds_writes", [])],
        ds_lag=[DsLag(**g) for g in data.get("ds_lag", [])],
        ds_readback=_readback(DsReadback, data.get("ds_readback")),
        app_records=[AppRecord(**r) for r in data.get("app_records", [])],
        interactions_readback=_readback(InteractionsReadback, data.get("interactions_readback")),
    )


def _readback(cls: Any, raw: Any) -> Any:
    if raw is None:
        return None
    d = dict(raw)
    if cls is DsReadback:
        d["keys"] = tuple(d.get("keys", ()))
    else:
        d["transcripts"] = {k: tuple(v) for k, v in d.get("transcripts", {}).items()}
    return cls(**d)
