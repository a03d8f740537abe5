"""Interaction shadowing, the pure logic (no I/O, no clock of its own: times are passed in).

Spec lines 876-1094 (Interaction Recovery Service) and 3012-3040 (what users observe).

- :class:`Interaction`: one contact-center interaction (mail, chat, callback, sms, social
  conversation, direct message) with its state, queue, agent, ``created_at`` (wall-clock seconds,
  kept across switches), transcript and ``seqno`` (0 on the original, +1 each time a shadow is
  promoted: recovered interactions have ``seqno`` 1, as the spec's database rows).
- :class:`LiveSet`: the active's interactions and its ordered, revision-numbered change log.
  :func:`apply_op` is THE rule of what each operation does; the live set and the shadows both use it.
- :class:`ShadowFilter`: which interactions the backup shadows (the per-type ``... Interaction
  Recovery Enabled`` parameters and ``Mail Interaction Recovery Filter Enabled``).
- :class:`StreamSession`: the active's side of one backup session: turns live changes into a
  sequence-numbered stream of the changes the backup's filter admits (``put`` when an interaction
  enters the filter, ``op`` while it stays in, ``remove`` when it leaves or disconnects).
- :class:`ShadowStore`: the backup's side: full synchronization from a snapshot with the updates
  that arrive meanwhile queued and applied above the snapshot's sequence (the Clone pattern: none
  lost, none applied twice), idempotent apply with gap detection (:class:`StreamGap` -> full
  sync), and idempotent promotion.
"""

from __future__ import annotations

import dataclasses
import gc
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgpack

TYPES: tuple[str, ...] = ("mail", "chat", "callback", "sms", "social conversation", "direct message")

# the catalog's parameter for each type (replication/params.py); read through ServerParams
ENABLE_PARAMS: dict[str, str] = {
    "mail": "Mail Interaction Recovery Enabled",
    "chat": "Chat Interaction Recovery Enabled",
    "callback": "Callback Interaction Recovery Enabled",
    "sms": "SMS Interaction Recovery Enabled",
    "social conversation": "Socialconversation Interaction Recovery Enabled",
    "direct message": "Directmessage Interaction Recovery Enabled",
}
MAIL_FILTER_PARAM = "Mail Interaction Recovery Filter Enabled"
ALL_PARAMS: tuple[str, ...] = (*ENABLE_PARAMS.values(), MAIL_FILTER_PARAM)

OPS: tuple[str, ...] = ("create", "update", "append", "transfer", "disconnect")
UPDATE_FIELDS: frozenset[str] = frozenset({"state", "queue", "agent", "attributes"})
DEFAULT_LOG_SIZE = 10_000


class InteractionError(ValueError):
    """A publish that cannot be applied; the text says what was wrong and what was expected."""


class StreamGap(Exception):
    """The backup missed part of the stream: it must fully resynchronize."""

    def __init__(self, expected: int, got: int, session: str = "") -> None:
        super().__init__(f"stream item {got} arrived where {expected} was expected (session {session!r})")
        self.expected = expected
        self.got = got


# ------------------------------------------------------------------------------------ the model


@dataclass(frozen=True)
class TranscriptEntry:
    """One message of a chat / SMS / social conversation (or the text of an email)."""

    author: str
    text: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"author": self.author, "text": self.text, "at": self.at}


@dataclass(frozen=True)
class Interaction:
    id: str
    type: str
    state: str
    queue: str
    agent: str
    created_at: float
    transcript: tuple[TranscriptEntry, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)
    seqno: int = 0
    updated_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "state": self.state,
            "queue": self.queue,
            "agent": self.agent,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "seqno": self.seqno,
            "attributes": dict(self.attributes),
            "transcript": [m.to_dict() for m in self.transcript],
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Interaction:
        """Build from a wire/database dict, checking every field (:class:`InteractionError`)."""
        if not isinstance(d, Mapping):
            raise InteractionError(f"an interaction must be a mapping, got {type(d).__name__}")
        iid = _text(d, "id", required=True)
        kind = _type(d.get("type"))
        created = _number(d, "created_at", required=True)
        transcript = d.get("transcript", [])
        if not isinstance(transcript, (list, tuple)):
            raise InteractionError(f"interaction {iid}: transcript must be a list of messages")
        attrs = d.get("attributes", {}) or {}
        if not isinstance(attrs, Mapping):
            raise InteractionError(f"interaction {iid}: attributes must be a mapping")
        seqno = d.get("seqno", 0)
        if not isinstance(seqno, int) or isinstance(seqno, bool) or seqno < 0:
            raise InteractionError(f"interaction {iid}: seqno must be an integer >= 0, got {seqno!r}")
        return Interaction(
            id=iid,
            type=kind,
            state=_text(d, "state") or "queued",
            queue=_text(d, "queue"),
            agent=_text(d, "agent"),
            created_at=created,
            transcript=tuple(_entry(m, iid) for m in transcript),
            attributes=dict(attrs),
            seqno=seqno,
            updated_at=_number(d, "updated_at") or created,
        )


# ------------------------------------------------------------------- compact rows (bulk transfer)
# A full synchronization and the SQLite file carry interactions as compact rows, msgpack-packed:
# [id, type, state, queue, agent, created_at, updated_at, seqno, attributes, [[author, text, at], ...]]
_ROW_FIELDS = "id, type, state, queue, agent, created_at, updated_at, seqno, attributes, transcript"
_TYPES = frozenset(TYPES)


@contextmanager
def bulk() -> Iterator[None]:
    """Around building or loading many interactions at once: the cyclic garbage collector is paused
    (each allocation burst would otherwise start full collections over every interaction held), and
    afterwards what is held is moved out of its sight (``gc.freeze``), so later collections do not
    walk 100,000 interactions either. Interactions hold no reference cycles: reference counting
    frees them when they go."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.freeze()
        if was:
            gc.enable()


def settle() -> None:
    """Move what the young generations hold now out of the garbage collector's sight (after a quick
    collection of those generations): a live set that grew one publish at a time is not walked
    again by every full collection."""
    gc.collect(1)
    gc.freeze()


def to_row(i: Interaction) -> list[Any]:
    return [
        i.id,
        i.type,
        i.state,
        i.queue,
        i.agent,
        i.created_at,
        i.updated_at,
        i.seqno,
        dict(i.attributes),
        [[m.author, m.text, m.at] for m in i.transcript],
    ]


def from_row(row: Any, seqno: int | None = None) -> Interaction:
    """An interaction from a compact row, every field checked (:class:`InteractionError`);
    ``seqno`` overrides the row's."""
    try:
        iid, kind, state, queue, agent, created, updated, row_seqno, attrs, transcript = row
    except (TypeError, ValueError):
        raise InteractionError(
            f"an interaction row must be a list of {_ROW_FIELDS}, got {row!r:.200}"
        ) from None
    if not (
        type(iid) is str
        and iid
        and kind in _TYPES
        and type(state) is str
        and type(queue) is str
        and type(agent) is str
        and type(created) in (float, int)
        and type(updated) in (float, int)
        and type(row_seqno) is int
        and row_seqno >= 0
        and type(attrs) is dict
        and type(transcript) is list
    ):
        raise InteractionError(f"malformed interaction row (expected {_ROW_FIELDS}): {row!r:.200}")
    entries = []
    for m in transcript:
        if not (
            type(m) is list
            and len(m) == 3
            and type(m[0]) is str
            and type(m[1]) is str
            and type(m[2]) in (float, int)
        ):
            raise InteractionError(f"interaction {iid}: a message must be [author, text, at], got {m!r:.200}")
        entries.append(TranscriptEntry(m[0], m[1], float(m[2])))
    return Interaction(
        iid,
        kind,
        state,
        queue,
        agent,
        float(created),
        tuple(entries),
        attrs,
        row_seqno if seqno is None else seqno,
        float(updated),
    )


def pack_rows(items: Iterable[Interaction]) -> bytes:
    return msgpack.packb([to_row(i) for i in items], use_bin_type=True)


def unpack_rows(blob: bytes) -> list[Interaction]:
    try:
        rows = msgpack.unpackb(blob, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise InteractionError(f"interaction rows are not valid msgpack: {exc}") from None
    if type(rows) is not list:
        raise InteractionError("interaction rows must be a list")
    return [from_row(r) for r in rows]


def _text(d: Mapping[str, Any], key: str, required: bool = False) -> str:
    v = d.get(key, "")
    if v is None:
        v = ""
    if not isinstance(v, str):
        raise InteractionError(f"{key} must be text, got {type(v).__name__} {v!r}")
    if required and not v:
        raise InteractionError(f"{key} is required (a non-empty text)")
    return v


def _number(d: Mapping[str, Any], key: str, required: bool = False) -> float:
    v = d.get(key)
    if v is None:
        if required:
            raise InteractionError(f"{key} is required (seconds since the epoch)")
        return 0.0
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InteractionError(f"{key} must be a number of seconds, got {v!r}")
    return float(v)


def _type(v: Any) -> str:
    if v not in TYPES:
        raise InteractionError(f"type {v!r} is not an interaction type; expected one of {', '.join(TYPES)}")
    return str(v)


def _entry(m: Any, iid: str) -> TranscriptEntry:
    if not isinstance(m, Mapping):
        raise InteractionError(f"interaction {iid}: a message must be a mapping with author, text, at")
    return TranscriptEntry(_text(m, "author"), _text(m, "text"), _number(m, "at", required=True))


def apply_op(
    current: Interaction | None, op: str, iid: str, data: Mapping[str, Any], now: float
) -> Interaction | None:
    """THE rule of what an operation does: the interaction after ``op`` (``None``: it is gone).

    ``create`` needs ``type`` (and takes state, queue, agent, attributes, created_at, transcript);
    ``update`` changes state/queue/agent/attributes; ``append`` adds one message (author, text, at);
    ``transfer`` moves it to another queue (and agent, '' when it goes back to a workgroup queue);
    ``disconnect`` ends it (it leaves the live set). Raises :class:`InteractionError` on bad input.
    """
    if op not in OPS:
        raise InteractionError(f"operation {op!r} is unknown; expected one of {', '.join(OPS)}")
    if not iid:
        raise InteractionError(f"{op}: an interaction id is required")
    if op == "create":
        if current is not None:
            raise InteractionError(f"create: interaction {iid} already exists")
        d = dict(data)
        d["id"] = iid
        d.setdefault("created_at", now)
        d.setdefault("updated_at", now)
        d.setdefault("state", "queued")
        d["seqno"] = 0
        return Interaction.from_dict(d)
    if current is None:
        raise InteractionError(f"{op}: no live interaction {iid}")
    if op == "disconnect":
        return None
    if op == "append":
        entry = _entry({"at": now, **data}, iid)
        return dataclasses.replace(current, transcript=(*current.transcript, entry), updated_at=now)
    if op == "transfer":
        if "queue" not in data:
            raise InteractionError(f"transfer of {iid}: the target queue is required")
        return dataclasses.replace(
            current, queue=_text(data, "queue"), agent=_text(data, "agent"), updated_at=now
        )
    unknown = set(data) - UPDATE_FIELDS
    if unknown:
        raise InteractionError(
            f"update of {iid}: cannot change {', '.join(sorted(unknown))}; "
            f"expected some of {', '.join(sorted(UPDATE_FIELDS))}"
        )
    changes: dict[str, Any] = {k: _text(data, k) for k in ("state", "queue", "agent") if k in data}
    if "attributes" in data:
        attrs = data["attributes"]
        if not isinstance(attrs, Mapping):
            raise InteractionError(f"update of {iid}: attributes must be a mapping")
        changes["attributes"] = {**current.attributes, **attrs}
    return dataclasses.replace(current, updated_at=now, **changes)


# ------------------------------------------------------------------------------- the live set


@dataclass(frozen=True)
class Change:
    """One applied operation of the live set, in revision order. ``data`` is what the caller gave
    (with ``at`` filled in for append); ``before``/``after`` are the interaction around it."""

    rev: int
    op: str
    id: str
    data: Mapping[str, Any]
    now: float
    before: Interaction | None
    after: Interaction | None


class LiveSet:
    """The active's interactions and its ordered change log (bounded: the last ``log_size``)."""

    def __init__(
        self, items: Iterable[Interaction] = (), rev: int = 0, log_size: int = DEFAULT_LOG_SIZE
    ) -> None:
        self.items: dict[str, Interaction] = {i.id: i for i in items}
        self.rev = rev
        self.log: deque[Change] = deque(maxlen=log_size)

    def publish(self, op: str, iid: str, data: Mapping[str, Any], now: float) -> Change:
        before = self.items.get(iid)
        if op == "append":
            data = {"at": now, **data}
        after = apply_op(before, op, iid, data, now)
        if after is None:
            self.items.pop(iid, None)
        else:
            self.items[iid] = after
        self.rev += 1
        change = Change(self.rev, op, iid, dict(data), now, before, after)
        self.log.append(change)
        return change

    def changes_since(self, rev: int) -> list[Change] | None:
        """The changes after ``rev`` in order, or ``None`` when the log no longer reaches back."""
        if rev >= self.rev:
            return []
        if not self.log or self.log[0].rev > rev + 1:
            return None
        return [c for c in self.log if c.rev > rev]

    def counts(self) -> dict[str, int]:
        return count_by_type(self.items.values())


def count_by_type(items: Iterable[Interaction]) -> dict[str, int]:
    counts = dict.fromkeys(TYPES, 0)
    for i in items:
        counts[i.type] += 1
    return counts


# ---------------------------------------------------------------------------------- the filter


@dataclass(frozen=True)
class ShadowFilter:
    """Which interactions are shadowed: enabled types, and for mail with the filter on, only
    emails assigned to an agent's queue (spec 924-933)."""

    types: frozenset[str] = frozenset()
    mail_assigned_only: bool = False

    def admits(self, i: Interaction | None) -> bool:
        if i is None or i.type not in self.types:
            return False
        return not (i.type == "mail" and self.mail_assigned_only and not i.agent)

    @staticmethod
    def from_flags(flag: Callable[[str], bool]) -> ShadowFilter:
        """From the catalog's parameters; ``flag(name)`` is e.g. ``ServerParams.flag``."""
        types = frozenset(t for t, p in ENABLE_PARAMS.items() if flag(p))
        return ShadowFilter(types, flag(MAIL_FILTER_PARAM))

    def to_dict(self) -> dict[str, Any]:
        return {"types": sorted(self.types), "mail_assigned_only": self.mail_assigned_only}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> ShadowFilter:
        types = d.get("types", [])
        if not isinstance(types, (list, tuple)):
            raise InteractionError("filter types must be a list of interaction types")
        return ShadowFilter(frozenset(_type(t) for t in types), bool(d.get("mail_assigned_only", False)))

    def needs_full_sync(self, new: ShadowFilter) -> bool:
        """Going from ``self`` to ``new``: does the backup need a full sync? Yes when a type is
        enabled, when the mail filter is turned on (its shadows are rebuilt, spec 935), or off (the
        unassigned emails are now shadowed too)."""
        if new.types - self.types:
            return True
        return "mail" in new.types and new.mail_assigned_only != self.mail_assigned_only


# ------------------------------------------------------------------------------ the stream


@dataclass(frozen=True)
class StreamItem:
    """One step of a backup session's stream. ``kind``: ``put`` (``data`` is the whole interaction),
    ``op`` (apply ``op`` with ``data`` at ``now``) or ``remove``."""

    seq: int
    kind: str
    id: str
    op: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    now: float = 0.0
    rev: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "kind": self.kind,
            "id": self.id,
            "op": self.op,
            "data": dict(self.data),
            "now": self.now,
            "rev": self.rev,
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> StreamItem:
        try:
            seq, kind, iid = d["seq"], d["kind"], d["id"]
            data = d.get("data", {}) or {}
            if not isinstance(seq, int) or not isinstance(kind, str) or not isinstance(iid, str):
                raise TypeError("seq, kind and id must be an integer and two texts")
            if not isinstance(data, Mapping):
                raise TypeError("data must be a mapping")
            return StreamItem(
                seq,
                kind,
                iid,
                str(d.get("op", "")),
                dict(data),
                float(d.get("now", 0.0)),
                int(d.get("rev", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InteractionError(f"malformed stream item {dict(d)!r}: {exc}") from None


class StreamSession:
    """The active's view of one backup session: what to send for each live change."""

    def __init__(self, session: str, flt: ShadowFilter) -> None:
        self.session = session
        self.filter = flt
        self.seq = 0

    def snapshot(self, live: LiveSet) -> tuple[int, list[Interaction]]:
        """The admitted interactions now; the stream goes on from the returned sequence."""
        return self.seq, [i for i in live.items.values() if self.filter.admits(i)]

    def feed(self, change: Change) -> StreamItem | None:
        was, now_in = self.filter.admits(change.before), self.filter.admits(change.after)
        if not was and not now_in:
            return None
        self.seq += 1
        if was and now_in:
            return StreamItem(self.seq, "op", change.id, change.op, change.data, change.now, change.rev)
        if now_in:
            assert change.after is not None
            return StreamItem(self.seq, "put", change.id, data=change.after.to_dict(), rev=change.rev)
        return StreamItem(self.seq, "remove", change.id, rev=change.rev)


# ------------------------------------------------------------------------------ the shadows


@dataclass
class ApplyResult:
    applied: list[StreamItem] = field(default_factory=list)
    duplicates: int = 0
    queued: int = 0


class ShadowStore:
    """The backup's shadows. Inert: nothing here acts on them until :meth:`promote`."""

    def __init__(self, flt: ShadowFilter | None = None) -> None:
        self.items: dict[str, Interaction] = {}
        self.filter = flt or ShadowFilter()
        self.session = ""
        self.seq = 0  # last stream item applied
        self.syncing = False
        self.promoted = False
        self._pending: dict[str, Interaction] = {}
        self._queued: list[StreamItem] = []
        self._counts: dict[str, int] = dict.fromkeys(TYPES, 0)

    # ------------------------------------------------------------------ full synchronization
    def begin_sync(self, session: str) -> None:
        """A full sync of ``session`` starts: stream items are queued until it completes."""
        self.session = session
        self.syncing = True
        self._pending = {}
        self._queued = []

    def add_snapshot(self, items: Iterable[Interaction | Mapping[str, Any]]) -> int:
        if not self.syncing:
            raise InteractionError("a snapshot chunk arrived while no full sync was running")
        n = 0
        for d in items:
            i = d if isinstance(d, Interaction) else Interaction.from_dict(d)
            if self.filter.admits(i):
                self._pending[i.id] = i
                n += 1
        return n

    def finish_sync(self, snapshot_seq: int) -> ApplyResult:
        """Replace the shadows with the snapshot, then apply the queued items above its sequence."""
        if not self.syncing:
            raise InteractionError("finish of a full sync that was not begun")
        self.items, self._pending = self._pending, {}
        self._recount()
        self.seq = snapshot_seq
        self.syncing = False
        self.promoted = False
        queued, self._queued = sorted(self._queued, key=lambda s: s.seq), []
        result = ApplyResult()
        for item in queued:
            sub = self.apply(item)
            result.applied += sub.applied
            result.duplicates += sub.duplicates
        return result

    # --------------------------------------------------------------------------- updates
    def apply(self, item: StreamItem) -> ApplyResult:
        """Apply one stream item: queued during a sync, ignored when already applied, applied when
        it is the next one; :class:`StreamGap` when one is missing."""
        if self.syncing:
            self._queued.append(item)
            return ApplyResult(queued=1)
        if item.seq <= self.seq:
            return ApplyResult(duplicates=1)
        if item.seq != self.seq + 1:
            raise StreamGap(self.seq + 1, item.seq, self.session)
        self._apply(item)
        self.seq = item.seq
        return ApplyResult(applied=[item])

    def _apply(self, item: StreamItem) -> None:
        before = self.items.get(item.id)
        self._apply_item(item)
        after = self.items.get(item.id)
        if before is not None:
            self._counts[before.type] -= 1
        if after is not None:
            self._counts[after.type] += 1

    def _apply_item(self, item: StreamItem) -> None:
        if item.kind == "remove":
            self.items.pop(item.id, None)
            return
        if item.kind == "put":
            after: Interaction | None = Interaction.from_dict(item.data)
        elif item.kind == "op":
            current = self.items.get(item.id)
            if current is None and item.op != "create":
                raise StreamGap(self.seq + 1, item.seq, self.session)  # we never had it: resync
            after = apply_op(current, item.op, item.id, item.data, item.now)
        else:
            raise InteractionError(f"stream item kind {item.kind!r} is unknown; expected put, op or remove")
        if after is None or not self.filter.admits(after):
            self.items.pop(item.id, None)
        else:
            self.items[item.id] = after

    def set_filter(self, new: ShadowFilter) -> tuple[bool, list[str]]:
        """Apply a change of the parameters: (full sync needed?, ids of the shadows dropped).
        Turning the mail filter on drops every email shadow (they are rebuilt by the full sync)."""
        resync = self.filter.needs_full_sync(new)
        mail_rebuild = "mail" in new.types and new.mail_assigned_only and not self.filter.mail_assigned_only
        dropped = [
            i.id for i in self.items.values() if not new.admits(i) or (mail_rebuild and i.type == "mail")
        ]
        for iid in dropped:
            del self.items[iid]
        self._recount()
        self.filter = new
        return resync, dropped

    # ------------------------------------------------------------------------- promotion
    def promote(self) -> list[Interaction]:
        """The shadows become live interactions: ``seqno`` + 1, same ids, same ``created_at``.
        Idempotent: a second promotion changes nothing."""
        if not self.promoted:
            self.items = {k: promote_one(i) for k, i in self.items.items()}
            self.promoted = True
        return list(self.items.values())

    def counts(self) -> dict[str, int]:
        """Shadows per type (kept up to date as items are applied)."""
        return dict(self._counts)

    def _recount(self) -> None:
        self._counts = count_by_type(self.items.values())


def promote_one(i: Interaction) -> Interaction:
    return dataclasses.replace(i, seqno=i.seqno + 1)
