"""Node configuration: a TOML file checked strictly against a schema.

Every error names the key and says what was wrong and what was expected: a missing key,
a value of the wrong type, an unknown key (with a suggestion), an unreadable file, an address
that is neither an IP address nor a host name, a server parameter under ``[parameters]`` or
``[paths]`` that the catalog (:mod:`replication.params`, the one parser of parameter names and
values) does not know or whose value it refuses.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from transport.security import KeyFileError, Security, client_security


class ConfigError(ValueError):
    """The configuration cannot be used; the text names the key and the problem."""


@dataclass(frozen=True)
class ServerConfig:
    name: str
    address: str = "127.0.0.1"
    vswitch_port: int = 3633
    notifier_port: int = 3634
    notifier_aux_port: int = 3635
    ds_port: int = 3636  # DS replication: the active's DSPublisher (issue 10)
    file_port: int = 3637  # the File Monitor's manifests, file content and pushed changes (active side)
    interaction_port: int = 3638  # InteractionPublisher on the active: applications and the backup's shadow


#: every TCP port a server listens on, in declaration order: the config check, the node's start-up port
#: check and the test/pair port allocation all follow this one list (a new ``*_port`` field joins it)
SERVER_PORTS: tuple[str, ...] = tuple(f.name for f in fields(ServerConfig) if f.name.endswith("_port"))


@dataclass(frozen=True)
class SecurityConfig:
    """``[security]``: CURVE key files (paths; relative ones are relative to the config file)."""

    insecure: bool = False  # plain text: no encryption, no authentication (a warning at every start)
    group_key: str = ""  # the server group keypair's secret file (NAME.key_secret); clients: the .key
    clients: str = ""  # the authorized clients file; default: clients.toml beside group_key
    client_key: str = ""  # the key local tools (ctl, module, apps) use; default: the group key
    # no longer accepted (secrets never inline); kept as fields to give a clear error
    public_key: str = ""
    secret_key: str = ""

    @property
    def clients_path(self) -> Path:
        return Path(self.clients) if self.clients else Path(self.group_key).parent / "clients.toml"


@dataclass(frozen=True)
class SupervisorConfig:
    max_restarts: int = 5
    window: float = 10.0


@dataclass(frozen=True)
class HooksConfig:
    dir: str = ""  # holds commence.d/ and discontinue.d/; default: <data_dir>/hooks
    timeout: float = 30.0


@dataclass(frozen=True)
class HttpConfig:
    """The node's HTTP endpoint: /health, /primary, /backup, /metrics (actors/http_endpoint.py)."""

    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = 9633


@dataclass(frozen=True)
class TimingConfig:
    hello_interval: float = 0.5
    peer_timeout: float = 1.5
    startup_wait: float = 3.0
    discontinue_timeout: float = 3.0


ISOLATION_POLICIES = ("step-down", "keep-serving")


@dataclass(frozen=True)
class RolesConfig:
    """Node-local role behaviour. ``isolation``: what this node does when it is the active and loses both
    the backup and its own network: ``step-down`` (stop serving before the backup can take over) or
    ``keep-serving`` (the specification's behaviour: availability first, two actives possible)."""

    isolation: str = "step-down"


@dataclass(frozen=True)
class MirrorConfig:
    """File mirroring on this node (see :mod:`replication.mirror_sets`)."""

    root: str = "/"  # every mirrored path lives under this directory on this node (a pair on one machine)
    initial_sync_timeout: float = 600.0  # the backup's start-up time for the once-only directories
    full_scan_interval: float = 300.0  # the backup compares whole manifests this often (safety net)
    debounce: float = 0.05  # a file modified without being closed is sent once quiet this long
    chunk_size: int = 1024 * 1024  # bytes per content request
    window: int = 8  # content requests in flight at once (flow control)
    request_timeout: float = 10.0  # a manifest/content request unanswered this long is asked again


@dataclass(frozen=True)
class NodeConfig:
    name: str
    data_dir: str
    server_a: ServerConfig
    server_b: ServerConfig
    release: str = "1.0.0"
    log_level: str = "INFO"
    parameters: dict[str, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    hooks: HooksConfig = field(default_factory=HooksConfig)
    timing: TimingConfig = field(default_factory=TimingConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    mirror: MirrorConfig = field(default_factory=MirrorConfig)
    roles: RolesConfig = field(default_factory=RolesConfig)
    source: str = ""

    @property
    def is_server_a(self) -> bool:
        return self.name == self.server_a.name

    @property
    def me(self) -> ServerConfig:
        return self.server_a if self.is_server_a else self.server_b

    @property
    def peer(self) -> ServerConfig:
        return self.server_b if self.is_server_a else self.server_a

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def hooks_path(self) -> Path:
        """Holds commence.d/ and discontinue.d/ (default: <data_dir>/hooks)."""
        return Path(self.hooks.dir) if self.hooks.dir else Path(self.data_dir) / "hooks"


_TABLES = (
    "server_a",
    "server_b",
    "parameters",
    "paths",
    "security",
    "supervisor",
    "hooks",
    "timing",
    "http",
    "mirror",
    "roles",
)
_LOG_LEVELS = {"TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"}
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _convert(key: str, value: Any, tp: Any) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in _TYPE_NAMES:
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        raise ConfigError(f"{key}: expected {_TYPE_NAMES[tp]}, got {type(value).__name__} {value!r}")
    if getattr(tp, "__origin__", None) is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{key}: expected a table of strings")
        return dict(value)
    return _build(key, value, tp)


def _dotted(section: str, name: str) -> str:
    """The name of a key as the operator writes it: ``table.key``; keys of the root are in [node]."""
    if section:
        return f"{section}.{name}"
    return name if name in _TABLES else f"node.{name}"


def _build(section: str, data: Any, cls: Any) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{section}: expected a table, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if f.name != "source"}
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"
            raise ConfigError(f"{_dotted(section, key)}: unknown key{hint}")
    values: dict[str, Any] = {}
    for name, f in known.items():
        dotted = _dotted(section, name)
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                what = f"missing table [{name}]" if not section and name in _TABLES else "missing key"
                raise ConfigError(f"{dotted}: {what}")
            continue
        values[name] = _convert(dotted, data[name], hints[name])
    return cls(**values)


_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def address_problem(address: str) -> str | None:
    """Why ``address`` is neither an IP address nor a host name (None when it is one)."""
    if not address.strip():
        return "is empty"
    try:
        ipaddress.ip_address(address)
        return None
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", address):
        return "is not a valid IPv4 address"
    labels = address.rstrip(".").split(".")
    if len(address) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        return "is not an IP address or a host name"
    return None


def _check_parameters(cfg: NodeConfig) -> None:
    """Names and values of ``[parameters]`` and ``[paths]``, checked by the parameter catalog
    (imported here: the control panel reads a config for addresses only and stays fast)."""
    from replication.params import PATH_PARAMS, ParamError, find_param, validate

    for table, values in (("parameters", cfg.parameters), ("paths", cfg.paths)):
        for name, value in values.items():
            try:
                canonical = find_param(name).name
                if table == "paths" and canonical not in PATH_PARAMS:
                    raise ParamError(
                        f"{name!r} is not a path parameter; expected one of {', '.join(PATH_PARAMS)}"
                    )
                validate(canonical, value)
            except ParamError as exc:
                raise ConfigError(f"{table}.{name}: {exc}") from None


def parse_config(
    data: dict[str, Any], source: str = "<config>", *, check_parameters: bool = True
) -> NodeConfig:
    """The node configuration in ``data``; ``check_parameters=False`` skips the server parameters'
    catalog check (for clients that only need the addresses and keys: ``ctl``)."""
    node = data.get("node")
    if node is None:
        raise ConfigError("node: missing table [node]")
    if not isinstance(node, dict):
        raise ConfigError(f"node: expected a table [node], got {type(node).__name__}")
    extra = set(data) - {"node", *_TABLES}
    if extra:
        raise ConfigError(f"{sorted(extra)[0]}: unknown table")
    merged = dict(node)
    for table in _TABLES:
        if table in data:
            if table in merged:
                raise ConfigError(f"node.{table}: give it as a table [{table}], not inside [node]")
            merged[table] = data[table]
    cfg: NodeConfig = _build("", merged, NodeConfig)
    if cfg.name not in (cfg.server_a.name, cfg.server_b.name):
        raise ConfigError(
            f"node.name: {cfg.name!r} is neither server_a.name {cfg.server_a.name!r} "
            f"nor server_b.name {cfg.server_b.name!r}"
        )
    if cfg.server_a.name == cfg.server_b.name:
        raise ConfigError("server_b.name: must differ from server_a.name")
    if cfg.log_level.upper() not in _LOG_LEVELS:
        raise ConfigError(f"node.log_level: {cfg.log_level!r} is not one of {', '.join(sorted(_LOG_LEVELS))}")
    for srv in ("server_a", "server_b"):
        s: ServerConfig = getattr(cfg, srv)
        problem = address_problem(s.address)
        if problem is not None:
            raise ConfigError(
                f'{srv}.address: {s.address!r} {problem} (expected e.g. "10.0.0.1" or "server-a.example.com")'
            )
        for port_key in SERVER_PORTS:
            port = getattr(s, port_key)
            if not 0 < port < 65536:
                raise ConfigError(f"{srv}.{port_key}: {port} is not a TCP port (1-65535)")
    if not 0 < cfg.http.port < 65536:
        raise ConfigError(f"http.port: {cfg.http.port} is not a TCP port (1-65535)")
    sec = cfg.security
    for inline in ("public_key", "secret_key"):
        if getattr(sec, inline):
            raise ConfigError(
                f"security.{inline}: keys are no longer written into the config; keep them in key files "
                "(`switchover keys generate --dir DIR`) and set security.group_key = "
                '"DIR/server-group.key_secret"'
            )
    if not sec.insecure and not sec.group_key:
        raise ConfigError(
            "security.group_key: missing: the server group key file (`switchover keys generate --dir DIR` "
            "writes DIR/server-group.key_secret); or set security.insecure = true to run plain text"
        )
    if cfg.supervisor.max_restarts < 0 or cfg.supervisor.window <= 0:
        raise ConfigError("supervisor: max_restarts must be >= 0 and window > 0")
    m = cfg.mirror
    if not m.root.startswith("/"):
        raise ConfigError(
            f'mirror.root: {m.root!r} is not an absolute directory (expected e.g. "/" or "/srv/b")'
        )
    if m.initial_sync_timeout <= 0 or m.full_scan_interval <= 0 or m.debounce < 0 or m.request_timeout <= 0:
        raise ConfigError(
            "mirror: initial_sync_timeout, full_scan_interval and request_timeout must be > 0, debounce >= 0"
        )
    if not 4096 <= m.chunk_size <= 2 * 1024 * 1024 or not 1 <= m.window <= 256:
        raise ConfigError("mirror: chunk_size must be 4096-2097152 bytes and window 1-256")
    if cfg.roles.isolation not in ISOLATION_POLICIES:
        raise ConfigError(
            f"roles.isolation: {cfg.roles.isolation!r} is not one of {', '.join(map(repr, ISOLATION_POLICIES))}"
        )
    if check_parameters:
        _check_parameters(cfg)
    object.__setattr__(cfg, "source", source)
    return cfg


def load_config(path: str | Path, *, check_parameters: bool = True) -> NodeConfig:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config file {p}: not UTF-8 text ({exc.reason})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    cfg = parse_config(data, str(p), check_parameters=check_parameters)
    if not Path(cfg.data_dir).is_absolute():
        object.__setattr__(cfg, "data_dir", str((p.parent / cfg.data_dir).resolve()))
    sec = cfg.security

    def absolute(value: str) -> str:
        return str((p.parent / value).resolve()) if value and not Path(value).is_absolute() else value

    object.__setattr__(
        cfg,
        "security",
        replace(
            sec,
            group_key=absolute(sec.group_key),
            clients=absolute(sec.clients),
            client_key=absolute(sec.client_key),
        ),
    )
    return cfg


def tool_security(cfg: NodeConfig, key: str | None = None) -> Security:
    """The security of a local tool (ctl, module, application) of this node: the key given
    (``--key``), else ``$SWITCHOVER_KEY``, else ``[security] client_key``, else the group key."""
    chosen = key or os.environ.get("SWITCHOVER_KEY", "") or cfg.security.client_key
    try:
        return client_security(cfg.security.insecure, cfg.security.group_key, chosen)
    except KeyFileError as exc:
        raise ConfigError(str(exc)) from None
