"""The durable fencing generation counter."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from actors.roles.generation import GenerationFileCorrupt, GenerationStore


def test_a_node_without_a_generation_file_starts_at_zero(tmp_path: Path) -> None:
    store = GenerationStore(tmp_path / "generation")
    assert store.value == 0
    assert not (tmp_path / "generation").exists()


def test_bump_increments_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "generation"
    store = GenerationStore(path)
    assert store.bump() == 1
    assert store.bump() == 2
    assert path.read_text() == "2\n"
    assert GenerationStore(path).value == 2


def test_bump_leaves_no_temporary_file_behind(tmp_path: Path) -> None:
    GenerationStore(tmp_path / "generation").bump()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generation"]


def test_bump_creates_a_missing_data_directory(tmp_path: Path) -> None:
    store = GenerationStore(tmp_path / "data" / "generation")
    assert store.bump() == 1
    assert (tmp_path / "data" / "generation").read_text() == "1\n"


def test_observing_a_higher_generation_raises_the_stored_value_durably(tmp_path: Path) -> None:
    path = tmp_path / "generation"
    store = GenerationStore(path)
    assert store.observe(7) == 7
    assert GenerationStore(path).value == 7
    assert store.bump() == 8


def test_observing_a_lower_or_equal_generation_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "generation"
    store = GenerationStore(path)
    store.observe(5)
    mtime = path.stat().st_mtime_ns
    assert store.observe(3) == 5
    assert store.observe(5) == 5
    assert path.stat().st_mtime_ns == mtime and path.read_text() == "5\n"


@pytest.mark.parametrize("bad", [-1, True, 2.5, "3"])
def test_observing_something_that_is_not_a_generation_is_rejected(tmp_path: Path, bad: object) -> None:
    store = GenerationStore(tmp_path / "generation")
    with pytest.raises(ValueError, match="non-negative integer"):
        store.observe(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("content", [b"", b"\n", b"abc\n", b"-3\n", b"4 5\n", b"\x00\x00\x00", b"1.5\n"])
def test_a_corrupt_generation_file_is_a_clear_error_not_a_reset(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "generation"
    path.write_bytes(content)
    with pytest.raises(GenerationFileCorrupt) as caught:
        GenerationStore(path)
    message = str(caught.value)
    assert str(path) in message
    assert "expected one non-negative decimal integer" in message
    assert path.read_bytes() == content


def test_a_hand_written_file_without_a_newline_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "generation"
    path.write_text("12")
    assert GenerationStore(path).value == 12


def test_concurrent_bumps_each_get_a_distinct_generation(tmp_path: Path) -> None:
    store = GenerationStore(tmp_path / "generation")
    results: list[int] = []
    lock = threading.Lock()

    def bump_some() -> None:
        for _ in range(10):
            value = store.bump()
            with lock:
                results.append(value)

    threads = [threading.Thread(target=bump_some) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(1, 41))
    assert GenerationStore(tmp_path / "generation").value == 40
