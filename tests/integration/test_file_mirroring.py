"""File mirroring between two real nodes on one machine, each with its own ``[mirror] root``.

A is started first and becomes active; B joins as a manual-switch-only backup (no module runs here,
so an automatic backup would take over). Every check polls with a deadline.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.config import SERVER_PORTS
from tests.conftest import NodePair, make_pair, poll_result, switchover_command, wait_until
from transport.endpoint import Endpoint, tcp
from transport.messages import FileChunkReply, FileChunkRequest
from transport.security import GROUP_KEY_NAME, client_security

HEALTH_INTERVAL = 1.0
HEALTH_TIMEOUT = 1.0


def configure(pair: NodePair, tmp: Path, mirror_extra: str = "", **extra_params: str) -> dict[str, Path]:
    roots = {}
    params = {
        "CustomMirrorDir": "+/data; /flat",
        "InitialMirrorDir": "+/init",
        "MirrorExceptions": "txt; gif",
        "Switchover File Monitor Health Check Interval": str(HEALTH_INTERVAL),
        "Switchover File Monitor Health Check Timeout": str(HEALTH_TIMEOUT),
        **extra_params,
    }
    table = "\n".join(f'"{k}" = "{v}"' for k, v in params.items())
    for node in pair.nodes:
        root = tmp / f"root{node.name}"
        root.mkdir()
        roots[node.name] = root
        text = node.config.read_text().replace(
            "[security]", f'[parameters]\n{table}\n\n[mirror]\nroot = "{root}"\n{mirror_extra}\n[security]'
        )
        node.config.write_text(text)
    return roots


@pytest.fixture
def mirrored(tmp_path: Path) -> Iterator[tuple[NodePair, Path, Path]]:
    pair = make_pair(tmp_path)
    roots = configure(pair, tmp_path)
    a_root, b_root = roots["A"], roots["B"]
    for d in ("data/sub", "flat/sub", "init"):
        (a_root / d).mkdir(parents=True)
    (a_root / "data/sub/old.dat").write_text("old")
    (a_root / "data/skip.txt").write_text("excluded")
    (a_root / "flat/f.dat").write_text("flat")
    (a_root / "flat/sub/deep.dat").write_text("not mirrored: flat root")
    (a_root / "init/i.dat").write_text("initial")
    try:
        start_both(pair)
        wait_until(lambda: files_status(pair)["state"] == "running", 10, 0.05, "file replication to run")
        yield pair, a_root, b_root
    finally:
        for node in pair.nodes:
            node.close()


def start_both(pair: NodePair) -> None:
    pair.a.start("--manual-switch-only")
    wait_until(
        lambda: pair.a.call("status", timeout=0.5)["role"] == "Primary", 15, 0.05, "A to become Primary"
    )
    pair.b.start("--manual-switch-only")
    wait_until(lambda: pair.b.call("status", timeout=0.5)["role"] == "Backup", 15, 0.05, "B to become Backup")


def files_status(pair: NodePair) -> dict[str, Any]:
    return pair.b.call("files.status")


def log_of(pair: NodePair, name: str) -> str:
    node = pair.a if name == "A" else pair.b
    path = node.data_dir / "switchover.log"
    return path.read_text(errors="replace") if path.exists() else ""


def within_1s(predicate: Any, what: str) -> float:
    start = time.monotonic()
    wait_until(predicate, 1.0, 0.005, what)
    return time.monotonic() - start


def read(p: Path) -> str | None:
    try:
        return p.read_text()
    except OSError:
        return None


def test_initial_state_is_mirrored_and_excluded_and_deep_flat_files_are_not(
    mirrored: tuple[NodePair, Path, Path],
) -> None:
    pair, _a, b = mirrored
    assert read(b / "data/sub/old.dat") == "old"
    assert read(b / "flat/f.dat") == "flat"
    assert read(b / "init/i.dat") == "initial"
    assert not (b / "data/skip.txt").exists()
    assert not (b / "flat/sub/deep.dat").exists()
    roots = {r["root"]: r for r in files_status(pair)["roots"]}
    assert roots["/data"]["state"] == "running" and roots["/init"]["state"] == "done"
    assert roots["/init"]["when"] == "once"
    cli = pair.b.admin_json("files.status")  # the same through `switchover admin`
    assert cli["side"] == "backup" and {r["root"] for r in cli["roots"]} >= {"/data", "/flat", "/init"}
    table = pair.a.admin("files.status")
    assert table.returncode == 0 and "File Monitor (A, active), subscriber: B" in table.stdout


def test_create_modify_rename_chmod_delete_each_within_1_s(mirrored: tuple[NodePair, Path, Path]) -> None:
    pair, a, b = mirrored
    src, dst = a / "data/new.dat", b / "data/new.dat"
    src.write_text("one")
    within_1s(lambda: read(dst) == "one", "a created file on the backup")
    src.write_text("two, longer")
    within_1s(lambda: read(dst) == "two, longer", "a modified file on the backup")
    os.utime(src, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    within_1s(lambda: dst.stat().st_mtime_ns == 1_600_000_000_000_000_000, "the mtime on the backup")
    os.chmod(src, 0o600)
    within_1s(lambda: (dst.stat().st_mode & 0o777) == 0o600, "the mode on the backup")
    src.rename(a / "data/sub/moved.dat")
    within_1s(
        lambda: not dst.exists() and read(b / "data/sub/moved.dat") == "two, longer",
        "a renamed file on the backup",
    )
    (a / "data/newdir/deeper").mkdir(parents=True)
    (a / "data/newdir/deeper/x.dat").write_text("in a new directory")
    within_1s(
        lambda: read(b / "data/newdir/deeper/x.dat") == "in a new directory", "a file in a new directory"
    )
    (a / "data/sub/moved.dat").unlink()
    within_1s(lambda: not (b / "data/sub/moved.dat").exists(), "a deleted file gone from the backup")
    # excluded extension: never; and an InitialMirrorDir is not watched after the start
    (a / "data/notes.txt").write_text("excluded")
    (a / "init/later.dat").write_text("too late")
    (a / "data/marker.dat").write_text("after them")
    within_1s(lambda: read(b / "data/marker.dat") == "after them", "the marker file")
    assert not (b / "data/notes.txt").exists()
    assert not (b / "init/later.dat").exists()
    st = files_status(pair)
    data = next(r for r in st["roots"] if r["root"] == "/data")
    assert data["files"] >= 4 and data["last_success"] is not None and data["lag"] is not None


def test_escaping_symlink_and_dotdot_are_refused_with_a_log_line(
    mirrored: tuple[NodePair, Path, Path],
) -> None:
    pair, a, b = mirrored
    os.symlink("/etc/passwd", a / "data/evil")
    os.symlink("../../outside", a / "data/sub/evil2")
    os.symlink("sub/old.dat", a / "data/good")
    within_1s(lambda: os.readlink(b / "data/good") == "sub/old.dat", "an inside symlink on the backup")
    wait_until(
        lambda: "refused symlink sub/evil2 -> ../../outside" in log_of(pair, "B"), 2, 0.02, "refusal logged"
    )
    assert "refused symlink evil -> /etc/passwd" in log_of(pair, "B")
    assert not (b / "data/evil").is_symlink() and not (b / "data/sub/evil2").is_symlink()
    # a content request for a path with '..' is refused by the File Monitor, which logs it
    # the File Monitor's messages are node-to-node: the client needs the server group key
    group_key = pair.a.config.parent / "keys" / f"{GROUP_KEY_NAME}.key_secret"
    ep = Endpoint(
        "test.files",
        "client",
        tcp("127.0.0.1", pair.ports["A"][SERVER_PORTS.index("file_port")]),
        node="test",
        on_message=lambda e, p: None,
        security=client_security(False, str(group_key)),
    ).start()
    try:
        wait_until(lambda: ep.connected, 5, 0.01, "a connection to the File Monitor")
        reply = ep.request(FileChunkRequest("/data", "../../etc/passwd", 0, 100), 5).result().msg
    finally:
        ep.stop()
    assert isinstance(reply, FileChunkReply) and reply.data == b"" and reply.error.startswith("refused")
    assert "refused a content request for ../../etc/passwd" in log_of(pair, "A")


def test_custom_mirror_dir_change_takes_effect_live(mirrored: tuple[NodePair, Path, Path]) -> None:
    pair, a, b = mirrored
    (a / "extra").mkdir()
    (a / "extra/e.dat").write_text("extra")
    done = pair.a.call("param.set", {"name": "CustomMirrorDir", "value": "+/data; /flat; /extra"})
    assert done
    wait_until(lambda: read(b / "extra/e.dat") == "extra", 3, 0.02, "the new CustomMirrorDir entry mirrored")
    (a / "extra/f.dat").write_text("followed")
    within_1s(lambda: read(b / "extra/f.dat") == "followed", "a change in the new directory")


def test_burst_of_10000_files_with_a_queue_overflow_all_arrive(mirrored: tuple[NodePair, Path, Path]) -> None:
    pair, a, b = mirrored
    # The File Monitor stops reading inotify while 10,000 files (>= 30,000 events) are written: the
    # kernel queue (fs.inotify.max_queued_events, 16384 by default) overflows and the root is rescanned.
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    assert limit < 30_000, "the overflow needs a kernel queue smaller than the burst"
    pair.a.call("files.stall", {"seconds": 120})  # until the burst is written (ended below)
    burst = a / "data/burst"
    burst.mkdir()
    for i in range(10_000):
        (burst / f"f{i:05d}.dat").write_bytes(b"%d" % i)
    pair.a.call("files.stall", {"seconds": 0})

    def all_arrived() -> bool:
        d = b / "data/burst"
        return d.is_dir() and len(os.listdir(d)) == 10_000

    wait_until(all_arrived, 60, 0.2, "all 10,000 files on the backup")
    assert read(b / "data/burst/f09999.dat") == "9999"
    active = {r["root"]: r for r in pair.a.call("files.status")["roots"]}
    assert active["/data"]["overflow_rescans"] >= 1
    assert "the inotify event queue overflowed" in log_of(pair, "A")
    # the backup counts the monitor's rescan when it reaches it (it may come after the files did)
    wait_until(
        lambda: {r["root"]: r for r in files_status(pair)["roots"]}["/data"]["overflow_rescans"] >= 1,
        10,
        0.05,
        "the backup to count the overflow rescan",
    )


def ctl(pair: NodePair, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*switchover_command(), "ctl", "--config", str(pair.b.config), *args],
        capture_output=True,
        text=True,
        timeout=30,
        input=stdin,
    )


def test_killed_file_monitor_gives_the_warning_within_interval_plus_timeout(
    mirrored: tuple[NodePair, Path, Path],
) -> None:
    pair, a, b = mirrored
    wait_until(lambda: files_status(pair)["health_ok"], 5, 0.05, "a first good health check")
    before = files_status(pair)["epoch"]
    assert pair.a.call("inject", {"crash": "FileMonitor"})["crashed"] == "FileMonitor"
    crashed = time.monotonic()
    wait_until(
        lambda: pair.b.call("status") and files_status(pair)["state"] == "stopped",
        HEALTH_INTERVAL + HEALTH_TIMEOUT + 0.5,
        0.02,
        "the backup to see file replication stopped",
    )
    assert time.monotonic() - crashed <= HEALTH_INTERVAL + HEALTH_TIMEOUT + 0.5
    log = log_of(pair, "B")
    assert "The backup server has detected that file replication from the primary has stopped." in log
    events = [json.loads(x) for x in (pair.b.data_dir / "events.jsonl").read_text().splitlines()]
    assert any(e["event"] == "file-replication-stopped" for e in events)
    # the monitor came back: replication resumes, with a new epoch, and changes flow again
    wait_until(lambda: files_status(pair)["state"] == "running", 10, 0.05, "replication running again")
    assert files_status(pair)["epoch"] != before
    (a / "data/after.dat").write_text("after the restart")
    within_1s(lambda: read(b / "data/after.dat") == "after the restart", "a change after the restart")


def test_stopped_file_monitor_is_a_lasting_warning_in_ctl_status_and_switch(
    mirrored: tuple[NodePair, Path, Path],
) -> None:
    pair, _a, _b = mirrored
    # cut the File Monitor's answers: health checks fail until the fault is cleared
    pair.a.call("inject", {"endpoint": "files", "faults": {"drop_all": True}})
    wait_until(
        lambda: files_status(pair)["state"] == "stopped", HEALTH_INTERVAL + HEALTH_TIMEOUT + 0.5, 0.02, "stop"
    )
    view = json.loads(ctl(pair, "status", "--json").stdout)
    assert (
        "The backup server has detected that file replication from the primary has stopped."
        in view["warnings"]
    )
    assert view["files"]["state"] == "stopped"
    text = ctl(pair, "status").stdout
    assert (
        "WARNING: The backup server has detected that file replication from the primary has stopped." in text
    )
    assert "/data" in text
    switch = ctl(pair, "switch", stdin="no\n")
    assert "File replication from the primary may not be running." in switch.stdout
    assert switch.returncode == 1 and pair.a.call("status")["role"] == "Primary"
    pair.a.call("inject", {"clear_all": True})
    assert poll_result(lambda: files_status(pair)["state"] == "running", 5, 0.05)


def test_initial_mirror_dir_past_the_start_up_time_fails_naming_directory_and_bytes(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    roots = configure(pair, tmp_path, mirror_extra="initial_sync_timeout = 1.0\n")
    big = roots["A"] / "init/recordings.bin"
    big.parent.mkdir(parents=True)
    with open(big, "wb") as f:
        block = os.urandom(1024 * 1024)
        for _ in range(768):  # 768 MiB: several seconds of copying, the start-up time is 1 s
            f.write(block)
    try:
        start_both(pair)
        wait_until(
            lambda: (
                "Initial mirror of /init not finished within the start-up time of 1 s" in log_of(pair, "B")
            ),
            10,
            0.05,
            "the start-up failure",
        )
        line = next(x for x in log_of(pair, "B").splitlines() if "Initial mirror of /init" in x)
        assert "ERROR" in line and "the backup start-up failed" in line
        left = int(line.split(" bytes in ")[0].rsplit(" ", 1)[1])
        assert 0 < left <= 768 * 1024 * 1024
        wait_until(lambda: pair.b.call("status")["role"] == "Error", 5, 0.05, "B to go to Error")
    finally:
        for node in pair.nodes:
            node.close()


def test_permission_error_on_the_backup_stops_that_root_with_the_reason(
    mirrored: tuple[NodePair, Path, Path],
) -> None:
    pair, a, b = mirrored
    locked = b / "data/sub"
    subprocess.run(["chattr", "+i", str(locked)], check=True)  # EPERM even for root
    try:
        (a / "data/sub/blocked.dat").write_text("cannot land")
        wait_until(lambda: files_status(pair)["state"] == "stopped", 3, 0.02, "the root to stop")
        data = next(r for r in files_status(pair)["roots"] if r["root"] == "/data")
        assert data["state"] == "stopped" and "permission denied writing" in data["reason"]
        assert "file mirroring of /data stopped: permission denied" in log_of(pair, "B")
        flat = next(r for r in files_status(pair)["roots"] if r["root"] == "/flat")
        assert flat["state"] == "running"  # only that root stops
        view = json.loads(ctl(pair, "status", "--json").stdout)
        assert (
            "The backup server has detected that file replication from the primary has stopped."
            in view["warnings"]
        )
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)


def test_a_mirrored_directory_moved_away_on_the_active_keeps_the_backup_copy(
    mirrored: tuple[NodePair, Path, Path],
) -> None:
    pair, a, b = mirrored
    # the root itself goes away (moved, e.g. an unmount would look alike): a rescan whose manifest is
    # refused rather than empty, so the backup keeps its copy
    os.rename(a / "flat", a / "flat-moved")
    wait_until(
        lambda: (
            "manifest of /flat failed" in log_of(pair, "B") and "is not a directory on A" in log_of(pair, "B")
        ),
        3,
        0.02,
        "the refused manifest",
    )
    assert read(b / "flat/f.dat") == "flat"
    assert "the root directory was moved" in log_of(pair, "A")


def test_small_files_closed_before_a_controlled_switch_are_on_the_new_active(
    mirrored: tuple[NodePair, Path, Path],
) -> None:
    pair, a, b = mirrored
    out = a / "data/stream"
    out.mkdir()
    closed: list[tuple[str, float]] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 2000:
            name = f"s{i:05d}.dat"
            (out / name).write_text(name)
            closed.append((name, time.monotonic()))
            i += 1
            stop.wait(0.005)  # a steady stream of about 200 files/s

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    wait_until(lambda: len(closed) >= 50, 10, 0.01, "the writer to get going")
    requested = time.monotonic()
    switch = ctl(pair, "switch", "--yes")
    stop.set()
    t.join(5)
    assert switch.returncode == 0, switch.stdout + switch.stderr
    assert pair.b.call("status")["role"] == "Primary"
    before = [name for name, at in closed if at < requested]
    missing = [name for name in before if read(b / "data/stream" / name) != name]
    assert not missing, (
        f"{len(missing)} of {len(before)} files closed before the switch are missing: {missing[:5]}"
    )


def test_a_large_file_resumes_after_the_link_is_cut(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    roots = configure(pair, tmp_path, mirror_extra="request_timeout = 1.0\nchunk_size = 262144\n")
    a, b = roots["A"], roots["B"]
    for d in ("data", "flat", "init"):
        (a / d).mkdir()
    try:
        start_both(pair)
        wait_until(lambda: files_status(pair)["state"] == "running", 10, 0.05, "file replication to run")
        block = os.urandom(1024 * 1024)
        src = a / "data/big.bin"
        with open(src, "wb") as f:
            for i in range(300):
                f.write(block[:-4] + i.to_bytes(4, "little"))
        expected = hashlib.blake2b(src.read_bytes(), digest_size=16).hexdigest()

        def copying() -> bool:
            data = next(r for r in files_status(pair)["roots"] if r["root"] == "/data")
            return bool(data["in_flight"])

        wait_until(copying, 10, 0.005, "the copy to start")
        pair.b.call("inject", {"endpoint": "files.client", "faults": {"cut": True}})
        wait_until(
            lambda: "failed (" in log_of(pair, "B") and "asking again" in log_of(pair, "B"),
            10,
            0.02,
            "a lost chunk",
        )
        pair.b.call("inject", {"clear_all": True})
        dst = b / "data/big.bin"
        wait_until(
            lambda: dst.exists() and dst.stat().st_size == src.stat().st_size, 30, 0.05, "the whole file"
        )
        assert hashlib.blake2b(dst.read_bytes(), digest_size=16).hexdigest() == expected
        log = log_of(pair, "B")
        assert "big.bin changed while it was copied" not in log  # resumed at its offsets, not restarted
        assert not any(p.name.startswith(".swmirror-") for p in (b / "data").iterdir())
    finally:
        for node in pair.nodes:
            node.close()


def test_upgrade_higher_backup_mirrors_no_handlers_and_skips_the_exclusions(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    roots = configure(
        pair,
        tmp_path,
        **{"Handler Path": "/handlers", "Switchover Upgrade Higher File Exclusions": "/data/skip"},
    )
    text = pair.b.config.read_text().replace('log_level = "DEBUG"', 'log_level = "DEBUG"\nrelease = "2.0.0"')
    pair.b.config.write_text(text)  # B runs a newer release: Upgrade Higher
    a, b = roots["A"], roots["B"]
    for d in ("data/skip", "flat", "init", "handlers"):
        (a / d).mkdir(parents=True)
    (a / "handlers/h.ivp").write_text("handler")
    (a / "data/skip/s.dat").write_text("excluded directory")
    (a / "data/keep.dat").write_text("kept")
    try:
        pair.a.start("--manual-switch-only")
        wait_until(lambda: pair.a.call("status", timeout=0.5)["role"] == "Primary", 15, 0.05, "A Primary")
        pair.b.start()
        wait_until(
            lambda: pair.b.call("status", timeout=0.5)["role"] == "Upgrade Higher", 15, 0.05, "B upgrade"
        )
        wait_until(lambda: files_status(pair)["state"] == "running", 10, 0.05, "file replication to run")
        assert read(b / "data/keep.dat") == "kept"
        (a / "data/skip/later.dat").write_text("still excluded")
        (a / "data/marker.dat").write_text("marker")
        within_1s(lambda: read(b / "data/marker.dat") == "marker", "a change under /data")
        assert not (b / "handlers").exists() and not (b / "data/skip/s.dat").exists()
        assert not (b / "data/skip/later.dat").exists()
        assert {r["root"] for r in files_status(pair)["roots"]} == {"/data", "/flat", "/init", "@canary"}
        assert "B subscribed to file changes (upgrade-higher mode)" in log_of(pair, "A")
    finally:
        for node in pair.nodes:
            node.close()
