"""``GET /v1/topology`` in both modes on the same traffic, faults showing in it, and the
process figures of ``/v1/status``.

The agreement test serves one simulator with its embedded shim and has a real Prometheus
scrape it, read by a stack-mode exporter: the same traffic is then seen by both metrics
sources. Each mode's topology must say exactly what its own ``/metrics/json`` and
``/v1/metrics/latency`` say for the same window and instant, and the two modes must agree with
each other within what their sampling instants allow (the reasoning, the window's placement
and the tolerances are :mod:`tests.integration.test_metrics_sources`'s).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.app import create_exporter_app
from failure_lab.settings import Settings
from tests.integration.test_metrics_sources import (
    ERROR_RATE_TOLERANCE,
    FAILING,
    PAYLOAD,
    QUIET_SECONDS,
    RATIO_TOLERANCE,
    TRAFFIC_SECONDS,
    WARMUP_RPS,
    WARMUP_SECONDS,
    Lab,
    between_samples,
    finished,
    most_extrapolation,
    relative,
    simulator,
    sustained,
)
from tests.support.configs import config_with
from tests.support.labs import running_lab
from tests.support.prometheus import PrometheusProcess
from tests.support.servers import free_port, serve_app

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

Answer = dict[str, Any]


@asynccontextmanager
async def stack_shim(lab: Lab, prometheus: PrometheusProcess) -> AsyncIterator[httpx.AsyncClient]:
    """The stack-mode exporter on the same simulator, reading the test's Prometheus."""
    port = free_port()
    app = create_exporter_app(
        Settings(
            port=port,
            prometheus_url=prometheus.url,
            jaeger_url=f"http://127.0.0.1:{free_port()}",
            simulator_url=f"http://{lab.target}",
            backend_timeout_seconds=5.0,
        )
    )
    async with serve_app(app, port) as url, httpx.AsyncClient(base_url=url, timeout=15) as http:
        yield http


async def read_all(http: httpx.AsyncClient, window: int, at: float) -> tuple[Answer, ...]:
    params = {"window": str(window), "at": f"{at:.3f}"}
    answers = await asyncio.gather(
        *(http.get(path, params=params) for path in ("/v1/topology", "/metrics/json"))
    )
    latency = await http.get("/v1/metrics/latency", params=params)
    for answer in (*answers, latency):
        assert answer.status_code == 200, answer.text
    return answers[0].json(), answers[1].json(), latency.json()


def kinds(topology: Answer) -> dict[str, Answer]:
    """Nodes by kind (one replica here), edges by source and target kind."""
    nodes = {node["kind"]: node for node in topology["nodes"]}
    kind_of = {node["id"]: node["kind"] for node in topology["nodes"]}
    for edge in topology["edges"]:
        nodes[f"{kind_of[edge['source']]}->{kind_of[edge['target']]}"] = edge
    return nodes


def assert_says_what_its_metrics_say(
    topology: Answer, metrics: Answer, latency: Answer, window: int
) -> None:
    graph = kinds(topology)
    service = graph["service"]
    assert service["request_rate"] == metrics["request_rate"]
    assert service["error_rate"] == metrics["error_rate"]
    assert service["p99_latency_ms"] == metrics["p99_latency"]
    assert graph["generator->service"]["error_rate"] == metrics["error_rate"]
    for kind, stage in (("database", "database"), ("cache", "cache")):
        assert graph[kind]["p99_latency_ms"] == pytest.approx(latency[stage]["p99"], abs=5e-4)
    # The database's attempts are the samples of its histogram.
    attempts = graph["database"]["request_rate"] * window
    assert attempts == pytest.approx(latency["database"]["samples"], abs=1.0)
    asked = graph["service->ratelimiter"]  # the one replica is the limiter's only caller
    assert asked["request_rate"] == graph["ratelimiter"]["request_rate"]
    per_request = graph["cache->database"]["retries_per_request"]
    assert per_request * metrics["request_rate"] * window == pytest.approx(
        metrics["retry_count"], rel=1e-3
    )


def assert_modes_agree(stack: Answer, embedded: Answer, window: int) -> None:
    rates = most_extrapolation(window) - 1
    ours, theirs = kinds(embedded), kinds(stack)
    assert ours.keys() == theirs.keys()
    for key, mine in ours.items():
        other = theirs[key]
        if mine["request_rate"] > 0:
            assert relative(other["request_rate"], mine["request_rate"]) < rates, key
        assert abs(other["error_rate"] - mine["error_rate"]) <= ERROR_RATE_TOLERANCE, key
        if mine.get("p99_latency_ms") is not None:
            assert relative(other["p99_latency_ms"], mine["p99_latency_ms"]) <= RATIO_TOLERANCE
        for exact in ("faults", "breaker", "backend", "kind"):
            assert other.get(exact) == mine.get(exact), (key, exact)
    assert abs(theirs["cache"]["hit_ratio"] - ours["cache"]["hit_ratio"]) <= ERROR_RATE_TOLERANCE


async def test_both_modes_say_what_their_metrics_say_and_agree(tmp_path: Path) -> None:
    async with (
        simulator() as lab,
        PrometheusProcess(tmp_path, [lab.target]) as prometheus,
        stack_shim(lab, prometheus) as stack,
    ):
        # Every series exists before the window (see test_metrics_sources): failures of every
        # route, then more traffic than the limiter lets through.
        always_failing = {**FAILING, "failure_rate": 1.0}
        assert (await lab.http.put("/v1/config/failure", json=always_failing)).is_success
        burst = {"mode": "burst", "count": 20, "payload": PAYLOAD}
        assert (await lab.http.post("/v1/traffic/generate", json=burst)).is_success
        assert (await lab.http.put("/v1/config/failure", json=FAILING)).is_success
        warmup = await sustained(lab.http, WARMUP_SECONDS, rps=WARMUP_RPS)
        await prometheus.wait_for_samples('up{job="simulator"} == 1', timeout=20)
        await finished(lab.http, warmup, timeout=10)
        await asyncio.sleep(QUIET_SECONDS)
        traffic_started = time.time()
        await finished(lab.http, await sustained(lab.http, TRAFFIC_SECONDS), timeout=30)
        traffic_ended = time.time()
        await prometheus.wait_for_scrape(after=traffic_ended + 1)
        await asyncio.sleep(max(0.0, traffic_ended + 2.1 - time.time()))
        await between_samples(prometheus)
        at = round(time.time(), 3)
        window = math.ceil(at - traffic_started + 2.0)
        embedded, stacked = await asyncio.gather(
            read_all(lab.http, window, at), read_all(stack, window, at)
        )

    assert embedded[0]["source"] == "embedded"
    assert stacked[0]["source"] == "prometheus"
    assert_says_what_its_metrics_say(*embedded, window)
    assert_says_what_its_metrics_say(*stacked, window)
    assert_modes_agree(stacked[0], embedded[0], window)
    graph = kinds(embedded[0])
    assert graph["database"]["faults"] == ["failure_injection"]
    assert graph["database"]["error_rate"] == pytest.approx(0.4, abs=0.1)
    assert graph["ratelimiter"]["error_rate"] > 0  # some refused: the bucket ran dry


Probe = Callable[[Answer], bool]


async def within_polls(
    http: httpx.AsyncClient, node: str, probe: Probe, polls: int = 2
) -> list[Answer]:
    """Poll ``/v1/topology`` once a sampling interval; the node's answers up to the first
    for which ``probe`` holds, failing if the last poll still does not show it."""
    seen = []
    for _ in range(polls):
        await asyncio.sleep(1.0)
        topology = (await http.get("/v1/topology", params={"window": "10s"})).json()
        seen.append(next(n for n in topology["nodes"] if n["id"] == node))
        if probe(seen[-1]):
            return seen
    raise AssertionError(f"{node} not as expected within {polls} polls: {seen}")


async def test_a_fault_on_the_database_shows_within_polls() -> None:
    traffic = {"mode": "sustained", "rps": 40, "duration": 30, "payload": PAYLOAD}
    async with running_lab() as lab:
        quick = config_with(db_latency_min_ms=1, db_latency_max_ms=2)
        assert (await lab.http.put("/v1/config/failure", json=quick.model_dump())).is_success
        job = (await lab.http.post("/v1/traffic/generate", json=traffic)).json()["job_id"]
        healthy = await within_polls(lab.http, "database", lambda n: n["request_rate"] > 0, 10)
        assert healthy[-1]["status"] == "healthy"

        failing = config_with(failure_injection_enabled=True, failure_rate=0.3, max_retries=1)
        assert (await lab.http.put("/v1/config/failure", json=failing.model_dump())).is_success
        degraded = await within_polls(lab.http, "database", lambda n: n["status"] != "healthy")
        assert degraded[-1]["status"] == "degraded"
        assert "fault: failure_injection" in degraded[-1]["reasons"]

        outage = {"type": "db_outage", "severity": 1.0, "duration_seconds": 30}
        assert (await lab.http.post("/v1/disruptions", json=outage)).status_code == 201
        down = await within_polls(lab.http, "database", lambda n: n["status"] == "down")
        assert "fault: db_outage" in down[-1]["reasons"]

        breaker = {"enabled": True, "failure_threshold": 3, "open_seconds": 30}
        assert (await lab.http.put("/v1/config/circuit-breaker", json=breaker)).is_success
        opened = await within_polls(lab.http, "database", lambda n: n["breaker"] == "open")
        assert "circuit breaker open" in opened[-1]["reasons"]
        await lab.http.post("/v1/disruptions/clear-all")
        await lab.http.post(f"/v1/traffic/jobs/{job}/stop")


STATUS_TYPES = {
    "memory_usage_mb": float,
    "open_file_descriptors": int,
    "gc_collections": dict,
    "event_loop_lag": dict,
}


async def test_status_gives_the_process_figures_and_they_move() -> None:
    burst = {"mode": "burst", "count": 1000, "payload": {**PAYLOAD, "rate_limiting": 0}}
    async with running_lab() as lab:
        await asyncio.sleep(0.5)  # a few lag measurements
        before = (await lab.http.get("/v1/status")).json()
        for _ in range(3):  # 3,000 traces into the embedded trace store
            assert (await lab.http.post("/v1/traffic/generate", json=burst)).is_success
        after = (await lab.http.get("/v1/status")).json()
        stored = len(lab.app.state.exporter_shim.store)
        exposition = (await lab.http.get("/metrics")).text
        await asyncio.sleep(1.1)  # sampled once more after the last request
        latency = (await lab.http.get("/v1/metrics/latency", params={"window": "60s"})).json()

    for status in (before, after):
        assert {key: type(status[key]) for key in STATUS_TYPES} == STATUS_TYPES
        assert status["open_file_descriptors"] > 0
        assert set(status["gc_collections"]) == {"0", "1", "2"}
        lag = status["event_loop_lag"]
        assert lag["window_seconds"] == 60.0
        assert lag["interval_seconds"] == 0.1
        assert lag["samples"] > 0
        assert 0 <= lag["p99_ms"] <= lag["max_ms"]
    assert stored >= 3000
    assert after["memory_usage_mb"] - before["memory_usage_mb"] > 3.0
    assert after["gc_collections"]["0"] > before["gc_collections"]["0"]
    assert after["event_loop_lag"]["samples"] > before["event_loop_lag"]["samples"]
    assert latency["window_seconds"] == 60
    assert all(type(latency[stage]["samples"]) is int for stage in ("request", "database"))
    assert latency["request"]["samples"] >= 3000  # extrapolated to the window, then rounded
    # The same figures are Prometheus metrics.
    for name in (
        "process_resident_memory_bytes",
        "process_open_fds",
        'python_gc_collections_total{generation="0"}',
        "failure_lab_event_loop_lag_seconds_bucket",
    ):
        assert name in exposition, name


@pytest.mark.parametrize(
    "params", [{"window": "1s"}, {"window": "abc"}, {"window": "2h"}, {"at": "9999999999"}]
)
async def test_the_window_takes_metrics_json_grammar_and_bounds(params: dict[str, str]) -> None:
    async with running_lab() as lab:
        for path in ("/v1/topology", "/metrics/json"):
            answer = await lab.http.get(path, params=params)
            assert answer.status_code == 422, (path, answer.text)
