"""Every fault scenario of deploy/scenarios, run against the real pair in the namespace lab (root).

Each scenario gets a fresh lab (prefix ``solt<pid>x9<n>``, swept by the lab conftest if a run
crashes) and must pass all its checks.  A scenario that cannot run (no root, no nft, a broken step)
fails: nothing here is ever skipped.  The loader and the ``switchover lab`` command are tested too.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from cli import lab_cmd
from deploy.lab.runner import run_scenario
from deploy.lab.scenario import (
    ACTIONS,
    SCENARIO_DIR,
    Scenario,
    ScenarioError,
    find_scenario,
    load_scenario,
    parse_scenario,
    scenario_files,
)
from deploy.lab.topology import Lab, cleanup_prefix
from tests.lab.conftest import PREFIX

SCENARIOS = scenario_files()
#: the scenarios the issue asks for, by file name
REQUIRED = {
    "node-crash",
    "node-freeze-long",
    "node-freeze-short",
    "module-crash",
    "module-hang",
    "module-flapping",
    "main-link-cut",
    "aux-link-cut",
    "both-links-cut",
    "primary-nic-down",
    "backup-nic-down",
    "gateway-gone",
    "nettest-gone",
    "wan-cut",  # issue 9: the gateway answers, the NetTest and the primary do not: no switch
    "nic-flap-short",  # issue 14: a NIC flap shorter than the tolerance: no switch
    "network-outage",  # issue 16: a total outage stops serving on both; on heal the same primary resumes
    "partition-healed",
    "manual-switch-only",
    "manual-switches",
    # issue 10: acknowledged DS writes through a controlled switch (none lost) and a crash (counted)
    "ds-writer-controlled-switch",
    "ds-writer-node-crash",
    # issue 12: the reference app (wait-backup): no shadowed interaction lost, switch or crash
    "interactions-controlled-switch",
    "interactions-node-crash",
}


def _params() -> list[Any]:
    out = []
    for path in SCENARIOS:
        budget = load_scenario(path).timeout + 60  # the scenario's own budget, plus lab up/down
        out.append(pytest.param(path, id=path.stem, marks=pytest.mark.timeout(budget)))
    return out


# ------------------------------------------------------------------------------ the scenario runs


@pytest.mark.parametrize("path", _params())
def test_scenario(path: Path, lab_prereqs: None, tmp_path_factory: pytest.TempPathFactory) -> None:
    scenario = load_scenario(path)
    prefix = f"{PREFIX}x9{SCENARIOS.index(path):02d}"
    labdir = tmp_path_factory.mktemp(f"scn{SCENARIOS.index(path):02d}")
    lines: list[str] = []
    try:
        result = run_scenario(scenario, prefix=prefix, labdir=labdir, echo=lines.append)
    finally:
        cleanup_prefix(prefix)
    if result.passed:
        print(result.summary())  # the measured numbers, for -s / -rA
    else:
        pytest.fail(
            f"scenario {scenario.name} failed:\n{result.summary()}\n\n{result.timeline}", pytrace=False
        )


# ---------------------------------------------------------------------------- the shipped files


def test_every_required_scenario_is_shipped_and_loads() -> None:
    assert {p.stem for p in SCENARIOS} >= REQUIRED
    for path in SCENARIOS:
        scenario = load_scenario(path)
        assert scenario.name == path.stem
        assert scenario.description, f"{path.name}: say what the scenario does"
        assert scenario.steps[0].action == "start_pair", f"{path.name}: start the pair first"
        assert scenario.expect.switch is not None, f"{path.name}: say whether a switch is expected"
        assert scenario.expect.final_roles, f"{path.name}: say which roles the nodes end in"


def test_find_scenario_by_name_or_path_with_a_clear_error() -> None:
    assert find_scenario("node-crash") == SCENARIO_DIR / "node-crash.toml"
    assert find_scenario(str(SCENARIO_DIR / "node-crash.toml")) == SCENARIO_DIR / "node-crash.toml"
    with pytest.raises(
        ScenarioError, match=r"no scenario named 'node-crahs' \(did you mean 'node-crash'\?\)"
    ):
        find_scenario("node-crahs")


# ----------------------------------------------------------------------------------- the loader


BASE: dict[str, Any] = {
    "steps": [
        {"action": "start_pair"},
        {"action": "wait_roles", "roles": {"a": "Primary", "b": "Backup"}, "stable": 1.0},
        {"action": "kill9", "target": "node-a"},
    ],
    "expect": {"switch": True, "switch_within": 6, "final_roles": {"b": "Primary"}},
}


def parse(data: dict[str, Any]) -> Scenario:
    return parse_scenario(data, "t.toml", name="t")


def with_step(step: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {**BASE, "steps": [*BASE["steps"], step], **top}


def test_a_valid_scenario_parses_with_defaults() -> None:
    s = parse(BASE)
    assert [st.action for st in s.steps] == ["start_pair", "wait_roles", "kill9"]
    assert s.steps[1].params["timeout"] == 20.0 and s.steps[1].params["required"] is True
    assert s.steps[1].params["roles"] == {"a": ("Primary",), "b": ("Backup",)}
    assert s.expect.max_dual_primary == 1.0 and s.expect.hooks_once
    assert s.steps[2].is_fault_action and s.steps[2].describe() == "kill -9 node-a"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**BASE, "stepz": []}, r"t\.toml: stepz: unknown key \(did you mean 'steps'\?\)"),
        ({"expect": {}}, r"steps: missing or empty"),
        (with_step({"action": "kil9", "target": "node-a"}), r"steps\[4\]: action: .*did you mean 'kill9'"),
        (
            with_step({"action": "kill9", "taget": "node-a"}),
            r"steps\[4\] \(kill9\): taget: unknown key.*'target'",
        ),
        (with_step({"action": "kill9"}), r"steps\[4\] \(kill9\): target: missing key"),
        (with_step({"action": "kill9", "target": "node-c"}), r"target: expected one of node-a, node-b"),
        (
            with_step({"action": "sleep", "seconds": "5"}),
            r"seconds: expected a number of seconds, got string",
        ),
        (with_step({"action": "sleep", "seconds": 0}), r"seconds: expected a number > 0"),
        (with_step({"action": "heal", "id": "cut"}), r"no earlier drop, link_down or inject has id 'cut'"),
        (with_step({"action": "heal"}), r"give either id"),
        (with_step({"action": "drop", "flow": "mian"}), r"flow: .*did you mean 'main'"),
        (with_step({"action": "drop", "flow": {"proto": "icmp", "src": "b"}}), r"flow: dst: missing key"),
        (
            with_step({"action": "drop", "flow": {"proto": "icmp", "src": "b", "dst": "gw", "ports": 5}}),
            r"a port range needs proto tcp or udp",
        ),
        (with_step({"action": "drop", "flow": "main", "direction": "sideways"}), r"direction: expected both"),
        (with_step({"action": "link_down", "host": ["a", "x"]}), r"host: expected one of a, b, nta, ntb"),
        (
            with_step({"action": "link_down", "host": "a", "end": "peer"}),
            r"a LAN link's end is host or router",
        ),
        (
            with_step({"action": "inject", "node": "a", "endpoint": "notifier.mian", "faults": {}}),
            r"endpoint: .*did you mean 'notifier.main'",
        ),
        (
            with_step({"action": "inject", "node": "a", "endpoint": "admin", "faults": {"drop": True}}),
            r"faults: drop: unknown key",
        ),
        (
            with_step({"action": "wait_roles", "roles": {"a": "Primray"}}),
            r"roles: a: .*did you mean 'Primary'",
        ),
        (with_step({"action": "wait_roles", "roles": {"c": "Primary"}}), r"roles: unknown node 'c'"),
        (
            with_step({"action": "restart", "target": "node-a", "how": "overlap"}),
            r"overlap restarts a module",
        ),
        (with_step({"action": "repeat", "count": 0, "steps": []}), r"count: expected an integer >= 1"),
        (
            with_step({"action": "repeat", "count": 2, "steps": [{"action": "sleep"}]}),
            r"steps\[4\]\.steps\[1\] \(sleep\): seconds: missing key",
        ),
        ({**BASE, "expect": {"switch_within": 5}}, r"switch_within: needs switch = true"),
        ({**BASE, "expect": {"swich": True}}, r"expect: swich: unknown key \(did you mean 'switch'\?\)"),
        ({**BASE, "expect": {"switch": False, "reason": "x"}}, r"make no sense with switch = false"),
        (
            {"steps": BASE["steps"][:2], "expect": {"switch": True}},
            r"measured from the fault, but no step is a fault",
        ),
        (
            {**BASE, "expect": {"resources": {"max_fd_growth": 3}}},
            r"before: no measure step has label 'before'",
        ),
        ({**BASE, "pair": {"a": {"args": "--x"}}}, r"pair\.a: args: expected an array of strings"),
        (
            {**BASE, "pair": {"parameters": {"Switchover TS Timeout": 5}}},
            r"pair\.parameters: expected a table",
        ),
        ({**BASE, "timeout": -1}, r"timeout: expected a number > 0"),
        (
            {**BASE, "expect": {"max_lost_ds_writes": 0}},
            r"expect: max_lost_ds_writes: needs a ds_writer step and a ds_writer_stop step",
        ),
        (
            with_step({"action": "app"}, expect={"max_lost_interactions": 0}),
            r"expect: max_lost_interactions: needs a app step and a app_stop step",
        ),
        (
            {**BASE, "expect": {"max_lost_interactions": -1}},
            r"max_lost_interactions: expected an integer >= 0",
        ),
        (
            with_step({"action": "ds_writer", "rate": 0}),
            r"steps\[4\] \(ds_writer\): rate: expected a number > 0",
        ),
        (with_step({"action": "app", "wait_backup": "yes"}), r"wait_backup: expected true or false"),
    ],
)
def test_loader_errors_name_the_file_the_step_and_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse(data)


def test_workload_steps_parse_with_defaults() -> None:
    s = parse(
        {
            **BASE,
            "steps": [
                *BASE["steps"][:2],
                {"action": "ds_writer"},
                {"action": "app", "rate": 10},
                {"action": "switch"},
                {"action": "ds_writer_stop"},
                {"action": "app_stop"},
            ],
            "expect": {"switch": True, "max_lost_ds_writes": 0, "max_lost_interactions": 0},
        }
    )
    writer, app = s.steps[2], s.steps[3]
    assert writer.params == {"rate": 50.0, "path": "/Lab/Writer"} and not writer.is_fault_action
    assert app.params == {"rate": 10.0, "wait_backup": True, "seed": 1}
    assert app.describe() == "reference app at 10/s with wait-backup"
    assert s.steps[4].is_fault_action  # the switch, not a workload step, is the fault
    assert s.expect.max_lost_ds_writes == 0 and s.expect.max_lost_interactions == 0


def test_only_one_fault_and_one_heal_marker() -> None:
    data = with_step({"action": "kill9", "target": "node-b", "fault": True})
    data["steps"].append({"action": "sleep", "seconds": 1, "fault": True})
    with pytest.raises(
        ScenarioError, match=r"steps\[5\]: fault: only one step can be the fault \(steps\[4\]"
    ):
        parse(data)
    data = with_step({"action": "sigcont", "target": "node-b", "heal": True})
    data["steps"].append({"action": "sigcont", "target": "node-a", "heal": True})
    with pytest.raises(ScenarioError, match=r"heal: only one step can be the heal"):
        parse(data)


def test_bad_toml_and_missing_files_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = [\n")
    with pytest.raises(ScenarioError, match=r"bad\.toml: not valid TOML"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match=r"cannot read scenario"):
        load_scenario(tmp_path / "missing.toml")


def test_every_action_is_documented() -> None:
    for name, spec in ACTIONS.items():
        assert spec.help, name


# ------------------------------------------------------------------------------- the lab command


def _lab_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="switchover")
    lab_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["lab", *argv])
    code: int = args.func(args)
    return code


def test_lab_commands_need_root(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for op in (["up"], ["down"], ["status"], ["run", "node-crash"]):
        assert _lab_cli(*op, "--prefix", f"{PREFIX}x97") == 1
        assert "the lab needs root" in capsys.readouterr().err


def test_lab_run_rejects_an_unknown_scenario_before_running_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _lab_cli("run", "node-crash", "no-such-scenario", "--prefix", f"{PREFIX}x97") == 2
    assert "no scenario named 'no-such-scenario'" in capsys.readouterr().err


@pytest.mark.timeout(90)
def test_lab_up_status_down(lab_prereqs: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = f"{PREFIX}x98"
    labdir = str(tmp_path / "lab")
    try:
        assert _lab_cli("up", "--prefix", prefix, "--labdir", labdir) == 0
        out = capsys.readouterr().out
        assert re.search(r"A\s+\S+\s+Primary", out) and re.search(r"B\s+\S+\s+Backup", out), out
        assert _lab_cli("up", "--prefix", prefix, "--labdir", labdir) == 1  # already up
        assert "already up" in capsys.readouterr().err
        assert _lab_cli("status", "--prefix", prefix, "--labdir", labdir) == 0
        out = capsys.readouterr().out
        for text in (f"{prefix}-a", "node-a", "module-b", "A  Primary, generation 1", "B  Backup"):
            assert text in out
        lab = Lab.load(labdir)
        hooks = Path(labdir) / "pair" / "a" / "hooks" / "commence.d" / "50-lab-record"
        assert os.access(hooks, os.X_OK) and sys.executable in hooks.read_text()
        assert _lab_cli("down", "--prefix", prefix, "--labdir", labdir) == 0
        assert "removed: 5 namespaces" in capsys.readouterr().out
        assert not lab.is_up()
        assert _lab_cli("status", "--prefix", prefix, "--labdir", labdir) == 1
    finally:
        cleanup_prefix(prefix)
