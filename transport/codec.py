"""msgpack wire codec: ``encode(envelope) -> frames`` and ``decode(frames) -> envelope``.

One frame per message: a msgpack array
``[version, type, sender, generation, seq, kind, corr, payload]``. ``kind`` is 0 for a
one-way notification, 1 for a request and 2 for a reply; ``corr`` is the request id a
reply answers. Decoding is strict: anything but exactly what ``encode`` produces raises
:class:`DecodeError`, which says what was wrong. No pickle anywhere.
"""

from __future__ import annotations

import dataclasses
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


def encode(env: Envelope) -> list[bytes]:
    msg = env.msg
    if not msg.TYPE or lookup(msg.TYPE) is not type(msg):
        raise TypeError(f"{type(msg).__name__} is not a registered message")
    payload = {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg)}
    frame = msgpack.packb(
        [PROTOCOL_VERSION, msg.TYPE, env.sender, env.generation, env.seq, env.kind, env.corr, payload],
        use_bin_type=True,
    )
    return [frame]


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise DecodeError(what)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def decode(frames: list[bytes], max_frame: int = DEFAULT_MAX_FRAME) -> Envelope:
    _check(len(frames) == 1, f"expected exactly 1 message frame, got {len(frames)}")
    raw = frames[0]
    _check(isinstance(raw, (bytes, bytearray, memoryview)), "frame is not bytes")
    _check(len(raw) <= max_frame, f"frame of {len(raw)} bytes is over the limit of {max_frame} bytes")
    try:
        data = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises many types for garbage; all mean the same here
        raise DecodeError(f"not a msgpack frame: {type(exc).__name__}: {exc}") from None
    _check(isinstance(data, list) and len(data) == 8, "expected an 8-item envelope array")
    version, type_name, sender, generation, seq, kind, corr, payload = data
    _check(_is_int(version), "protocol version is not an integer")
    _check(version == PROTOCOL_VERSION, f"protocol version {version}, expected {PROTOCOL_VERSION}")
    _check(isinstance(type_name, str), "message type name is not a string")
    cls = lookup(type_name)
    _check(cls is not None, f"unknown message type {type_name!r}")
    assert cls is not None
    _check(isinstance(sender, str), "sender is not a string")
    _check(_is_int(generation) and generation >= 0, "generation is not a non-negative integer")
    _check(seq is None or _is_int(seq), "sequence number is neither null nor an integer")
    _check(kind in _KINDS and _is_int(kind), f"envelope kind {kind!r} is not one of {_KINDS}")
    _check(corr is None or _is_int(corr), "request id is neither null nor an integer")
    _check(isinstance(payload, dict), "payload is not a map")
    checks = validators(type_name)
    missing = sorted(set(checks) - set(payload))
    extra = sorted(map(repr, set(payload) - set(checks)))  # repr: keys may be str and bytes, unorderable
    _check(not missing, f"{type_name}: missing field(s) {', '.join(missing)}")
    _check(not extra, f"{type_name}: unexpected field(s) {', '.join(extra)}")
    for name, ok in checks.items():
        _check(ok(payload[name]), f"{type_name}.{name}: wrong type {type(payload[name]).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {
        name: tuple(value) if isinstance(value, list) and _is_tuple_field(fields[name]) else value
        for name, value in payload.items()
    }
    try:
        msg = cls(**values)
    except Exception as exc:  # a __post_init__ that rejects the values
        raise DecodeError(f"{type_name}: invalid values: {exc}") from None
    return Envelope(msg, sender, generation, seq, kind, corr)


def _is_tuple_field(field: dataclasses.Field[Any]) -> bool:
    tp = field.type
    return (isinstance(tp, str) and tp.startswith("tuple")) or getattr(tp, "__origin__", None) is tuple
