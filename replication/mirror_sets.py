"""Which directories are mirrored, how, and which paths inside them may be touched (pure, no I/O
except :func:`safe_local_path`/:func:`symlink_allowed`, which only resolve paths).

The parameters come from :class:`replication.params.ServerParams` (parsed once there); this module turns
them into :class:`MirrorRoot` s for the backup's state (spec lines 214-317 and 2829-3003):

- ``Handler Path``: once, when the backup starts; its subdirectories only with ``+``;
- ``Resource Path``, ``I3Tables Path``: continuously (whole tree);
- every ``CustomMirrorDir`` entry: continuously (``+`` = recursive); a change takes effect live;
- every ``InitialMirrorDir`` entry: once, when the backup starts (bounded by the start-up time);
- ``MirrorExceptions``: file extensions never mirrored.

Upgrade states: handler files are never mirrored. *Upgrade Higher* mirrors everything else minus
``Switchover Upgrade Higher File Exclusions``; *Upgrade Lower* mirrors only ``Custom Upgrade File
Synchronization Directories`` with ``Custom Upgrade File Synchronization Exceptions`` (which inherits
``MirrorExceptions`` while unset).

Paths are the same on both servers. For a pair on one machine each node maps every mirrored path
under its own ``[mirror] root`` (:func:`local_root`).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from replication.params import MirrorPath

CANARY_ROOT = "@canary"
"""The root id of the health-check canary (lives in each node's data directory, not under the mirror root)."""


class Mode(StrEnum):
    NORMAL = "normal"
    UPGRADE_HIGHER = "upgrade-higher"
    UPGRADE_LOWER = "upgrade-lower"


class When(StrEnum):
    CONTINUOUS = "continuous"  # watched and pushed as it changes
    ONCE = "once"  # copied when the backup starts, never watched afterwards


def mode_of_role(role: str) -> Mode:
    """The mirror mode of the backup's state (``Upgrade Higher``/``Upgrade Lower``/anything else)."""
    if role == "Upgrade Higher":
        return Mode.UPGRADE_HIGHER
    if role == "Upgrade Lower":
        return Mode.UPGRADE_LOWER
    return Mode.NORMAL


@dataclass(frozen=True)
class MirrorRoot:
    """One mirrored directory. ``path`` is the logical (same on both servers) absolute path."""

    path: str
    recursive: bool
    when: When
    exceptions: tuple[str, ...] = ()  # extensions (without dot), compared case-insensitively
    excluded_dirs: tuple[str, ...] = ()  # relative directories inside the root that are not mirrored
    source: str = ""  # the parameter it comes from

    @property
    def id(self) -> str:
        return self.path

    def includes(self, rel: str, is_dir: bool = False) -> bool:
        """Is the relative path ``rel`` (POSIX, no leading '/') mirrored under this root?"""
        if not rel or rel == ".":
            return True
        parts = rel.split("/")
        depth = len(parts) if is_dir else len(parts) - 1
        if not self.recursive and depth > 0:
            return False  # non-recursive: only the files directly in the root
        for ex in self.excluded_dirs:
            if rel == ex or rel.startswith(ex + "/"):
                return False
        if not is_dir and excluded_by_extension(parts[-1], self.exceptions):
            return False
        return True

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "recursive": self.recursive,
            "when": str(self.when),
            "exceptions": list(self.exceptions),
            "excluded_dirs": list(self.excluded_dirs),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> MirrorRoot:
        exc = d.get("exceptions") or []
        dirs = d.get("excluded_dirs") or []
        assert isinstance(exc, list | tuple) and isinstance(dirs, list | tuple)
        return cls(
            str(d["path"]),
            bool(d["recursive"]),
            When(str(d["when"])),
            tuple(str(x) for x in exc),
            tuple(str(x) for x in dirs),
            str(d.get("source", "")),
        )


class ParamsView(Protocol):
    """What the mirror sets read of :class:`replication.params.ServerParams`."""

    def text(self, name: str) -> str: ...

    def paths(self, name: str) -> tuple[MirrorPath, ...]: ...

    def extensions(self, name: str) -> tuple[str, ...]: ...


def excluded_by_extension(name: str, exceptions: tuple[str, ...]) -> bool:
    """``report.TXT`` is excluded by ``txt``; a name without a dot has no extension."""
    if "." not in name.lstrip("."):
        return False
    ext = name.rsplit(".", 1)[1].casefold()
    return any(ext == e.casefold() for e in exceptions)


def _single(text: str) -> MirrorPath | None:
    """A path parameter (``Handler Path``): ``+`` in front makes it recursive."""
    t = text.strip()
    if not t:
        return None
    recursive = t.startswith("+")
    path = t[1:].strip() if recursive else t
    if not path.startswith("/"):
        return None
    return MirrorPath(path.rstrip("/") or "/", recursive)


def _under(path: str, top: str) -> bool:
    return path == top or top == "/" or path.startswith(top.rstrip("/") + "/")


def _subtract(roots: list[MirrorRoot], exclusions: tuple[MirrorPath, ...]) -> list[MirrorRoot]:
    """Drop roots at or below an excluded directory; exclude directories inside recursive roots."""
    out: list[MirrorRoot] = []
    for r in roots:
        if any(_under(r.path, ex.path) for ex in exclusions):
            continue
        inner = tuple(
            posixpath.relpath(ex.path, r.path)
            for ex in exclusions
            if ex.path != r.path and _under(ex.path, r.path)
        )
        if inner:
            r = MirrorRoot(r.path, r.recursive, r.when, r.exceptions, r.excluded_dirs + inner, r.source)
        out.append(r)
    return out


def _dedupe(roots: list[MirrorRoot]) -> tuple[MirrorRoot, ...]:
    """One root per path: continuous beats once, recursive beats flat; first source named."""
    by_path: dict[str, MirrorRoot] = {}
    for r in roots:
        old = by_path.get(r.path)
        if old is None:
            by_path[r.path] = r
            continue
        when = When.CONTINUOUS if When.CONTINUOUS in (old.when, r.when) else When.ONCE
        by_path[r.path] = MirrorRoot(
            r.path, old.recursive or r.recursive, when, old.exceptions, old.excluded_dirs, old.source
        )
    return tuple(by_path.values())


def mirror_roots(params: ParamsView, mode: Mode = Mode.NORMAL) -> tuple[MirrorRoot, ...]:
    """The mirrored directories for a backup in ``mode``, in parameter order, one per path."""
    if mode is Mode.UPGRADE_LOWER:
        exc = params.extensions("Custom Upgrade File Synchronization Exceptions")
        return _dedupe(
            [
                MirrorRoot(
                    p.path,
                    p.recursive,
                    When.CONTINUOUS,
                    exc,
                    (),
                    "Custom Upgrade File Synchronization Directories",
                )
                for p in params.paths("Custom Upgrade File Synchronization Directories")
            ]
        )
    exc = params.extensions("MirrorExceptions")
    roots: list[MirrorRoot] = []
    handler = _single(params.text("Handler Path"))
    if handler is not None and mode is Mode.NORMAL:
        roots.append(MirrorRoot(handler.path, handler.recursive, When.ONCE, exc, (), "Handler Path"))
    for name in ("Resource Path", "I3Tables Path"):
        p = _single(params.text(name))
        if p is not None:
            roots.append(MirrorRoot(p.path, True, When.CONTINUOUS, exc, (), name))
    for p in params.paths("CustomMirrorDir"):
        roots.append(MirrorRoot(p.path, p.recursive, When.CONTINUOUS, exc, (), "CustomMirrorDir"))
    for p in params.paths("InitialMirrorDir"):
        roots.append(MirrorRoot(p.path, p.recursive, When.ONCE, exc, (), "InitialMirrorDir"))
    if mode is Mode.UPGRADE_HIGHER:
        exclusions = params.paths("Switchover Upgrade Higher File Exclusions")
        if handler is not None:
            exclusions = (*exclusions, MirrorPath(handler.path, True))  # handler files never, in either state
        roots = _subtract(roots, exclusions)
    return _dedupe(roots)


# ------------------------------------------------------------------------------------ local paths


def local_root(node_root: str, logical: str) -> Path:
    """Where the logical directory ``logical`` lives on a node whose ``[mirror] root`` is ``node_root``."""
    if node_root in ("", "/"):
        return Path(logical)
    return Path(node_root) / logical.lstrip("/")


class PathRefused(ValueError):
    """A path that would escape its mirrored root; the message says why."""


def check_relative(rel: str) -> str:
    """A clean relative POSIX path, or :class:`PathRefused` (absolute, ``..``, empty parts, NUL)."""
    if not rel:
        raise PathRefused("empty path")
    if "\x00" in rel:
        raise PathRefused(f"{rel!r} contains a NUL byte")
    if rel.startswith("/"):
        raise PathRefused(f"{rel!r} is absolute; expected a path relative to the mirrored root")
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise PathRefused(f"{rel!r} has an empty, '.' or '..' component; it could leave the mirrored root")
    return rel


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def safe_local_path(root: Path, rel: str, resolved: dict[str, str] | None = None) -> Path:
    """``root/rel`` if it stays inside ``root`` once the existing symlinks of its parents are resolved.

    ``resolved`` caches resolved directories across calls (one batch of files): a deep tree is then
    resolved once per directory, not once per file."""
    check_relative(rel)
    cache = resolved if resolved is not None else {}
    real_root = cache.get("") or cache.setdefault("", os.path.realpath(root))
    target = root / rel
    parent_key = rel.rpartition("/")[0] or "."
    parent = cache.get(parent_key) or cache.setdefault(parent_key, os.path.realpath(target.parent))
    if not _inside(parent, real_root):
        raise PathRefused(f"{rel!r} leads outside {root} through a symbolic link (to {parent})")
    return target


def symlink_allowed(root: Path, rel: str, link_target: str) -> bool:
    """Does a symlink at ``root/rel`` pointing to ``link_target`` stay inside ``root``?"""
    if link_target.startswith("/"):
        return False  # absolute targets name the other server's layout; never followed
    base = posixpath.dirname(rel)
    joined = posixpath.normpath(posixpath.join(base, link_target))
    return not (joined == ".." or joined.startswith("../") or joined.startswith("/"))


# -------------------------------------------------------------------------------- initial sync


def initial_sync_failure(directory: str, bytes_left: int, files_left: int, limit: float) -> str:
    """The message of a start-up that ran out of time copying an InitialMirrorDir (spec lines 271-275);
    ``bytes_left`` < 0: the comparison had not even started."""
    left = (
        f"{bytes_left} bytes in {files_left} file(s) left to copy"
        if bytes_left >= 0
        else "its manifest had not arrived yet, so nothing was copied"
    )
    return (
        f"Initial mirror of {directory} not finished within the start-up time of {limit:g} s: "
        f"{left}; the backup start-up failed. "
        f"Raise [mirror] initial_sync_timeout or move large files out of InitialMirrorDir."
    )


@dataclass(frozen=True)
class Entry:
    """One manifest row: what a path is on the active."""

    path: str  # relative to the root
    type: str  # "file", "dir", "link"
    size: int
    mtime_ns: int
    mode: int
    hash: str  # content hash of a file ("" for dirs; the target for links)
    target: str = ""  # symlink target

    def as_row(self) -> dict[str, Any]:
        """The manifest row on the wire."""
        return {
            "path": self.path,
            "type": self.type,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "mode": self.mode,
            "hash": self.hash,
            "target": self.target,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Entry:
        """An entry from a wire row; :class:`ValueError` naming the field when one is missing or wrong."""
        try:
            return cls(
                str(row["path"]),
                str(row["type"]),
                int(row["size"]),
                int(row["mtime_ns"]),
                int(row["mode"]),
                str(row["hash"]),
                str(row.get("target", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad manifest row {dict(row)!r}: {exc!r}") from None


@dataclass(frozen=True)
class Plan:
    """What the backup does to make its copy match the active's manifest."""

    mkdirs: tuple[Entry, ...]
    fetch: tuple[Entry, ...]  # content differs or is missing
    meta: tuple[Entry, ...]  # content equal, mode or mtime differs
    links: tuple[Entry, ...]
    delete: tuple[str, ...]  # deepest first

    @property
    def bytes(self) -> int:
        return sum(e.size for e in self.fetch)


def plan_sync(remote: dict[str, Entry], local: dict[str, Entry]) -> Plan:
    """Compare manifests. A file is fetched when its type or size differ, or its content hash when both
    sides know it; otherwise (a hash of '' is unknown) the mtime decides, like rsync's quick check."""
    mkdirs, fetch, meta, links = [], [], [], []
    for path in sorted(remote):
        r = remote[path]
        lo = local.get(path)
        if r.type == "dir":
            if lo is None or lo.type != "dir":
                mkdirs.append(r)
            elif lo.mode != r.mode:
                meta.append(r)
        elif r.type == "link":
            if lo is None or lo.type != "link" or lo.target != r.target:
                links.append(r)
        else:
            same_content = (
                lo is not None
                and lo.type == "file"
                and lo.size == r.size
                and (lo.hash == r.hash if (r.hash and lo.hash) else lo.mtime_ns == r.mtime_ns)
            )
            if not same_content:
                fetch.append(r)
            elif lo is not None and (lo.mode != r.mode or lo.mtime_ns != r.mtime_ns):
                meta.append(r)
    delete = sorted((p for p in local if p not in remote), key=lambda p: (-p.count("/"), p))
    return Plan(tuple(mkdirs), tuple(fetch), tuple(meta), tuple(links), tuple(delete))
