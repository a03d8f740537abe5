"""The control panel's privilege lines (spec lines 1850, 1943-1955), pure."""

from __future__ import annotations

from cli.ctl_cmd import privilege_lines


def test_an_operator_with_remote_control_is_verified() -> None:
    lines, ok = privilege_lines("ops", ("monitor", "remote-control"), True, False, "alpha")
    assert lines == ["Checking user privileges for user ops", "Verified user has Remote Control rights"]
    assert ok


def test_a_monitor_only_operator_lacks_remote_control() -> None:
    lines, ok = privilege_lines("watcher", ("monitor",), True, False, "alpha")
    assert lines[-1] == "User watcher lacks the Remote Control right" and not ok


def test_immediate_checks_the_master_administrator_not_remote_control() -> None:
    lines, ok = privilege_lines("pilot", ("monitor", "remote-control"), True, True, "alpha")
    assert lines[-1] == "/Immediate: Remote Control right not checked; user pilot lacks the Admin right"
    assert not ok
    lines, ok = privilege_lines("boss", ("admin", "monitor", "remote-control"), True, True, "alpha")
    assert "verified user is a master administrator" in lines[-1] and ok


def test_without_a_primary_the_right_is_not_checked() -> None:
    lines, ok = privilege_lines("watcher", ("monitor",), True, False, None)
    assert lines[-1] == "No primary server: Remote Control right not checked" and ok


def test_plain_text_checks_nothing() -> None:
    lines, ok = privilege_lines("", (), False, False, "alpha")
    assert lines == ["Plain text (security.insecure): user privileges are not checked"] and ok
