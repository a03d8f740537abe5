"""The metrics registry (get-or-create, naming rules, scrape-time collectors) and the pure health rule."""

from __future__ import annotations

import pytest
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from actors.config import ConfigError, parse_config
from actors.http_endpoint import health_problems
from actors.runtime.metrics import MetricNameError, Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_one_line_adds_a_counter_and_the_same_family_comes_back() -> None:
    m = Metrics()
    m.counter("switchover_auth_failures_total", "refused handshakes", ("peer",)).labels("10.0.0.2").inc()
    m.counter("switchover_auth_failures_total", "refused handshakes", ("peer",)).labels("10.0.0.2").inc()
    m.gauge("switchover_ds_replication_lag_revisions", "lag").set(7)
    m.histogram("switchover_file_copy_seconds", "copy time").observe(0.02)
    got = samples(m)
    assert got[("switchover_auth_failures_total", (("peer", "10.0.0.2"),))] == 2.0
    assert got[("switchover_ds_replication_lag_revisions", ())] == 7.0
    assert got[("switchover_file_copy_seconds_count", ())] == 1.0
    assert got[("switchover_file_copy_seconds_bucket", (("le", "0.025"),))] == 1.0
    assert not any(name.endswith("_created") for name, _ in got)


def test_two_registries_do_not_share_values() -> None:
    a, b = Metrics(), Metrics()
    a.counter("switchover_x_total", "x").inc()
    assert samples(b) == {}
    assert samples(a)[("switchover_x_total", ())] == 1.0


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda m: m.counter("switchover_pings", "no _total"), "ends in _total"),
        (lambda m: m.gauge("pings_now", "no prefix"), "prefix"),
        (lambda m: m.gauge("switchover_Bad-Name", "bad characters"), "prefix"),
    ],
)
def test_names_break_the_conventions(make: object, words: str) -> None:
    with pytest.raises(MetricNameError, match=words):
        make(Metrics())  # type: ignore[operator]


def test_one_name_for_two_different_metrics_is_refused() -> None:
    m = Metrics()
    m.gauge("switchover_lag_seconds", "lag", ("link",))
    with pytest.raises(MetricNameError, match=r"already a gauge with labels \['link'\]"):
        m.gauge("switchover_lag_seconds", "lag", ("peer",))
    with pytest.raises(MetricNameError, match="asked for a histogram"):
        m.histogram("switchover_lag_seconds", "lag", ("link",))


def test_collector_values_are_read_at_each_scrape() -> None:
    m = Metrics()
    state = {"generation": 3}
    m.add_collector(lambda: [GaugeMetricFamily("switchover_generation", "g", value=state["generation"])])
    assert samples(m)[("switchover_generation", ())] == 3.0
    state["generation"] = 4
    assert samples(m)[("switchover_generation", ())] == 4.0


def test_health_problems() -> None:
    assert health_problems("Primary", True, {"Notifier": True, "Admin": True}, stopping=False) == ()
    assert health_problems("Backup", True, {}, stopping=False) == ()
    assert health_problems("Primary", True, {"Notifier": False, "Admin": True}, stopping=False) == (
        "actor Notifier is not alive",
    )
    assert health_problems("Error", True, {}, False, "Notifier failed 6 times") == (
        "node is in the Error state: Notifier failed 6 times",
    )
    assert health_problems("Primary", False, {}, stopping=True) == (
        "node is stopping",
        "the supervisor is not running",
    )


def _config(http: dict[str, object]) -> dict[str, object]:
    return {
        "node": {"name": "A", "data_dir": "/tmp/x"},
        "server_a": {"name": "A"},
        "server_b": {"name": "B"},
        "security": {"insecure": True},
        "http": http,
    }


def test_http_config() -> None:
    cfg = parse_config(_config({}))
    assert (cfg.http.enabled, cfg.http.address, cfg.http.port) == (True, "127.0.0.1", 9633)
    cfg = parse_config(_config({"port": 9700, "address": "0.0.0.0", "enabled": False}))
    assert (cfg.http.enabled, cfg.http.address, cfg.http.port) == (False, "0.0.0.0", 9700)
    with pytest.raises(ConfigError, match=r"http.port: 70000 is not a TCP port"):
        parse_config(_config({"port": 70000}))
    with pytest.raises(ConfigError, match=r"http.prot: unknown key \(did you mean 'port'\?\)"):
        parse_config(_config({"prot": 1}))
