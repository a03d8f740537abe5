"""The backup's file-replication verdicts (pure): is a pushed change next in line, did a health check
pass, and what the node reports overall ("running", "starting" or "stopped" with the reason).

The FileMirror actor feeds these with what it saw; they never touch the disk or the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Seq(StrEnum):
    OLD = "old"  # already applied (or part of the last comparison): ignore
    NEXT = "next"  # apply it
    GAP = "gap"  # changes were lost: compare the root again


def seq_verdict(last: int, seq: int) -> Seq:
    if seq <= last:
        return Seq.OLD
    return Seq.NEXT if seq == last + 1 else Seq.GAP


@dataclass(frozen=True)
class CheckResult:
    """What one health check came to: ``reply_ok`` None = no answer before the deadline."""

    reply_ok: bool | None
    reply_epoch: str
    known_epoch: str
    detail: str
    canary: str  # the content of the local copy of the canary file at the deadline
    token: str  # what the check asked the File Monitor to write into it


def check_verdict(r: CheckResult, timeout: float) -> str | None:
    """``None`` when the check passed, else why it failed."""
    if r.reply_ok is None:
        return f"no answer from the File Monitor within {timeout:g} s"
    if r.known_epoch and r.reply_epoch != r.known_epoch:
        return f"the File Monitor restarted (new epoch {r.reply_epoch})"
    if not r.reply_ok:
        return f"the File Monitor reports: {r.detail}"
    if r.canary != r.token:
        return f"the canary change did not arrive within {timeout:g} s"
    return None


def overall_state(
    roots: Mapping[str, tuple[str, str]], health_ok: bool, health_reason: str, subscribed: bool
) -> tuple[str, str]:
    """``roots``: root id -> (state, reason). A stopped root or a failed health check is "stopped"."""
    stopped = [f"{rid}: {reason}" for rid, (state, reason) in roots.items() if state == "stopped"]
    if stopped:
        return "stopped", "; ".join(stopped)
    if not health_ok:
        return "stopped", health_reason
    if subscribed and all(state in ("running", "done") for state, _ in roots.values()):
        return "running", ""
    return "starting", ""
