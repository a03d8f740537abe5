"""The node's HTTP endpoint against real node processes: /health, /primary, /backup status codes,
and a /metrics scrape parsed by prometheus-client's own parser (the role gauge follows a ctl switch)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy.pair import LocalPair
from tests.conftest import wait_until
from tests.integration.test_roles import QUIET_PARAMETERS, SETTLE, TIMING, start_both, stop_pairs


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[LocalPair]:
    """A local pair whose backup does not switch by itself (no module runs); stopped after."""
    local = LocalPair(tmp_path / "pair", parameters=dict(QUIET_PARAMETERS), extra={"timing": dict(TIMING)})
    try:
        yield local
    finally:
        stop_pairs([local])


def get(port: int, path: str) -> tuple[int, Any]:
    """(status, body): JSON decoded for the JSON paths, text for /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as resp:
            status, body, ctype = resp.status, resp.read().decode(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        status, body, ctype = exc.code, exc.read().decode(), exc.headers["Content-Type"]
    return status, json.loads(body) if ctype == "application/json" else body


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """sample name -> {sorted labels: value}, parsed by prometheus_client.parser."""
    status, text = get(port, "/metrics")
    assert status == 200
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def role_gauge(port: int) -> str:
    """The role whose switchover_role sample is 1."""
    roles = [dict(labels)["role"] for labels, v in scrape(port)["switchover_role"].items() if v == 1.0]
    assert len(roles) == 1, roles
    return roles[0]


def test_status_codes_follow_the_role_and_the_actors(pair: LocalPair) -> None:
    primary, backup = start_both(pair)
    p, b = pair.nodes[primary].http_port, pair.nodes[backup].http_port

    status, body = get(p, "/health")
    assert status == 200 and body["status"] == "ok" and body["role"] == "Primary" and body["problems"] == []
    assert get(b, "/health")[0] == 200
    assert get(p, "/primary")[0] == 200 and get(p, "/backup")[0] == 503
    status, body = get(b, "/primary")
    assert status == 503 and body == {
        "node": backup,
        "role": "Backup",
        "generation": body["generation"],
        "primary": False,
    }
    assert get(b, "/backup")[0] == 200
    status, body = get(p, "/nowhere")
    assert status == 404 and "/metrics" in body["paths"]


def test_health_is_503_with_the_problem_when_the_node_is_in_error(pair: LocalPair) -> None:
    primary, _ = start_both(pair)
    port = pair.nodes[primary].http_port
    # crash an actor more often than the supervisor's intensity allows (5 in 10 s): the node goes Error
    incarnation = 0
    for _ in range(10):
        # each crash waits for the next incarnation (restarted) or the Error state (given up)
        def restarted(after: int = incarnation) -> int | bool:
            return pair.role(primary) == "Error" or _notifier_incarnation(pair, primary, after)

        incarnation = int(wait_until(restarted, 5, message="the Notifier restarted"))
        if pair.role(primary) == "Error":
            break
        pair.admin(primary, "inject", {"crash": "Notifier"})
    _, body = wait_until(lambda: (r := get(port, "/health"))[0] == 503 and r, 5, message="/health 503")
    assert body["status"] == "failing" and body["role"] == "Error"
    assert any("Error state" in p and "Notifier" in p for p in body["problems"]), body
    assert get(port, "/primary")[0] == 503


def _notifier_incarnation(pair: LocalPair, name: str, after: int) -> int:
    """The running Notifier's incarnation when it is alive and later than ``after`` (else 0)."""
    rows = pair.admin(name, "actors")["actors"]
    row = next(r for r in rows if r["name"] == "Notifier")
    return int(row["incarnation"]) if row["alive"] and row["incarnation"] > after else 0


def test_metrics_scrape_follows_a_controlled_switch(pair: LocalPair) -> None:
    primary, backup = start_both(pair)
    p, b = pair.nodes[primary].http_port, pair.nodes[backup].http_port
    assert role_gauge(p) == "Primary" and role_gauge(b) == "Backup"

    before = scrape(b)
    generation = before["switchover_generation"][()]
    assert generation >= 1
    assert before["switchover_link_up"] == {(("link", "main"),): 1.0, (("link", "aux"),): 1.0}
    assert before["switchover_actor_up"][(("actor", "NotifierLink.main"),)] == 1.0
    assert before["switchover_actor_restarts_total"][(("actor", "NotifierLink.main"),)] == 0.0
    # the backup pings the primary's notifier on both links: answered pings and their round trips
    notifier_ok = (("link", "main"), ("result", "ok"), ("target", "notifier"))
    samples = wait_until(
        lambda: (s := scrape(b)).get("switchover_pings_total", {}).get(notifier_ok, 0) >= 1 and s,
        SETTLE,
        message="an answered notifier ping on the main link",
    )
    assert samples["switchover_link_round_trip_seconds_count"][(("link", "main"),)] >= 1
    assert 0 < samples["switchover_link_round_trip_seconds_sum"][(("link", "main"),)] < 5
    assert all(v == 0 for v in samples["switchover_decode_errors_total"].values())
    assert "switchover_switches_total" not in samples  # nobody switched yet

    done = pair.ctl("switch", "--yes")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: role_gauge(b) == "Primary", SETTLE, message=f"{backup}'s role gauge to say Primary")
    wait_until(lambda: role_gauge(p) == "Inactive", SETTLE, message=f"{primary}'s role gauge to say Inactive")
    after = scrape(b)
    assert after["switchover_switches_total"] == {(("reason", "manual-switch-request"),): 1.0}
    assert after["switchover_generation"][()] == generation + 1
    assert get(b, "/primary")[0] == 200 and get(p, "/primary")[0] == 503 and get(p, "/backup")[0] == 503
