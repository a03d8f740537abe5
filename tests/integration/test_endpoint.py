"""ZeroMQ endpoints over real TCP loopback sockets: request/reply, notifications, connection
events, fault hooks, malformed frames and CURVE."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import zmq

from tests.conftest import wait_until
from transport.codec import NOTIFY, REPLY, REQUEST, Envelope, decode, encode
from transport.endpoint import Endpoint, EndpointClosed, EndpointOptions, RequestTimeout, SendFailed
from transport.faults import NO_FAULTS, Faults
from transport.messages import ConnectionEvent, ErrorReply, Hello, Ping, Pong
from transport.security import Security

TIMEOUT = 3.0
FAST = EndpointOptions(reconnect_ivl_ms=50)


def hello(n: int = 0) -> Hello:
    return Hello("A", "Active", n, "1.0.0", 1.5)


@dataclass
class Inbox:
    """What an endpoint delivered: messages and connection events, thread-safe."""

    messages: queue.Queue[tuple[Envelope, bytes | None]] = field(default_factory=queue.Queue)
    events: list[ConnectionEvent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, env: Envelope, peer: bytes | None) -> None:
        self.messages.put((env, peer))

    def on_event(self, event: ConnectionEvent) -> None:
        with self.lock:
            self.events.append(event)

    def get(self, timeout: float = TIMEOUT) -> tuple[Envelope, bytes | None]:
        return self.messages.get(timeout=timeout)

    def kinds(self) -> list[str]:
        with self.lock:
            return [e.kind for e in self.events]

    def wait_event(self, kind: str, after: int = 0, timeout: float = TIMEOUT) -> None:
        wait_until(lambda: kind in self.kinds()[after:], timeout, message=f"a {kind!r} connection event")


class Endpoints:
    """Makes endpoints for a test and stops every one of them at teardown."""

    def __init__(self) -> None:
        self.made: list[Endpoint] = []

    def server(self, inbox: Inbox | None = None, address: str = "tcp://127.0.0.1:*",
               handler: Callable[[Endpoint, Envelope, bytes | None], None] | None = None,
               **kwargs: Any) -> Endpoint:
        inbox = inbox or Inbox()
        holder: list[Endpoint] = []

        def on_message(env: Envelope, peer: bytes | None) -> None:
            if handler is not None:
                handler(holder[0], env, peer)
            inbox.on_message(env, peer)

        kwargs.setdefault("options", FAST)
        ep = Endpoint("srv", "server", address, node="S", on_message=on_message, on_event=inbox.on_event,
                      **kwargs)
        holder.append(ep)
        self.made.append(ep)
        return ep.start()

    def client(self, address: str, inbox: Inbox | None = None, **kwargs: Any) -> Endpoint:
        inbox = inbox or Inbox()
        kwargs.setdefault("options", FAST)
        ep = Endpoint("cli", "client", address, node="C", on_message=inbox.on_message,
                      on_event=inbox.on_event, **kwargs)
        self.made.append(ep)
        return ep.start()

    def close(self) -> None:
        for ep in self.made:
            ep.stop()


@pytest.fixture
def eps() -> Iterator[Endpoints]:
    made = Endpoints()
    try:
        yield made
    finally:
        made.close()


def echo(server: Endpoint, env: Envelope, peer: bytes | None) -> None:
    """Answer Ping with Pong(same payload)."""
    if env.kind == REQUEST and isinstance(env.msg, Ping):
        server.reply(env, Pong(env.msg.payload), to=peer)


def connected_pair(
    eps: Endpoints, handler: Any = echo, **kwargs: Any
) -> tuple[Endpoint, Endpoint, Inbox, Inbox]:
    s_in, c_in = Inbox(), Inbox()
    server = eps.server(s_in, handler=handler, **kwargs)
    client = eps.client(server.bound_address, c_in, **kwargs)
    wait_until(lambda: client.connected, TIMEOUT, message="client connected")
    return server, client, s_in, c_in


# ---------------------------------------------------------------------------------- request/reply


def test_request_reply_round_trip(eps: Endpoints) -> None:
    server, client, s_in, _ = connected_pair(eps)
    assert server.bound_address.startswith("tcp://127.0.0.1:")
    reply = client.request(Ping(b"hello"), timeout=TIMEOUT).result(TIMEOUT)
    assert reply.msg == Pong(b"hello")
    assert reply.kind == REPLY and reply.sender == "S" and reply.corr is not None
    request, peer = s_in.get()
    assert request.msg == Ping(b"hello") and request.kind == REQUEST and request.sender == "C"
    assert request.corr == reply.corr and peer
    for i in range(20):
        assert client.request(Ping(bytes([i])), timeout=TIMEOUT).result(TIMEOUT).msg == Pong(bytes([i]))
    assert client.stats.sent == 21 and client.stats.received == 21
    assert server.stats.received == 21
    wait_until(lambda: server.stats.sent == 21, TIMEOUT)  # counted just after the reply left


def test_generation_travels_with_every_message(eps: Endpoints) -> None:
    gen = [7]
    s_in = Inbox()
    server = eps.server(s_in, handler=echo, generation=lambda: gen[0])
    client = eps.client(server.bound_address, generation=lambda: 42)
    wait_until(lambda: client.connected, TIMEOUT)
    reply = client.request(Ping(), timeout=TIMEOUT).result(TIMEOUT)
    assert reply.generation == 7
    assert s_in.get()[0].generation == 42


def test_replies_out_of_order_complete_the_right_futures(eps: Endpoints) -> None:
    batch = 20
    held: list[tuple[Envelope, bytes | None]] = []

    def reverse(server: Endpoint, env: Envelope, peer: bytes | None) -> None:
        held.append((env, peer))  # the I/O thread of the server: no lock needed
        if len(held) == batch:
            for request, p in reversed(held):
                assert isinstance(request.msg, Ping)
                server.reply(request, Pong(request.msg.payload), to=p)

    _, client, _, c_in = connected_pair(eps, handler=reverse)
    futures = [client.request(Ping(f"req-{i}".encode()), timeout=TIMEOUT) for i in range(batch)]
    replies = [f.result(TIMEOUT) for f in futures]
    assert [r.msg for r in replies] == [Pong(f"req-{i}".encode()) for i in range(batch)]
    assert len({r.corr for r in replies}) == batch
    assert c_in.messages.empty()  # every reply went to its future, none to the handler


def test_request_times_out_at_its_own_deadline(eps: Endpoints) -> None:
    _, client, s_in, _ = connected_pair(eps, handler=lambda *a: None)  # never answers
    start = time.monotonic()
    short = client.request(Ping(b"short"), timeout=0.2)
    long = client.request(Ping(b"long"), timeout=1.0)
    with pytest.raises(RequestTimeout):
        short.result(TIMEOUT)
    elapsed = time.monotonic() - start
    assert 0.19 <= elapsed < 0.9
    assert not long.done()  # its own, later deadline
    with pytest.raises(RequestTimeout):
        long.result(TIMEOUT)
    assert time.monotonic() - start >= 0.99
    assert client.stats.timeouts == 2
    assert s_in.get()[0].msg == Ping(b"short")  # it did arrive; nobody answered


def test_many_pending_requests_answered_or_timed_out_each_on_its_own(eps: Endpoints) -> None:
    def even_only(server: Endpoint, env: Envelope, peer: bytes | None) -> None:
        if isinstance(env.msg, Ping) and env.msg.payload[0] % 2 == 0:
            echo(server, env, peer)

    _, client, _, _ = connected_pair(eps, handler=even_only)
    start = time.monotonic()
    futures = [client.request(Ping(bytes([i % 256])), timeout=0.3 + (i % 7) * 0.05) for i in range(300)]
    for i, fut in enumerate(futures):
        if i % 2 == 0:
            assert fut.result(TIMEOUT).msg == Pong(bytes([i % 256]))
        else:
            with pytest.raises(RequestTimeout):
                fut.result(TIMEOUT)
    assert time.monotonic() - start < 0.3 + 6 * 0.05 + 1.5
    assert client.stats.timeouts == 150


def test_a_late_reply_is_dropped(eps: Endpoints) -> None:
    held: list[tuple[Envelope, bytes | None]] = []

    def hold_first(server: Endpoint, env: Envelope, peer: bytes | None) -> None:
        if held:
            echo(server, env, peer)
        else:
            held.append((env, peer))

    server, client, _, c_in = connected_pair(eps, handler=hold_first)
    with pytest.raises(RequestTimeout):
        client.request(Ping(b"late"), timeout=0.1).result(TIMEOUT)
    env, peer = held[0]
    server.reply(env, Pong(b"late"), to=peer)
    wait_until(lambda: client.stats.received == 1, TIMEOUT)
    assert c_in.messages.empty()
    assert client.request(Ping(b"next"), timeout=TIMEOUT).result(TIMEOUT).msg == Pong(b"next")


def test_one_way_notifications_both_ways(eps: Endpoints) -> None:
    server, client, s_in, c_in = connected_pair(eps)
    for i in range(10):
        client.send(hello(i), seq=i)
    got = [s_in.get() for _ in range(10)]
    assert [env.msg for env, _ in got] == [hello(i) for i in range(10)]
    assert all(env.kind == NOTIFY and env.corr is None for env, _ in got)
    assert [env.seq for env, _ in got] == list(range(10))
    peer = got[0][1]
    assert peer is not None
    server.send(hello(99), to=peer)
    env, none = c_in.get()
    assert env.msg == hello(99) and env.kind == NOTIFY and none is None


def test_a_command_queued_while_the_io_thread_wakes_up_is_not_left_behind(
    eps: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No lost wake-up: a producer that queues a command while the I/O thread empties its wake-up
    pipe (the GIL is released in that read) must not leave the next command stuck in the queue
    until the poll timeout (a second)."""
    import transport.endpoint as endpoint_module

    _, client, s_in, _ = connected_pair(eps)
    real_os = endpoint_module.os
    injected = threading.Event()

    class OsDuringRead:
        def __getattr__(self, name: str) -> Any:
            return getattr(real_os, name)

        def read(self, fd: int, n: int) -> bytes:
            if fd == client._wake_r and not injected.is_set():
                injected.set()
                client.send(hello(1))  # "another thread" queues right now
            return real_os.read(fd, n)

    monkeypatch.setattr(endpoint_module, "os", OsDuringRead())
    client.send(hello(0))
    assert [s_in.get()[0].msg for _ in range(2)] == [hello(0), hello(1)]
    assert injected.is_set()
    start = time.monotonic()
    client.send(hello(2))
    env, _ = s_in.get()
    assert env.msg == hello(2)
    assert time.monotonic() - start < 0.5, "the command waited for the poll timeout: a lost wake-up"


def test_a_failing_handler_does_not_stop_the_endpoint(eps: Endpoints) -> None:
    calls: list[int] = []

    def flaky(server: Endpoint, env: Envelope, peer: bytes | None) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("handler bug")
        echo(server, env, peer)

    _, client, _, _ = connected_pair(eps, handler=flaky)
    with pytest.raises(RequestTimeout):
        client.request(Ping(b"first"), timeout=0.2).result(TIMEOUT)
    assert client.request(Ping(b"second"), timeout=TIMEOUT).result(TIMEOUT).msg == Pong(b"second")


def test_stop_fails_pending_requests_and_later_ones(eps: Endpoints) -> None:
    _, client, _, _ = connected_pair(eps, handler=lambda *a: None)
    pending = client.request(Ping(), timeout=30)
    client.stop()
    with pytest.raises(EndpointClosed):
        pending.result(TIMEOUT)
    with pytest.raises(EndpointClosed):
        client.request(Ping(), timeout=1).result(TIMEOUT)
    client.send(Ping())  # ignored, no error
    client.stop()  # idempotent


def test_a_request_queued_behind_stop_fails_instead_of_hanging(eps: Endpoints) -> None:
    """A request that reaches the queue after "stop" (another thread is stopping) still completes."""
    release = threading.Event()
    busy = threading.Event()

    def block(env: Envelope, peer: bytes | None) -> None:
        busy.set()
        release.wait(TIMEOUT)  # holds the client's I/O thread here

    s_in = Inbox()
    server = eps.server(s_in)
    client = Endpoint("cli", "client", server.bound_address, node="C", on_message=block, options=FAST).start()
    eps.made.append(client)
    wait_until(lambda: client.connected, TIMEOUT)
    client.send(hello(0))
    _, identity = s_in.get()
    assert identity is not None
    server.send(hello(1), to=identity)  # lands in ``block``
    assert busy.wait(TIMEOUT)
    stopper = threading.Thread(target=client.stop, kwargs={"timeout": TIMEOUT})
    stopper.start()
    wait_until(lambda: ("stop", None) in list(client._commands), TIMEOUT, message="stop queued")
    late = client.request(Ping(b"late"), timeout=30)  # queued behind "stop"
    release.set()
    stopper.join(TIMEOUT)
    with pytest.raises(EndpointClosed):
        late.result(TIMEOUT)


def test_stopping_twice_does_not_close_another_endpoints_descriptors(eps: Endpoints) -> None:
    first = eps.server()
    first.stop()
    second = eps.server(handler=echo)  # its wake-up pipe likely reuses the numbers just freed
    client = eps.client(second.bound_address)
    wait_until(lambda: client.connected, TIMEOUT)
    first.stop()  # again: must not close the descriptors, which may be the second's now
    for i in range(3):
        assert client.request(Ping(bytes([i])), timeout=TIMEOUT).result(TIMEOUT).msg == Pong(bytes([i]))


def test_bind_error_is_raised_in_the_caller(eps: Endpoints) -> None:
    server = eps.server()
    with pytest.raises(OSError, match="cannot bind"):
        eps.server(address=server.bound_address)


# ------------------------------------------------------------------------------ connection events


def test_monitor_events_connected_disconnected_retried(eps: Endpoints, free_port: int) -> None:
    address = f"tcp://127.0.0.1:{free_port}"
    s_in, c_in = Inbox(), Inbox()
    server = eps.server(s_in, address=address, handler=echo)
    client = eps.client(address, c_in)
    c_in.wait_event("connected")  # TCP up
    c_in.wait_event("handshake")  # ZMTP handshake done: only now is the link usable
    assert client.connected
    s_in.wait_event("accepted")
    assert all(e.endpoint == "cli" for e in c_in.events)
    assert any(e.address == address for e in c_in.events if e.kind == "connected")

    mark = len(c_in.events)
    server.stop()
    c_in.wait_event("disconnected", after=mark)
    assert not client.connected
    c_in.wait_event("retried", after=mark)  # reconnecting every 50 ms to a closed port

    mark = len(c_in.events)
    eps.server(address=address, handler=echo)  # back on the same port
    c_in.wait_event("connected", after=mark)
    c_in.wait_event("handshake", after=mark)
    assert client.request(Ping(b"again"), timeout=TIMEOUT).result(TIMEOUT).msg == Pong(b"again")


def test_request_while_disconnected_fails_fast(eps: Endpoints, free_port: int) -> None:
    client = eps.client(f"tcp://127.0.0.1:{free_port}")  # nothing listens there
    with pytest.raises(SendFailed):
        client.request(Ping(), timeout=TIMEOUT).result(TIMEOUT)
    assert client.stats.send_failures == 1


# ------------------------------------------------------------------------------------ fault hooks


def drain_until_marker(inbox: Inbox, marker: int) -> list[Envelope]:
    """Notifications received up to (not including) the Hello whose generation is ``marker``."""
    got = []
    while True:
        env, _ = inbox.get()
        if isinstance(env.msg, Hello) and env.msg.generation == marker:
            return got
        got.append(env)


def test_fault_drop_all_drops_outgoing(eps: Endpoints) -> None:
    _, client, s_in, _ = connected_pair(eps)
    client.set_faults(Faults(drop_all=True))
    for i in range(50):
        client.send(hello(i))
    with pytest.raises(RequestTimeout):
        client.request(Ping(), timeout=0.2).result(TIMEOUT)
    client.set_faults(NO_FAULTS)
    client.send(hello(1999))  # the marker, after healing
    assert drain_until_marker(s_in, 1999) == []
    assert client.stats.dropped_out == 51
    assert client.faults == NO_FAULTS


def test_fault_drop_all_on_the_receiving_side(eps: Endpoints) -> None:
    server, client, _, _ = connected_pair(eps)
    server.set_faults(Faults(drop_all=True))
    wait_until(lambda: server.faults.drop_all, TIMEOUT)
    with pytest.raises(RequestTimeout):
        client.request(Ping(), timeout=0.2).result(TIMEOUT)
    assert server.stats.dropped_in == 1
    server.set_faults(NO_FAULTS)
    wait_until(lambda: not server.faults.active, TIMEOUT)
    assert client.request(Ping(b"ok"), timeout=TIMEOUT).result(TIMEOUT).msg == Pong(b"ok")


def test_fault_drop_fraction_drops_about_that_fraction(eps: Endpoints) -> None:
    _, client, s_in, _ = connected_pair(eps)
    total = 2000
    client.set_faults(Faults(drop_fraction=0.3))
    for i in range(total):
        client.send(hello(i))
    client.set_faults(NO_FAULTS)
    client.send(hello(10**6))
    received = len(drain_until_marker(s_in, 10**6))
    assert 0.6 * total < received < 0.8 * total  # ~70 % get through
    assert client.stats.dropped_out == total - received


def test_fault_delay_delays_messages(eps: Endpoints) -> None:
    _, client, _, _ = connected_pair(eps)
    start = time.monotonic()
    client.request(Ping(), timeout=TIMEOUT).result(TIMEOUT)
    baseline = time.monotonic() - start
    client.set_faults(Faults(delay_ms=150))
    start = time.monotonic()
    reply = client.request(Ping(b"slow"), timeout=TIMEOUT).result(TIMEOUT)
    elapsed = time.monotonic() - start
    assert reply.msg == Pong(b"slow")
    assert elapsed >= 0.150, f"delayed round trip took {elapsed:.3f} s"
    assert elapsed < 0.150 + baseline + 1.0
    # the delay applies to incoming messages too: server-side delay on top of the client's
    server = eps.made[0]
    server.set_faults(Faults(delay_ms=100))
    wait_until(lambda: server.faults.delay_ms == 100, TIMEOUT)
    start = time.monotonic()
    client.request(Ping(b"slower"), timeout=TIMEOUT).result(TIMEOUT)
    assert time.monotonic() - start >= 0.150 + 2 * 0.100  # client out; server in and out


def test_fault_delay_keeps_order(eps: Endpoints) -> None:
    _, client, s_in, _ = connected_pair(eps)
    client.set_faults(Faults(delay_ms=20))
    for i in range(30):
        client.send(hello(i))
    assert [s_in.get()[0].msg for _ in range(30)] == [hello(i) for i in range(30)]


def test_fault_cut_disconnects_a_client_and_heal_reconnects(eps: Endpoints) -> None:
    _, client, s_in, c_in = connected_pair(eps)
    mark = len(c_in.events)
    client.set_faults(Faults(cut=True))
    c_in.wait_event("disconnected", after=mark)
    assert not client.connected
    with pytest.raises(RequestTimeout):
        client.request(Ping(b"cut"), timeout=0.2).result(TIMEOUT)
    assert client.stats.dropped_out >= 1
    # the server cannot reach it either: its peer is gone
    wait_until(lambda: "disconnected" in [e.kind for e in list(s_in.events)], TIMEOUT)

    mark = len(c_in.events)
    client.set_faults(NO_FAULTS)
    c_in.wait_event("connected", after=mark)
    c_in.wait_event("handshake", after=mark)
    assert client.connected
    assert client.request(Ping(b"healed"), timeout=TIMEOUT).result(TIMEOUT).msg == Pong(b"healed")


def test_faults_reject_bad_settings() -> None:
    with pytest.raises(ValueError):
        Faults(drop_fraction=1.5)
    with pytest.raises(ValueError):
        Faults(delay_ms=-1)
    with pytest.raises(ValueError, match="unknown fault"):
        Faults.from_dict({"drop": True})
    assert Faults.from_dict({"delay_ms": 5}).as_dict()["delay_ms"] == 5.0
    assert not NO_FAULTS.active and Faults(cut=True).active


# ------------------------------------------------------------------------------- malformed frames


def raw_dealer(address: str) -> zmq.Socket[bytes]:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = int(TIMEOUT * 1000)
    sock.connect(address)
    return sock


def test_malformed_frames_get_an_error_reply_and_the_server_keeps_serving(eps: Endpoints) -> None:
    server, client, s_in, _ = connected_pair(eps)
    sock = raw_dealer(server.bound_address)
    try:
        cases = [
            ([b"\xc1 garbage"], "msgpack"),
            ([b"not", b"one frame"], "exactly 1"),
            ([encode(Envelope(Ping()))[0][:-3]], "msgpack"),
        ]
        for frames, word in cases:
            sock.send_multipart(frames)
            env = decode(sock.recv_multipart())
            assert isinstance(env.msg, ErrorReply), env
            assert word in env.msg.error
            assert env.kind == REPLY and env.sender == "S"
        assert server.stats.decode_errors == len(cases)
        # a valid request on the same raw socket is served
        sock.send_multipart(encode(Envelope(Ping(b"raw"), "raw", 0, None, REQUEST, 5)))
        env = decode(sock.recv_multipart())
        assert env.msg == Pong(b"raw") and env.corr == 5
    finally:
        sock.close()
    assert client.request(Ping(b"still"), timeout=TIMEOUT).result(TIMEOUT).msg == Pong(b"still")
    assert s_in.messages.qsize() == 2  # only the two valid requests were delivered


def test_frame_over_the_endpoint_size_limit_is_refused(eps: Endpoints) -> None:
    limit = EndpointOptions(reconnect_ivl_ms=50, max_frame=1000)
    server = eps.server(handler=echo, options=limit)
    client = eps.client(server.bound_address)
    wait_until(lambda: client.connected, TIMEOUT)
    assert client.request(Ping(b"x" * 900), timeout=TIMEOUT).result(TIMEOUT).msg == Pong(b"x" * 900)
    sock = raw_dealer(server.bound_address)
    try:
        sock.send_multipart(encode(Envelope(Ping(b"x" * 1500), "raw", 0, None, REQUEST, 1)))
        env = decode(sock.recv_multipart())
        assert isinstance(env.msg, ErrorReply) and "over the limit" in env.msg.error
    finally:
        sock.close()
    assert server.stats.decode_errors == 1


# ------------------------------------------------------------------------------------------ CURVE


def test_curve_pair_works(eps: Endpoints) -> None:
    security = Security.curve_group(*zmq.curve_keypair())
    _, client, _, _ = connected_pair(eps, security=security)
    assert client.request(Ping(b"secret"), timeout=TIMEOUT).result(TIMEOUT).msg == Pong(b"secret")


def test_curve_client_with_a_wrong_server_key_gets_no_reply(eps: Endpoints) -> None:
    good = Security.curve_group(*zmq.curve_keypair())
    server = eps.server(handler=echo, security=good)
    wrong = Security.curve_group(*zmq.curve_keypair())
    client = eps.client(server.bound_address, security=wrong, options=EndpointOptions(immediate=False))
    with pytest.raises(RequestTimeout):
        client.request(Ping(b"let me in"), timeout=0.5).result(TIMEOUT)
    assert server.stats.received == 0


def test_plain_client_gets_no_reply_from_a_curve_server(eps: Endpoints) -> None:
    server = eps.server(handler=echo, security=Security.curve_group(*zmq.curve_keypair()))
    client = eps.client(server.bound_address, options=EndpointOptions(immediate=False))
    # ZeroMQ sees a mechanism mismatch as a protocol error and drops the session: the request
    # either waits in vain or finds no connection to go to; either way nothing is answered
    with pytest.raises((RequestTimeout, SendFailed)):
        client.request(Ping(), timeout=0.5).result(TIMEOUT)
    assert server.stats.received == 0


def test_a_client_recovers_once_the_security_mismatch_is_fixed(eps: Endpoints, free_port: int) -> None:
    """ZeroMQ stops reconnecting after a handshake protocol error (plain client, CURVE server);
    the endpoint keeps retrying, so fixing the server is enough."""
    address = f"tcp://127.0.0.1:{free_port}"
    curve = eps.server(address=address, handler=echo, security=Security.curve_group(*zmq.curve_keypair()))
    c_in = Inbox()
    client = eps.client(address, c_in)
    c_in.wait_event("handshake_failed")
    assert not client.connected
    curve.stop()
    mark = len(c_in.events)
    eps.server(address=address, handler=echo)  # now plain, like the client
    c_in.wait_event("handshake", after=mark)
    assert client.connected
    assert client.request(Ping(b"fixed"), timeout=TIMEOUT).result(TIMEOUT).msg == Pong(b"fixed")


def test_security_without_keys_is_refused() -> None:
    with pytest.raises(ValueError, match="no CURVE keys"):
        Security().validate()
    Security.plain().validate()
