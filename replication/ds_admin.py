"""Admin request handlers for the DS tree and the server parameters (pure functions over a store).

The node's admin socket routes ``ds.<op>`` requests to :func:`handle_ds` and ``param.<op>`` requests to
:func:`handle_param`. Both return plain JSON data (dict/list/str/int/float/bool/None) and raise
:class:`AdminError` with an operator-readable message on any problem.

Writes on the backup are refused unless ``args["local"]`` is true: as the specification warns,
configuration changes made on the backup apply only to that server and are overwritten by replication.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from replication.params import (
    CATALOG,
    ParamError,
    ServerParams,
    default_text,
    find_param,
    format_value,
    jsonable,
    param_key,
    validate,
)
from replication.store import (
    InvalidAttrs,
    InvalidImport,
    InvalidKey,
    Store,
    StoreError,
    split_key,
    validate_key,
)

__all__ = ["BACKUP_WRITE_WARNING", "DS_OPS", "PARAM_OPS", "AdminError", "handle_ds", "handle_param"]

DS_OPS = ("get", "ls", "set", "rm", "tree", "export", "import")
PARAM_OPS = ("list", "get", "set", "unset")

BACKUP_WRITE_WARNING = (
    "this server is the backup: configuration changes made on the backup apply only to this server "
    "(they are not mirrored to the active server) and are overwritten by replication from the active "
    "server, at the latest when the backup restarts"
)

TREE_MAX_NODES = 10_000


class AdminError(Exception):
    """A request cannot be served; the message is meant for the operator."""


# ------------------------------------------------------------------------------------------ helpers
def _arg(args: Mapping[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...,
         what: str = "") -> Any:
    if name not in args or args[name] is None:
        if default is ...:
            raise AdminError(f"missing argument {name!r}" + (f" ({what})" if what else ""))
        return default
    value = args[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        kinds = (kind,) if isinstance(kind, type) else kind
        expected = what or " or ".join(k.__name__ for k in kinds)
        raise AdminError(f"argument {name!r} must be {expected}, got {type(value).__name__} {value!r}")
    return value


def _key(args: Mapping[str, Any], default: str | None = None) -> str:
    raw = _arg(args, "key", str, default if default is not None else ..., "a DS path such as /Config/Users")
    try:
        return validate_key(raw)
    except InvalidKey as exc:
        raise AdminError(str(exc)) from None


def _check_write(args: Mapping[str, Any], is_active: bool) -> str | None:
    """Refuse writes on the backup unless ``local``; returns the warning to include in the answer."""
    if is_active:
        return None
    if not args.get("local"):
        raise AdminError(f"refused: {BACKUP_WRITE_WARNING}. Make the change on the active server, or repeat "
                         f"with --local to change this server only")
    return f"local change: {BACKUP_WRITE_WARNING}"


def _attrs_arg(args: Mapping[str, Any]) -> dict[str, list[str]]:
    raw = _arg(args, "attrs", dict, what="an object of attribute name -> value or list of values")
    attrs: dict[str, list[str]] = {}
    for name, value in raw.items():
        if isinstance(value, str):
            attrs[name] = [value]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            attrs[name] = list(value)
        else:
            raise AdminError(f"attribute {name!r}: value must be a string or a list of strings, "
                             f"got {value!r}")
    return attrs


def _with_warning(result: dict[str, Any], warning: str | None) -> dict[str, Any]:
    if warning:
        result["warning"] = warning
    return result


# ------------------------------------------------------------------------------------------------ DS
def handle_ds(store: Store, op: str, args: Mapping[str, Any], is_active: bool) -> dict[str, Any]:
    """Serve ``ds.<op>``. Ops and their args:

    * ``get {key}`` -> ``{key, attrs, children, hash}``
    * ``ls {key="/", limit=1000}`` -> ``{key, children: [{name, key, attrs, children}], total, truncated}``
      (``attrs``/``children`` are counts)
    * ``set {key, attrs: {name: str | [str]}, local?}`` -> ``{key, revision}``
    * ``rm {key, attr?, force?, local?}`` -> ``{key, revision, removed}``; ``rm /`` needs ``force``
    * ``tree {key="/", depth?, max_nodes?}`` -> ``{key, tree, nodes, truncated}``
    * ``export {key="/"}`` -> ``{key, data}`` (the document :meth:`Store.import_json` reads)
    * ``import {data, key="/", merge?, local?}`` -> ``{key, revision, keys}``
    """
    if not isinstance(args, Mapping):
        raise AdminError(f"arguments must be an object, got {type(args).__name__}")
    try:
        if op == "get":
            return _ds_get(store, args)
        if op == "ls":
            return _ds_ls(store, args)
        if op == "set":
            return _ds_set(store, args, is_active)
        if op == "rm":
            return _ds_rm(store, args, is_active)
        if op == "tree":
            return _ds_tree(store, args)
        if op == "export":
            return _ds_export(store, args)
        if op == "import":
            return _ds_import(store, args, is_active)
    except (InvalidKey, InvalidAttrs, InvalidImport, StoreError) as exc:
        raise AdminError(str(exc)) from None
    raise AdminError(f"unknown ds operation {op!r}; expected one of {', '.join(DS_OPS)}")


def _ds_get(store: Store, args: Mapping[str, Any]) -> dict[str, Any]:
    key = _key(args)
    node = store.node(key)
    if node is None:
        raise AdminError(f"no such DS key: {key}")
    attrs, digest = node
    return {"key": key, "attrs": attrs, "children": store.children(key), "hash": digest}


def _ds_ls(store: Store, args: Mapping[str, Any]) -> dict[str, Any]:
    key = _key(args, "/")
    limit = _arg(args, "limit", int, 1000, "an integer >= 1")
    if limit < 1:
        raise AdminError("argument 'limit' must be >= 1")
    if not store.exists(key):
        raise AdminError(f"no such DS key: {key}")
    names = store.children(key)
    rows = []
    for name in names[:limit]:
        child = key.rstrip("/") + "/" + name
        attrs = store.get(child) or {}
        rows.append({"name": name, "key": child, "attrs": len(attrs), "children": len(store.children(child))})
    return {"key": key, "children": rows, "total": len(names), "truncated": len(names) > limit}


def _ds_set(store: Store, args: Mapping[str, Any], is_active: bool) -> dict[str, Any]:
    key = _key(args)
    attrs = _attrs_arg(args)
    warning = _check_write(args, is_active)
    rev = store.set(key, attrs)
    return _with_warning({"key": key, "revision": rev}, warning)


def _ds_rm(store: Store, args: Mapping[str, Any], is_active: bool) -> dict[str, Any]:
    key = _key(args)
    attr = _arg(args, "attr", str, None, "an attribute name")
    if not store.exists(key):
        raise AdminError(f"no such DS key: {key}")
    if attr is not None:
        attrs = store.get(key) or {}
        if attr not in attrs:
            have = ", ".join(sorted(attrs)) or "none"
            raise AdminError(f"{key} has no attribute {attr!r} (it has: {have})")
        warning = _check_write(args, is_active)
        return _with_warning({"key": key, "attr": attr, "revision": store.delete_attr(key, attr),
                              "removed": 1}, warning)
    if key == "/" and not args.get("force"):
        raise AdminError("refusing to delete the whole DS tree ('/') without force")
    warning = _check_write(args, is_active)
    removed = store.count(key) - (1 if key == "/" else 0)
    return _with_warning({"key": key, "revision": store.delete(key), "removed": removed}, warning)


def _ds_tree(store: Store, args: Mapping[str, Any]) -> dict[str, Any]:
    key = _key(args, "/")
    depth = _arg(args, "depth", int, None, "an integer >= 0")
    max_nodes = _arg(args, "max_nodes", int, TREE_MAX_NODES, "an integer >= 1")
    if depth is not None and depth < 0:
        raise AdminError("argument 'depth' must be >= 0")
    if max_nodes < 1:
        raise AdminError("argument 'max_nodes' must be >= 1")
    rows = store.walk(key)
    if not rows:
        raise AdminError(f"no such DS key: {key}")
    base = len(split_key(key))
    root: dict[str, Any] = {}
    nodes: dict[str, dict[str, Any]] = {}
    count = 0
    truncated = False
    for path, attrs in rows:  # parents come before their children
        rel = len(split_key(path)) - base
        if depth is not None and rel > depth:
            truncated = True
            continue
        if count >= max_nodes:
            truncated = True
            break
        n: dict[str, Any] = {"name": path.rsplit("/", 1)[-1] or "/", "key": path, "attrs": attrs,
                             "children": []}
        count += 1
        nodes[path] = n
        if path == key:
            root = n
        else:
            parent = path.rsplit("/", 1)[0] or "/"
            if parent in nodes:
                nodes[parent]["children"].append(n)
    return {"key": key, "tree": root, "nodes": count, "truncated": truncated, "hash": store.subtree_hash(key)}


def _ds_export(store: Store, args: Mapping[str, Any]) -> dict[str, Any]:
    key = _key(args, "/")
    try:
        data = store.export_json(key)
    except KeyError:
        raise AdminError(f"no such DS key: {key}") from None
    return {"key": key, "data": data}


def _ds_import(store: Store, args: Mapping[str, Any], is_active: bool) -> dict[str, Any]:
    key = _key(args, "/")
    data = _arg(args, "data", dict, what="an export document (object)")
    merge = bool(args.get("merge", False))
    warning = _check_write(args, is_active)
    rev = store.import_json(data, key, merge=merge)
    return _with_warning({"key": key, "revision": rev, "keys": store.count(key), "merge": merge}, warning)


# ---------------------------------------------------------------------------------------- parameters
def handle_param(store: Store, params: ServerParams, op: str, args: Mapping[str, Any],
                 is_active: bool) -> dict[str, Any]:
    """Serve ``param.<op>``. Ops and their args:

    * ``list {}`` -> ``{params: [row...], unknown: [{name, stored, suggestion}]}``
    * ``get {name}`` -> ``row`` plus ``description``, ``spec_lines``, ``special``, ``type``
    * ``set {name, value, local?}`` -> ``row`` plus ``revision``, ``applies``; validated first
    * ``unset {name, local?}`` -> ``row`` plus ``revision`` (``None`` if it was not set), ``was_set``

    A row is ``{name, value, resolved, stored, default, range, dynamic, problem}``: ``value`` is the
    effective value, ``resolved`` the value after special values (e.g. Primary Monitor Timeout 0), and
    ``stored`` the text in the tree (``None`` = not set). ``params`` must read ``store``.
    """
    if params.store is not store:
        raise AdminError("internal error: the parameters object does not read this store")
    if not isinstance(args, Mapping):
        raise AdminError(f"arguments must be an object, got {type(args).__name__}")
    try:
        if op == "list":
            return {"params": [_row(params, name) for name in CATALOG], "unknown": [
                {"name": n, "stored": text, "suggestion": hint} for n, text, hint in params.unknown()]}
        if op == "get":
            return _param_get(params, args)
        if op == "set":
            return _param_set(params, args, is_active)
        if op == "unset":
            return _param_unset(params, args, is_active)
    except ParamError as exc:
        raise AdminError(str(exc)) from None
    raise AdminError(f"unknown param operation {op!r}; expected one of {', '.join(PARAM_OPS)}")


def _row(params: ServerParams, name: str) -> dict[str, Any]:
    p = find_param(name)
    eff = params.effective(p.name)
    return {
        "name": p.name,
        "value": jsonable(eff.value),
        "resolved": jsonable(params.resolved(p.name)),
        "stored": eff.stored,
        "default": default_text(p.name),
        "range": p.range_text,
        "dynamic": p.dynamic,
        "problem": eff.problem,
        "type": p.type.value,
        "source": eff.source,
    }


def _param_name(args: Mapping[str, Any]) -> str:
    return find_param(_arg(args, "name", str, what="a server parameter name")).name


def _param_get(params: ServerParams, args: Mapping[str, Any]) -> dict[str, Any]:
    p = CATALOG[_param_name(args)]
    row = _row(params, p.name)
    row.update({"description": p.description, "spec_lines": p.spec_lines, "special": p.special,
                "inherits": p.inherits, "required": p.required, "key": param_key(p.name)})
    return row


def _param_set(params: ServerParams, args: Mapping[str, Any], is_active: bool) -> dict[str, Any]:
    name = _param_name(args)
    value = _arg(args, "value", str, what="the value as text")
    typed = validate(name, value)  # raises before anything is written
    warning = _check_write(args, is_active)
    rev = params.set(name, value)
    row = _row(params, name)
    row.update({"revision": rev, "applies": "immediately" if CATALOG[name].dynamic else "after restart",
                "canonical": format_value(name, typed)})
    if not CATALOG[name].dynamic:
        note = "takes effect after the switchover service restarts"
        warning = f"{warning}; {note}" if warning else note
    return _with_warning(row, warning)


def _param_unset(params: ServerParams, args: Mapping[str, Any], is_active: bool) -> dict[str, Any]:
    name = _param_name(args)
    warning = _check_write(args, is_active)
    rev = params.unset(name)
    row = _row(params, name)
    row.update({"revision": rev, "was_set": rev is not None})
    return _with_warning(row, warning)

