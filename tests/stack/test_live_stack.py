"""The stack's Prometheus side for real: the project's prometheus.yml and rules, scraping a
real simulator and a real exporter, and every dashboard query run against it.

The module starts, on loopback, the simulator (no embedded shim, as in the stack), the
exporter (Prometheus as its metrics backend, Jaeger at a closed port) and Prometheus with
the committed config, its targets pointed at those ports and its intervals at 1 s. Traffic
comes from the simulator's own generator through the control API: a healthy sustained run
first, then a fault (database failure injection), a short peak scenario job, the circuit
breaker switched on and tripped, a mild disruption and a rate-limited run on top. The tests
then wait, each within a bound, for what a user of the stack would see.

Only one thing differs from the committed rules: the alerting rules are loaded from a copy
whose ``for:`` durations are cut to 2 s, so HighErrorRate fires within the test's time
instead of after a minute. The ``for:`` behaviour itself is covered by the promtool unit
tests. One simulator and no load balancer run here: the config's ``haproxy`` job is left
out, and the per-replica dashboard (HAProxy's panels among them) is run against replicas
behind a real HAProxy in ``test_load_balancer.py``.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml

from exporter.app import create_exporter_app
from failure_lab.settings import Settings
from simulator.app import create_app
from simulator.telemetry.metrics import DISRUPTION_TYPES
from tests.stack.live import ProjectPrometheus, eventually
from tests.stack.stackfiles import (
    DASHBOARDS_DIR,
    PROVISIONING,
    REPLICAS_DASHBOARD,
    RULES_DIR,
    PromQuery,
    all_prometheus_queries,
    load_dashboard,
    load_yaml,
    panels,
    recorded_names,
    substitute,
)
from tests.support.configs import config_with
from tests.support.servers import free_port, serve_app

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

HEALTHY: dict[str, Any] = {
    "rate_of_requests": 30,
    "number_of_requests": 1,
    "retries_enabled": True,
    "rate_limiting": 0,
    "rate_limiting_algo": "token_bucket",
    "cache_enabled": True,
    "cache_ttl": 2,
    "db_latency": 0,
}
# Rate limited at 4 req/s while sending 10 req/s: about 60% of these are refused (429).
LIMITED: dict[str, Any] = {
    **HEALTHY,
    "rate_of_requests": 10,
    "rate_limiting": 4,
    "rate_limiting_algo": "fixed_window",
}
FAULT = config_with(
    failure_injection_enabled=True,
    failure_rate=0.5,
    max_retries=1,
    db_latency_min_ms=1,
    db_latency_max_ms=5,
)
# The breaker opens after 3 failed attempts in a row: at once with every attempt failing,
# and now and then with half of them failing, so trips keep showing on the dashboard.
BREAKER = {"enabled": True, "failure_threshold": 3, "open_seconds": 1.0}
ALL_FAIL = config_with(**{**FAULT.model_dump(), "failure_rate": 1.0})
# 0.005 x the default 1000 ms spike: 5 ms more per database attempt, on every route, for
# longer than the module runs (cleared at the end).
DISRUPTION: dict[str, Any] = {
    "type": "db_latency_spike",
    "severity": 0.005,
    "duration_seconds": 120,
}
# Phases of 1.5 s, 3 s and 1.5 s: each seen by a scrape at 1 s.
SCENARIO: dict[str, Any] = {"scenario": "peak", "duration": 6, "max_rps": 20}
PEAK_PHASES = ("ramp_up", "hold", "ramp_down")
WAIT = 25.0
"""Bound on each wait for data; scrapes and rule evaluations happen every second."""

# Panels whose value may rightly be 0 in this scenario; every other query must answer a
# series with a value above 0 (for rates: something happened; for the fault panels: the
# injected fault is visible).
MAY_BE_ZERO = (
    re.compile(r"'Spans dropped'"),
    re.compile(r"'Live feed clients'"),
    re.compile(r"'Late sends'"),
    re.compile(r"'Requests in flight'"),  # short requests: often none at a scrape
    re.compile(r"'Generator target vs achieved rate' target C"),  # dropped requests
    re.compile(r"'Error ratio' target B"),  # shed requests: only past the bound (not here)
    # fail-opens: only when the limiter's Redis does not decide (not here)
    re.compile(r"'Rate-limited requests by algorithm' target C"),
)
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
QUERIES = all_prometheus_queries(exclude=[REPLICAS_DASHBOARD])
OVERVIEW = DASHBOARDS_DIR / "overview.json"


@dataclass
class Stack:
    prometheus: ProjectPrometheus
    simulator: httpx.AsyncClient
    exporter: httpx.AsyncClient
    before_fault: dict[str, Any] = field(default_factory=dict)
    after_fault: dict[str, Any] = field(default_factory=dict)
    disruption: dict[str, Any] = field(default_factory=dict)
    scenario_job: str = ""


def short_for_alerts(workdir: Path) -> Path:
    """A copy of alerts.yml with every ``for:`` cut to 2 s."""
    document = load_yaml(RULES_DIR / "alerts.yml")
    for group in document["groups"]:
        for rule in group["rules"]:
            rule["for"] = "2s"
    path = workdir / "alerts-test.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


async def sustained(client: httpx.AsyncClient, payload: dict[str, Any], duration: float) -> str:
    response = await client.post(
        "/v1/traffic/generate",
        json={"mode": "sustained", "duration": duration, "payload": payload},
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def scenario_job(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/traffic/jobs", json=SCENARIO)
    assert response.status_code == 201, response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def trip_the_breaker(client: httpx.AsyncClient) -> None:
    """Breaker on, every attempt failing until it has opened once, then the fault again."""
    assert (await client.put("/v1/config/circuit-breaker", json=BREAKER)).is_success
    assert (await client.put("/v1/config/failure", json=ALL_FAIL.model_dump())).is_success
    try:

        async def trips() -> int:
            status = (await client.get("/v1/config/circuit-breaker")).json()
            count: int = status["trips"]
            return count

        await eventually(trips, lambda count: count > 0, timeout=WAIT, what="a breaker trip")
    finally:
        assert (await client.put("/v1/config/failure", json=FAULT.model_dump())).is_success


async def read_the_shim(exporter: httpx.AsyncClient) -> None:
    """A client of the JSON shim, reading it every second as a dashboard would; its reads
    are the exporter's backend queries (Prometheus answers, Jaeger is down)."""
    while True:
        await exporter.get("/metrics/json")
        await exporter.get("/v1/requests/recent", params={"limit": 5})
        await asyncio.sleep(1.0)


def error_alert_firing(alerts: list[dict[str, Any]]) -> bool:
    return any(
        alert["labels"]["alertname"] == "HighErrorRate" and alert["state"] == "firing"
        for alert in alerts
    )


def values(result: list[dict[str, Any]]) -> list[float]:
    return [float(series["value"][1]) for series in result]


def answered(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(value) for value in values(result))


def positive(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(value) and value > 0 for value in values(result))


async def over_range(prometheus: ProjectPrometheus, promql: str) -> list[dict[str, Any]]:
    """``promql`` over the last 5 minutes (longer than the module runs) at 1 s steps, as
    Grafana runs an annotation's expression over the dashboard's time range."""
    now = time.time()
    data = await prometheus.api(
        "query_range", query=promql, start=f"{now - 300:.3f}", end=f"{now:.3f}", step="1"
    )
    result: list[dict[str, Any]] = data["result"]
    return result


async def shown(prometheus: ProjectPrometheus, query: PromQuery) -> list[float]:
    """The values a dashboard query shows: now, or at every step for an annotation."""
    if query.annotation:
        result = await over_range(prometheus, query.promql)
        return [float(value) for series in result for _, value in series["values"]]
    return values(await prometheus.query(query.promql))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    workdir = tmp_path_factory.mktemp("stack")
    sim_port, exporter_port = free_port(), free_port()
    simulator_app = create_app(Settings(port=sim_port), embedded_shim=False)
    prometheus = ProjectPrometheus(
        workdir,
        {
            "simulator": f"127.0.0.1:{sim_port}",
            "exporter": f"127.0.0.1:{exporter_port}",
            "haproxy": None,
        },
        rules=[RULES_DIR / "recording.yml", short_for_alerts(workdir)],
    )
    exporter_app = create_exporter_app(
        Settings(
            port=exporter_port,
            prometheus_url=prometheus.url,
            jaeger_url=f"http://127.0.0.1:{free_port()}",
            simulator_url=f"http://127.0.0.1:{sim_port}",
            backend_timeout_seconds=1.0,
        )
    )
    async with (
        serve_app(simulator_app, sim_port) as sim_url,
        serve_app(exporter_app, exporter_port) as exporter_url,
        prometheus,
        httpx.AsyncClient(base_url=sim_url, timeout=15) as simulator,
        httpx.AsyncClient(base_url=exporter_url, timeout=15) as exporter,
    ):
        stack = Stack(prometheus, simulator, exporter)
        # Every target scraped once before traffic, so rates start from the zeros.
        await eventually(
            lambda: prometheus.query("up == 1"),
            lambda result: len(result) == 3,
            timeout=WAIT,
            what="all three targets up",
        )
        jobs = [await sustained(simulator, HEALTHY, duration=80)]
        stack.before_fault["error_ratio"] = await eventually(
            lambda: prometheus.query("job:failure_lab_http_request_errors:ratio_rate1m"),
            answered,
            timeout=WAIT,
            what="an error ratio of the healthy traffic",
        )
        stack.before_fault["alerts"] = await prometheus.alerts()

        # The fault alone (no rate limiting yet, so no 429s) must make HighErrorRate fire.
        assert (await simulator.put("/v1/config/failure", json=FAULT.model_dump())).is_success
        stack.after_fault["alerts"] = await eventually(
            prometheus.alerts, error_alert_firing, timeout=WAIT, what="HighErrorRate firing"
        )
        stack.after_fault["outcomes"] = await prometheus.query(
            "job_outcome:failure_lab_http_requests:rate1m"
        )
        stack.scenario_job = await scenario_job(simulator)
        jobs.append(stack.scenario_job)
        await trip_the_breaker(simulator)
        response = await simulator.post("/v1/disruptions", json=DISRUPTION)
        assert response.status_code == 201, response.text
        stack.disruption = response.json()
        jobs.append(await sustained(simulator, LIMITED, duration=60))
        reader = asyncio.create_task(read_the_shim(exporter))
        try:
            yield stack
        finally:
            reader.cancel()
            await simulator.post("/v1/disruptions/clear-all")
            for job_id in jobs:
                await simulator.post(f"/v1/traffic/jobs/{job_id}/stop")
            await asyncio.gather(reader, return_exceptions=True)


async def test_every_target_is_up(stack: Stack) -> None:
    up = await stack.prometheus.query("up")
    assert {series["metric"]["job"]: series["value"][1] for series in up} == {
        "simulator": "1",
        "exporter": "1",
        "prometheus": "1",
    }
    targets = await stack.prometheus.api("targets")
    assert all(target["health"] == "up" for target in targets["activeTargets"]), targets


async def test_rules_load_without_errors(stack: Stack) -> None:
    groups = (await stack.prometheus.api("rules"))["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert recorded_names() <= loaded
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok", rule


async def test_healthy_traffic_has_no_errors_and_no_error_alert(stack: Stack) -> None:
    assert values(stack.before_fault["error_ratio"]) == [0.0]
    names = {alert["labels"]["alertname"] for alert in stack.before_fault["alerts"]}
    assert "HighErrorRate" not in names


async def test_every_recording_rule_records_samples(stack: Stack) -> None:
    for name in sorted(recorded_names()):
        await eventually(
            lambda name=name: stack.prometheus.query(name),
            answered,
            timeout=WAIT,
            what=f"samples of {name}",
        )


async def test_high_error_rate_fires_when_the_failure_rate_is_raised(stack: Stack) -> None:
    (alert,) = [
        a for a in stack.after_fault["alerts"] if a["labels"]["alertname"] == "HighErrorRate"
    ]
    assert alert["state"] == "firing"
    assert alert["labels"] == {
        "alertname": "HighErrorRate",
        "job": "simulator",
        "severity": "critical",
    }
    assert alert["annotations"]["runbook"] == "prometheus/RUNBOOKS.md#higherrorrate"
    assert alert["annotations"]["summary"].startswith("simulator: ")
    assert float(alert["value"]) > 0.05
    # The errors that made it fire were the database's, not the rate limiter's.
    outcomes = {
        series["metric"]["outcome"]: float(series["value"][1])
        for series in stack.after_fault["outcomes"]
    }
    assert outcomes["db_error"] > 0
    assert outcomes["rate_limited"] == 0


async def test_the_firing_alert_shows_in_the_alerts_series(stack: Stack) -> None:
    firing = await stack.prometheus.query('ALERTS{alertname="HighErrorRate"}')
    assert [series["metric"]["alertstate"] for series in firing] == ["firing"]


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: f"{q.dashboard} {q.where}")
async def test_dashboard_query_returns_data(stack: Stack, query: PromQuery) -> None:
    may_be_zero = any(pattern.search(query.where) for pattern in MAY_BE_ZERO)
    await eventually(
        lambda: shown(stack.prometheus, query),
        lambda found: any(math.isfinite(v) and (may_be_zero or v > 0) for v in found),
        timeout=WAIT,
        what=f"{query.dashboard} {query.where}: {query.promql}",
    )


async def test_the_disruption_is_scraped_with_its_planned_end(stack: Stack) -> None:
    planned = datetime.fromisoformat(stack.disruption["active_until"]).timestamp()
    result = await eventually(
        lambda: stack.prometheus.query("failure_lab_disruption_planned_end_timestamp_seconds"),
        positive,
        timeout=WAIT,
        what="the planned end of the disruption",
    )
    ends = {series["metric"]["type"]: float(series["value"][1]) for series in result}
    expected = {**dict.fromkeys(DISRUPTION_TYPES, 0.0), DISRUPTION["type"]: planned}
    assert ends == pytest.approx(expected, abs=1e-3)
    # Active and inside its plan: the overrun alert is neither pending nor firing.
    assert await stack.prometheus.query('ALERTS{alertname="DisruptionOverran"}') == []


async def test_breaker_state_panel_shows_only_mapped_values(stack: Stack) -> None:
    (panel,) = [p for p in panels(load_dashboard(OVERVIEW)) if p["type"] == "state-timeline"]
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    mapped = {float(value) for value in mapping["options"]}
    (target,) = panel["targets"]
    result = await over_range(stack.prometheus, substitute(target["expr"]))
    shown_values = {float(value) for series in result for _, value in series["values"]}
    # Off before the breaker was switched on, then closed, open or half-open.
    assert shown_values <= mapped, shown_values
    assert 0.0 in shown_values, shown_values
    assert shown_values - {0.0}, shown_values


async def test_scenario_phases_show_in_order_and_end_at_zero(stack: Stack) -> None:
    (query,) = [q for q in QUERIES if q.annotation and "scenario_phase" in q.expr]

    async def first_seen() -> dict[str, float]:
        firsts: dict[str, float] = {}
        for series in await over_range(stack.prometheus, query.promql):
            assert series["metric"]["scenario"] == SCENARIO["scenario"], series
            times = [float(t) for t, value in series["values"] if float(value) > 0]
            if times:
                firsts[series["metric"]["phase"]] = min(times)
        return firsts

    firsts = await eventually(
        first_seen,
        lambda found: set(found) == set(PEAK_PHASES),
        timeout=WAIT,
        what="every phase of the peak scenario job",
    )
    assert sorted(firsts, key=firsts.__getitem__) == list(PEAK_PHASES)
    # Once the job is over, no phase is held any more.
    await eventually(
        lambda: stack.prometheus.query(
            f'max(failure_lab_generator_scenario_phase{{scenario="{SCENARIO["scenario"]}"}})'
        ),
        lambda result: values(result) == [0.0],
        timeout=WAIT,
        what="the phase gauge back to 0 after the job",
    )
    job = (await stack.simulator.get(f"/v1/traffic/jobs/{stack.scenario_job}")).json()
    assert job["status"] == "completed", job


async def test_latency_exemplars_carry_trace_ids(stack: Stack) -> None:
    def trace_ids(result: list[dict[str, Any]]) -> list[str]:
        return [
            exemplar["labels"].get("trace_id", "")
            for series in result
            for exemplar in series["exemplars"]
        ]

    result = await eventually(
        lambda: stack.prometheus.exemplars("failure_lab_http_request_duration_seconds_bucket"),
        lambda result: bool(trace_ids(result)),
        timeout=WAIT,
        what="exemplars of the request duration histogram",
    )
    assert all(TRACE_ID.match(trace_id) for trace_id in trace_ids(result)), trace_ids(result)
    # Grafana asks for exemplars with the panel's own expression.
    for query in QUERIES:
        if query.exemplar:
            found = await stack.prometheus.exemplars(query.promql)
            assert trace_ids(found), query


async def test_trace_to_metrics_queries_return_data(stack: Stack) -> None:
    sources = load_yaml(PROVISIONING / "datasources" / "datasources.yml")["datasources"]
    (jaeger,) = [source for source in sources if source["uid"] == "jaeger"]
    tags = 'endpoint="/api/v1/users/{id}"'
    for query in jaeger["jsonData"]["tracesToMetrics"]["queries"]:
        promql = query["query"].replace("$$__tags", tags)
        await eventually(
            lambda promql=promql: stack.prometheus.query(promql),
            positive,
            timeout=WAIT,
            what=f"trace to metrics {query['name']!r}: {promql}",
        )
