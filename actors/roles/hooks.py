"""Commence and Discontinue hooks: the operator's executables run on a switch.

``<hooks dir>/commence.d/`` runs when this node becomes primary, ``<hooks dir>/discontinue.d/`` when it
stops serving (the spec's Switchover Event initiator; a Discontinue is not guaranteed). Executables
run one after the other in name order, each with a timeout after which its process group is killed.
Dotfiles, editor and package-manager leftovers (``*~``, ``*.bak``, ``*.dpkg-old``, ...), directories
and non-executable files are skipped with a warning. A failing or timed-out hook is logged at ERROR
and reported in the results, and the next hook still runs.

Environment of every hook (on top of the node's own environment):
``SWITCHOVER_EVENT`` (commence|discontinue), ``SWITCHOVER_REASON``, ``SWITCHOVER_ROLE`` (the new
role), ``SWITCHOVER_GENERATION``, ``SWITCHOVER_PEER``, ``SWITCHOVER_NODE``.

:func:`run_hooks` blocks; an actor calls it off its own thread.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from loguru import logger

OUTPUT_LIMIT = 4096
KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL when a hook times out
SKIPPED_SUFFIXES = (
    "~",
    ".bak",
    ".orig",
    ".swp",
    ".tmp",
    ".rpmnew",
    ".rpmsave",
    ".dpkg-old",
    ".dpkg-new",
    ".dpkg-dist",
    ".dpkg-tmp",
)


class HookEvent(StrEnum):
    COMMENCE = "commence"  # this node becomes primary
    DISCONTINUE = "discontinue"  # this node stops serving


@dataclass(frozen=True)
class HookFacts:
    """What a hook learns about the switch."""

    node: str
    role: str  # the new role, e.g. "Primary" or "Inactive"
    reason: str
    generation: int
    peer: str

    def environment(self, event: HookEvent) -> dict[str, str]:
        return {
            "SWITCHOVER_EVENT": event.value,
            "SWITCHOVER_REASON": self.reason,
            "SWITCHOVER_ROLE": self.role,
            "SWITCHOVER_GENERATION": str(self.generation),
            "SWITCHOVER_PEER": self.peer,
            "SWITCHOVER_NODE": self.node,
        }


@dataclass(frozen=True)
class HookResult:
    name: str
    returncode: int | None  # None: could not be started; negative: killed by that signal
    timed_out: bool
    duration: float  # seconds
    output: str  # stdout and stderr interleaved, truncated to OUTPUT_LIMIT characters

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def hook_directory(hooks_dir: Path | str, event: HookEvent | str) -> Path:
    """``<hooks_dir>/<event>.d``."""
    return Path(hooks_dir) / f"{HookEvent(event).value}.d"


def list_hooks(directory: Path) -> list[Path]:
    """The executables of ``directory`` that will run, in name order; warn about the others."""
    if not directory.is_dir():
        return []
    runnable: list[Path] = []
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
        name = path.name
        if name.startswith(".") or name.endswith(SKIPPED_SUFFIXES):
            logger.warning("hook {} skipped: dotfile or backup file", path)
        elif not path.is_file():
            logger.warning("hook {} skipped: not a regular file", path)
        elif not os.access(path, os.X_OK):
            logger.warning("hook {} skipped: not executable (chmod +x to enable it)", path)
        else:
            runnable.append(path)
    return runnable


def run_hooks(
    hooks_dir: Path | str,
    event: HookEvent | str,
    env_facts: HookFacts,
    timeout: float,
    *,
    output_limit: int = OUTPUT_LIMIT,
) -> list[HookResult]:
    """Run ``<hooks_dir>/<event>.d/*`` in name order; a missing directory means no hooks."""
    hook_event = HookEvent(event)
    directory = hook_directory(hooks_dir, hook_event)
    environment = {**os.environ, **env_facts.environment(hook_event)}
    results = [_run_one(path, environment, timeout, output_limit) for path in list_hooks(directory)]
    failed = [r.name for r in results if not r.ok]
    if failed:
        logger.error(
            "{} hooks: {} of {} failed: {}", hook_event, len(failed), len(results), ", ".join(failed)
        )
    elif results:
        logger.info("{} hooks: all {} succeeded", hook_event, len(results))
    return results


def _run_one(path: Path, environment: dict[str, str], timeout: float, limit: int) -> HookResult:
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            [str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=path.parent,
            env=environment,
            start_new_session=True,  # its own process group, so a timeout kills its children too
        )
    except OSError as error:
        duration = time.monotonic() - started
        logger.error("hook {} could not be started: {}", path, error)
        return HookResult(path.name, None, False, duration, str(error))
    timed_out = False
    try:
        raw, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        raw = _kill(process)
    duration = time.monotonic() - started
    output = _truncate(raw.decode("utf-8", errors="replace"), limit)
    result = HookResult(path.name, process.returncode, timed_out, duration, output)
    if timed_out:
        logger.error(
            "hook {} timed out after {:.1f}s and was killed; output: {}", path, timeout, output or "(none)"
        )
    elif process.returncode != 0:
        logger.error(
            "hook {} failed with exit status {} in {:.2f}s; output: {}",
            path,
            process.returncode,
            duration,
            output or "(none)",
        )
    else:
        logger.info("hook {} succeeded in {:.2f}s; output: {}", path, duration, output or "(none)")
    return result


def _kill(process: subprocess.Popen[bytes]) -> bytes:
    """SIGTERM the hook's process group, SIGKILL it after a grace period; return what it printed."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, KILL_GRACE)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            raw, _ = process.communicate(timeout=grace)
            return raw
        except subprocess.TimeoutExpired:
            continue
    # A descendant left the process group and holds the pipe open: stop waiting for it.
    process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()
    return b""


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"
