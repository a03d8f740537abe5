"""``switchover app``: the reference contact-center application of a node.

While its node is active it simulates a small contact center through the interaction API: it
creates chats, emails and callbacks, appends messages, assigns agents, transfers and
disconnects some. When its node commences (becomes active after a switch) it resumes the
recovered interactions (``seqno`` >= 1) and goes on with them. ``--journal FILE`` writes one
JSON line per acknowledged operation (and one per resumption), for a checker that counts what
a switch lost.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from loguru import logger

from actors.config import ConfigError, load_config, tool_security
from cli.output import error
from transport.client import Unreachable, query_state
from transport.interactions_client import InteractionRefused, InteractionsClient, RecoveryListener
from transport.messages import InteractionList

AGENTS = ("alice", "bob", "carol", "dave")
KINDS = ("chat", "mail", "callback")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="reference contact-center application (publishes interactions)")
    p.add_argument(
        "--config", default=os.environ.get("SWITCHOVER_CONFIG"), help="this node's config (its addresses)"
    )
    p.add_argument(
        "--name", default="contact-center", help="the application's name on the node (default contact-center)"
    )
    p.add_argument("--rate", type=float, default=20.0, help="operations per second")
    p.add_argument("--max-open", type=int, default=40, help="interactions kept open at once")
    p.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0: run until signalled)"
    )
    p.add_argument("--wait-backup", action="store_true", help="publish messages with wait-for-the-backup")
    p.add_argument(
        "--seed", type=int, default=None, help="random seed of the simulated traffic (repeatable runs)"
    )
    p.add_argument("--journal", help="append one JSON line per acknowledged operation")
    p.add_argument(
        "--key",
        default=os.environ.get("SWITCHOVER_KEY"),
        help="the application's secret key file (a client with the app right; default: the config's client_key)",
    )
    p.set_defaults(func=run)


@dataclass
class ContactCenter:
    """The application's own view: the open interactions it works on."""

    client: InteractionsClient
    rng: random.Random
    max_open: int
    wait_backup: bool
    journal: TextIO | None = None
    open: dict[str, str] = field(default_factory=dict)  # id -> type
    counter: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    resumed: threading.Event = field(default_factory=threading.Event)  # cleared while the node is not active

    def note(self, record: dict[str, Any]) -> None:
        if self.journal is not None:
            self.journal.write(json.dumps(record, sort_keys=True) + "\n")
            self.journal.flush()

    def resume(self, found: InteractionList, how: str) -> None:
        """Take over the node's interactions once per activation (on Commence, or by query when the
        app finds its node active first); nothing is published before."""
        with self.lock:
            if self.resumed.is_set():
                return
            self.open = {i["id"]: i["type"] for i in found.items}
            recovered = [i for i in found.items if i["seqno"] >= 1]
            self.resumed.set()
        logger.info(
            "{}: resuming {} interaction(s), {} recovered from the shadows (seqno >= 1)",
            how,
            len(found.items),
            len(recovered),
        )
        self.note(
            {
                "event": "resumed",
                "ids": sorted(i["id"] for i in found.items),
                "messages": {i["id"]: len(i["transcript"]) for i in found.items},
                "at": time.time(),
            }
        )

    def step(self) -> None:
        with self.lock:
            op, iid, data = self._choose()
        try:
            reply = self.client.publish(op, iid, data, wait_backup=self.wait_backup)
        except InteractionRefused as exc:
            logger.warning("{} of {} refused: {}", op, iid, exc)
            with self.lock:
                self.open.pop(iid, None)  # forget what the active does not know
            return
        with self.lock:
            if op == "create":
                self.open[iid] = str(data["type"])
            elif op == "disconnect":
                self.open.pop(iid, None)
        self.note(
            {
                "op": op,
                "id": iid,
                "data": data,
                "rev": reply.rev,
                "shadowed": reply.shadowed,
                "at": time.time(),
            }
        )

    def _choose(self) -> tuple[str, str, dict[str, Any]]:
        rng = self.rng
        if len(self.open) < self.max_open and (not self.open or rng.random() < 0.3):
            self.counter += 1
            kind = rng.choice(KINDS)
            iid = f"{kind}-{os.getpid()}-{self.counter}"
            queue = {"chat": "Support", "mail": "Mailbox", "callback": "Callbacks"}[kind]
            return "create", iid, {"type": kind, "queue": queue}
        iid = rng.choice(sorted(self.open))
        kind = self.open[iid]
        roll = rng.random()
        if roll < 0.05:
            return "disconnect", iid, {}
        if roll < 0.2:
            agent = rng.choice(AGENTS)
            return "update", iid, {"agent": agent, "state": "connected", "queue": agent}
        if roll < 0.25:
            return "transfer", iid, {"queue": rng.choice(("Support", "Sales"))}
        author = rng.choice(("customer", *AGENTS))
        text = {"chat": "chat line", "mail": "mail text", "callback": "callback note"}[kind]
        return "append", iid, {"author": author, "text": f"{text} {self.counter}-{rng.randrange(10**6)}"}


def run(args: argparse.Namespace) -> int:
    if not args.config:
        return error("pass --config FILE (or set SWITCHOVER_CONFIG): the app talks to that node")
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        return error(str(exc))
    me = cfg.me
    vswitch = f"tcp://{me.address}:{me.vswitch_port}"
    interactions = f"tcp://{me.address}:{me.interaction_port}"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    journal = open(args.journal, "a") if args.journal else None  # closed below
    try:
        security = tool_security(cfg, args.key)
    except ConfigError as exc:
        return error(str(exc))
    client = InteractionsClient(interactions, security, name=args.name, timeout=2.0)
    center = ContactCenter(client, random.Random(args.seed), args.max_open, args.wait_backup, journal)
    listener = RecoveryListener(
        vswitch, interactions, lambda found: center.resume(found, "commence"), security, name=args.name
    ).start()
    logger.info("{}: contact center on {} (interactions at {})", args.name, cfg.name, interactions)
    started = time.monotonic()
    try:
        while not stop.is_set():
            if args.duration and time.monotonic() - started >= args.duration:
                break
            try:
                if query_state(vswitch, timeout=1.0, security=security).role != "Primary":
                    center.resumed.clear()
                    stop.wait(0.2)  # only the active serves interactions
                    continue
                if not center.resumed.is_set():
                    center.resume(client.query(), "active")
                center.step()
            except Unreachable as exc:
                logger.debug("{}: node not serving interactions yet: {}", args.name, exc)
                stop.wait(0.5)
                continue
            stop.wait(1.0 / max(args.rate, 0.1))
    finally:
        listener.stop()
        client.close()
        if journal is not None:
            journal.close()
    logger.info("{}: stopped", args.name)
    return 0
