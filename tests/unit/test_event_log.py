"""The append-only JSON-lines event log and the merged history of both nodes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

from actors.roles.event_log import EventLog, EventLogCorrupt, EventRecord, merge_histories, read
from actors.roles.state_machine import Event, Facts, SwitchoverStateMachine


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING", format="{message}")
    yield messages
    logger.remove(sink)


def record(epoch: float, node: str = "a", new_state: str = "Primary", verdict: str = "ok") -> EventRecord:
    return EventRecord.create(
        node=node,
        old_state="Backup",
        new_state=new_state,
        event="module-down",
        reason="TS Ping Failure",
        generation=3,
        verdict=verdict,
        epoch=epoch,
    )


def test_appended_records_read_back_in_order(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    first, second = record(100.0), record(200.0, new_state="Inactive")
    log.append(first)
    log.append(second)
    assert log.read() == [first, second]
    assert read(tmp_path / "events.jsonl") == [first, second]


def test_each_record_is_one_json_line_with_wall_time_epoch_and_the_switch_facts(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    log.append(record(0.5))
    (line,) = (tmp_path / "events.jsonl").read_text().splitlines()
    assert json.loads(line) == {
        "wall_time": "1970-01-01T00:00:00.500+00:00",
        "epoch": 0.5,
        "node": "a",
        "old_state": "Backup",
        "new_state": "Primary",
        "event": "module-down",
        "reason": "TS Ping Failure",
        "generation": 3,
        "verdict": "ok",
    }


def test_a_record_made_from_a_state_machine_step_carries_its_reason_and_verdict() -> None:
    machine = SwitchoverStateMachine()
    machine.handle(Event.PEER_IS_PRIMARY)
    machine.handle(Event.STARTUP_COMPLETE)
    step = machine.handle(Event.MODULE_DOWN, Facts(peer_reachable=False))
    rec = EventRecord.from_step(step, node="b", generation=4, epoch=10.0)
    assert (rec.old_state, rec.new_state, rec.event) == ("Backup", "Primary", "module-down")
    assert rec.reason == "TS Ping Failure"
    assert rec.verdict == "Module is down, switching now and going to StatePrimary"
    assert (rec.node, rec.generation, rec.epoch) == ("b", 4, 10.0)


def test_a_record_without_an_epoch_is_stamped_with_the_wall_clock() -> None:
    rec = EventRecord.create(
        node="a", old_state="Init", new_state="Primary", event="e", reason=None, generation=1, verdict="v"
    )
    assert rec.epoch > 1_600_000_000 and rec.wall_time.endswith("+00:00")


def test_to_dict_and_from_dict_round_trip() -> None:
    rec = record(12.25)
    assert EventRecord.from_dict(rec.to_dict()) == rec
    assert EventRecord.from_dict({**rec.to_dict(), "epoch": 12, "extra": "ignored"}).epoch == 12.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"generation": "3"}, "'generation' has the wrong type"),
        ({"generation": True}, "'generation' has the wrong type"),
        ({"reason": 5}, "'reason' has the wrong type"),
    ],
)
def test_from_dict_rejects_a_field_of_the_wrong_type(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EventRecord.from_dict({**record(1.0).to_dict(), **change})


def test_from_dict_rejects_a_missing_field() -> None:
    data = record(1.0).to_dict()
    del data["verdict"]
    with pytest.raises(ValueError, match="lacks 'verdict'"):
        EventRecord.from_dict(data)


def test_a_missing_log_reads_as_no_history(tmp_path: Path) -> None:
    assert read(tmp_path / "nothing.jsonl") == []


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path: Path, warnings: list[str]) -> None:
    path = tmp_path / "events.jsonl"
    EventLog(path).append(record(1.0))
    with open(path, "a") as handle:
        handle.write('{"wall_time": "1970-01-01T00:00:02')
    assert read(path) == [record(1.0)]
    assert any("torn last line" in m for m in warnings)


def test_appending_after_a_crash_cuts_the_torn_line_so_every_record_stays_readable(
    tmp_path: Path, warnings: list[str]
) -> None:
    path = tmp_path / "events.jsonl"
    EventLog(path).append(record(1.0))
    with open(path, "ab") as handle:
        handle.write(b'{"wall_time": "19\x00\x00')
    EventLog(path).append(record(3.0))
    assert read(path) == [record(1.0), record(3.0)]
    assert any("cutting off a torn last line" in m for m in warnings)


def test_a_broken_line_before_the_last_one_is_reported_as_corruption(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = json.dumps(record(1.0).to_dict())
    path.write_text(f"{good}\nnot json\n{good}\n")
    with pytest.raises(EventLogCorrupt, match=r"events.jsonl: line 2"):
        read(path)


def test_blank_lines_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = json.dumps(record(1.0).to_dict())
    path.write_text(f"\n{good}\n\n")
    assert read(path) == [record(1.0)]


def test_the_log_directory_is_created_on_first_append(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "data" / "events.jsonl")
    log.append(record(1.0))
    assert log.read() == [record(1.0)]


def test_merged_histories_form_one_timeline_without_duplicates() -> None:
    a = [record(1.0, node="a"), record(5.0, node="a")]
    b = [record(3.0, node="b"), record(5.0, node="a")]  # the backup also wrote one of a's records
    merged = merge_histories([a, b])
    assert [(r.epoch, r.node) for r in merged] == [(1.0, "a"), (3.0, "b"), (5.0, "a")]


def test_merging_keeps_simultaneous_records_of_one_node_in_log_order() -> None:
    first, second = record(2.0, verdict="first"), record(2.0, verdict="second")
    assert merge_histories([[first, second]]) == [first, second]
