"""``switchover hooks run discontinue --if-was-active`` (the systemd unit's ExecStopPost) against a
real node process: after kill -9 of an active node its Discontinue hooks run; after a clean stop (the
node ran them itself) nothing runs again; while the node runs it refuses."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from tests.conftest import NodeProc, node_config_text, server_ports, switchover_command, wait_until

RECORDING_HOOK = """#!/bin/sh
echo "$SWITCHOVER_EVENT $SWITCHOVER_ROLE $SWITCHOVER_GENERATION $SWITCHOVER_REASON" >> "{log}"
"""


def single_node(tmp_path: Path) -> tuple[NodeProc, Path]:
    """Node A alone (B never starts, so A becomes Primary), with a recording hook for both events."""
    ports_a, ports_b = server_ports()
    data = tmp_path / "dataA"
    config = tmp_path / "A.toml"
    text = node_config_text("A", data, ports_a, ports_b)
    config.write_text(text.replace("[timing]\n", "[timing]\nstartup_wait = 0.3\n"))
    log = tmp_path / "hook-runs.log"
    for kind in ("commence", "discontinue"):
        directory = data / "hooks" / f"{kind}.d"
        directory.mkdir(parents=True)
        (directory / "10-record").write_text(RECORDING_HOOK.format(log=log))
        (directory / "10-record").chmod(0o755)
    return NodeProc("A", config, data, tmp_path / "A.log"), log


def hooks_run(node: NodeProc, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*switchover_command(), "hooks", "run", *args, "--config", str(node.config)],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def runs(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_discontinue_hooks_run_after_an_active_node_is_killed(tmp_path: Path) -> None:
    node, log = single_node(tmp_path)
    try:
        node.start()
        wait_until(lambda: node.call("status", timeout=0.5)["role"] == "Primary", 10, message="A Primary")
        wait_until(lambda: runs(log), 5, message="the commence hook")
        assert runs(log)[0].startswith("commence Primary")

        refused = hooks_run(node, "discontinue", "--if-was-active")
        assert refused.returncode == 1 and "is running" in refused.stderr
        assert len(runs(log)) == 1

        node.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        node.proc.wait(5)  # type: ignore[union-attr]
        done = hooks_run(node, "discontinue", "--if-was-active", "--peer-wait", "0.3", "--json")
        assert done.returncode == 0, done.stderr
        assert "peer B not Primary within 0.3 s" in done.stderr  # B never ran: waited, then ran anyway
        report = json.loads(done.stdout)
        assert [h["name"] for h in report["hooks"]] == ["10-record"] and report["hooks"][0]["ok"]
        generation = (node.data_dir / "generation").read_text().strip()
        assert runs(log)[1] == f"discontinue Stopped {generation} the node process ended while active"
    finally:
        node.close()


def test_nothing_runs_again_after_a_clean_stop(tmp_path: Path) -> None:
    node, log = single_node(tmp_path)
    try:
        node.start()
        wait_until(lambda: node.call("status", timeout=0.5)["role"] == "Primary", 10, message="A Primary")
        assert node.terminate() == 0
        assert [r.split()[0] for r in runs(log)] == ["commence", "discontinue"]  # the node ran its own
        done = hooks_run(node, "discontinue", "--if-was-active")
        assert done.returncode == 0, done.stderr
        assert "was not active when it ended (last recorded role: Stopping)" in done.stdout
        assert len(runs(log)) == 2
    finally:
        node.close()
