"""The backup's file-replication verdicts (pure)."""

from __future__ import annotations

import pytest

from replication.file_health import CheckResult, Seq, check_verdict, overall_state, seq_verdict


@pytest.mark.parametrize(
    ("last", "seq", "verdict"), [(0, 1, Seq.NEXT), (5, 5, Seq.OLD), (5, 3, Seq.OLD), (5, 7, Seq.GAP)]
)
def test_seq_verdict(last: int, seq: int, verdict: Seq) -> None:
    assert seq_verdict(last, seq) is verdict


GOOD = CheckResult(True, "e1", "e1", "", "tok", "tok")


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (GOOD, None),
        (CheckResult(None, "", "e1", "", "tok", "tok"), "no answer from the File Monitor within 2 s"),
        (CheckResult(True, "e2", "e1", "", "tok", "tok"), "the File Monitor restarted (new epoch e2)"),
        (
            CheckResult(False, "e1", "e1", "/d: cannot watch", "tok", "tok"),
            "the File Monitor reports: /d: cannot watch",
        ),
        (CheckResult(True, "e1", "e1", "", "old", "tok"), "the canary change did not arrive within 2 s"),
    ],
)
def test_check_verdict(result: CheckResult, expected: str | None) -> None:
    assert check_verdict(result, 2.0) == expected


def test_overall_state() -> None:
    running = {"/a": ("running", ""), "/once": ("done", "")}
    assert overall_state(running, True, "", True) == ("running", "")
    assert overall_state(running, True, "", False) == ("starting", "")
    assert overall_state({"/a": ("syncing", "")}, True, "", True) == ("starting", "")
    assert overall_state(running, False, "no answer", True) == ("stopped", "no answer")
    stopped = {**running, "/b": ("stopped", "the disk is full writing /b/x")}
    assert overall_state(stopped, True, "", True) == ("stopped", "/b: the disk is full writing /b/x")
