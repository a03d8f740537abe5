"""``switchover keys``: the server group keypair and the authorized client keys.

The spec's procedure (lines 1288-1432), on Linux: the server group keypair is generated on the
initial active server A (``generate``), exported to removable media (``export``) and imported on
the backup B (``import``, which backs up what it replaces). Each operator, module and
application gets its own keypair with a name and rights (``add-client``); ``list`` shows them,
``revoke`` withdraws one. The clients file must be the same on both servers (export/import
carries it); a running node picks up a change on ``switchover admin --node DIR keys-reload``,
on SIGHUP, or with ``--node DIR`` here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import zmq
import zmq.auth

from actors.config import ConfigError, load_config
from cli.output import error, print_json, print_table
from transport.admin_client import AdminCallError, admin_call
from transport.auth import (
    CLIENT_RIGHTS,
    NAME_PATTERN,
    Client,
    ClientsFileError,
    load_clients,
    parse_rights,
    save_clients,
)
from transport.security import (
    GROUP_KEY_NAME,
    PUBLIC_SUFFIX,
    SECRET_SUFFIX,
    KeyFileError,
    write_keypair,
)

CLIENTS_FILE = "clients.toml"
CLIENT_KEYS_DIR = "clients.d"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="CURVE keys: the server group keypair and the clients' keys")
    ops = p.add_subparsers(dest="keys_op", required=True)

    def with_dir(q: argparse.ArgumentParser) -> argparse.ArgumentParser:
        q.add_argument("--dir", help="the keys directory (default: the one of --config's security.group_key)")
        q.add_argument("--config", default=os.environ.get("SWITCHOVER_CONFIG"), help="a node config")
        return q

    with_dir(ops.add_parser("generate", help="create the server group keypair (on server A)"))
    ex = with_dir(ops.add_parser("export", help="copy the group keypair and clients file out (for server B)"))
    ex.add_argument("to", help="a directory on removable media")
    im = with_dir(ops.add_parser("import", help="install an exported group keypair and clients file"))
    im.add_argument("source", help="the directory written by `keys export`")
    add = with_dir(ops.add_parser("add-client", help="authorize a client key with a name and rights"))
    add.add_argument("name", help="the client's name (its ZAP user id), e.g. ops-alice, TsServer-module")
    add.add_argument(
        "--rights",
        required=True,
        help=f"comma-separated: {', '.join(r.value for r in CLIENT_RIGHTS)}",
    )
    add.add_argument("--public-key", help="authorize this Z85 public key instead of generating a keypair")
    add.add_argument("--out", help=f"where to write the new keypair (default: DIR/{CLIENT_KEYS_DIR})")
    add.add_argument("--node", help="a running node's data directory: reload its clients file")
    ls = with_dir(ops.add_parser("list", help="the authorized (and revoked) clients"))
    ls.add_argument("--json", action="store_true", help="print the clients as JSON")
    rv = with_dir(ops.add_parser("revoke", help="withdraw a client's key (its name is never reused)"))
    rv.add_argument("name", help="the client to revoke (its name can never be reused)")
    rv.add_argument("--node", help="a running node's data directory: reload its clients file")
    p.set_defaults(func=run)


def keys_dir(args: argparse.Namespace) -> Path:
    if args.dir:
        return Path(args.dir)
    if args.config:
        cfg = load_config(args.config)
        if cfg.security.group_key:
            return Path(cfg.security.group_key).parent
    raise ConfigError("pass --dir DIR (or --config FILE with security.group_key)")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _reload(node: str | None) -> None:
    if not node:
        print("reload a running node: switchover admin --node DATA_DIR keys-reload (or kill -HUP its PID)")
        return
    result = admin_call(node, "keys-reload", {})
    print(f"node in {node} reloaded: {len(result['clients'])} client(s) authorized")


def do_generate(d: Path) -> int:
    pub, sec = write_keypair(d, GROUP_KEY_NAME, "switchover server group keypair")
    clients = d / CLIENTS_FILE
    if not clients.exists():
        save_clients(clients, [])
    print(f"server group keypair: {sec} (secret, mode 0600) and {pub}")
    print(f"authorized clients: {clients}")
    print("next: `switchover keys export` it to removable media and `keys import` it on server B;")
    print("in both servers' configs:\n\n[security]")
    print(f'group_key = "{sec}"')
    return 0


def _copy_private(src: Path, dst: Path, mode: int) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(src.read_bytes())
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, dst)


def _group_files(d: Path) -> tuple[Path, Path, Path]:
    return d / f"{GROUP_KEY_NAME}{SECRET_SUFFIX}", d / f"{GROUP_KEY_NAME}{PUBLIC_SUFFIX}", d / CLIENTS_FILE


def _check_group(secret_file: Path) -> None:
    """The file holds a matching CURVE keypair (its mode is checked where it is installed)."""
    if not secret_file.exists():
        raise KeyFileError(f"{secret_file} does not exist")
    try:
        public, secret = zmq.auth.load_certificate(secret_file)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{secret_file}: not a CURVE key file ({exc})") from None
    if not secret or zmq.curve_public(secret) != public:
        raise KeyFileError(f"{secret_file}: no secret key, or it does not match its public key")


def do_export(d: Path, to: Path) -> int:
    secret, public, clients = _group_files(d)
    _check_group(secret)
    to.mkdir(parents=True, exist_ok=True, mode=0o700)
    _copy_private(secret, to / secret.name, 0o600)
    _copy_private(public, to / public.name, 0o644)
    if clients.exists():
        _copy_private(clients, to / clients.name, 0o644)
    print(f"exported the server group keypair{' and clients file' if clients.exists() else ''} to {to}")
    print("carry it to server B, run `switchover keys import` there, then wipe or lock away the media")
    return 0


def do_import(d: Path, source: Path) -> int:
    src_secret, src_public, src_clients = _group_files(source)
    _check_group(src_secret)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret, public, clients = _group_files(d)
    existing = [f for f in (secret, public, clients) if f.exists()]
    if existing:
        backup = d / f"backup-{time.strftime('%Y%m%d-%H%M%S')}"
        backup.mkdir(mode=0o700)
        for f in existing:
            shutil.copy2(f, backup / f.name)
        print(f"backed up the existing {', '.join(f.name for f in existing)} to {backup}")
    _copy_private(src_secret, secret, 0o600)
    if src_public.exists():
        _copy_private(src_public, public, 0o644)
    else:  # write the public file from the secret one (never copy the secret to a 0644 file)
        pub, _ = zmq.auth.load_certificate(src_secret)
        public.write_text(f'curve\n    public-key = "{pub.decode()}"\n')
    if src_clients.exists():  # checked once copied (removable media often shows every file 0777)
        staged = d / f".{CLIENTS_FILE}.import"
        _copy_private(src_clients, staged, 0o644)
        try:
            load_clients(staged)
        except ClientsFileError:
            staged.unlink()
            raise
        os.replace(staged, clients)
    print(f"imported the server group keypair into {d} ({secret}, mode 0600)")
    return 0


def do_add(args: argparse.Namespace, d: Path) -> int:
    name = args.name
    if not NAME_PATTERN.match(name):
        raise ClientsFileError(f"{name!r} is not a valid client name (letters, digits and _.@-, up to 64)")
    rights = parse_rights(args.rights)
    path = d / CLIENTS_FILE
    clients = load_clients(path)
    if name in clients:
        old = clients[name]
        when = f" (revoked {old.revoked}; a revoked name is never reused)" if old.revoked else ""
        raise ClientsFileError(f"a client named {name!r} exists already{when}; choose another name")
    if args.public_key:
        public = args.public_key.strip()
        try:
            zmq.utils.z85.decode(public)
        except (ValueError, zmq.ZMQError) as exc:
            raise ClientsFileError(f"--public-key: not a Z85 CURVE public key ({exc})") from None
        secret_file = None
    else:
        out = Path(args.out) if args.out else d / CLIENT_KEYS_DIR
        pub_file, secret_file = write_keypair(out, name, f"switchover client {name}")
        public = zmq.auth.load_certificate(pub_file)[0].decode()
    if any(c.public_key == public for c in clients.values()):
        raise ClientsFileError(f"that public key is already authorized for another client in {path}")
    clients[name] = Client(name, public, rights, added=_now())
    save_clients(path, clients.values())
    print(f"client {name} authorized with rights {', '.join(sorted(r.value for r in rights))} in {path}")
    if secret_file is not None:
        print(
            f"its secret key: {secret_file} (mode 0600): give it to the client only, e.g. --key {secret_file}"
        )
    print("copy the clients file to the other server too (or `keys export`/`import` it)")
    _reload(args.node)
    return 0


def do_revoke(args: argparse.Namespace, d: Path) -> int:
    path = d / CLIENTS_FILE
    clients = load_clients(path)
    c = clients.get(args.name)
    if c is None:
        known = ", ".join(sorted(clients)) or "none"
        raise ClientsFileError(f"no client named {args.name!r} in {path}; clients: {known}")
    if c.revoked:
        print(f"client {c.name} was revoked already ({c.revoked})")
        return 0
    clients[c.name] = Client(c.name, c.public_key, c.rights, c.added, revoked=_now())
    save_clients(path, clients.values())
    print(f"client {c.name} revoked in {path}; copy the clients file to the other server too")
    _reload(args.node)
    return 0


def do_list(args: argparse.Namespace, d: Path) -> int:
    clients = load_clients(d / CLIENTS_FILE)
    if args.json:
        print_json(
            [
                {
                    "name": c.name,
                    "rights": sorted(r.value for r in c.rights),
                    "public_key": c.public_key,
                    "added": c.added,
                    "revoked": c.revoked,
                }
                for c in clients.values()
            ]
        )
        return 0
    rows = [
        [
            c.name,
            ", ".join(sorted(r.value for r in c.rights)),
            c.public_key[:12] + "…",
            c.added,
            c.revoked or "-",
        ]
        for c in sorted(clients.values(), key=lambda c: c.name)
    ]
    print_table(f"clients in {d / CLIENTS_FILE}", ["name", "rights", "key", "added", "revoked"], rows)
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        d = keys_dir(args)
        if args.keys_op == "generate":
            return do_generate(d)
        if args.keys_op == "export":
            return do_export(d, Path(args.to))
        if args.keys_op == "import":
            return do_import(d, Path(args.source))
        if args.keys_op == "add-client":
            return do_add(args, d)
        if args.keys_op == "revoke":
            return do_revoke(args, d)
        return do_list(args, d)
    except (ConfigError, KeyFileError, ClientsFileError, ValueError, AdminCallError) as exc:
        return error(str(exc))
