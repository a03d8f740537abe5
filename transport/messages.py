"""Typed messages: frozen dataclasses in one registry, keyed by a stable type name.

The registry holds the messages that travel between processes (ZeroMQ frames, see
:mod:`transport.codec`), and only those: a class joins it with ``@register("TypeName")``;
the name is the wire name and never changes once shipped. A frame naming any other type is
refused by the codec as an unknown message type.

Messages that stay inside one process (an actor's timers, supervisor orders, replies between
two actors of a node) are plain frozen dataclasses in the module of the actor that handles
them, never registered: a peer cannot send them. The few shared by every actor (``Tick``,
``CrashActor``, ``ConnectionEvent``) are at the end of the first section below, unregistered.

Field types allowed on the wire: ``str``, ``int``, ``float``, ``bool``, ``bytes``,
``X | None``, ``tuple[T, ...]`` of those, and ``dict[str, Any]`` (JSON-like values).
The codec checks every field against these annotations when it decodes.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

PROTOCOL_VERSION = 1

_REGISTRY: dict[str, type[Message]] = {}
_VALIDATORS: dict[str, dict[str, Callable[[Any], bool]]] = {}


@dataclass(frozen=True)
class Message:
    """Base of every typed message. ``TYPE`` is the registered wire name."""

    TYPE: ClassVar[str] = ""


M = TypeVar("M", bound=type[Message])


def register(type_name: str) -> Callable[[M], M]:
    """Class decorator: add a frozen dataclass to the registry under ``type_name``."""

    def decorate(cls: M) -> M:
        if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError(f"{cls.__name__} must be a frozen dataclass to be a message")
        if type_name in _REGISTRY and _REGISTRY[type_name] is not cls:
            raise TypeError(f"message type name {type_name!r} is already taken by {_REGISTRY[type_name]}")
        cls.TYPE = type_name
        _REGISTRY[type_name] = cls
        hints = typing.get_type_hints(cls)
        _VALIDATORS[type_name] = {f.name: _validator(hints[f.name]) for f in dataclasses.fields(cls)}
        return cls

    return decorate


def registry() -> dict[str, type[Message]]:
    """A copy of the registry: wire name -> class."""
    return dict(_REGISTRY)


def lookup(type_name: str) -> type[Message] | None:
    return _REGISTRY.get(type_name)


def validators(type_name: str) -> dict[str, Callable[[Any], bool]]:
    return _VALIDATORS[type_name]


def _is_json_like(value: Any, depth: int = 0) -> bool:
    if depth > 32:
        return False
    if value is None or isinstance(value, (str, int, float, bool, bytes)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_json_like(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json_like(v, depth + 1) for k, v in value.items())
    return False


def _validator(tp: Any) -> Callable[[Any], bool]:
    """Build a predicate that accepts exactly the decoded values of annotation ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return _is_json_like
    if tp is bool:
        return lambda v: isinstance(v, bool)
    if tp is int:
        return lambda v: isinstance(v, int) and not isinstance(v, bool)
    if tp is float:
        return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    if tp is str:
        return lambda v: isinstance(v, str)
    if tp is bytes:
        return lambda v: isinstance(v, bytes)
    if tp is type(None):
        return lambda v: v is None
    if origin in (typing.Union, types.UnionType):
        options = [_validator(a) for a in typing.get_args(tp)]
        return lambda v: any(ok(v) for ok in options)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _validator(args[0])
            return lambda v: isinstance(v, (list, tuple)) and all(item(x) for x in v)
        items = [_validator(a) for a in args]
        return lambda v: (
            isinstance(v, (list, tuple))
            and len(v) == len(items)
            and all(ok(x) for ok, x in zip(items, v, strict=True))
        )
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        if key_t is not str:
            raise TypeError(f"dict keys on the wire must be str, not {key_t}")
        check = _validator(val_t)
        return lambda v: isinstance(v, dict) and all(isinstance(k, str) and check(x) for k, x in v.items())
    raise TypeError(f"unsupported field type on the wire: {tp!r}")


# --------------------------------------------------------------------------------------------------
# Wire messages shared by every node (then: in-process messages every actor knows, not registered).
# --------------------------------------------------------------------------------------------------


@register("Hello")
@dataclass(frozen=True)
class Hello(Message):
    """Periodic status from a node's VirtualSwitch to its peer."""

    node: str
    role: str
    generation: int
    release: str
    started_at: float
    starting_up: bool = False
    replication: str = "unknown"
    manual_switch_only: bool = False


@register("Ping")
@dataclass(frozen=True)
class Ping(Message):
    payload: bytes = b""


@register("Pong")
@dataclass(frozen=True)
class Pong(Message):
    payload: bytes = b""


@register("ErrorReply")
@dataclass(frozen=True)
class ErrorReply(Message):
    """Answer to a request that could not be served; ``error`` says what was wrong."""

    error: str
    request_type: str = ""


@register("AdminRequest")
@dataclass(frozen=True)
class AdminRequest(Message):
    op: str
    args: dict[str, Any] = dataclasses.field(default_factory=dict)


@register("AdminReply")
@dataclass(frozen=True)
class AdminReply(Message):
    ok: bool
    result: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str = ""


# In-process only (not registered, so never accepted from a socket): every actor knows these.


@dataclass(frozen=True)
class ConnectionEvent:
    """A ZeroMQ socket monitor event: ``kind`` is connected, disconnected, retried, accepted..."""

    endpoint: str
    kind: str
    address: str


@dataclass(frozen=True)
class CrashActor:
    """Fault injection: the receiving actor raises, as if it had a bug."""

    reason: str = "injected crash"


@dataclass(frozen=True)
class Tick:
    """A timer an actor scheduled for itself; ``name`` says which."""

    name: str
    token: int = 0


# --------------------------------------------------------------------------------------------------
# VirtualSwitch protocol (port 3633): peers, the control panel and applications.
# --------------------------------------------------------------------------------------------------


@register("QueryState")
@dataclass(frozen=True)
class QueryState(Message):
    """Ask a node's VirtualSwitch for its status; the reply is a ``StatusReport``."""

    asker: str = ""


@register("StatusReport")
@dataclass(frozen=True)
class StatusReport(Message):
    node: str
    role: str
    generation: int
    release: str
    started_at: float
    starting_up: bool
    manual_switch_only: bool
    force_backup: bool
    replication: str
    server_a: str
    server_b: str
    peer: str
    peer_reachable: bool
    peer_role: str
    peer_release: str
    messages: tuple[str, ...] = ()
    ds: dict[str, Any] = dataclasses.field(default_factory=dict)  # issue 10: DS replication state
    isolation: str = ""  # node-local isolation policy (issue 16): "step-down" or "keep-serving"


@register("SwitchRequest")
@dataclass(frozen=True)
class SwitchRequest(Message):
    """Control panel: switch to this node (it must be the backup)."""

    requested_by: str = "control panel"
    immediate: bool = False


@register("RejoinRequest")
@dataclass(frozen=True)
class RejoinRequest(Message):
    """Control panel: renegotiate this node's role without restarting the process."""

    requested_by: str = "control panel"


@register("CommandReply")
@dataclass(frozen=True)
class CommandReply(Message):
    ok: bool
    detail: str
    role: str = ""


@register("Discontinue")
@dataclass(frozen=True)
class Discontinue(Message):
    """From a node taking over to the active one: stop serving (the spec's Discontinue)."""

    generation: int
    reason: str
    from_node: str


@register("DiscontinueAck")
@dataclass(frozen=True)
class DiscontinueAck(Message):
    node: str
    generation: int
    stale: bool
    detail: str = ""


@register("RecordEvent")
@dataclass(frozen=True)
class RecordEvent(Message):
    """A state change of the sender, recorded in the receiver's copy of the peer's history."""

    record: dict[str, Any]


@register("HistoryRequest")
@dataclass(frozen=True)
class HistoryRequest(Message):
    limit: int = 1000


@register("HistoryReply")
@dataclass(frozen=True)
class HistoryReply(Message):
    node: str
    records: tuple[dict[str, Any], ...]
    peer_records: tuple[dict[str, Any], ...] = ()


@register("Subscribe")
@dataclass(frozen=True)
class Subscribe(Message):
    """An application asks for Commence/Discontinue events (renew it every few seconds)."""

    client: str = ""


@register("RoleEvent")
@dataclass(frozen=True)
class RoleEvent(Message):
    """Pushed to subscribed applications: ``event`` is commence or discontinue."""

    event: str
    node: str
    role: str
    generation: int
    reason: str


# --------------------------------------------------------------------------------------------------
# Notifier protocol (ports 3634 main / 3635 aux): the backup's monitors, modules, applications.
# --------------------------------------------------------------------------------------------------


@register("NotifierPing")
@dataclass(frozen=True)
class NotifierPing(Message):
    """The primary monitor's ping of the remote Notifier itself."""

    seq: int = 0


@register("NotifierPong")
@dataclass(frozen=True)
class NotifierPong(Message):
    node: str
    role: str
    generation: int
    serving: bool  # False: this node is not primary, it serves nothing


@register("RegisterModule")
@dataclass(frozen=True)
class RegisterModule(Message):
    """A local module registers (and renews) under ``name`` with its PID."""

    name: str
    pid: int


@register("ModulePing")
@dataclass(frozen=True)
class ModulePing(Message):
    """Diagnostic Ping of a named module, through the Notifier it registered with."""

    module: str
    seq: int = 0


@register("ModulePingReply")
@dataclass(frozen=True)
class ModulePingReply(Message):
    """``status``: ok (with the module's PID) or rejected (no such module registered, or it died)."""

    module: str
    status: str
    pid: int = 0
    detail: str = ""


@register("ModuleGone")
@dataclass(frozen=True)
class ModuleGone(Message):
    """Pushed by the primary's Notifier to the backup when a registered module's process exits."""

    module: str
    pid: int


# --------------------------------------------------------------------------------------------------
# ---- Interaction shadowing (issue 12): applications <-> InteractionPublisher (interaction_port,
# on the active) and the backup's InteractionShadow <-> the active's InteractionPublisher.
# An interaction travels as a dict (replication/interactions.py Interaction.to_dict); a stream item
# as a dict too (StreamItem: seq, kind, id, op, data, now).
# --------------------------------------------------------------------------------------------------


@register("InteractionPublish")
@dataclass(frozen=True)
class InteractionPublish(Message):
    """An application publishes one operation (create, update, append, transfer, disconnect).
    ``wait_backup``: answer only once the backup's shadow store holds it (at most ``timeout`` s)."""

    op: str
    id: str
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    wait_backup: bool = False
    timeout: float = 5.0


@register("InteractionPublished")
@dataclass(frozen=True)
class InteractionPublished(Message):
    """``shadowed``: the backup confirmed it holds the change (only asked with ``wait_backup``);
    ``lag``: stream items sent to the backup and not yet confirmed."""

    ok: bool
    rev: int = 0
    detail: str = ""
    shadowed: bool = False
    lag: int = 0


@register("InteractionQuery")
@dataclass(frozen=True)
class InteractionQuery(Message):
    """List interactions: all, one ``type``, or one ``id``; ``limit`` 0 = no limit."""

    type: str = ""
    id: str = ""
    limit: int = 0


@register("InteractionList")
@dataclass(frozen=True)
class InteractionList(Message):
    """``kind``: live (the active's interactions) or shadow (the backup's, inert)."""

    node: str
    role: str
    kind: str
    items: tuple[dict[str, Any], ...]
    counts: dict[str, Any]
    total: int
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)


@register("ShadowSyncRequest")
@dataclass(frozen=True)
class ShadowSyncRequest(Message):
    """Backup -> active: start a new session with a full synchronization under ``filter``."""

    session: str
    filter: dict[str, Any]
    reason: str = ""


@register("ShadowSnapshot")
@dataclass(frozen=True)
class ShadowSnapshot(Message):
    """One chunk of a full synchronization; ``final`` chunk: the stream goes on from ``seq``.
    ``rows``: msgpack list of compact interaction rows (replication/interactions.py pack_rows)."""

    session: str
    seq: int
    rows: bytes
    final: bool
    total: int


@register("ShadowUpdate")
@dataclass(frozen=True)
class ShadowUpdate(Message):
    """Active -> backup: stream items of the session, in order."""

    session: str
    items: tuple[dict[str, Any], ...]


@register("ShadowAck")
@dataclass(frozen=True)
class ShadowAck(Message):
    """Backup -> active: the shadow store holds the session's stream up to ``seq`` (also a keep-alive,
    which carries the shadow counts per type; ``seq`` -1 while the session's full sync runs)."""

    session: str
    seq: int
    counts: dict[str, Any] = dataclasses.field(default_factory=dict)


@register("ShadowHeartbeat")
@dataclass(frozen=True)
class ShadowHeartbeat(Message):
    """Active -> backup: the session's stream is at ``seq`` (the backup sees a silent loss)."""

    session: str
    seq: int


@register("ShadowSessionUnknown")
@dataclass(frozen=True)
class ShadowSessionUnknown(Message):
    """Active -> backup: no such session here (the active restarted or another session replaced it)."""

    session: str
    detail: str = ""


# ---- Security (issue 13): who am I, with which rights


@register("WhoAmI")
@dataclass(frozen=True)
class WhoAmI(Message):
    """Client -> node: the name and rights this connection's key has (control panel privilege check)."""


@register("WhoAmIReply")
@dataclass(frozen=True)
class WhoAmIReply(Message):
    node: str
    user: str  # the ZAP user id: the client's name ("server-group" for the group key, "" in plain text)
    rights: tuple[str, ...]  # effective rights, stronger ones including weaker ones
    secured: bool  # False: the node runs plain text and checks no rights


# File mirroring (issue 11): the backup's FileMirror <-> the active's File Monitor (file_port, 3637).
# Roots are named by their logical path (the same on both servers, or "@canary"); paths inside a root
# are relative POSIX paths. A manifest row is a map: path, type, size, mtime_ns, mode, hash, target.
# --------------------------------------------------------------------------------------------------

ManifestRow = dict[str, Any]


@register("FileSubscribe")
@dataclass(frozen=True)
class FileSubscribe(Message):
    """Backup -> File Monitor: mirror for a backup in ``mode`` (normal, upgrade-higher, upgrade-lower);
    pushes go to the sender. Answered by :class:`FileRoots`."""

    mode: str
    node: str


@register("FileRoots")
@dataclass(frozen=True)
class FileRoots(Message):
    """The mirrored roots (``MirrorRoot.as_dict()`` each), with the monitor's ``epoch`` (new per start).
    Also pushed when the set changes (CustomMirrorDir is dynamic)."""

    epoch: str
    roots: tuple[dict[str, Any], ...]


@register("FileManifestRequest")
@dataclass(frozen=True)
class FileManifestRequest(Message):
    """A page of a root's manifest: ``scan`` 0 starts a new scan, else continues it from ``offset``."""

    root: str
    scan: int = 0
    offset: int = 0
    limit: int = 2000
    hashes: bool = True  # False: the backup holds nothing here yet, content hashes would not be used


@register("FileManifestReply")
@dataclass(frozen=True)
class FileManifestReply(Message):
    """``seq``: the root's last change number when the scan began (apply pushed changes after it)."""

    root: str
    epoch: str
    scan: int
    seq: int
    offset: int
    total: int
    entries: tuple[ManifestRow, ...]
    error: str = ""


@register("FileChunkRequest")
@dataclass(frozen=True)
class FileChunkRequest(Message):
    root: str
    path: str
    offset: int
    length: int


@register("FileChunkReply")
@dataclass(frozen=True)
class FileChunkReply(Message):
    """``size``/``mtime_ns``/``mode`` of the file when read; ``error`` set when it cannot be read."""

    root: str
    path: str
    offset: int
    data: bytes
    size: int
    mtime_ns: int
    mode: int
    error: str = ""


@register("FileChange")
@dataclass(frozen=True)
class FileChange(Message):
    """Pushed by the File Monitor in order: ``seq`` counts per root and ``epoch``. ``kind``: write
    (``entry`` is the file's manifest row), mkdir, link, meta (mode/mtime only), delete, rename
    (``path`` -> ``new_path``), rescan (the root must be compared again: overflow or lost watch)."""

    root: str
    epoch: str
    seq: int
    kind: str
    path: str
    new_path: str = ""
    entry: ManifestRow | None = None
    at: float = 0.0  # the active's wall clock when it saw the change (for the backup's lag)
    data: bytes | None = None  # a small file's whole content (saves the round trip of a chunk request)


@register("FileHealthCheck")
@dataclass(frozen=True)
class FileHealthCheck(Message):
    """Backup -> File Monitor every Health Check Interval; the monitor writes ``token`` to its canary file
    (which travels like any mirrored change)."""

    token: str


@register("FileHealthReply")
@dataclass(frozen=True)
class FileHealthReply(Message):
    ok: bool
    epoch: str
    seqs: dict[str, int]
    detail: str = ""


@register("FileBatchRequest")
@dataclass(frozen=True)
class FileBatchRequest(Message):
    """Many small files of one root at once (the backup's initial comparison)."""

    root: str
    paths: tuple[str, ...]


@register("FileBatchReply")
@dataclass(frozen=True)
class FileBatchReply(Message):
    """Per path: ``path``, ``data`` (bytes, or None when too large: ask in chunks), ``size``, ``mtime_ns``,
    ``mode``, ``error`` ("" when read)."""

    root: str
    files: tuple[dict[str, Any], ...]


# ---- DS replication (issue 10): the backup's DSMirror <-> the active's DSPublisher (ds_port, 3636).
# A position is (history id, revision): the history id is the active's store epoch (or a successor
# that continues it, see Store.new_history). Trees, node lists and batches travel as msgpack bytes
# (replication.ds_sync packs and unpacks them) so that big payloads are checked once, cheaply.
# --------------------------------------------------------------------------------------------------


@register("DSSubscribe")
@dataclass(frozen=True)
class DSSubscribe(Message):
    """Start a change stream after ``(history, revision)``; ``history=""``: from the current revision
    (the caller compares trees first). ``session`` tags the stream's batches."""

    session: int
    history: str = ""
    revision: int = 0


@register("DSSubscribed")
@dataclass(frozen=True)
class DSSubscribed(Message):
    """The stream starts after ``(history, revision)``; ``resumed``: from the position asked for."""

    session: int
    history: str
    revision: int
    resumed: bool


@register("DSBatches")
@dataclass(frozen=True)
class DSBatches(Message):
    """Pushed: committed batches ``first..last`` in revision order, each whole.
    ``batches`` is msgpack ``[[revision, [[op, key, attrs], ...]], ...]``; ``committed_at`` is the
    publisher's wall clock when it saw ``last`` committed (for the lag in ms)."""

    session: int
    history: str
    first: int
    last: int
    batches: bytes
    committed_at: float


@register("DSHeartbeat")
@dataclass(frozen=True)
class DSHeartbeat(Message):
    """Pushed every half second: the publisher's position (lag and silence detection)."""

    session: int
    history: str
    revision: int
    sent_at: float


@register("DSAck")
@dataclass(frozen=True)
class DSAck(Message):
    """Backup -> active, periodically: what it applied (keeps the subscription alive)."""

    session: int
    history: str
    revision: int


@register("DSHashRequest")
@dataclass(frozen=True)
class DSHashRequest(Message):
    """Subtree hash, own-attributes digest and child hashes of each path."""

    paths: tuple[str, ...]


@register("DSHashReply")
@dataclass(frozen=True)
class DSHashReply(Message):
    """``nodes``: msgpack ``{path: [attrs digest, subtree hash, [[child, hash16, children], ...]] | None}``."""

    history: str
    revision: int
    nodes: bytes


@register("DSFetch")
@dataclass(frozen=True)
class DSFetch(Message):
    """The attributes of a set of keys."""

    keys: tuple[str, ...]


@register("DSFetchReply")
@dataclass(frozen=True)
class DSFetchReply(Message):
    """``attrs``: msgpack ``{key: {name: [values]} | None}`` (None: no such key)."""

    history: str
    revision: int
    attrs: bytes


@register("DSError")
@dataclass(frozen=True)
class DSError(Message):
    """A typed refusal: ``kind`` is gap, compacted, history (other history id or a fork: ``fork`` is the
    last revision both share, -1 if none), ahead, not-serving or bad-request."""

    kind: str
    detail: str
    history: str = ""
    revision: int = 0
    fork: int = -1


@register("DSDrain")
@dataclass(frozen=True)
class DSDrain(Message):
    """Controlled switch: stop accepting DS writes for ``lease`` seconds and say the last revision."""

    reason: str
    lease: float


@register("DSDrained")
@dataclass(frozen=True)
class DSDrained(Message):
    history: str
    revision: int
