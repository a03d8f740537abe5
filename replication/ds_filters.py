"""What of the DS tree follows the active: local parameters and the upgrade states (Appendix C).

Pure functions of a :class:`DSFilter` (no I/O except reading the replica's own children when a delete
must spare local keys below it, passed in as a function).

* Always: the server parameters the catalog marks ``local`` (per-node values) are never set or deleted
  from the active.
* **Upgrade Higher** (backup on a newer release): everything replicates except the handler-related and
  phone entries (:data:`UPGRADE_HIGHER_BUILTIN_EXCLUSIONS`, the spec's "files and DS entries related to
  handlers", "Phone DS data") and the paths of ``Switchover Upgrade Higher DS Exclusions``.
* **Upgrade Lower** (backup on an older release): only the built-in paths plus ``Custom Upgrade
  Synchronization Directories`` replicate (recursively), minus the attributes of ``Custom Upgrade
  Attribute Exceptions`` (``User(Workgroups, Extension);Workgroup(Members)``).

A key's DS *class* (for attribute exceptions) is its ``class`` attribute when it has one, else the
name of its parent without a trailing ``s`` (``/Config/Users/alice`` is a ``User``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from replication.params import (
    CATALOG,
    AttrExceptions,
    ServerParams,
    param_key,
)
from replication.store import DeleteAttrOp, DeleteOp, Op, SetOp, child_key

__all__ = ["UPGRADE_HIGHER_BUILTIN_EXCLUSIONS", "DSFilter", "ds_class", "filter_for", "local_param_keys"]

UPGRADE_HIGHER = "Upgrade Higher"
UPGRADE_LOWER = "Upgrade Lower"

UPGRADE_HIGHER_BUILTIN_EXCLUSIONS: tuple[str, ...] = (
    "/Config/Handlers",
    "/Server/Handlers",
    "/Config/Phones",
    param_key("Handler Path"),
)


def local_param_keys() -> tuple[str, ...]:
    """The DS keys of the parameters the catalog marks local (never replicated)."""
    return tuple(param_key(p.name) for p in CATALOG.values() if p.local)


def _under(key: str, prefix: str) -> bool:
    return prefix == "/" or key == prefix or key.startswith(prefix + "/")


def ds_class(key: str, attrs: Mapping[str, Sequence[str]] | None = None) -> str:
    """The DS class of ``key`` for attribute exceptions (see the module documentation)."""
    if attrs and attrs.get("class"):
        return str(attrs["class"][0])
    parent = key.rsplit("/", 2)
    name = parent[-2] if len(parent) >= 2 else ""
    return name[:-1] if name.endswith("s") and len(name) > 1 else name


@dataclass(frozen=True)
class DSFilter:
    """``include``: only keys under these replicate (``None``: all); ``exclude``: keys under these don't;
    ``local``: exact keys that stay this node's own; ``attr_exceptions``: attributes kept local by class."""

    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    local: tuple[str, ...] = ()
    attr_exceptions: AttrExceptions = ()
    state: str = "normal"

    def replicate(self, key: str) -> bool:
        if key in self.local:
            return False
        if any(_under(key, p) for p in self.exclude):
            return False
        return self.include is None or any(_under(key, p) for p in self.include)

    def descend(self, key: str) -> bool:
        """Whether anything at or below ``key`` may replicate."""
        if any(_under(key, p) for p in self.exclude):
            return False
        if self.include is None:
            return True
        return any(_under(key, p) or _under(p, key) for p in self.include)

    def protects_below(self, key: str) -> bool:
        """Whether a delete of ``key`` would reach keys that stay local."""
        if not self.replicate(key):
            return True
        return any(_under(k, key) and k != key for k in self.local) or any(
            _under(p, key) and p != key for p in self.exclude)

    def excepted(self, key: str, attrs: Mapping[str, Sequence[str]] | None) -> tuple[str, ...]:
        if not self.attr_exceptions:
            return ()
        cls = ds_class(key, attrs)
        for name, names in self.attr_exceptions:
            if name == cls:
                return names
        return ()

    def merge_attrs(self, key: str, remote: dict[str, list[str]],
                    mine: dict[str, list[str]] | None) -> dict[str, list[str]]:
        """The attributes a replica keeps for ``key``: the active's, except the excepted ones, which stay
        as they are here."""
        names = self.excepted(key, remote if remote.get("class") else mine)
        if not names:
            return remote
        out = {k: v for k, v in remote.items() if k not in names}
        for n in names:
            if mine and n in mine:
                out[n] = mine[n]
        return out

    def ops(self, ops: Iterable[Op], children: Callable[[str], list[str]],
            attrs_of: Callable[[str], dict[str, list[str]] | None]) -> list[Op]:
        """A replicated batch as this replica applies it (``children``/``attrs_of`` read the replica)."""
        out: list[Op] = []
        for op in ops:
            key = op.key
            if isinstance(op, DeleteOp):
                if not self.descend(key):
                    continue
                if self.protects_below(key):
                    out += self._spare(key, children)
                else:
                    out.append(op)
                continue
            if not self.replicate(key):
                continue
            if isinstance(op, DeleteAttrOp):
                if op.name not in self.excepted(key, attrs_of(key)):
                    out.append(op)
                continue
            attrs = {k: list(v) for k, v in op.attrs.items()}
            names = self.excepted(key, attrs if attrs.get("class") else attrs_of(key))
            if names:
                attrs = {k: v for k, v in attrs.items() if k not in names}
            out.append(SetOp(key, attrs))
        return out

    def _spare(self, key: str, children: Callable[[str], list[str]]) -> list[Op]:
        """Deletes of everything under ``key`` that replicates, sparing what stays local."""
        out: list[Op] = []
        for name in children(key):
            ck = child_key(key, name)
            if not self.descend(ck):
                continue
            if self.protects_below(ck):
                out += self._spare(ck, children)
            else:
                out.append(DeleteOp(ck))
        return out


def filter_for(state: str, params: ServerParams | None) -> DSFilter:
    """The filter of a backup in ``state`` (a State value) with these server parameters."""
    local = local_param_keys()
    if params is None:
        return DSFilter(local=local)
    if state == UPGRADE_HIGHER:
        extra = params.ds_paths("Switchover Upgrade Higher DS Exclusions")
        return DSFilter(exclude=UPGRADE_HIGHER_BUILTIN_EXCLUSIONS + tuple(extra), local=local, state=state)
    if state == UPGRADE_LOWER:
        include = params.upgrade_sync_ds_paths()
        return DSFilter(include=tuple(include), local=local,
                        attr_exceptions=params.attr_exceptions("Custom Upgrade Attribute Exceptions"),
                        state=state)
    return DSFilter(local=local)

