"""ZeroMQ endpoints: one I/O thread owns each socket.

ZeroMQ sockets are not thread-safe, so an :class:`Endpoint` creates its socket, binds or
connects it, and from then on only its I/O thread touches it. Other threads (actors) call
``send``/``request``/``reply``/``set_faults``; those calls queue a command and wake the I/O
thread through a control pipe that it polls beside the socket and the socket monitor.

- request/reply: every request gets an id (``corr``); replies may arrive in any order and
  complete the matching :class:`concurrent.futures.Future`; an unanswered request fails
  with :class:`RequestTimeout` at its own deadline.
- one-way notifications: ``send``.
- connection events from the ZeroMQ socket monitor arrive as ``ConnectionEvent`` messages.
- fault hooks (:mod:`transport.faults`) apply to both directions.
"""

from __future__ import annotations

import heapq
import itertools
import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

import zmq
from loguru import logger
from zmq.utils.monitor import recv_monitor_message

from transport.codec import (
    DEFAULT_MAX_FRAME,
    NOTIFY,
    REPLY,
    REQUEST,
    DecodeError,
    Envelope,
    decode,
    encode,
)
from transport.faults import NO_FAULTS, Faults
from transport.messages import ConnectionEvent, ErrorReply, Message
from transport.security import Security

BIND_RETRY_S = 0.5  # how long a server keeps retrying a bind to an address still in use


class RequestTimeout(TimeoutError):
    """No reply arrived within the request's timeout."""


class EndpointClosed(ConnectionError):
    """The endpoint stopped before the request was answered."""


class SendFailed(ConnectionError):
    """The message could not be queued to any peer (no connection, or high-water mark)."""


def tcp(address: str, port: int) -> str:
    """The ZeroMQ endpoint of a TCP address and port."""
    return f"tcp://{address}:{port}"


@dataclass(frozen=True)
class EndpointOptions:
    reconnect_ivl_ms: int = 1000
    reconnect_ivl_max_ms: int = 0
    linger_ms: int = 0
    sndhwm: int = 10_000
    rcvhwm: int = 10_000
    tos: int = 0
    heartbeat_ivl_ms: int = 0
    heartbeat_timeout_ms: int = 0
    max_frame: int = DEFAULT_MAX_FRAME
    immediate: bool = True  # a client queues only to completed connections, so nothing goes stale


_MONITOR_KINDS: dict[int, str] = {
    zmq.EVENT_CONNECTED: "connected",
    zmq.EVENT_DISCONNECTED: "disconnected",
    zmq.EVENT_CONNECT_RETRIED: "retried",
    zmq.EVENT_ACCEPTED: "accepted",
    zmq.EVENT_CLOSED: "closed",
    zmq.EVENT_HANDSHAKE_SUCCEEDED: "handshake",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake_failed",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake_failed",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "handshake_failed",
}

MessageHandler = Callable[[Envelope, bytes | None], None]
EventHandler = Callable[[ConnectionEvent], None]


@dataclass
class EndpointStats:
    sent: int = 0
    received: int = 0
    dropped_out: int = 0
    dropped_in: int = 0
    decode_errors: int = 0
    refused: int = 0  # messages refused by access control (the sender lacks the right)
    timeouts: int = 0
    send_failures: int = 0


@dataclass(order=True)
class _Delayed:
    due: float
    seq: int
    action: Callable[[], None] = field(compare=False)


class Endpoint:
    """A ROUTER server (``bind``) or DEALER client (``connect``) driven by its own I/O thread."""

    def __init__(
        self,
        name: str,
        role: Literal["server", "client"],
        address: str,
        *,
        node: str,
        on_message: MessageHandler,
        on_event: EventHandler | None = None,
        options: EndpointOptions | None = None,
        security: Security | None = None,
        generation: Callable[[], int] = lambda: 0,
        context: zmq.Context[Any] | None = None,
        identity: bytes | None = None,
    ) -> None:
        self.name = name
        self.role = role
        self.address = address
        self.node = node
        self._on_message = on_message
        self._on_event = on_event
        self.options = options or EndpointOptions()
        self.security = security or Security.plain()
        self._generation = generation
        self._ctx = context or zmq.Context.instance()
        self._identity = identity
        self._faults = NO_FAULTS
        self._rng = random.Random()
        self._ids = itertools.count(1)
        self._commands: deque[tuple[str, Any]] = deque()
        self._pending: dict[int, tuple[Future[Envelope], float]] = {}
        self._deadlines: list[tuple[float, int]] = []  # heap of (deadline, corr); stale entries skipped
        self._wake_pending = False  # a wake-up byte is in the pipe and the I/O thread has not seen it
        self._delayed: list[_Delayed] = []
        self._delay_seq = itertools.count()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()  # orders queueing a command against closing (see _shutdown)
        self._handshake_failures = 0
        self.connected = False
        self.stats = EndpointStats()
        self.bound_address = ""
        self._sock = self._make_socket()
        self.log = logger.bind(node=node, endpoint=name)

    # ----------------------------------------------------------------------------------- setup

    def _make_socket(self) -> zmq.Socket[bytes]:
        o = self.options
        sock: zmq.Socket[bytes] = self._ctx.socket(zmq.ROUTER if self.role == "server" else zmq.DEALER)
        sock.linger = o.linger_ms
        sock.sndhwm = o.sndhwm
        sock.rcvhwm = o.rcvhwm
        sock.setsockopt(zmq.RECONNECT_IVL, o.reconnect_ivl_ms)
        if o.reconnect_ivl_max_ms:
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, o.reconnect_ivl_max_ms)
        if o.tos:
            sock.setsockopt(zmq.TOS, o.tos)
        if o.heartbeat_ivl_ms:
            sock.setsockopt(zmq.HEARTBEAT_IVL, o.heartbeat_ivl_ms)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, o.heartbeat_timeout_ms or 3 * o.heartbeat_ivl_ms)
        sock.setsockopt(zmq.MAXMSGSIZE, o.max_frame + 1024)
        if self.role == "server":
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        elif o.immediate:
            sock.setsockopt(zmq.IMMEDIATE, 1)
        if self._identity:
            sock.setsockopt(zmq.IDENTITY, self._identity)
        if self.role == "server":
            sock.zap_domain = self.name.encode()  # the ZAP handler (transport.auth) sees which socket
        self.security.apply(sock, server=self.role == "server")
        self._access = self.security.access if self.role == "server" and not self.security.insecure else None
        if self._access is not None:
            self._access.add_domain(self.name)
        self._accepted: dict[int, str] = {}  # fd -> peer address of connections not yet closed
        self._failed_handshakes = 0  # handshake failures not yet matched with their connection's close
        self._seen_closed: set[str] = set()
        self._peer_meta: dict[bytes, tuple[str, str]] = {}  # routing id -> (ZAP user id, address)
        self._closed_looked_up = -1e9
        return sock

    def start(self) -> Endpoint:
        """Bind or connect (errors raise here, in the caller), then start the I/O thread."""
        self._monitor = self._sock.get_monitor_socket()
        try:
            if self.role == "server":
                self._bind()
                self.bound_address = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
            else:
                self._sock.connect(self.address)
        except zmq.ZMQError as exc:
            self._closed.set()
            self._close_sockets()
            self._close_pipe()
            raise OSError(f"endpoint {self.name}: cannot {self._verb()} {self.address}: {exc}") from exc
        self._thread = threading.Thread(target=self._run, name=f"io-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _bind(self) -> None:
        """Bind, retrying "address in use" for a moment: ZeroMQ closes a stopped socket's listener
        asynchronously, so an endpoint restarted on the same port (an actor's next incarnation)
        can find it still taken for a few milliseconds."""
        deadline = time.monotonic() + BIND_RETRY_S
        while True:
            try:
                self._sock.bind(self.address)
                return
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EADDRINUSE or time.monotonic() >= deadline:
                    raise
            time.sleep(0.005)  # bounded by BIND_RETRY_S; runs in the caller, before the I/O thread

    def _verb(self) -> str:
        return "bind" if self.role == "server" else "connect"

    # ------------------------------------------------------------------------- caller threads

    def send(self, msg: Message, to: bytes | None = None, seq: int | None = None) -> None:
        """Queue a one-way notification (to a peer identity, for a server)."""
        self._command("send", (msg, to, seq, NOTIFY, None))

    def request(self, msg: Message, timeout: float, to: bytes | None = None) -> Future[Envelope]:
        """Send a request; the future gets the reply envelope, or RequestTimeout/EndpointClosed."""
        fut: Future[Envelope] = Future()
        corr = next(self._ids)
        if not self._command("request", (msg, to, fut, corr, timeout)):
            fut.set_exception(EndpointClosed(f"endpoint {self.name} is closed"))
        return fut

    def reply(self, request: Envelope, msg: Message, to: bytes | None = None) -> None:
        """Answer a request envelope (``to`` is the peer identity a server got it from)."""
        self._command("send", (msg, to, None, REPLY, request.corr))

    def set_faults(self, faults: Faults) -> None:
        self._command("faults", faults)

    @property
    def faults(self) -> Faults:
        return self._faults

    def stop(self, timeout: float = 2.0) -> None:
        if self._thread is None:
            self._closed.set()
            self._close_sockets()
            self._close_pipe()
            return
        self._command("stop", None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.log.error("I/O thread of {} did not stop within {}s", self.name, timeout)
            return
        self._close_pipe()

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "address": self.bound_address or self.address,
            "connected": self.connected,
            "faults": self._faults.as_dict(),
            "stats": dict(self.stats.__dict__),
        }

    def _command(self, kind: str, arg: Any) -> bool:
        """Queue a command for the I/O thread; False when the endpoint is closed (nothing queued).

        Under the lock, so that a command is either queued before the I/O thread collects the
        leftovers at shutdown, or refused; and the wake-up pipe is never written after it closed.
        """
        with self._lock:
            if self._closed.is_set():
                return False
            self._commands.append((kind, arg))
            if not self._wake_pending:  # else the I/O thread is woken already and will drain the queue
                self._wake_pending = True
                try:
                    os.write(self._wake_w, b"x")
                except BlockingIOError:
                    pass  # the pipe is full: the I/O thread is already awake and will drain the queue
        return True

    # ------------------------------------------------------------------------------ I/O thread

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll(self._poll_timeout_ms()))
                if self._wake_r in ready:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    # After emptying the pipe and before draining the queue: a command queued from
                    # here on either is drained below or writes a new wake-up byte.
                    self._wake_pending = False
                if not self._drain_commands():
                    return
                if self._sock in ready:
                    self._receive_all()
                    if self._commands and not self._drain_commands():
                        return  # replies queued by handlers on this thread go out without another poll
                if self._monitor in ready:
                    self._read_monitor()
                self._fire_due()
        except Exception:
            self.log.exception("I/O thread of endpoint {} failed", self.name)
        finally:
            self._shutdown()

    def _poll_timeout_ms(self) -> int | None:
        """Until the next request deadline or delayed send; ``None`` (sleep until woken by the socket,
        the monitor or the command pipe) when there is none, so an idle endpoint never wakes."""
        heap = self._deadlines
        while heap and heap[0][1] not in self._pending:
            heapq.heappop(heap)  # answered already
        deadlines = [heap[0][0]] if heap else []
        if self._delayed:
            deadlines.append(self._delayed[0].due)
        if not deadlines:
            return None
        return max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)

    def _drain_commands(self) -> bool:
        while self._commands:
            kind, arg = self._commands.popleft()
            if kind == "stop":
                return False
            if kind == "send":
                msg, to, seq, env_kind, corr = arg
                self._outgoing(Envelope(msg, self.node, self._generation(), seq, env_kind, corr), to, None)
            elif kind == "request":
                msg, to, fut, corr, timeout = arg
                deadline = time.monotonic() + timeout
                self._pending[corr] = (fut, deadline)
                heapq.heappush(self._deadlines, (deadline, corr))
                self._outgoing(Envelope(msg, self.node, self._generation(), None, REQUEST, corr), to, fut)
            elif kind == "faults":
                self._apply_faults(arg)
        return True

    def _apply_faults(self, faults: Faults) -> None:
        was_cut = self._faults.cut
        self._faults = faults
        self.log.warning("fault hooks of {} set to {}", self.name, faults.as_dict())
        if self.role != "client" or faults.cut == was_cut:
            return
        if faults.cut:
            self._sock.disconnect(self.address)
            if self.connected:
                self.connected = False
                self._emit("disconnected", self.address)
        else:
            self._sock.connect(self.address)

    def _outgoing(self, env: Envelope, to: bytes | None, fut: Future[Envelope] | None) -> None:
        faults = self._faults
        if faults.drops(self._rng):
            self.stats.dropped_out += 1
            return
        if faults.delay_ms > 0:
            self._later(faults.delay_ms, lambda: self._transmit(env, to, fut))
        else:
            self._transmit(env, to, fut)

    def _transmit(self, env: Envelope, to: bytes | None, fut: Future[Envelope] | None) -> None:
        frames = encode(env)
        if self.role == "server":
            if to is None:
                self.log.error(
                    "{}: a server endpoint needs a peer identity to send {}", self.name, env.msg.TYPE
                )
                return
            frames = [to, *frames]
        try:
            if len(frames) == 1:
                self._sock.send(frames[0], flags=zmq.NOBLOCK)
            else:
                self._sock.send_multipart(frames, flags=zmq.NOBLOCK)
            self.stats.sent += 1
        except zmq.ZMQError as exc:
            self.stats.send_failures += 1
            if fut is not None and env.corr in self._pending:
                del self._pending[env.corr]
                fut.set_exception(SendFailed(f"{self.name}: cannot send {env.msg.TYPE}: {exc.strerror}"))

    def _receive_all(self) -> None:
        access = self._access
        for _ in range(1000):
            user = address = ""
            try:
                if access is None:
                    frames = self._sock.recv_multipart(flags=zmq.NOBLOCK)
                else:
                    # the first frame (a server's: the routing id) as a Frame, which carries
                    # the message properties; the rest copied as usual
                    first = self._sock.recv(flags=zmq.NOBLOCK, copy=False)
                    frames = [first.bytes]
                    if self._sock.getsockopt(zmq.RCVMORE):
                        frames += self._sock.recv_multipart(flags=zmq.NOBLOCK)
                    # A connection's user id and address never change: ask ZeroMQ once per peer.
                    # Only for routing ids ZeroMQ generated (a leading zero byte, a counter never
                    # reused); one a client chose may come back on another connection, another key.
                    meta = self._peer_meta.get(frames[0])
                    if meta is None:
                        meta = (_metadata(first, "User-Id"), _metadata(first, "Peer-Address"))
                        if frames[0][:1] == b"\x00":
                            if len(self._peer_meta) > 10_000:
                                self._peer_meta.clear()
                            self._peer_meta[frames[0]] = meta
                    user, address = meta
            except zmq.Again:
                return
            peer: bytes | None = None
            if self.role == "server":
                peer, frames = frames[0], frames[1:]
            try:
                env = decode(frames, self.options.max_frame, user, address)
            except DecodeError as exc:
                self.stats.decode_errors += 1
                self.log.warning("{}: rejected a malformed frame from {!r}: {}", self.name, peer, exc)
                if peer is not None:
                    self._transmit(
                        Envelope(ErrorReply(str(exc)), self.node, self._generation(), None, REPLY), peer, None
                    )
                continue
            if access is not None:
                refusal = access.check(env.msg, user, address, self.name)
                if refusal is not None:
                    self.stats.refused += 1
                    if env.kind == REQUEST:
                        reply = Envelope(
                            ErrorReply(refusal, env.msg.TYPE),
                            self.node,
                            self._generation(),
                            None,
                            REPLY,
                            env.corr,
                        )
                        self._transmit(reply, peer, None)
                    continue
            faults = self._faults
            if faults.drops(self._rng):
                self.stats.dropped_in += 1
                continue
            if faults.delay_ms > 0:
                self._later(faults.delay_ms, lambda env=env, peer=peer: self._deliver(env, peer))  # type: ignore[misc]
            else:
                self._deliver(env, peer)

    def _deliver(self, env: Envelope, peer: bytes | None) -> None:
        self.stats.received += 1
        if env.kind == REPLY and env.corr is not None:
            pending = self._pending.pop(env.corr, None)
            if pending is not None:
                if not pending[0].done():
                    pending[0].set_result(env)
                return
            if self.role == "client":
                self.log.debug("{}: late reply {} to request {} dropped", self.name, env.msg.TYPE, env.corr)
                return
        try:
            self._on_message(env, peer)
        except Exception:
            self.log.exception("{}: handler failed on {}", self.name, env.msg.TYPE)

    def _read_monitor(self) -> None:
        while True:
            try:
                event = recv_monitor_message(self._monitor, flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            kind = _MONITOR_KINDS.get(int(event["event"]))
            if kind is None:
                continue
            endpoint = event.get("endpoint", b"")
            address = endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)
            if self._access is not None:
                self._watch_handshakes(kind, int(event["event"]), int(event.get("value", -1)))
            if self.role == "client":
                if kind == "handshake":  # usable only now: with IMMEDIATE, sends fail before the handshake
                    self.connected = True
                elif kind in ("disconnected", "closed"):
                    self.connected = False
                elif kind == "handshake_failed":
                    self._reconnect_later(address)
            self._emit(kind, address)

    def _watch_handshakes(self, kind: str, code: int, value: int) -> None:
        """Name the peer of a failed handshake (a plain-text client, a wrong server key, garbage).

        ZeroMQ reports a failed handshake without the peer; its ``accepted`` event carries the
        connection's descriptor (asked for its peer address at once) and its ``disconnected``
        event the same descriptor, right after the failure (one I/O thread, in order).
        """
        if kind == "accepted":
            self._accepted[value] = _peer_of_fd(value, self.bound_address)
            if len(self._accepted) > 100_000:
                self._accepted.clear()
        elif kind == "handshake_failed" and code != zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self._failed_handshakes += 1  # (a refused key was logged by the ZAP handler, with its name)
        elif kind in ("disconnected", "closed"):
            peer = self._accepted.pop(value, "")
            if self._failed_handshakes and self._access is not None:
                self._failed_handshakes -= 1
                if not peer:  # closed before we could ask: the connection the node closed just now
                    peer = self._just_closed() or "an unknown address"
                self._access.handshake_failed(
                    self.name,
                    peer,
                    "the CURVE handshake failed (a plain-text client, or not this pair's key)",
                )

    def _just_closed(self) -> str:
        """The peers of this server's port whose connection the node closed since the last call
        (TCP sockets in FIN-WAIT or TIME-WAIT: the side that closes first goes there)."""
        now = time.monotonic()
        if now - self._closed_looked_up < 1.0:
            return ""  # at most one look-up a second: a flood of bad handshakes must not slow the I/O
        self._closed_looked_up = now
        try:
            port = int(self.bound_address.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            return ""
        closed = _closed_by_us(port)
        new = sorted(closed - self._seen_closed)
        self._seen_closed = closed
        if len(new) > 3:
            return f"{', '.join(new[:3])} (or another of {len(new)} connections closed lately)"
        return ", ".join(new)

    def _reconnect_later(self, address: str) -> None:
        """ZeroMQ gives up on a connection whose handshake failed on a protocol error (a plain
        client and a CURVE server, say): no more retries, even once the peer is fixed. Retry
        ourselves at the reconnect interval, as for any other lost connection."""
        self._handshake_failures += 1
        if self._handshake_failures == 1 or self._handshake_failures % 60 == 0:
            self.log.warning(
                "{}: handshake with {} failed ({} time(s)): security settings differ? retrying",
                self.name,
                address,
                self._handshake_failures,
            )

        def reconnect() -> None:
            if self._faults.cut:
                return  # cut: stays disconnected until healed (heal connects)
            try:
                self._sock.disconnect(self.address)
            except zmq.ZMQError:
                pass  # already gone
            self._sock.connect(self.address)

        self._later(max(self.options.reconnect_ivl_ms, 100), reconnect)

    def _emit(self, kind: str, address: str) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(ConnectionEvent(self.name, kind, address))
        except Exception:
            self.log.exception("{}: connection event handler failed", self.name)

    def _later(self, delay_ms: float, action: Callable[[], None]) -> None:
        heapq.heappush(
            self._delayed, _Delayed(time.monotonic() + delay_ms / 1000, next(self._delay_seq), action)
        )

    def _fire_due(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0].due <= now:
            heapq.heappop(self._delayed).action()
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, corr = heapq.heappop(heap)
            pending = self._pending.pop(corr, None)
            if pending is None:
                continue  # answered (or failed) before its deadline
            self.stats.timeouts += 1
            if not pending[0].done():
                pending[0].set_exception(RequestTimeout(f"{self.name}: no reply to request {corr} in time"))

    def _shutdown(self) -> None:
        with self._lock:
            self._closed.set()
            leftovers = list(self._commands)  # queued behind "stop", or while the thread was dying
            self._commands.clear()
        for kind, arg in leftovers:
            if kind == "request" and not arg[2].done():
                arg[2].set_exception(EndpointClosed(f"endpoint {self.name} stopped"))
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(EndpointClosed(f"endpoint {self.name} stopped"))
        self._pending.clear()
        self._deadlines.clear()
        self._close_sockets()

    def _close_sockets(self) -> None:
        monitor = getattr(self, "_monitor", None)
        try:
            if monitor is not None:
                self._sock.disable_monitor()
                monitor.close(0)
        except zmq.ZMQError:
            pass
        self._sock.close(self.options.linger_ms)

    def _close_pipe(self) -> None:
        with self._lock:  # _command writes under the lock and only while not closed
            for fd in (self._wake_r, self._wake_w):
                if fd < 0:
                    continue  # closed by an earlier stop(): the number may belong to someone else now
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._wake_r = self._wake_w = -1


def _metadata(frame: zmq.Frame, name: str) -> str:
    """A message property ZeroMQ attached to a received frame ("" when it has none)."""
    try:
        value = frame.get(name)
    except zmq.ZMQError:
        return ""
    return value if isinstance(value, str) else str(value)


_CLOSED_BY_US = {"04", "05", "06"}  # FIN_WAIT1, FIN_WAIT2, TIME_WAIT in /proc/net/tcp


def _closed_by_us(port: int) -> set[str]:
    """``host:port`` of the peers of local ``port`` whose connections this host closed lately (Linux)."""
    out: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 4 or parts[3] not in _CLOSED_BY_US:
                continue
            local, remote = parts[1], parts[2]
            if int(local.rsplit(":", 1)[1], 16) != port:
                continue
            host_hex, port_hex = remote.rsplit(":", 1)
            raw = bytes.fromhex(host_hex)
            # the kernel prints each 32-bit word in host (little-endian) order
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            host = socket.inet_ntop(socket.AF_INET if width == 8 else socket.AF_INET6, words)
            if host.startswith("::ffff:"):
                host = host[7:]
            out.add(f"{host}:{int(port_hex, 16)}")
    return out


def _peer_of_fd(fd: int, address: str) -> str:
    """The peer of an accepted TCP connection's descriptor ("" if it is gone already, or the
    number now belongs to a socket that is not on our ``address``'s port)."""
    if fd < 0:
        return ""
    try:
        s = socket.socket(fileno=os.dup(fd))
    except OSError:
        return ""
    try:
        local, peer = s.getsockname(), s.getpeername()
        if not (isinstance(peer, tuple) and address.endswith(f":{local[1]}")):
            return ""
        return f"{peer[0]}:{peer[1]}"
    except OSError:
        return ""
    finally:
        s.close()
