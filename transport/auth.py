"""Who may connect and what each may ask: client keys, rights, the ZAP authenticator.

- Every client (operator, module, application) has its own CURVE keypair, a unique name and
  rights; the node keeps the authorized public keys in its *clients file* (TOML, written by
  ``switchover keys add-client|revoke``). The peer node is authorized by the server group key
  and has every right.
- :class:`PairAuthenticator` is pyzmq's ZAP authenticator (``ThreadAuthenticator``) with a
  credentials callback: a CURVE handshake succeeds only for the group key or a key in the
  clients file that is not revoked, and the ZAP *user id* of the connection is the client's
  name. ZeroMQ attaches it to every message received on that connection (``User-Id``).
- :data:`REQUIRED_RIGHTS` is the one table "message type -> rights that allow it";
  :func:`required_rights` adds the two rules of the control panel (spec lines 1943-1955: a
  switch with ``/Immediate`` needs the master administrator and no Remote Control right; no
  Remote Control right is checked when there is no primary). A type not in the table is
  node-to-node only: only the server group key may send it.
- :class:`AccessControl` applies it per request (``transport.endpoint`` calls :meth:`check`
  for every message on a server socket), logs refusals with the key name and peer address,
  rate-limited, and counts them. Reloading the clients file takes effect at once: a revoked
  client is refused from its next request, even on a connection opened before.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import zmq
from loguru import logger
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from transport.messages import Message


class Right(StrEnum):
    MONITOR = "monitor"  # status, history, query-backup
    REMOTE_CONTROL = "remote-control"  # switch, rejoin (the spec's Remote Control user right)
    ADMIN = "admin"  # master administrator: param/DS writes, a switch with --immediate
    MODULE = "module"  # a monitored module: register, answer Diagnostic Pings
    APP = "app"  # an application: role events, publish interactions
    NODE = "node"  # the peer node (server group key only; never given to a client)


TITLES = {
    Right.MONITOR: "Monitor",
    Right.REMOTE_CONTROL: "Remote Control",
    Right.ADMIN: "Admin",
    Right.MODULE: "Module",
    Right.APP: "App",
    Right.NODE: "Node",
}
CLIENT_RIGHTS = tuple(r for r in Right if r is not Right.NODE)
# A stronger right includes the weaker ones: the master administrator may also switch and look.
IMPLIES: dict[Right, frozenset[Right]] = {
    Right.ADMIN: frozenset({Right.REMOTE_CONTROL, Right.MONITOR}),
    Right.REMOTE_CONTROL: frozenset({Right.MONITOR}),
}
ALL_RIGHTS = frozenset(Right)
GROUP_USER = "server-group"  # the ZAP user id of the peer node (and of tools using the group key)
ANY_CLIENT = frozenset(CLIENT_RIGHTS)
OPERATOR = frozenset({Right.MONITOR, Right.REMOTE_CONTROL, Right.ADMIN})

# Message type -> the rights any one of which allows it. A new client-facing message type adds
# its row here; a type without a row may only be sent by the peer node (server group key).
REQUIRED_RIGHTS: dict[str, frozenset[Right]] = {
    "Ping": ANY_CLIENT,
    "WhoAmI": ANY_CLIENT,
    "QueryState": frozenset({Right.MONITOR, Right.MODULE, Right.APP}),  # Query Backup
    "HistoryRequest": frozenset({Right.MONITOR}),
    "SwitchRequest": frozenset({Right.REMOTE_CONTROL}),  # see required_rights()
    "RejoinRequest": frozenset({Right.REMOTE_CONTROL}),
    "Subscribe": frozenset({Right.APP, Right.MODULE}),  # Commence/Discontinue role events
    "RegisterModule": frozenset({Right.MODULE}),
    "ModulePingReply": frozenset({Right.MODULE}),  # a module answering a Diagnostic Ping
    "AdminRequest": frozenset({Right.ADMIN}),
    "InteractionPublish": frozenset({Right.APP}),  # interaction recovery (issue 12)
    "InteractionQuery": frozenset({Right.APP, Right.MONITOR}),
}

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def effective_rights(rights: Iterable[Right]) -> frozenset[Right]:
    out = set(rights)
    for r in list(out):
        out |= IMPLIES.get(r, frozenset())
    return frozenset(out)


def parse_rights(text: str | Iterable[str]) -> frozenset[Right]:
    """``"monitor,remote-control"`` (or a list) -> rights; a clear error for an unknown name."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    known = {r.value: r for r in CLIENT_RIGHTS}
    out = set()
    for name in names:
        if not name:
            continue
        if name not in known:
            raise ValueError(f"unknown right {name!r}; rights are: {', '.join(known)}")
        out.add(known[name])
    if not out:
        raise ValueError(f"no rights given; rights are: {', '.join(known)}")
    return frozenset(out)


def required_rights(msg: Message, primary_present: bool) -> frozenset[Right]:
    """The rights any one of which allows ``msg`` (the node right always does)."""
    if msg.TYPE == "SwitchRequest":
        if getattr(msg, "immediate", False):
            return frozenset({Right.ADMIN})  # /Immediate: master administrator, Remote Control not checked
        if not primary_present:
            return OPERATOR  # no primary server: the Remote Control right is not checked
    return REQUIRED_RIGHTS.get(msg.TYPE, frozenset())


def describe_need(msg: Message, need: frozenset[Right]) -> str:
    if msg.TYPE == "SwitchRequest" and getattr(msg, "immediate", False):
        return "the Admin right (a switch with --immediate is for the master administrator)"
    if not need:
        return "the Node right (only the peer server sends this)"
    return " or ".join(f"the {TITLES[r]} right" for r in sorted(need, key=CLIENT_RIGHTS.index))


# ------------------------------------------------------------------------------- clients file


@dataclass(frozen=True)
class Client:
    name: str
    public_key: str  # Z85
    rights: frozenset[Right]
    added: str = ""
    revoked: str = ""  # when it was revoked (ISO time); a revoked name is never reused

    @property
    def active(self) -> bool:
        return not self.revoked


class ClientsFileError(ValueError):
    """The clients file cannot be used; the text names the file, the client and the problem."""


def _valid_key(text: str) -> bool:
    return len(text) == 40 and bool(re.fullmatch(r"[0-9A-Za-z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}", text))


def load_clients(path: Path) -> dict[str, Client]:
    """The clients file by name; a missing file is no clients."""
    try:
        text = path.read_text()
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ClientsFileError(f"cannot read clients file {path}: {exc.strerror}") from None
    if mode & 0o022:
        raise ClientsFileError(
            f"clients file {path} has mode {mode:04o}: others could authorize keys; it must be writable "
            f"by its owner only (run: chmod 644 {path})"
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ClientsFileError(f"{path}: not valid TOML: {exc}") from None
    table = data.get("clients", {})
    if set(data) - {"clients"} or not isinstance(table, dict):
        raise ClientsFileError(f"{path}: expected only [clients.NAME] tables")
    out: dict[str, Client] = {}
    keys: dict[str, str] = {}
    for name, entry in table.items():
        where = f"{path}: clients.{name}"
        if not NAME_PATTERN.match(name):
            raise ClientsFileError(f"{where}: not a valid client name (letters, digits, _.@-)")
        if not isinstance(entry, dict):
            raise ClientsFileError(f"{where}: expected a table")
        unknown = set(entry) - {"public_key", "rights", "added", "revoked"}
        if unknown:
            raise ClientsFileError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        key = entry.get("public_key")
        if not isinstance(key, str) or not _valid_key(key):
            raise ClientsFileError(f"{where}.public_key: expected a 40-character Z85 CURVE public key")
        try:
            rights = parse_rights(entry.get("rights", []))
        except (ValueError, AttributeError) as exc:
            raise ClientsFileError(f"{where}.rights: {exc}") from None
        if key in keys:
            raise ClientsFileError(f"{where}.public_key: the same key as client {keys[key]!r}")
        keys[key] = name
        out[name] = Client(name, key, rights, str(entry.get("added", "")), str(entry.get("revoked", "")))
    return out


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_clients(clients: Iterable[Client]) -> str:
    lines = [
        "# Authorized clients of this switchover pair (keep it identical on both servers).",
        "# Written by `switchover keys add-client|revoke`; reload a running node with",
        "# `switchover admin --node DATA_DIR keys-reload` or SIGHUP.",
    ]
    for c in sorted(clients, key=lambda c: c.name):
        lines += ["", f"[clients.{_q(c.name)}]", f"public_key = {_q(c.public_key)}"]
        lines.append(
            "rights = [" + ", ".join(_q(r.value) for r in sorted(c.rights, key=CLIENT_RIGHTS.index)) + "]"
        )
        if c.added:
            lines.append(f"added = {_q(c.added)}")
        if c.revoked:
            lines.append(f"revoked = {_q(c.revoked)}")
    return "\n".join(lines) + "\n"


def save_clients(path: Path, clients: Iterable[Client]) -> None:
    """Write atomically (temp file, fsync, rename); the file is public keys only, mode 0644."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(render_clients(clients))
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ access control


class _RateLimitedLog:
    """Log the first occurrence of a key, then at most one line per ``every`` seconds with a count."""

    def __init__(self, every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._last: dict[tuple[str, ...], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, key: tuple[str, ...], text: str) -> None:
        now = self.clock()
        with self._lock:
            last, suppressed = self._last.get(key, (-1e18, 0))
            if now - last < self.every:
                self._last[key] = (last, suppressed + 1)
                return
            self._last[key] = (now, 0)
            if len(self._last) > 10_000:  # bounded: forget the oldest half
                for k in sorted(self._last, key=lambda k: self._last[k][0])[:5_000]:
                    del self._last[k]
        more = f" ({suppressed} more like it in the last {self.every:g} s)" if suppressed else ""
        logger.bind(topic="security").warning(text + more)


@dataclass
class AccessControl:
    """The node's authorized keys and rights, shared by the authenticator and every server endpoint."""

    group_public: str  # Z85 of the server group public key
    clients_path: Path | None = None
    primary_present: Callable[[], bool] = lambda: True
    log_every: float = 10.0
    counters: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, Client] = {}
        self._by_key: dict[str, Client] = {}
        self._log = _RateLimitedLog(self.log_every)
        self._domains: set[str] = set()
        self._domain_listeners: list[Callable[[str], None]] = []
        self.reload()

    def add_domain(self, domain: str) -> None:
        """A server socket with this ZAP domain exists (called by the endpoint before it binds)."""
        with self._lock:
            self._domains.add(domain)
            listeners = list(self._domain_listeners)
        for listener in listeners:
            listener(domain)

    def on_domain(self, listener: Callable[[str], None]) -> None:
        with self._lock:
            self._domain_listeners.append(listener)
            known = list(self._domains)
        for domain in known:
            listener(domain)

    # -------------------------------------------------------------------------------- keys

    def reload(self) -> dict[str, Any]:
        """Read the clients file again (raises ClientsFileError and keeps the old list)."""
        clients = load_clients(self.clients_path) if self.clients_path is not None else {}
        for c in clients.values():
            if c.public_key == self.group_public:
                raise ClientsFileError(f"{self.clients_path}: client {c.name!r} has the server group key")
        with self._lock:
            old = {n for n, c in self._by_name.items() if c.active}
            self._by_name = clients
            self._by_key = {c.public_key: c for c in clients.values()}
        now_active = {n for n, c in clients.items() if c.active}
        return {
            "clients": sorted(now_active),
            "added": sorted(now_active - old),
            "removed": sorted(old - now_active),
        }

    def clients(self) -> list[Client]:
        with self._lock:
            return sorted(self._by_name.values(), key=lambda c: c.name)

    def rights_of(self, user: str) -> frozenset[Right]:
        """What the connection's ZAP user id may do now (nothing for a revoked or unknown name)."""
        if user == GROUP_USER:
            return ALL_RIGHTS
        with self._lock:
            c = self._by_name.get(user)
        return effective_rights(c.rights) if c is not None and c.active else frozenset()

    # ------------------------------------------------------------------- ZAP (handshakes)

    def admit(self, domain: str, address: str, key: str) -> bool:
        """A CURVE handshake from ``address`` with client key ``key`` (Z85) on socket ``domain``."""
        if key == self.group_public:
            return True
        with self._lock:
            c = self._by_key.get(key)
        if c is not None and c.active:
            return True
        if c is not None:
            self.counters["handshake_revoked_key"] += 1
            why = f"the key of client {c.name!r}, revoked {c.revoked}"
        else:
            self.counters["handshake_unknown_key"] += 1
            why = "a key that is not authorized (not in the clients file)"
        self._log(
            ("zap", key, address), f"refused a connection from {address} to {domain}: {why} ({key[:8]}…)"
        )
        return False

    def user_of_key(self, key: str) -> str:
        if key == self.group_public:
            return GROUP_USER
        with self._lock:
            c = self._by_key.get(key)
        return c.name if c is not None else "unknown"

    def handshake_failed(self, endpoint: str, address: str, detail: str) -> None:
        """A connection that never completed the CURVE handshake (a plain-text client, garbage)."""
        self.counters["handshake_failed"] += 1
        self._log(
            ("handshake", _host(address)), f"refused a connection from {address} to {endpoint}: {detail}"
        )

    # ---------------------------------------------------------------------------- requests

    def check(self, msg: Message, user: str, address: str, endpoint: str) -> str | None:
        """None when ``user`` may send ``msg``; else the refusal, for the asker (logged, counted)."""
        rights = self.rights_of(user)
        if Right.NODE in rights:
            return None
        need = required_rights(msg, self.primary_present())
        if rights & need:
            return None
        self.counters["request_refused"] += 1
        if not rights:
            text = f"user {user} is not authorized (revoked or unknown key)"
        else:
            text = f"user {user} lacks {describe_need(msg, need)}"
        self._log(
            ("request", user, _host(address), msg.TYPE),
            f"refused {msg.TYPE} on {endpoint} from {user} at {address}: {text}",
        )
        return text

    def status(self) -> dict[str, Any]:
        return {
            "clients": [
                {
                    "name": c.name,
                    "rights": sorted(r.value for r in c.rights),
                    "revoked": c.revoked,
                    "key": c.public_key[:8],
                }
                for c in self.clients()
            ],
            "refused": dict(self.counters),
        }


def _host(address: str) -> str:
    """The host of ``host:port`` (rate limits are per host: each connection has a new port)."""
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


class PairAuthenticator(ThreadAuthenticator):
    """pyzmq's ZAP authenticator in its thread, deciding CURVE keys with :class:`AccessControl`.

    The address of the connection being authenticated is taken from the ZAP request, so a
    refusal is logged with it; the ZAP user id of an accepted key is the client's name.
    """

    def __init__(self, context: zmq.Context[Any], access: AccessControl) -> None:
        super().__init__(context, log=logging.getLogger("switchover.zap"))
        self.access = access
        self._address = ""
        self.configure_curve_callback("*", credentials_provider=self)
        access.on_domain(lambda domain: self.configure_curve_callback(domain, credentials_provider=self))

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self._address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        await super().handle_zap_message(msg)

    def callback(self, domain: str, key: bytes) -> bool:  # the credentials provider's hook
        return self.access.admit(domain or "*", self._address, key.decode("ascii", "replace"))

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.access.user_of_key(z85.encode(client_public_key).decode("ascii"))
