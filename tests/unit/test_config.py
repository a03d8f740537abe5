"""Node configuration: strict TOML checked against the schema; every error names the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors.config import ConfigError, NodeConfig, load_config, parse_config

GOOD = """
[node]
name = "A"
data_dir = "data"
release = "2.1.0"

[server_a]
name = "A"
address = "10.0.0.1"
vswitch_port = 3633

[server_b]
name = "B"
address = "10.0.0.2"

[security]
insecure = true

[supervisor]
max_restarts = 3
window = 5

[parameters]
"Switchover Reconnect Timeout" = "45"
"""


def good_data() -> dict[str, Any]:
    return {
        "node": {"name": "A", "data_dir": "/var/lib/switchover"},
        "server_a": {"name": "A", "address": "10.0.0.1"},
        "server_b": {"name": "B", "address": "10.0.0.2"},
        "security": {"insecure": True},
    }


def write(tmp_path: Path, text: str, name: str = "node.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def rejected(data: dict[str, Any], *words: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    text = str(info.value)
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"
    return text


# ---------------------------------------------------------------------------------------- valid


def test_a_good_file_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert isinstance(cfg, NodeConfig)
    assert cfg.name == "A" and cfg.is_server_a
    assert cfg.me.address == "10.0.0.1" and cfg.peer.name == "B"
    assert cfg.server_a.vswitch_port == 3633 and cfg.server_b.notifier_port == 3634  # default
    assert cfg.release == "2.1.0"
    assert cfg.supervisor.max_restarts == 3 and cfg.supervisor.window == 5.0
    assert isinstance(cfg.supervisor.window, float)  # an integer is accepted for a number
    assert cfg.parameters == {"Switchover Reconnect Timeout": "45"}
    assert cfg.data_dir == str((tmp_path / "data").resolve())  # relative to the file
    assert cfg.source == str(tmp_path / "node.toml")


def test_node_b_sees_a_as_its_peer() -> None:
    data = good_data()
    data["node"]["name"] = "B"
    cfg = parse_config(data)
    assert not cfg.is_server_a and cfg.me.name == "B" and cfg.peer.name == "A"


def test_curve_key_files_instead_of_insecure() -> None:
    data = good_data()
    data["security"] = {"group_key": "/etc/switchover/keys/server-group.key_secret"}
    cfg = parse_config(data)
    assert not cfg.security.insecure
    assert cfg.security.clients_path == Path("/etc/switchover/keys/clients.toml")


def test_relative_key_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    text = GOOD.replace("insecure = true", 'group_key = "keys/g.key_secret"\nclient_key = "me.key_secret"')
    (tmp_path / "node.toml").write_text(text)
    cfg = load_config(tmp_path / "node.toml")
    assert cfg.security.group_key == str(tmp_path / "keys" / "g.key_secret")
    assert cfg.security.client_key == str(tmp_path / "me.key_secret")
    assert cfg.security.clients_path == tmp_path / "keys" / "clients.toml"


@pytest.mark.parametrize("inline", ["public_key", "secret_key"])
def test_inline_keys_are_refused_with_the_way_to_key_files(inline: str) -> None:
    data = good_data()
    data["security"] = {inline: "P" * 40, "group_key": "/k/server-group.key_secret"}
    rejected(data, f"security.{inline}", "key files", "switchover keys generate", "group_key")


# --------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("table", "key"),
    [("node", "name"), ("node", "data_dir"), ("server_a", "name"), ("server_b", "name")],
)
def test_missing_key(table: str, key: str) -> None:
    data = good_data()
    del data[table][key]
    rejected(data, f"{table}.{key}", "missing key")


def test_missing_table() -> None:
    data = good_data()
    del data["server_b"]
    rejected(data, "server_b", "missing table")
    del data["node"]
    rejected(data, "node", "missing table")


@pytest.mark.parametrize(
    ("table", "key", "value", "expected"),
    [
        ("server_a", "vswitch_port", "3633", "an integer"),
        ("server_a", "vswitch_port", True, "an integer"),
        ("server_a", "vswitch_port", 3633.0, "an integer"),
        ("server_b", "address", 10, "a string"),
        ("security", "insecure", "yes", "true or false"),
        ("supervisor", "window", "10s", "a number"),
        ("timing", "hello_interval", [1], "a number"),
        ("node", "release", 1.0, "a string"),
    ],
)
def test_bad_type(table: str, key: str, value: Any, expected: str) -> None:
    data = good_data()
    data.setdefault(table, {})[key] = value
    rejected(data, f"{table}.{key}", expected)


def test_a_table_where_a_value_is_expected_and_the_reverse() -> None:
    data = good_data()
    data["server_a"] = "A"
    rejected(data, "server_a", "expected a table")
    data = good_data()
    data["parameters"] = {"x": 1}
    rejected(data, "parameters", "table of strings")


@pytest.mark.parametrize(
    ("table", "key", "suggestion"),
    [
        ("server_a", "vswitch_prot", "vswitch_port"),
        ("timing", "hello_intervall", "hello_interval"),
        ("security", "insecur", "insecure"),
        ("node", "relase", "release"),
    ],
)
def test_unknown_key_with_did_you_mean(table: str, key: str, suggestion: str) -> None:
    data = good_data()
    data.setdefault(table, {})[key] = 1
    rejected(data, f"{table}.{key}", "unknown key", f"did you mean {suggestion!r}")


def test_unknown_key_without_a_close_match_lists_the_known_ones() -> None:
    data = good_data()
    data["server_a"]["zzzz"] = 1
    rejected(data, "server_a.zzzz", "unknown key", "known:", "vswitch_port")


def test_unknown_table() -> None:
    data = good_data()
    data["timings"] = {}
    rejected(data, "timings", "unknown table")


def test_a_table_inside_node_is_refused() -> None:
    data = good_data()
    data["node"]["security"] = {"insecure": True}
    rejected(data, "node.security", "as a table")


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="cannot read config file") as info:
        load_config(missing)
    assert "nope.toml" in str(info.value)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path)  # a directory


def test_file_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00name = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "binary.toml" in str(info.value) and "UTF-8" in str(info.value)


@pytest.mark.parametrize("text", ['[node\nname = "A"', 'name = "A" "B"', "[node]\nname = \n", "= 1"])
def test_invalid_toml(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_node_section_that_is_not_a_table(tmp_path: Path) -> None:
    rejected({"node": "A"}, "node", "table")
    with pytest.raises(ConfigError, match="node"):
        load_config(write(tmp_path, 'node = "A"\n'))


@pytest.mark.parametrize("name", ["C", "a", ""])
def test_node_name_not_a_or_b(name: str) -> None:
    data = good_data()
    data["node"]["name"] = name
    rejected(data, "node.name", repr(name))


def test_both_servers_with_the_same_name() -> None:
    data = good_data()
    data["server_b"]["name"] = "A"
    rejected(data, "server_b.name", "differ")


@pytest.mark.parametrize("port", [0, -1, 65536, 100000])
@pytest.mark.parametrize(("table", "key"), [("server_a", "vswitch_port"), ("server_b", "notifier_aux_port"),
                                          ("server_a", "ds_port")])
def test_port_out_of_range(table: str, key: str, port: int) -> None:
    data = good_data()
    data[table][key] = port
    rejected(data, f"{table}.{key}", str(port), "1-65535")


@pytest.mark.parametrize(
    "security",
    [
        {},
        {"insecure": False},
        {"clients": "/k/clients.toml"},
        {"group_key": ""},
    ],
)
def test_no_curve_keys_and_not_insecure(security: dict[str, Any]) -> None:
    data = good_data()
    data["security"] = security
    rejected(data, "security.group_key", "switchover keys generate", "insecure = true")


def test_no_security_table_at_all_means_curve_and_needs_keys() -> None:
    data = good_data()
    del data["security"]
    rejected(data, "security.group_key")


def test_bad_log_level() -> None:
    data = good_data()
    data["node"]["log_level"] = "LOUD"
    rejected(data, "log_level", "LOUD")


@pytest.mark.parametrize(("key", "value"), [("max_restarts", -1), ("window", 0), ("window", -2.5)])
def test_bad_supervisor_intensity(key: str, value: Any) -> None:
    data = good_data()
    data["supervisor"] = {key: value}
    rejected(data, "supervisor", key)


# ------------------------------------------- server parameters and addresses (issue 9, defect 5)


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        (
            "Switchover Reconect Timeout",
            "30",
            ("unknown server parameter", "did you mean 'Switchover Reconnect Timeout'"),
        ),
        ("No Such Thing", "1", ("unknown server parameter", "param list")),
        ("Switchover Reconnect Timeout", "soon", ("'soon' is not valid", "expected")),
    ],
)
def test_parameters_are_checked_by_the_catalog(name: str, value: str, words: tuple[str, ...]) -> None:
    data = good_data()
    data["parameters"] = {name: value}
    rejected(data, f"parameters.{name}", *words)


def test_a_known_parameter_in_any_case_is_accepted() -> None:
    data = good_data()
    data["parameters"] = {"switchover reconnect timeout": "45"}
    assert parse_config(data).parameters == {"switchover reconnect timeout": "45"}


def test_paths_take_path_parameters_only() -> None:
    data = good_data()
    data["paths"] = {"Switchover Reconnect Timeout": "/x"}
    rejected(data, "paths.Switchover Reconnect Timeout", "not a path parameter")


@pytest.mark.parametrize(
    "address", ["127.0.0.300", "1.2.3", "", "  ", "host name", "-bad-.example", "a..b", "x" * 300]
)
def test_a_bad_address_is_a_config_error(address: str) -> None:
    data = good_data()
    data["server_b"]["address"] = address
    rejected(data, "server_b.address", "expected e.g.")


@pytest.mark.parametrize("address", ["10.0.0.1", "::1", "server-a", "server-a.example.com", "localhost"])
def test_good_addresses(address: str) -> None:
    data = good_data()
    data["server_b"]["address"] = address
    assert parse_config(data).server_b.address == address


def test_the_shipped_examples_are_secure_by_default() -> None:
    examples = Path(__file__).resolve().parents[2] / "deploy" / "examples"
    for name in ("server-a.toml", "server-b.toml"):
        cfg = load_config(examples / name)
        assert not cfg.security.insecure, name
        assert cfg.security.group_key.endswith("server-group.key_secret"), name


def test_isolation_policy_defaults_to_step_down_and_accepts_keep_serving() -> None:
    assert parse_config(good_data()).roles.isolation == "step-down"
    data = good_data()
    data["roles"] = {"isolation": "keep-serving"}
    assert parse_config(data).roles.isolation == "keep-serving"


def test_an_unknown_isolation_policy_is_refused_with_the_choices() -> None:
    data = good_data()
    data["roles"] = {"isolation": "fence"}
    rejected(data, "roles.isolation", "'fence'", "'step-down'", "'keep-serving'")
