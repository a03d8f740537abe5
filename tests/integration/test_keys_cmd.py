"""``switchover keys``: generate on A, export, import on B (backing up what it replaces),
add-client with rights, list, revoke (a revoked name is never reused) — as real commands."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import zmq.auth

from deploy.pair import child_env
from transport.auth import Right, load_clients
from transport.security import load_keypair


def keys(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "keys", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=30,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_group_keypair_goes_from_a_to_b_by_export_and_import(tmp_path: Path) -> None:
    a, usb, b = tmp_path / "a", tmp_path / "usb", tmp_path / "b"
    done = keys("generate", "--dir", str(a))
    assert done.returncode == 0, done.stderr
    assert f'group_key = "{a}/server-group.key_secret"' in done.stdout
    assert mode(a / "server-group.key_secret") == 0o600 and mode(a) == 0o700
    assert keys("generate", "--dir", str(a)).returncode != 0  # never overwrites a key

    assert keys("add-client", "ops", "--rights", "monitor", "--dir", str(a)).returncode == 0
    assert keys("export", "--dir", str(a), str(usb)).returncode == 0
    assert mode(usb / "server-group.key_secret") == 0o600
    for f in usb.iterdir():  # removable media (vfat) shows every file 0777: import still works
        f.chmod(0o777)

    (b).mkdir(mode=0o700)
    old = zmq.auth.create_certificates(str(b), "server-group")[1]  # B's own, to be replaced
    done = keys("import", "--dir", str(b), str(usb))
    assert done.returncode == 0, done.stderr
    assert load_keypair(b / "server-group.key_secret") == load_keypair(a / "server-group.key_secret")
    assert "backed up the existing" in done.stdout
    (backup,) = b.glob("backup-*")
    assert (backup / Path(old).name).read_bytes() != (b / "server-group.key_secret").read_bytes()
    assert set(load_clients(b / "clients.toml")) == {"ops"}
    assert mode(b / "server-group.key_secret") == 0o600 and mode(b / "clients.toml") == 0o644


def test_clients_are_added_listed_and_revoked(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    assert keys("generate", "--dir", str(d)).returncode == 0
    done = keys("add-client", "ops-alice", "--rights", "monitor,remote-control", "--dir", str(d))
    assert done.returncode == 0, done.stderr
    secret = d / "clients.d" / "ops-alice.key_secret"
    assert mode(secret) == 0o600 and f"--key {secret}" in done.stdout
    assert keys("add-client", "bad", "--rights", "monitor,root", "--dir", str(d)).stderr.count(
        "unknown right 'root'"
    )
    assert keys("add-client", "ops-alice", "--rights", "monitor", "--dir", str(d)).returncode != 0

    listed = json.loads(keys("list", "--json", "--dir", str(d)).stdout)
    assert [(c["name"], c["rights"], c["revoked"]) for c in listed] == [
        ("ops-alice", ["monitor", "remote-control"], "")
    ]
    assert listed[0]["public_key"] == load_keypair(secret)[0].decode()

    assert keys("revoke", "ops-alice", "--dir", str(d)).returncode == 0
    (alice,) = load_clients(d / "clients.toml").values()
    assert alice.revoked and alice.rights == {Right.MONITOR, Right.REMOTE_CONTROL}
    again = keys("add-client", "ops-alice", "--rights", "monitor", "--dir", str(d))
    assert again.returncode != 0 and "a revoked name is never reused" in again.stderr
    assert "no client named 'bob'" in keys("revoke", "bob", "--dir", str(d)).stderr
