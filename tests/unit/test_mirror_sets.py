"""Mirror sets from the server parameters, path safety and the sync plan (pure)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from actors.config import ConfigError, parse_config
from replication.mirror_sets import (
    Entry,
    MirrorRoot,
    Mode,
    PathRefused,
    When,
    check_relative,
    excluded_by_extension,
    initial_sync_failure,
    local_root,
    mirror_roots,
    mode_of_role,
    plan_sync,
    safe_local_path,
    symlink_allowed,
)
from replication.params import ServerParams


def roots_of(params: ServerParams, mode: Mode = Mode.NORMAL) -> list[tuple[str, bool, str, str]]:
    return [(r.path, r.recursive, str(r.when), r.source) for r in mirror_roots(params, mode)]


def test_defaults_mirror_nothing(params: ServerParams) -> None:
    assert mirror_roots(params) == ()


@pytest.mark.parametrize(
    ("settings", "mode", "expected"),
    [
        # Handler Path: once, flat unless '+'
        (
            {"Handler Path": "/srv/ic/handlers"},
            Mode.NORMAL,
            [("/srv/ic/handlers", False, "once", "Handler Path")],
        ),
        # Resource / I3Tables: continuous, whole tree
        (
            {"Resource Path": "/srv/ic/resources", "I3Tables Path": "/srv/ic/tables"},
            Mode.NORMAL,
            [
                ("/srv/ic/resources", True, "continuous", "Resource Path"),
                ("/srv/ic/tables", True, "continuous", "I3Tables Path"),
            ],
        ),
        # ';' separates, '+' recursive
        (
            {"CustomMirrorDir": "/d/one; +/d/two"},
            Mode.NORMAL,
            [
                ("/d/one", False, "continuous", "CustomMirrorDir"),
                ("/d/two", True, "continuous", "CustomMirrorDir"),
            ],
        ),
        ({"InitialMirrorDir": "+/rec"}, Mode.NORMAL, [("/rec", True, "once", "InitialMirrorDir")]),
        # continuous wins over once for the same directory
        (
            {"CustomMirrorDir": "/d", "InitialMirrorDir": "+/d"},
            Mode.NORMAL,
            [("/d", True, "continuous", "CustomMirrorDir")],
        ),
        # Upgrade Higher: no handlers, minus the exclusions (a whole root, or a directory inside one)
        (
            {
                "Handler Path": "/h",
                "CustomMirrorDir": "+/a; /b; +/c",
                "Switchover Upgrade Higher File Exclusions": "/b; /c/skip",
            },
            Mode.UPGRADE_HIGHER,
            [("/a", True, "continuous", "CustomMirrorDir"), ("/c", True, "continuous", "CustomMirrorDir")],
        ),
        # Upgrade Lower: only the Custom Upgrade File Synchronization Directories
        (
            {
                "Handler Path": "/h",
                "CustomMirrorDir": "+/a",
                "Custom Upgrade File Synchronization Directories": "+/flows",
            },
            Mode.UPGRADE_LOWER,
            [("/flows", True, "continuous", "Custom Upgrade File Synchronization Directories")],
        ),
        ({"Handler Path": "/h", "CustomMirrorDir": "+/a"}, Mode.UPGRADE_LOWER, []),
    ],
)
def test_mirror_roots_table(
    params: ServerParams, settings: dict[str, str], mode: Mode, expected: list[tuple[str, bool, str, str]]
) -> None:
    for name, value in settings.items():
        params.set(name, value)
    assert roots_of(params, mode) == expected


def test_upgrade_higher_excludes_a_directory_inside_a_recursive_root(params: ServerParams) -> None:
    params.set("CustomMirrorDir", "+/c")
    params.set("Switchover Upgrade Higher File Exclusions", "/c/skip")
    (root,) = mirror_roots(params, Mode.UPGRADE_HIGHER)
    assert root.excluded_dirs == ("skip",)
    assert root.includes("keep/x.dat") and not root.includes("skip/x.dat") and not root.includes("skip", True)


def test_exceptions_by_extension(params: ServerParams) -> None:
    params.set("CustomMirrorDir", "+/d")
    params.set("MirrorExceptions", "txt; gif; myext")
    (root,) = mirror_roots(params)
    assert root.exceptions == ("txt", "gif", "myext")
    assert not root.includes("a/notes.TXT") and not root.includes("pic.gif") and not root.includes("x.myext")
    assert root.includes("a/data.csv") and root.includes("README") and root.includes("txt")


def test_upgrade_lower_exceptions_inherit_mirror_exceptions(params: ServerParams) -> None:
    params.set("Custom Upgrade File Synchronization Directories", "+/flows")
    params.set("MirrorExceptions", "tmp")
    assert mirror_roots(params, Mode.UPGRADE_LOWER)[0].exceptions == ("tmp",)
    params.set("Custom Upgrade File Synchronization Exceptions", "bak")
    assert mirror_roots(params, Mode.UPGRADE_LOWER)[0].exceptions == ("bak",)


def test_non_recursive_root_has_only_its_own_files() -> None:
    flat = MirrorRoot("/d", False, When.CONTINUOUS)
    assert flat.includes("a.dat") and not flat.includes("sub/a.dat") and not flat.includes("sub", True)
    deep = MirrorRoot("/d", True, When.CONTINUOUS)
    assert deep.includes("sub/a.dat") and deep.includes("sub", True)


def test_root_round_trips_as_dict() -> None:
    r = MirrorRoot("/d", True, When.ONCE, ("txt",), ("skip",), "InitialMirrorDir")
    assert MirrorRoot.from_dict(r.as_dict()) == r


@pytest.mark.parametrize(
    ("name", "excluded"),
    [
        ("a.txt", True),
        ("A.TxT", True),
        ("a.txt.bak", False),
        (".txt", False),
        ("txt", False),
        ("b.gif", True),
    ],
)
def test_excluded_by_extension(name: str, excluded: bool) -> None:
    assert excluded_by_extension(name, ("txt", "gif")) is excluded


@pytest.mark.parametrize(
    ("role", "mode"),
    [("Backup", Mode.NORMAL), ("Upgrade Higher", Mode.UPGRADE_HIGHER), ("Upgrade Lower", Mode.UPGRADE_LOWER)],
)
def test_mode_of_role(role: str, mode: Mode) -> None:
    assert mode_of_role(role) is mode


def test_local_root_maps_under_the_node_root() -> None:
    assert local_root("/", "/srv/data") == Path("/srv/data")
    assert local_root("/tmp/nodeB", "/srv/data") == Path("/tmp/nodeB/srv/data")


@pytest.mark.parametrize("rel", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/\x00"])
def test_check_relative_refuses_escapes(rel: str) -> None:
    with pytest.raises(PathRefused):
        check_relative(rel)


def test_safe_local_path_refuses_a_parent_symlink_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "in").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "out")
    os.symlink("in", root / "alias")
    assert safe_local_path(root, "in/f") == root / "in" / "f"
    assert safe_local_path(root, "alias/f") == root / "alias" / "f"
    with pytest.raises(PathRefused, match="outside"):
        safe_local_path(root, "out/f")


@pytest.mark.parametrize(
    ("rel", "target", "ok"),
    [
        ("l", "f", True),
        ("a/l", "../f", True),
        ("a/l", "../../f", False),
        ("l", "../f", False),
        ("l", "/etc/passwd", False),
        ("a/b/l", "../c/./d", True),
    ],
)
def test_symlink_allowed(rel: str, target: str, ok: bool, tmp_path: Path) -> None:
    assert symlink_allowed(tmp_path, rel, target) is ok


def test_initial_sync_failure_names_directory_and_bytes() -> None:
    text = initial_sync_failure("/srv/rec", 123456, 7, 30)
    assert "/srv/rec" in text and "123456 bytes" in text and "30 s" in text


def e(path: str, type_: str = "file", size: int = 1, mtime: int = 1, mode: int = 0o644, h: str = "") -> Entry:
    return Entry(path, type_, size, mtime, mode, h, "")


def test_plan_sync_fetches_differing_and_deletes_extra_deepest_first() -> None:
    remote = {
        "d": e("d", "dir", 0, 0, 0o755),
        "d/same": e("d/same", h="x"),
        "d/changed": e("d/changed", h="new"),
        "d/bigger": e("d/bigger", size=2, h="y"),
        "chmod": e("chmod", mode=0o600, h="z"),
        "new": e("new", h="n"),
    }
    local = {
        "d": e("d", "dir", 0, 0, 0o755),
        "d/same": e("d/same", h="x"),
        "d/changed": e("d/changed", h="old"),
        "d/bigger": e("d/bigger", size=1, h=""),
        "chmod": e("chmod", mode=0o644, h=""),
        "gone": e("gone", "dir", 0, 0, 0o755),
        "gone/f": e("gone/f"),
    }
    plan = plan_sync(remote, local)
    assert [x.path for x in plan.fetch] == ["d/bigger", "d/changed", "new"]
    assert [x.path for x in plan.meta] == ["chmod"]
    assert plan.delete == ("gone/f", "gone")
    assert plan.mkdirs == () and plan.bytes == 4


def test_mirror_config_defaults_and_checks() -> None:
    base = {
        "node": {"name": "A", "data_dir": "/tmp/x"},
        "server_a": {"name": "A"},
        "server_b": {"name": "B"},
        "security": {"insecure": True},
    }
    cfg = parse_config(base)
    assert cfg.mirror.root == "/" and cfg.me.file_port == 3637
    with pytest.raises(ConfigError, match=r"mirror\.root"):
        parse_config({**base, "mirror": {"root": "relative"}})
    with pytest.raises(ConfigError, match="file_port"):
        parse_config({**base, "server_a": {"name": "A", "file_port": 0}})


def test_initial_sync_failure_before_the_manifest_says_so() -> None:
    text = initial_sync_failure("/srv/rec", -1, 0, 5)
    assert "/srv/rec" in text and "manifest had not arrived" in text and "start-up failed" in text


def test_safe_local_path_cache_resolves_each_directory_once_and_still_refuses(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "out")
    cache: dict[str, str] = {}
    assert safe_local_path(root, "d/a", cache) == root / "d/a"
    assert safe_local_path(root, "d/b", cache) == root / "d/b"
    assert set(cache) == {"", "d"}
    with pytest.raises(PathRefused):
        safe_local_path(root, "out/x", cache)
