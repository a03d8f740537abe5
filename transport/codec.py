"""msgpack wire codec: ``encode(envelope) -> frames`` and ``decode(frames) -> envelope``.

One frame per message: a msgpack array
``[version, type, sender, generation, seq, kind, corr, payload]``. ``kind`` is 0 for a
one-way notification, 1 for a request and 2 for a reply; ``corr`` is the request id a
reply answers. Decoding is strict: anything but exactly what ``encode`` produces raises
:class:`DecodeError`, which says what was wrong. No pickle anywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from transport.messages import PROTOCOL_VERSION, Message, lookup, validators

DEFAULT_MAX_FRAME = 4 * 1024 * 1024

NOTIFY, REQUEST, REPLY = 0, 1, 2
_KINDS = (NOTIFY, REQUEST, REPLY)


class DecodeError(ValueError):
    """A frame that is not a valid message; the text says what was wrong."""


@dataclass(frozen=True)
class Envelope:
    """A message with its wire metadata."""

    msg: Message
    sender: str = ""
    generation: int = 0
    seq: int | None = None
    kind: int = NOTIFY
    corr: int | None = None
    # set by a receiving server endpoint with access control, never encoded: the sender's ZAP
    # user id (the client's name; "server-group" for the peer node) and network address
    user: str = ""
    peer_address: str = ""


_FIELD_NAMES: dict[type[Message], tuple[str, ...]] = {}


def encode(env: Envelope) -> list[bytes]:
    msg = env.msg
    cls = type(msg)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        type_name = getattr(msg, "TYPE", "")  # an in-process message has none
        if not type_name or lookup(type_name) is not cls:
            raise TypeError(f"{cls.__name__} is not a registered message")
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(msg))
    payload = {name: getattr(msg, name) for name in names}
    frame = msgpack.packb(
        [PROTOCOL_VERSION, msg.TYPE, env.sender, env.generation, env.seq, env.kind, env.corr, payload],
        use_bin_type=True,
    )
    return [frame]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class _Schema:
    """What decoding one message type needs, computed once per type."""

    cls: type[Message]
    names: frozenset[str]
    fields: tuple[tuple[str, Callable[[Any], bool], bool], ...]  # name, validator, is a tuple field


_SCHEMAS: dict[str, _Schema] = {}


def _schema(type_name: str) -> _Schema | None:
    cls = lookup(type_name)
    if cls is None:
        return None
    schema = _SCHEMAS.get(type_name)
    if schema is None or schema.cls is not cls:
        checks = validators(type_name)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        plan = tuple((name, ok, _is_tuple_field(fields[name])) for name, ok in checks.items())
        schema = _SCHEMAS[type_name] = _Schema(cls, frozenset(checks), plan)
    return schema


def decode(
    frames: list[bytes], max_frame: int = DEFAULT_MAX_FRAME, user: str = "", peer_address: str = ""
) -> Envelope:
    """The envelope of ``frames``; ``user``/``peer_address``: what the receiving socket knows of
    the sender (ZAP user id, address), carried along, never on the wire."""
    # Hot path: plain ``if`` tests, and an error text is only formatted when a check fails.
    if len(frames) != 1:
        raise DecodeError(f"expected exactly 1 message frame, got {len(frames)}")
    raw = frames[0]
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise DecodeError("frame is not bytes")
    if len(raw) > max_frame:
        raise DecodeError(f"frame of {len(raw)} bytes is over the limit of {max_frame} bytes")
    try:
        data = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises many types for garbage; all mean the same here
        raise DecodeError(f"not a msgpack frame: {type(exc).__name__}: {exc}") from None
    if not isinstance(data, list) or len(data) != 8:
        raise DecodeError("expected an 8-item envelope array")
    version, type_name, sender, generation, seq, kind, corr, payload = data
    if not _is_int(version):
        raise DecodeError("protocol version is not an integer")
    if version != PROTOCOL_VERSION:
        raise DecodeError(f"protocol version {version}, expected {PROTOCOL_VERSION}")
    if not isinstance(type_name, str):
        raise DecodeError("message type name is not a string")
    schema = _schema(type_name)
    if schema is None:
        raise DecodeError(f"unknown message type {type_name!r}")
    if not isinstance(sender, str):
        raise DecodeError("sender is not a string")
    if not (_is_int(generation) and generation >= 0):
        raise DecodeError("generation is not a non-negative integer")
    if not (seq is None or _is_int(seq)):
        raise DecodeError("sequence number is neither null nor an integer")
    if not (_is_int(kind) and kind in _KINDS):
        raise DecodeError(f"envelope kind {kind!r} is not one of {_KINDS}")
    if not (corr is None or _is_int(corr)):
        raise DecodeError("request id is neither null nor an integer")
    if not isinstance(payload, dict):
        raise DecodeError("payload is not a map")
    if payload.keys() != schema.names:
        missing = sorted(schema.names - set(payload))
        if missing:
            raise DecodeError(f"{type_name}: missing field(s) {', '.join(missing)}")
        extra = sorted(map(repr, set(payload) - schema.names))  # repr: keys may be str and bytes
        raise DecodeError(f"{type_name}: unexpected field(s) {', '.join(extra)}")
    values = {}
    for name, ok, is_tuple in schema.fields:
        value = payload[name]
        if not ok(value):
            raise DecodeError(f"{type_name}.{name}: wrong type {type(value).__name__}")
        values[name] = tuple(value) if is_tuple and isinstance(value, list) else value
    try:
        msg = schema.cls(**values)
    except Exception as exc:  # a __post_init__ that rejects the values
        raise DecodeError(f"{type_name}: invalid values: {exc}") from None
    return Envelope(msg, sender, generation, seq, kind, corr, user, peer_address)


def _is_tuple_field(field: dataclasses.Field[Any]) -> bool:
    tp = field.type
    return (isinstance(tp, str) and tp.startswith("tuple")) or getattr(tp, "__origin__", None) is tuple
