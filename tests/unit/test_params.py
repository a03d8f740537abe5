"""The server parameter catalog: names, types, defaults, ranges, special values, fallbacks, subscriptions."""

from __future__ import annotations

import threading

import pytest
from loguru import logger

from replication.params import (
    CATALOG,
    DYNAMIC_PARAMS,
    PARAMS_ROOT,
    UPGRADE_LOWER_BUILTIN_DS_PATHS,
    MirrorPath,
    ParamChange,
    ParamError,
    ParamType,
    find_param,
    format_value,
    param_key,
    parse_value,
    seed_from_config,
    validate,
)
from replication.store import SetOp, Store


@pytest.fixture
def warnings():
    records: list[str] = []
    handler = logger.add(lambda m: records.append(m.record["message"]), level="WARNING")
    yield records
    logger.remove(handler)


def put(store: Store, name: str, value: str) -> None:
    store.set(f"{PARAMS_ROOT}/{name}", {"value": [value]})


# ------------------------------------------------------------------------------------------- catalog
SPEC_NAMES = [
    "SwitchoverServer A",
    "SwitchoverServer B",
    "Callback Interaction Recovery Enabled",
    "Chat Interaction Recovery Enabled",
    "CustomMirrorDir",
    "Custom Upgrade Attribute Exceptions",
    "Custom Upgrade File Synchronization Directories",
    "Custom Upgrade File Synchronization Exceptions",
    "Custom Upgrade Synchronization Directories",
    "Directmessage Interaction Recovery Enabled",
    "ForceSwitchoverFQDNs",
    "InitialMirrorDir",
    "Mail Interaction Recovery Enabled",
    "Mail Interaction Recovery Filter Enabled",
    "MirrorExceptions",
    "Server A Address",
    "Server B Address",
    "SMS Interaction Recovery Enabled",
    "Socialconversation Interaction Recovery Enabled",
    "StatServer_DisableQPSLoggingOnBackup",
    "Switchover Disable Gateway Ping",
    "Switchover DS Request Timeout",
    "Switchover File Monitor Health Check Interval",
    "Switchover File Monitor Health Check Timeout",
    "Switchover IP Retry Delay",
    "Switchover IP Timeout",
    "Switchover Max Restarts",
    "Switchover Max Restarts Period",
    "Switchover Max Sequential Restarts",
    "Switchover Max TS Failures",
    "Switchover Monitoring",
    "Switchover NetTest A",
    "Switchover NetTest B",
    "Switchover NetTest Timeout",
    "Switchover Notifier Reconnect Delay",
    "Switchover Ping on Aux Connection",
    "Switchover Primary Monitor Ping Delay",
    "Switchover Primary Monitor Retry Ping Delay",
    "Switchover Primary Monitor Retry Count",
    "Switchover Primary Monitor Timeout",
    "Switchover QoS DSCP",
    "Switchover Reconnect Timeout",
    "Switchover TS Failure Retry Delay",
    "Switchover TS Timeout",
    "Switchover Unreachable Primary Ping Count",
    "Switchover Unreachable Primary Ping Delay",
    "Switchover Use QoS For Ping",
    "SwitchoverServerFQDN A",
    "SwitchoverServerFQDN B",
    "Switchover Upgrade Higher DS Exclusions",
    "Switchover Upgrade Higher File Exclusions",
    "Handler Path",
    "Resource Path",
    "I3Tables Path",
]


def test_the_catalog_has_every_parameter_of_the_specification_under_its_exact_name():
    assert sorted(CATALOG) == sorted(SPEC_NAMES)


def test_exactly_the_four_parameters_the_specification_lists_are_dynamic():
    assert DYNAMIC_PARAMS == {
        "CustomMirrorDir",
        "Switchover Max TS Failures",
        "Switchover TS Failure Retry Delay",
        "Switchover TS Timeout",
    }
    assert all(CATALOG[n].dynamic for n in DYNAMIC_PARAMS)


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_catalog_entry_parses_its_default(name):
    p = CATALOG[name]
    value, problem = parse_value(name, None)
    assert problem is None
    if p.default or not p.nonempty:
        assert validate(name, p.default) == value
    assert p.description and p.spec_lines


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("Switchover TS Timeout", 10.0),
        ("Switchover TS Failure Retry Delay", 1.0),
        ("Switchover Max TS Failures", 2),
        ("Switchover DS Request Timeout", 120.0),
        ("Switchover File Monitor Health Check Interval", 60.0),
        ("Switchover File Monitor Health Check Timeout", 10.0),
        ("Switchover Max Restarts", 2),
        ("Switchover Max Restarts Period", 300.0),
        ("Switchover Max Sequential Restarts", 2),
        ("Switchover Monitoring", "TsServer"),
        ("Switchover NetTest Timeout", 1.0),
        ("Switchover Notifier Reconnect Delay", 5.0),
        ("Switchover Primary Monitor Ping Delay", 0.0),
        ("Switchover Primary Monitor Retry Ping Delay", 0.0),
        ("Switchover Primary Monitor Retry Count", 2),
        ("Switchover Primary Monitor Timeout", 0.0),
        ("Switchover QoS DSCP", 34),
        ("Switchover Reconnect Timeout", 30.0),
        ("Switchover Unreachable Primary Ping Delay", 10.0),
        ("Switchover Disable Gateway Ping", True),
        ("Switchover Ping on Aux Connection", False),
        ("Switchover Use QoS For Ping", False),
        ("Mail Interaction Recovery Enabled", False),
        ("ForceSwitchoverFQDNs", False),
        ("CustomMirrorDir", ()),
    ],
)
def test_defaults_are_the_specifications(name, default):
    assert parse_value(name, None)[0] == default


def test_names_are_found_case_insensitively_and_unknown_names_get_a_suggestion():
    assert find_param("switchover use qos for ping").name == "Switchover Use QoS For Ping"
    assert find_param("  Switchover TS Timeout ").name == "Switchover TS Timeout"
    with pytest.raises(ParamError, match="did you mean 'Switchover TS Timeout'"):
        find_param("Switchover TS Timout")
    with pytest.raises(ParamError, match="renamed 'Switchover Reconnect Timeout'"):
        find_param("Switchover Reconnect Delay")


# ---------------------------------------------------------------------------------------------- ranges
RANGES = [
    # name, lowest accepted, highest accepted (None: no maximum), rejected below, rejected above
    ("Switchover TS Timeout", "5", "60", "4.9", "60.5"),
    ("Switchover Notifier Reconnect Delay", "5", "60", "4", "61"),
    ("Switchover Primary Monitor Retry Count", "1", "50", "0", "51"),
    ("Switchover Primary Monitor Ping Delay", "0", "300", "-1", "300.1"),
    ("Switchover Primary Monitor Retry Ping Delay", "0", "300", "-0.5", "301"),
    ("Switchover Primary Monitor Timeout", "0", "300", "-1", "301"),
    ("Switchover Unreachable Primary Ping Delay", "1", "300", "0.5", "301"),
    ("Switchover TS Failure Retry Delay", "0.01", None, "0", None),
    ("Switchover Max TS Failures", "1", None, "0", None),
    ("Switchover Reconnect Timeout", "0", None, "-1", None),
    ("Switchover QoS DSCP", "0", "63", "-1", "64"),
    ("Switchover Unreachable Primary Ping Count", "-1", None, "-2", None),
]


@pytest.mark.parametrize(("name", "lo", "hi", "below", "above"), RANGES)
def test_each_parameter_accepts_its_range_and_refuses_values_outside_it(name, lo, hi, below, above):
    validate(name, lo)
    if hi is not None:
        validate(name, hi)
    else:
        validate(name, "100000")  # no maximum
    with pytest.raises(ParamError) as exc:
        validate(name, below)
    assert name in str(exc.value) and CATALOG[name].range_text in str(exc.value)
    if above is not None:
        with pytest.raises(ParamError):
            validate(name, above)


@pytest.mark.parametrize(
    "name",
    [
        "Switchover DS Request Timeout",
        "Switchover NetTest Timeout",
        "Switchover Reconnect Timeout",
        "Switchover TS Failure Retry Delay",
        "Switchover IP Retry Delay",
        "Switchover IP Timeout",
        "Switchover Primary Monitor Ping Delay",
        "Switchover Primary Monitor Retry Ping Delay",
        "Switchover Primary Monitor Timeout",
        "Switchover File Monitor Health Check Timeout",
        "Switchover File Monitor Health Check Interval",
        "Switchover Max Restarts Period",
    ],
)
def test_time_parameters_without_a_floor_in_the_specification_accept_decimal_seconds(name):
    assert validate(name, "0.2") == pytest.approx(0.2)
    assert validate(name, ".5") == pytest.approx(0.5)


def test_time_parameters_with_a_floor_refuse_decimals_below_it_and_accept_decimals_within_it():
    with pytest.raises(ParamError, match="5-60"):
        validate("Switchover TS Timeout", "0.2")
    assert validate("Switchover TS Timeout", "7.5") == 7.5
    with pytest.raises(ParamError):
        validate("Switchover Notifier Reconnect Delay", "0.2")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Yes", True),
        ("no", False),
        ("1", True),
        ("0", False),
        ("TRUE", True),
        ("false", False),
        ("On", True),
        ("off", False),
        ("2", True),
        (" yes ", True),
        ("-1", True),
    ],
)
def test_booleans_accept_yes_no_1_0_true_false_case_insensitively_and_non_zero_integers(text, value):
    assert validate("Mail Interaction Recovery Enabled", text) is value


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("Switchover TS Timeout", "ten"),
        ("Switchover TS Timeout", "1e1"),
        ("Switchover TS Timeout", "nan"),
        ("Switchover Max TS Failures", "2.5"),
        ("Switchover Use QoS For Ping", "maybe"),
        ("Switchover Monitoring", "  "),
        ("SwitchoverServer A", ""),
        ("Handler Path", "relative/dir"),
        ("CustomMirrorDir", "+/ok; C:\\I3\\IC\\Flows"),
        ("MirrorExceptions", "txt; a/b"),
        ("Custom Upgrade Attribute Exceptions", "User Workgroups"),
        ("Switchover TS Timeout", "10\x00"),
    ],
)
def test_validate_refuses_malformed_values_and_says_what_is_expected(name, text):
    with pytest.raises(ParamError) as exc:
        validate(name, text)
    assert CATALOG[name].name in str(exc.value)
    assert "expected" in str(exc.value) or "NUL" in str(exc.value)


# ----------------------------------------------------------------------------------------- list types
def test_path_lists_split_on_semicolons_and_plus_means_recursive():
    value = validate("CustomMirrorDir", " +/srv/app/data ;/srv/app/static/; ;+ /srv/x")
    assert value == (
        MirrorPath("/srv/app/data", True),
        MirrorPath("/srv/app/static", False),
        MirrorPath("/srv/x", True),
    )
    assert format_value("CustomMirrorDir", value) == "+/srv/app/data; /srv/app/static; +/srv/x"


def test_extension_lists_accept_the_specifications_form():
    assert validate("MirrorExceptions", "txt; gif; myext") == ("txt", "gif", "myext")
    assert validate("MirrorExceptions", ".tmp;*.bak") == ("tmp", "bak")


def test_ds_path_lists_accept_the_specifications_variables_and_backslashes():
    value = validate(
        "Custom Upgrade Synchronization Directories", r"${CONFIG}\Users; ${SERVER}\Workstations;/X/Y"
    )
    assert value == ("/Config/Users", "/Server/Workstations", "/X/Y")


def test_attribute_exception_lists_parse_classes_and_attributes():
    value = validate(
        "Custom Upgrade Attribute Exceptions",
        "User(Workgroups, Extension);Workgroup(Members, View User Queue List)",
    )
    assert value == (
        ("User", ("Workgroups", "Extension")),
        ("Workgroup", ("Members", "View User Queue List")),
    )


# --------------------------------------------------------------------------------------- typed reading
def test_stored_values_are_read_typed(store, params):
    put(store, "Switchover TS Timeout", "7.5")
    put(store, "Switchover Max TS Failures", "4")
    put(store, "Switchover Use QoS For Ping", "yes")
    put(store, "CustomMirrorDir", "+/srv/a")
    put(store, "Switchover NetTest A", "10.0.0.1")
    assert params.seconds("Switchover TS Timeout") == 7.5
    assert params.integer("Switchover Max TS Failures") == 4
    assert params.flag("Switchover Use QoS For Ping") is True
    assert params.paths("CustomMirrorDir") == (MirrorPath("/srv/a", True),)
    assert params.text("Switchover NetTest A") == "10.0.0.1"
    assert params.stored("Switchover TS Timeout") == "7.5"
    assert params.stored("Switchover NetTest B") is None
    with pytest.raises(ParamError):
        params.seconds("Switchover Max TS Failures")


def test_names_stored_in_another_case_are_found(store, params):
    put(store, "Switchover Use QoS for Ping", "1")
    assert params.flag("Switchover Use QoS For Ping") is True


def test_an_unparsable_stored_value_gives_the_default_and_a_warning(store, params, warnings):
    put(store, "Switchover TS Timeout", "ten seconds")
    assert params.seconds("Switchover TS Timeout") == 10.0
    assert len(warnings) == 1
    assert "Switchover TS Timeout" in warnings[0] and "ten seconds" in warnings[0] and "'10'" in warnings[0]
    params.seconds("Switchover TS Timeout")
    assert len(warnings) == 1  # once per bad value


def test_an_out_of_range_value_gives_the_nearest_bound_and_a_warning(store, params, warnings):
    put(store, "Switchover TS Timeout", "100")
    put(store, "Switchover Primary Monitor Retry Count", "0")
    assert params.seconds("Switchover TS Timeout") == 60.0
    assert params.integer("Switchover Primary Monitor Retry Count") == 1
    assert any("'100'" in w and "maximum 60" in w and "using the bound '60'" in w for w in warnings)
    assert any("Retry Count" in w and "'0'" in w and "minimum 1" in w for w in warnings)


def test_a_value_violating_a_strict_bound_gives_the_default(store, params, warnings):
    put(store, "Switchover TS Failure Retry Delay", "0")
    put(store, "Switchover Max TS Failures", "0")
    assert params.seconds("Switchover TS Failure Retry Delay") == 1.0
    assert params.integer("Switchover Max TS Failures") == 1  # inclusive minimum 1: clamped
    assert any("must be greater than 0" in w and "using the default '1'" in w for w in warnings)


def test_invalid_list_entries_are_dropped_with_a_warning(store, params, warnings):
    put(store, "CustomMirrorDir", "+/srv/a; D:\\I3\\IC\\Flows; /srv/b")
    assert params.paths("CustomMirrorDir") == (MirrorPath("/srv/a", True), MirrorPath("/srv/b", False))
    assert any("D:\\I3\\IC\\Flows" in w and "ignoring" in w for w in warnings)


def test_an_unknown_parameter_close_to_a_known_one_gets_a_did_you_mean_warning(store, params, warnings):
    put(store, "Switchover TS Timout", "20")
    put(store, "Some Other Product Parameter", "x")
    assert params.seconds("Switchover TS Timeout") == 10.0
    assert any("did you mean 'Switchover TS Timeout'" in w for w in warnings)
    assert not any("Some Other Product" in w for w in warnings)
    assert [u[0] for u in params.unknown()] == ["Some Other Product Parameter", "Switchover TS Timout"]


def test_a_parameter_with_several_values_uses_the_first_with_a_warning(store, params, warnings):
    store.set(param_key("Switchover TS Timeout"), {"value": ["20", "30"]})
    assert params.seconds("Switchover TS Timeout") == 20.0
    assert any("2 values" in w for w in warnings)


# ------------------------------------------------------------------------------------------ special values
def test_primary_monitor_timeout_zero_means_half_the_module_timeout(store, params):
    assert params.primary_monitor_timeout() == 5.0
    put(store, "Switchover TS Timeout", "30")
    assert params.primary_monitor_timeout() == 15.0
    put(store, "Switchover Primary Monitor Timeout", "4")
    assert params.primary_monitor_timeout() == 4.0
    assert params.resolved("Switchover Primary Monitor Timeout") == 4.0


def test_when_monitoring_ip_the_ip_parameters_drive_the_module_timeouts(store, params):
    put(store, "Switchover TS Timeout", "20")
    assert params.seconds("Switchover IP Timeout") == 20.0  # inherits while unset
    put(store, "Switchover Monitoring", "IP")
    put(store, "Switchover IP Timeout", "0.8")
    put(store, "Switchover IP Retry Delay", "0.2")
    assert params.module_timeout() == 0.8
    assert params.module_retry_delay() == 0.2
    assert params.primary_monitor_timeout() == 0.4


@pytest.mark.parametrize(
    ("text", "resolved"), [("-1", None), ("0", 3), ("1", 3), ("3", 3), ("4", 4), ("50", 50)]
)
def test_unreachable_primary_ping_count_minus_one_is_unlimited_and_0_to_3_mean_3(
    store, params, text, resolved
):
    put(store, "Switchover Unreachable Primary Ping Count", text)
    assert params.unreachable_primary_ping_count() == resolved


def test_unreachable_primary_ping_count_unset_means_switch_at_once(store, params):
    # spec line 620: "The default is to switch over immediately": no extra ping set
    assert params.unreachable_primary_ping_count() == 0
    assert params.resolved("Switchover Unreachable Primary Ping Count") == 0
    put(store, "Switchover Unreachable Primary Ping Count", "soon")
    assert params.unreachable_primary_ping_count() == 0


def test_primary_monitor_ping_delay_zero_resolves_to_one_second(store, params):
    assert params.resolved("Switchover Primary Monitor Ping Delay") == 1.0
    put(store, "Switchover Primary Monitor Ping Delay", "2.5")
    assert params.resolved("Switchover Primary Monitor Ping Delay") == 2.5


def test_unreachable_primary_ping_count_below_minus_one_is_clamped_to_unlimited(store, params, warnings):
    put(store, "Switchover Unreachable Primary Ping Count", "-7")
    assert params.unreachable_primary_ping_count() is None
    assert warnings


def test_file_monitor_health_check_interval_zero_turns_checks_off(store, params):
    assert params.file_health_check_interval() == 60.0
    put(store, "Switchover File Monitor Health Check Interval", "0")
    assert params.file_health_check_interval() is None


def test_upgrade_sync_paths_are_the_builtin_ones_plus_the_configured_ones(store, params):
    assert params.upgrade_sync_ds_paths() == UPGRADE_LOWER_BUILTIN_DS_PATHS
    put(store, "Custom Upgrade Synchronization Directories", r"${CONFIG}\Users;/Config/Schedules")
    assert params.upgrade_sync_ds_paths() == (*UPGRADE_LOWER_BUILTIN_DS_PATHS, "/Config/Schedules")


def test_upgrade_file_exceptions_default_to_mirror_exceptions(store, params):
    put(store, "MirrorExceptions", "txt; gif")
    assert params.extensions("Custom Upgrade File Synchronization Exceptions") == ("txt", "gif")
    put(store, "Custom Upgrade File Synchronization Exceptions", "log")
    assert params.extensions("Custom Upgrade File Synchronization Exceptions") == ("log",)


def test_the_old_name_of_reconnect_timeout_is_honoured_with_a_warning(store, params, warnings):
    put(store, "Switchover Reconnect Delay", "45")
    assert params.seconds("Switchover Reconnect Timeout") == 45.0
    assert any("renamed" in w for w in warnings)
    put(store, "Switchover Reconnect Timeout", "12")
    assert params.seconds("Switchover Reconnect Timeout") == 12.0


# -------------------------------------------------------------------------------------------- writing
def test_set_validates_first_and_writes_nothing_when_invalid(store, params):
    rev = store.revision
    with pytest.raises(ParamError, match="5-60"):
        params.set("Switchover TS Timeout", "2")
    assert store.revision == rev
    params.set("switchover ts timeout", "12")
    assert store.get(param_key("Switchover TS Timeout")) == {"value": ["12"]}


def test_set_replaces_a_differently_spelled_entry(store, params):
    put(store, "Switchover Use QoS for Ping", "0")
    params.set("Switchover Use QoS For Ping", "1")
    assert store.children(PARAMS_ROOT) == ["Switchover Use QoS For Ping"]


def test_unset_removes_the_value_and_the_default_applies(store, params):
    assert params.unset("Switchover TS Timeout") is None
    params.set("Switchover TS Timeout", "20")
    assert params.unset("Switchover TS Timeout") is not None
    assert params.seconds("Switchover TS Timeout") == 10.0


def test_seeding_writes_the_pair_and_paths_only_when_absent(store):
    written = seed_from_config(
        store,
        "alpha",
        "beta",
        {"Handler Path": "/srv/h", "resource path": "/srv/r"},
        {"Switchover TS Timeout": "7"},
    )
    assert written == [
        "SwitchoverServer A",
        "SwitchoverServer B",
        "Handler Path",
        "Resource Path",
        "Switchover TS Timeout",
    ]
    assert store.get(param_key("SwitchoverServer A")) == {"value": ["alpha"]}
    rev = store.revision
    assert seed_from_config(store, "other", "names", {"Handler Path": "/elsewhere"}) == []
    assert store.revision == rev
    assert store.get(param_key("Handler Path")) == {"value": ["/srv/h"]}


def test_seeding_refuses_invalid_values_and_non_path_parameters(store):
    with pytest.raises(ParamError):
        seed_from_config(store, "alpha", "beta", {"Switchover TS Timeout": "10"})
    with pytest.raises(ParamError):
        seed_from_config(store, "alpha", "beta", {"Handler Path": "relative"})
    with pytest.raises(ParamError):
        seed_from_config(store, "", "beta", {})
    assert store.revision == 0


# --------------------------------------------------------------------------------------- subscriptions
def test_subscribers_hear_about_changes_of_the_parameters_they_use(store, params):
    events: list[ParamChange] = []
    params.subscribe(["Switchover TS Timeout", "Switchover Reconnect Timeout"], events.append)
    params.set("Switchover TS Timeout", "12")
    params.set("Switchover NetTest A", "10.0.0.9")  # not watched
    params.set("Switchover TS Timeout", "12")  # same value: no event
    params.set("Switchover Reconnect Timeout", "5")
    assert [(e.name, e.old, e.new, e.dynamic) for e in events] == [
        ("Switchover TS Timeout", 10.0, 12.0, True),
        ("Switchover Reconnect Timeout", 30.0, 5.0, False),
    ]
    assert events[0].applies == "immediately" and events[1].applies == "after restart"


def test_a_dependent_special_value_is_reported_when_what_it_depends_on_changes(store, params):
    events: list[ParamChange] = []
    params.subscribe(["Switchover Primary Monitor Timeout"], events.append)
    params.set("Switchover TS Timeout", "20")
    assert [(e.name, e.old, e.new) for e in events] == [("Switchover Primary Monitor Timeout", 5.0, 10.0)]


def test_changes_arriving_by_replication_or_reset_are_reported_and_unsubscribe_stops_them(store, params):
    events: list[ParamChange] = []
    unsubscribe = params.subscribe(["Switchover Max TS Failures"], events.append)
    store.batch([SetOp(param_key("Switchover Max TS Failures"), {"value": ["5"]})])
    store.reset()
    assert [(e.old, e.new) for e in events] == [(2, 5), (5, 2)]
    unsubscribe()
    params.set("Switchover Max TS Failures", "3")
    assert len(events) == 2


def test_a_failing_parameter_subscriber_does_not_stop_the_others(store, params):
    events: list[ParamChange] = []

    def broken(event: ParamChange) -> None:
        raise RuntimeError("bug")

    params.subscribe(["CustomMirrorDir"], broken)
    params.subscribe(["CustomMirrorDir"], events.append)
    params.set("CustomMirrorDir", "+/srv/a")
    assert events and events[0].new == (MirrorPath("/srv/a", True),)


def test_types_are_reported_for_each_parameter():
    assert CATALOG["CustomMirrorDir"].type is ParamType.PATH_LIST
    assert CATALOG["Switchover TS Timeout"].type is ParamType.SECONDS
    assert CATALOG["Switchover Max TS Failures"].type is ParamType.INT
    assert CATALOG["Switchover Use QoS For Ping"].type is ParamType.BOOL
    assert CATALOG["Custom Upgrade Attribute Exceptions"].type is ParamType.ATTR_EXCEPTIONS
    assert CATALOG["Switchover Upgrade Higher DS Exclusions"].type is ParamType.DS_PATH_LIST


def test_a_value_just_written_is_read_back_even_while_notifications_are_still_queued(store, params):
    results: list[float] = []

    def on_change(ch) -> None:
        if ch.key == "/other":

            def writer() -> None:
                params.set("Switchover TS Timeout", "33")
                results.append(params.seconds("Switchover TS Timeout"))

            t = threading.Thread(target=writer)
            t.start()
            t.join(30)

    store.subscribe(on_change)
    store.set("/other", {})
    assert results == [33.0]
