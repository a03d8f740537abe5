"""Commence / Discontinue hooks, run as real shell scripts."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from loguru import logger

from actors.roles.hooks import HookEvent, HookFacts, hook_directory, run_hooks
from tests.conftest import poll_result

FACTS = HookFacts(node="alpha", role="Primary", reason="TS Ping Failure", generation=7, peer="beta")


@pytest.fixture
def log() -> Iterator[list[tuple[str, str]]]:
    messages: list[tuple[str, str]] = []
    sink = logger.add(lambda m: messages.append((m.record["level"].name, str(m))), level="DEBUG")
    yield messages
    logger.remove(sink)


def process_ends(pid: int, within: float) -> bool:
    def ended() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    return bool(poll_result(ended, within, 0.02))


def hook(hooks_dir: Path, name: str, body: str, event: str = "commence", executable: bool = True) -> Path:
    directory = hooks_dir / f"{event}.d"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755 if executable else 0o644)
    return path


def test_hooks_run_in_name_order(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    for name in ["20-second", "10-first", "30-third"]:
        hook(tmp_path, name, f'echo {name} >> "{trace}"')
    results = run_hooks(tmp_path, HookEvent.COMMENCE, FACTS, timeout=10)
    assert [r.name for r in results] == ["10-first", "20-second", "30-third"]
    assert trace.read_text().split() == ["10-first", "20-second", "30-third"]
    assert all(r.ok and r.returncode == 0 and not r.timed_out for r in results)


def test_hooks_receive_the_switch_facts_in_their_environment(tmp_path: Path) -> None:
    hook(
        tmp_path,
        "env",
        'echo "$SWITCHOVER_EVENT|$SWITCHOVER_REASON|$SWITCHOVER_ROLE|'
        '$SWITCHOVER_GENERATION|$SWITCHOVER_PEER|$SWITCHOVER_NODE|$PATH"',
        event="discontinue",
    )
    (result,) = run_hooks(tmp_path, "discontinue", FACTS, timeout=10)
    assert result.output.strip() == f"discontinue|TS Ping Failure|Primary|7|beta|alpha|{os.environ['PATH']}"


def test_only_the_directory_of_the_event_runs(tmp_path: Path) -> None:
    hook(tmp_path, "c", "echo commence", event="commence")
    hook(tmp_path, "d", "echo discontinue", event="discontinue")
    assert [r.output.strip() for r in run_hooks(tmp_path, HookEvent.DISCONTINUE, FACTS, 10)] == [
        "discontinue"
    ]
    assert hook_directory(tmp_path, "commence") == tmp_path / "commence.d"


def test_a_failing_hook_is_reported_loudly_and_the_next_one_still_runs(
    tmp_path: Path, log: list[tuple[str, str]]
) -> None:
    hook(tmp_path, "10-fails", "echo broken >&2; exit 3")
    hook(tmp_path, "20-works", "echo fine")
    failing, working = run_hooks(tmp_path, HookEvent.COMMENCE, FACTS, timeout=10)
    assert (failing.returncode, failing.ok, failing.output.strip()) == (3, False, "broken")
    assert (working.returncode, working.ok, working.output.strip()) == (0, True, "fine")
    errors = [text for level, text in log if level == "ERROR"]
    assert any("10-fails" in e and "exit status 3" in e and "broken" in e for e in errors)
    assert any("1 of 2 failed: 10-fails" in e for e in errors)


def test_a_hook_that_overruns_its_timeout_is_killed_and_the_next_one_runs(
    tmp_path: Path, log: list[tuple[str, str]]
) -> None:
    pidfile = tmp_path / "child.pid"
    hook(tmp_path, "10-hangs", f'echo started; sleep 30 & echo $! > "{pidfile}"; sleep 30')
    hook(tmp_path, "20-after", "echo after")
    began = time.monotonic()
    hung, after = run_hooks(tmp_path, HookEvent.COMMENCE, FACTS, timeout=0.5)
    assert time.monotonic() - began < 10
    assert hung.timed_out and not hung.ok and hung.returncode is not None and hung.returncode < 0
    assert hung.output.strip() == "started"
    assert 0.5 <= hung.duration < 10
    assert after.ok and after.output.strip() == "after"
    assert any(level == "ERROR" and "timed out" in text and "10-hangs" in text for level, text in log)
    assert process_ends(int(pidfile.read_text()), within=5.0), "the hook's child outlived the timeout"


def test_non_executable_files_dotfiles_and_backup_files_are_skipped_with_a_warning(
    tmp_path: Path, log: list[tuple[str, str]]
) -> None:
    hook(tmp_path, "10-runs", "echo runs")
    hook(tmp_path, "20-plain", "echo plain", executable=False)
    hook(tmp_path, ".hidden", "echo hidden")
    hook(tmp_path, "10-runs~", "echo backup")
    hook(tmp_path, "30-old.dpkg-old", "echo old")
    (tmp_path / "commence.d" / "40-subdir").mkdir()
    results = run_hooks(tmp_path, HookEvent.COMMENCE, FACTS, timeout=10)
    assert [r.name for r in results] == ["10-runs"]
    warnings = [text for level, text in log if level == "WARNING"]
    for name in ["20-plain", ".hidden", "10-runs~", "30-old.dpkg-old", "40-subdir"]:
        assert any(name in w for w in warnings), name


def test_a_missing_hook_directory_means_no_hooks(tmp_path: Path) -> None:
    assert run_hooks(tmp_path / "nowhere", HookEvent.COMMENCE, FACTS, timeout=10) == []


def test_a_hook_that_cannot_be_executed_is_reported_and_does_not_stop_the_others(tmp_path: Path) -> None:
    directory = tmp_path / "commence.d"
    directory.mkdir()
    broken = directory / "10-no-interpreter"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    hook(tmp_path, "20-works", "echo fine")
    failed, working = run_hooks(tmp_path, HookEvent.COMMENCE, FACTS, timeout=10)
    assert failed.returncode is None and not failed.ok and failed.output
    assert working.ok


def test_long_output_is_truncated_keeping_its_beginning_and_end(tmp_path: Path) -> None:
    hook(tmp_path, "chatty", "echo BEGIN; seq 1 5000; echo END")
    (result,) = run_hooks(tmp_path, HookEvent.COMMENCE, FACTS, timeout=10, output_limit=200)
    assert result.output.startswith("BEGIN")
    assert result.output.rstrip().endswith("END")
    assert "characters cut" in result.output
    assert len(result.output) < 300
