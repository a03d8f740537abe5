"""Endpoint security: CURVE with the server group keypair and per-client keys, or plain text by choice.

Callers pass a :class:`Security` to every endpoint, so switching CURVE on is a configuration
change, not a code change. Plain text is only used when ``insecure`` is set explicitly.

Keys live in files in ZeroMQ's certificate format (``zmq.auth.create_certificates``):
``NAME.key`` holds the public key, ``NAME.key_secret`` the public and the secret key. A secret
file must be readable by its owner only; anything else is refused with the file and its mode.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import zmq
import zmq.auth

if TYPE_CHECKING:
    from transport.auth import AccessControl

GROUP_KEY_NAME = "server-group"
SECRET_SUFFIX = ".key_secret"
PUBLIC_SUFFIX = ".key"


class KeyFileError(ValueError):
    """A key file is missing, unreadable, malformed or not private; the text names the file."""


def check_private(path: Path) -> None:
    """Refuse a secret key file that its group or others may read or write."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise KeyFileError(f"secret key file {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read secret key file {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise KeyFileError(
            f"secret key file {path} has mode {mode:04o}: it must be readable by its owner only "
            f"(run: chmod 600 {path})"
        )


def public_path(path: Path) -> Path:
    """``x.key_secret`` -> ``x.key``; any other path is its own public file."""
    name = path.name
    return (
        path.with_name(name[: -len(SECRET_SUFFIX)] + PUBLIC_SUFFIX) if name.endswith(SECRET_SUFFIX) else path
    )


def load_keypair(path: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) Z85 from a ``.key_secret`` file, after checking that it is private."""
    p = Path(path)
    check_private(p)
    try:
        public, secret = zmq.auth.load_certificate(p)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{p}: not a CURVE key file ({exc})") from None
    if not secret:
        raise KeyFileError(f"{p} holds no secret key (is it the public .key file?)")
    if zmq.curve_public(secret) != public:
        raise KeyFileError(f"{p}: the public key does not belong to the secret key")
    return public, secret


def load_public(path: str | Path) -> bytes:
    """The public key (Z85) of a key: from ``x.key`` if it exists, else from the ``x.key_secret`` file."""
    p = Path(path)
    for candidate in (public_path(p), p):
        if candidate.exists():
            try:
                public, _ = zmq.auth.load_certificate(candidate)
            except (OSError, ValueError) as exc:
                raise KeyFileError(f"{candidate}: not a CURVE key file ({exc})") from None
            return public
    raise KeyFileError(f"key file {public_path(p)} does not exist")


def write_keypair(directory: str | Path, name: str, comment: str = "") -> tuple[Path, Path]:
    """Create ``NAME.key`` (0644) and ``NAME.key_secret`` (0600) in ``directory`` (0700 if new).

    The files are made in a private temporary directory and renamed into place, so the secret
    is never readable by others, not even for a moment. An existing keypair is not overwritten.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    pub, sec = d / f"{name}{PUBLIC_SUFFIX}", d / f"{name}{SECRET_SUFFIX}"
    for existing in (pub, sec):
        if existing.exists():
            raise KeyFileError(f"{existing} exists already; not overwriting a key")
    with tempfile.TemporaryDirectory(dir=d, prefix=".new-key-") as tmp:  # mkdtemp: mode 0700
        tmp_pub, tmp_sec = zmq.auth.create_certificates(
            tmp, name, metadata={"comment": comment} if comment else None
        )
        os.chmod(tmp_sec, 0o600)
        os.chmod(tmp_pub, 0o644)
        os.replace(tmp_sec, sec)
        os.replace(tmp_pub, pub)
    return pub, sec


@dataclass(frozen=True)
class Security:
    """How an endpoint's socket is secured.

    A server uses the group keypair (``server_*``); a client uses its own keypair (``client_*``;
    the peer node's client is the group keypair) and checks the server's public key. With
    ``access`` set, a server socket has a ZAP domain and every message it receives is checked
    against the sender's rights (:mod:`transport.auth`).
    """

    insecure: bool = False
    server_public: bytes = b""
    server_secret: bytes = b""
    client_public: bytes = b""
    client_secret: bytes = b""
    access: AccessControl | None = None

    @classmethod
    def plain(cls) -> Security:
        return cls(insecure=True)

    @classmethod
    def curve_group(cls, public: bytes, secret: bytes, access: AccessControl | None = None) -> Security:
        """The spec's server group keypair: identical on both servers, used as server and client key."""
        return cls(False, public, secret, public, secret, access)

    @classmethod
    def client(cls, server_public: bytes, public: bytes, secret: bytes) -> Security:
        """A client (operator, module, application) with its own keypair."""
        return cls(False, server_public, b"", public, secret)

    def validate(self) -> None:
        if self.insecure:
            return
        if not self.server_public:
            raise ValueError(
                "no CURVE keys configured: set [security] group_key, or insecure = true to run plain text"
            )

    def apply(self, sock: zmq.Socket[bytes], server: bool) -> None:
        if self.insecure:
            return
        self.validate()
        if server:
            if not self.server_secret:
                raise ValueError("a CURVE server needs the server group secret key")
            sock.curve_server = True
            sock.curve_secretkey = self.server_secret
            sock.curve_publickey = self.server_public
        else:
            sock.curve_serverkey = self.server_public
            sock.curve_publickey = self.client_public or self.server_public
            sock.curve_secretkey = self.client_secret or self.server_secret


def client_security(insecure: bool, group_key: str, key: str = "") -> Security:
    """A client's security: its own keypair ``key`` (a ``.key_secret`` file) and the server group's
    public key; without ``key``, the server group keypair itself (the master administrator's)."""
    if insecure:
        return Security.plain()
    if key:
        public, secret = load_keypair(key)
        return Security.client(load_public(group_key), public, secret)
    public, secret = load_keypair(group_key)
    return Security.curve_group(public, secret)
