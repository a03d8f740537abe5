"""Typed messages and the strict msgpack codec.

Every registered message round-trips (instances built by hypothesis from the field annotations),
every class of malformed input is a ``DecodeError``, and nothing but ``DecodeError`` ever escapes
``decode`` for random bytes or mutated valid frames.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
import types
import typing
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from transport.codec import DEFAULT_MAX_FRAME, NOTIFY, REPLY, REQUEST, DecodeError, Envelope, decode, encode
from transport.messages import PROTOCOL_VERSION, Hello, Message, Ping, register, registry

# Modules register their messages on import: import every module of the packages that define
# messages so the registry is complete. A module that fails to import is reported by a test
# (not as a collection error that would hide every other test here).
_PACKAGES = ("transport", "actors", "replication", "cli")
IMPORT_ERRORS: dict[str, str] = {}
for _pkg_name in _PACKAGES:
    _pkg = importlib.import_module(_pkg_name)
    for _info in pkgutil.walk_packages(_pkg.__path__, f"{_pkg_name}."):
        try:
            importlib.import_module(_info.name)
        except Exception as _exc:  # reported by test_every_module_imports
            IMPORT_ERRORS[_info.name] = f"{type(_exc).__name__}: {_exc}"

REGISTRY = registry()
TYPE_NAMES = sorted(REGISTRY)

INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what msgpack can carry
FLOATS = st.floats(allow_nan=False)  # NaN != NaN would make equality meaningless
JSON_SCALARS = st.none() | st.booleans() | INT64 | FLOATS | st.text(max_size=20) | st.binary(max_size=20)
# ``Any`` values travel as JSON-like data; sequences come back as lists, so generate lists.
JSON_LIKE = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    """A hypothesis strategy producing values of a message field annotation."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return JSON_LIKE
    if tp is bool:
        return st.booleans()
    if tp is int:
        return INT64
    if tp is float:
        return FLOATS
    if tp is str:
        return st.text(max_size=30)
    if tp is bytes:
        return st.binary(max_size=64)
    if tp is type(None):
        return st.none()
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(strategy_for(a) for a in typing.get_args(tp)))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(strategy_for(args[0]), max_size=5).map(tuple)
        return st.tuples(*(strategy_for(a) for a in args))
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        assert key_t is str
        return st.dictionaries(st.text(max_size=10), strategy_for(val_t), max_size=5)
    raise AssertionError(f"no strategy for field type {tp!r}")


@st.composite
def message_of(draw: st.DrawFn, cls: type[Message]) -> Message:
    hints = typing.get_type_hints(cls)
    values = {f.name: draw(strategy_for(hints[f.name])) for f in dataclasses.fields(cls)}
    try:
        return cls(**values)
    except (ValueError, TypeError):  # a __post_init__ may reject some combinations
        assume(False)
        raise


ENVELOPES = st.fixed_dictionaries(
    {
        "sender": st.text(max_size=10),
        "generation": st.integers(min_value=0, max_value=2**63 - 1),
        "seq": st.none() | INT64,
        "kind": st.sampled_from([NOTIFY, REQUEST, REPLY]),
        "corr": st.none() | INT64,
    }
)

ANY_MESSAGE = st.sampled_from(TYPE_NAMES).flatmap(lambda name: message_of(REGISTRY[name]))


def valid_frame(msg: Message | None = None, **env: Any) -> bytes:
    frames = encode(Envelope(msg or Hello("A", "Active", 3, "1.0.0", 12.5), **env))
    assert len(frames) == 1
    return frames[0]


def raw_frame(*items: Any) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)


def hello_payload(**changes: Any) -> dict[str, Any]:
    hello = Hello("A", "Active", 3, "1.0.0", 12.5)
    payload = {f.name: getattr(hello, f.name) for f in dataclasses.fields(Hello)}
    payload.update(changes)
    return payload


_DEFAULT: Any = object()


def envelope(payload: Any = _DEFAULT, **changes: Any) -> list[Any]:
    """The 8-item envelope array of a valid Hello, with items changed by name."""
    items = {
        "version": PROTOCOL_VERSION,
        "type": "Hello",
        "sender": "A",
        "generation": 0,
        "seq": None,
        "kind": NOTIFY,
        "corr": None,
        "payload": hello_payload() if payload is _DEFAULT else payload,
    }
    items.update(changes)
    return list(items.values())


def assert_rejected(frames: list[Any], *words: str, max_frame: int = DEFAULT_MAX_FRAME) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(frames, max_frame)
    text = str(info.value)
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"
    return info.value


# ----------------------------------------------------------------------------------- registry


def test_every_module_imports() -> None:
    assert not IMPORT_ERRORS, f"modules that define messages failed to import: {IMPORT_ERRORS}"


# Every registered type and a module that sends it over a socket (builds it for a peer, a
# client or a module). The registry must be exactly this set: an in-process message (a timer,
# a supervisor order, a reply between two actors of one node) is never registered, so a peer
# that sends one gets the codec's unknown-type error.
WIRE_TYPES: dict[str, str] = {
    "Hello": "actors/roles/virtual_switch.py",
    "Ping": "bench/bench_transport.py",  # the endpoint's own echo pair (benchmarks, endpoint tests)
    "Pong": "bench/bench_transport.py",
    "ErrorReply": "transport/endpoint.py",
    "AdminRequest": "transport/admin_client.py",
    "AdminReply": "actors/admin.py",
    "QueryState": "transport/client.py",
    "StatusReport": "actors/roles/virtual_switch.py",
    "SwitchRequest": "cli/ctl_cmd.py",
    "RejoinRequest": "cli/ctl_cmd.py",
    "CommandReply": "actors/roles/virtual_switch.py",
    "Discontinue": "actors/roles/virtual_switch.py",
    "DiscontinueAck": "actors/roles/node_supervisor.py",
    "RecordEvent": "actors/roles/virtual_switch.py",
    "HistoryRequest": "cli/ctl_cmd.py",
    "HistoryReply": "actors/roles/virtual_switch.py",
    "Subscribe": "transport/client.py",
    "RoleEvent": "actors/roles/virtual_switch.py",
    "NotifierPing": "actors/monitoring/notifier_link.py",
    "NotifierPong": "actors/monitoring/notifier.py",
    "RegisterModule": "transport/module.py",
    "ModulePing": "actors/monitoring/monitors.py",
    "ModulePingReply": "transport/module.py",
    "ModuleGone": "actors/monitoring/notifier.py",
    # interaction shadowing (issue 12)
    "InteractionPublish": "transport/interactions_client.py",
    "InteractionPublished": "actors/mirroring/interaction_publisher.py",
    "InteractionQuery": "transport/interactions_client.py",
    "InteractionList": "actors/mirroring/interaction_publisher.py",
    "ShadowSyncRequest": "actors/mirroring/interaction_shadow.py",
    "ShadowSnapshot": "actors/mirroring/interaction_publisher.py",
    "ShadowUpdate": "actors/mirroring/interaction_publisher.py",
    "ShadowHeartbeat": "actors/mirroring/interaction_publisher.py",
    "ShadowAck": "actors/mirroring/interaction_shadow.py",
    "ShadowSessionUnknown": "actors/mirroring/interaction_publisher.py",
    # security (issue 13)
    "WhoAmI": "transport/client.py",
    "WhoAmIReply": "actors/roles/virtual_switch.py",
    # DS replication (issue 10)
    "DSAck": "actors/mirroring/ds_mirror.py",
    "DSBatches": "actors/mirroring/ds_publisher.py",
    "DSDrain": "actors/mirroring/ds_mirror.py",
    "DSDrained": "actors/mirroring/ds_publisher.py",
    "DSError": "actors/mirroring/ds_publisher.py",
    "DSFetch": "actors/mirroring/ds_mirror.py",
    "DSFetchReply": "actors/mirroring/ds_publisher.py",
    "DSHashReply": "actors/mirroring/ds_publisher.py",
    "DSHashRequest": "actors/mirroring/ds_mirror.py",
    "DSHeartbeat": "actors/mirroring/ds_publisher.py",
    "DSSubscribe": "actors/mirroring/ds_mirror.py",
    "DSSubscribed": "actors/mirroring/ds_publisher.py",
    # file mirroring (issue 11)
    "FileBatchReply": "actors/mirroring/file_monitor.py",
    "FileBatchRequest": "actors/mirroring/file_mirror.py",
    "FileChange": "actors/mirroring/file_monitor.py",
    "FileChunkReply": "actors/mirroring/file_monitor.py",
    "FileChunkRequest": "actors/mirroring/file_mirror.py",
    "FileHealthCheck": "actors/mirroring/file_mirror.py",
    "FileHealthReply": "actors/mirroring/file_monitor.py",
    "FileManifestReply": "actors/mirroring/file_monitor.py",
    "FileManifestRequest": "actors/mirroring/file_mirror.py",
    "FileRoots": "actors/mirroring/file_monitor.py",
    "FileSubscribe": "actors/mirroring/file_mirror.py",
}

# Actor-internal messages that used to be registered (issue 9, defect 6): never on the wire.
INTERNAL_TYPES = (
    "ChildFailed",
    "StartChildren",
    "StopChildren",
    "GetActorStatus",
    "LinkState",
    "Probe",
    "LinkAnswering",
    "ModuleMonitorControl",
    "Negotiate",
    "NegotiationResult",
    "PeerSeen",
    "SendDiscontinue",
    "DiscontinueResult",
    "PublishRoleChange",
    "GetPeerStatus",
    "MonitorEvent",
    "HooksFinished",
    "NetworkChecked",
    "StopNode",
    "Tick",
    "CrashActor",
    "ConnectionEvent",
)

REPO = Path(__file__).resolve().parents[2]


def test_the_registry_holds_exactly_the_wire_messages() -> None:
    registered = set(REGISTRY)
    assert registered - set(WIRE_TYPES) == set(), (
        "registered but never sent over a socket: add it to WIRE_TYPES with the module that sends it, "
        "or (in-process only) do not register it"
    )
    assert set(WIRE_TYPES) - registered == set(), "listed as a wire type but not registered"
    for name, cls in REGISTRY.items():
        assert cls.TYPE == name
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen  # type: ignore[attr-defined]


@pytest.mark.parametrize(("type_name", "module"), sorted(WIRE_TYPES.items()))
def test_each_wire_type_is_built_where_it_is_sent(type_name: str, module: str) -> None:
    source = (REPO / module).read_text()
    assert re.search(rf"\b{type_name}\(", source), f"{module} does not build a {type_name}"


@pytest.mark.parametrize("type_name", INTERNAL_TYPES)
def test_a_peer_sending_an_internal_message_gets_the_unknown_type_error(type_name: str) -> None:
    assert type_name not in REGISTRY
    assert_rejected(
        [raw_frame(*envelope({"reason": "from a peer"}, type=type_name))], "unknown message type", type_name
    )


def test_decoding_a_stop_node_envelope_fails() -> None:
    from actors.roles.node_supervisor import StopNode

    frame = raw_frame(*envelope({"reason": "a peer asks me to stop"}, type="StopNode"))
    assert_rejected([frame], "unknown message type", "StopNode")
    with pytest.raises(TypeError, match="not a registered message"):
        encode(Envelope(StopNode("never leaves the process")))  # type: ignore[arg-type]


def test_register_refuses_a_taken_name_and_a_mutable_class() -> None:
    with pytest.raises(TypeError, match="already taken"):

        @register("Ping")
        @dataclasses.dataclass(frozen=True)
        class OtherPing(Message):
            pass

    with pytest.raises(TypeError, match="frozen"):

        @register("NotFrozenTestMessage")
        @dataclasses.dataclass
        class NotFrozen(Message):
            x: int = 0


def test_encode_refuses_an_unregistered_message() -> None:
    @dataclasses.dataclass(frozen=True)
    class Stray(Message):
        x: int = 0

    with pytest.raises(TypeError, match="not a registered message"):
        encode(Envelope(Stray()))


# --------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("type_name", TYPE_NAMES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_registered_message_round_trips(type_name: str, data: st.DataObject) -> None:
    cls = REGISTRY[type_name]
    msg = data.draw(message_of(cls), label="message")
    env = Envelope(msg, **data.draw(ENVELOPES, label="envelope"))
    frames = encode(env)
    assert len(frames) == 1 and isinstance(frames[0], bytes)
    back = decode(frames)
    assert back == env
    assert type(back.msg) is cls
    assert encode(back) == frames  # stable: re-encoding gives the same bytes


def test_tuple_fields_come_back_as_tuples() -> None:
    from transport.messages import HistoryReply

    sent = HistoryReply("A", ({"epoch": 1.0},), ({"epoch": 2.0},))
    back = decode(encode(Envelope(sent)))
    assert back.msg == sent
    assert isinstance(back.msg.records, tuple)  # type: ignore[attr-defined]


def test_a_frame_of_exactly_the_limit_is_accepted() -> None:
    frame = valid_frame(Ping(b"x" * 1000))
    assert decode([frame], max_frame=len(frame)).msg == Ping(b"x" * 1000)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    frame = valid_frame()
    assert decode([bytearray(frame)]).msg == decode([memoryview(frame)]).msg == decode([frame]).msg


# --------------------------------------------------------------------------- malformed inputs


def test_unknown_type() -> None:
    assert_rejected([raw_frame(*envelope(type="NoSuchMessage"))], "unknown message type", "NoSuchMessage")


def test_type_name_not_a_string() -> None:
    assert_rejected([raw_frame(*envelope(type=7))], "type name")


def test_missing_field() -> None:
    payload = hello_payload()
    del payload["generation"]
    assert_rejected([raw_frame(*envelope(payload))], "missing", "generation")


def test_missing_field_even_with_a_default() -> None:
    payload = hello_payload()
    del payload["starting_up"]  # has a default in Python, but the wire form is always complete
    assert_rejected([raw_frame(*envelope(payload))], "missing", "starting_up")


def test_extra_field() -> None:
    assert_rejected([raw_frame(*envelope(hello_payload(colour="blue")))], "unexpected", "colour")


def test_extra_field_with_a_bytes_key() -> None:
    # msgpack's strict_map_key lets bytes keys through; they must be reported, not crash the sort
    assert_rejected([raw_frame(*envelope(hello_payload(**{"zz": 1}) | {b"colour": 1}))], "unexpected")


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("generation", "3"),
        ("generation", True),  # bool is not an int on the wire
        ("generation", 3.0),
        ("node", b"A"),  # bytes is not str
        ("node", None),
        ("started_at", "soon"),
        ("starting_up", 1),
        ("release", ["1"]),
    ],
)
def test_wrong_field_type(field_name: str, value: Any) -> None:
    assert_rejected([raw_frame(*envelope(hello_payload(**{field_name: value})))], "wrong type", field_name)


def test_wrong_type_inside_containers() -> None:
    from transport.messages import HistoryReply

    frame = raw_frame(
        *envelope({"node": "A", "records": [{"epoch": 1.0}, 3], "peer_records": []}, type="HistoryReply")
    )
    assert_rejected([frame], "HistoryReply.records", "wrong type")
    assert HistoryReply.TYPE == "HistoryReply"
    # dict[str, Any]: keys must be strings, values JSON-like
    bad_args = raw_frame(*envelope({"op": "ping", "args": {"x": {b"k": 1}}}, type="AdminRequest"))
    assert_rejected([bad_args], "AdminRequest.args")


def test_float_field_accepts_an_integer() -> None:
    env = decode([raw_frame(*envelope(hello_payload(started_at=12)))])
    assert env.msg.started_at == 12  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", [0, PROTOCOL_VERSION + 1, -1, 2**40])
def test_wrong_protocol_version(version: int) -> None:
    assert_rejected([raw_frame(*envelope(version=version))], "protocol version", str(version))


@pytest.mark.parametrize("version", ["1", 1.0, None, True])
def test_protocol_version_not_an_integer(version: Any) -> None:
    assert_rejected([raw_frame(*envelope(version=version))], "protocol version")


def test_frame_over_the_size_limit() -> None:
    frame = valid_frame(Ping(b"x" * 2000))
    assert_rejected([frame], "over the limit", str(len(frame)), max_frame=len(frame) - 1)
    assert_rejected([frame], "over the limit", max_frame=100)


def test_frame_over_the_default_limit() -> None:
    frame = b"\x00" * (DEFAULT_MAX_FRAME + 1)
    assert_rejected([frame], "over the limit")


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\xc1",  # the one byte msgpack never uses
        b"\x98\x01",  # an 8-item array with 7 items missing (truncated)
        b"\xff\xfe\xfd garbage",
        b"\x92\x01\x02\x03",  # extra bytes after a complete object
        b"\xdd\xff\xff\xff\xff",  # an array header claiming 4 G items
        b"\x91" * 5000,  # nested far too deep
    ],
)
def test_garbage_bytes(garbage: bytes) -> None:
    assert_rejected([garbage])


def test_truncated_valid_frame() -> None:
    frame = valid_frame()
    for cut in range(len(frame)):
        assert_rejected([frame[:cut]])


@pytest.mark.parametrize("count", [0, 2, 3])
def test_wrong_number_of_frames(count: int) -> None:
    frame = valid_frame()
    assert_rejected([frame] * count, "exactly 1", str(count))


def test_frame_not_bytes() -> None:
    assert_rejected(["not bytes"], "not bytes")
    assert_rejected([None], "not bytes")


@pytest.mark.parametrize(
    "data",
    [
        {"version": 1},
        5,
        "Hello",
        None,
        b"bytes",
        [],
        envelope()[:7],
        [*envelope(), "one too many"],
    ],
)
def test_non_list_or_wrong_length_envelope(data: Any) -> None:
    assert_rejected([msgpack.packb(data, use_bin_type=True)], "8-item envelope")


@pytest.mark.parametrize(
    ("changes", "word"),
    [
        ({"sender": 5}, "sender"),
        ({"sender": b"A"}, "sender"),
        ({"generation": -1}, "generation"),
        ({"generation": "0"}, "generation"),
        ({"generation": False}, "generation"),
        ({"seq": "1"}, "sequence"),
        ({"seq": 1.5}, "sequence"),
        ({"kind": 3}, "kind"),
        ({"kind": True}, "kind"),
        ({"kind": 1.0}, "kind"),
        ({"kind": None}, "kind"),
        ({"corr": "7"}, "request id"),
        ({"corr": [7]}, "request id"),
        ({"payload": ["A"]}, "payload"),
        ({"payload": None}, "payload"),
    ],
)
def test_bad_envelope_metadata(changes: dict[str, Any], word: str) -> None:
    assert_rejected([raw_frame(*envelope(**changes))], word)


def test_map_keys_that_are_not_strings() -> None:
    assert_rejected([raw_frame(*envelope({1: "x"}))])


# --------------------------------------------------------------------------- property tests


def only_decode_error(frames: list[Any]) -> None:
    """``decode`` either returns an Envelope or raises DecodeError: nothing else may escape."""
    try:
        env = decode(frames)
    except DecodeError:
        return
    assert isinstance(env, Envelope)
    assert type(env.msg) is REGISTRY[env.msg.TYPE]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_decode_error(raw: bytes) -> None:
    only_decode_error([raw])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=4))
def test_random_frame_lists_raise_only_decode_error(frames: list[bytes]) -> None:
    only_decode_error(frames)


@st.composite
def valid_frames(draw: st.DrawFn) -> bytes:
    msg = draw(ANY_MESSAGE)
    return encode(Envelope(msg, **draw(ENVELOPES)))[0]


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    """A valid frame with a few bytes flipped, inserted or deleted."""
    data = bytearray(draw(valid_frames()))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "replace"]))
        pos = draw(st.integers(0, len(data)))
        if op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif data and pos < len(data):
            if op == "flip":
                data[pos] ^= 1 << draw(st.integers(0, 7))
            elif op == "delete":
                del data[pos : pos + draw(st.integers(1, 4))]
            else:
                data[pos] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(byte_mutations())
def test_byte_mutations_of_valid_frames_raise_only_decode_error(raw: bytes) -> None:
    only_decode_error([raw])


# any value msgpack can pack, including the awkward ones: bytes map keys, ints, nesting, ext types
PACKABLE = st.recursive(
    JSON_SCALARS | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.binary(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)


def _mutate(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """Change one spot of a decoded structure: replace, delete, add, or recurse into a child."""
    containers = isinstance(value, (list, dict)) and value and depth < 6
    op = draw(st.sampled_from(["replace", "recurse", "delete", "add"] if containers else ["replace"]))
    if op == "replace":
        return draw(PACKABLE)
    if isinstance(value, list):
        items = list(value)
        i = draw(st.integers(0, len(items) - 1))
        if op == "recurse":
            items[i] = _mutate(draw, items[i], depth + 1)
        elif op == "delete":
            del items[i]
        else:
            items.insert(i, draw(PACKABLE))
        return items
    mapping = dict(value)
    key = draw(st.sampled_from(sorted(mapping, key=repr)))
    if op == "recurse":
        mapping[key] = _mutate(draw, mapping[key], depth + 1)
    elif op == "delete":
        del mapping[key]
    else:
        new_keys = st.text(max_size=6) | st.binary(max_size=6) | st.sampled_from(sorted(mapping, key=repr))
        for _ in range(draw(st.integers(1, 3))):
            mapping[draw(new_keys)] = draw(PACKABLE)
    return mapping


@st.composite
def structure_mutations(draw: st.DrawFn) -> bytes:
    """A valid frame unpacked, changed in one to five spots, and packed again.

    Half of the changes go to the payload map, where the type checks are.
    """
    value = msgpack.unpackb(draw(valid_frames()), raw=False)
    for _ in range(draw(st.integers(1, 5))):
        if isinstance(value, list) and len(value) == 8 and isinstance(value[7], dict) and draw(st.booleans()):
            value[7] = _mutate(draw, value[7], 1) if value[7] else draw(PACKABLE)
        else:
            value = _mutate(draw, value)
    return msgpack.packb(value, use_bin_type=True)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(structure_mutations())
def test_structure_mutations_of_valid_frames_raise_only_decode_error(raw: bytes) -> None:
    only_decode_error([raw])


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(TYPE_NAMES),
    st.dictionaries(st.text(max_size=12) | st.binary(max_size=6), PACKABLE, max_size=6),
)
def test_random_payloads_for_each_type_raise_only_decode_error(type_name: str, payload: dict[Any, Any]):
    only_decode_error([raw_frame(*envelope(payload, type=type_name))])
