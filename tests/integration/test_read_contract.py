"""The read side of the contract on ``failure-lab serve`` (embedded sources), over real HTTP."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from failure_lab.settings import Settings
from simulator.app import create_app
from tests.support.configs import config_with
from tests.support.servers import free_port, serve_app

PAYLOAD: dict[str, Any] = {
    "rate_of_requests": 20,
    "number_of_requests": 10,
    "retries_enabled": True,
    "rate_limiting": 0,
    "rate_limiting_algo": "token_bucket",
    "cache_enabled": False,
    "cache_ttl": 0,
    "db_latency": 0,
}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    app = create_app(Settings(port=port, metrics_sample_interval_seconds=0.25))
    async with serve_app(app, port) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


async def test_recent_requests_and_their_traces(http: httpx.AsyncClient) -> None:
    failing = config_with(
        failure_injection_enabled=True,
        failure_rate=1.0,
        max_retries=2,
        db_latency_min_ms=1,
        db_latency_max_ms=2,
    )
    await http.put("/v1/config/failure", json=failing.model_dump())
    results = (
        await http.post(
            "/v1/traffic/generate", json={"mode": "burst", "count": 5, "payload": PAYLOAD}
        )
    ).json()
    assert [r["status"] for r in results] == ["failure"] * 5

    recent = (await http.get("/v1/requests/recent", params={"limit": 3})).json()
    assert len(recent) == 3
    stamps = [datetime.fromisoformat(r["timestamp"]) for r in recent]
    assert stamps == sorted(stamps, reverse=True)
    ids = {r["request_id"] for r in results}
    for summary in recent:
        assert set(summary) == {
            "request_id",
            "status",
            "latency_ms",
            "retry_count",
            "timestamp",
            "endpoint",
            "method",
        }
        assert summary["request_id"] in ids
        assert summary["status"] == 503
        assert summary["retry_count"] == 2
        assert summary["endpoint"].startswith("/api/v1/users")
        assert summary["method"] in ("GET", "POST", "PATCH")
        assert isinstance(summary["latency_ms"], float)

    request_id = recent[0]["request_id"]
    body = (await http.get(f"/v1/trace/{request_id}")).json()
    trace = body["trace"]
    assert trace["request_id"] == request_id
    assert trace["trace_id"] == uuid.UUID(request_id).hex
    assert trace["status_code"] == 503
    assert trace["total_latency_ms"] >= recent[0]["latency_ms"]
    types = [e["event_type"] for e in trace["events"]]
    assert types[0] == "request.received"
    assert types.count("db.error") == 3
    assert types.count("retry.attempt") == 2
    assert body["event_count"] == len(trace["events"])
    assert [e["event_type"] for e in body["failure_points"]] == ["db.error"] * 3
    assert [e["event_type"] for e in body["retry_attempts"]] == ["retry.attempt"] * 2
    all_ids = {e["event_id"] for e in trace["events"]}
    assert {e["event_id"] for e in body["failure_points"] + body["retry_attempts"]} <= all_ids
    assert all(e["request_id"] == request_id for e in trace["events"])


async def test_trace_lookup_errors(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/trace/not-a-uuid")
    assert response.status_code == 422
    assert "not-a-uuid" in response.json()["detail"]
    assert response.json()["errors"][0]["loc"] == ["path", "request_id"]
    response = await http.get("/v1/trace/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404  # well formed, and no trace's
    assert "all-zero" in response.json()["detail"]
    unknown = str(uuid.uuid4())
    response = await http.get(f"/v1/trace/{unknown}")
    assert response.status_code == 404
    assert "may still be arriving" in response.json()["detail"]


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "ten"])
async def test_recent_limit_is_bounded(http: httpx.AsyncClient, limit: str) -> None:
    response = await http.get("/v1/requests/recent", params={"limit": limit})
    assert response.status_code == 422
    assert "limit" in str(response.json()["detail"])


async def test_metrics_json_counts_the_requests_made(http: httpx.AsyncClient) -> None:
    healthy = config_with(db_latency_min_ms=10, db_latency_max_ms=10)
    await http.put("/v1/config/failure", json=healthy.model_dump())
    await http.post("/v1/traffic/generate", json={"mode": "burst", "count": 20, "payload": PAYLOAD})
    # Samples (every 0.25 s) for 3 s after the burst: increase() extrapolates the sampled
    # span to the window's end by up to 1.1 intervals, so a short span would inflate it.
    await asyncio.sleep(3.0)
    data = (await http.get("/metrics/json", params={"window": "30s"})).json()
    assert set(data) == {
        "timestamp",
        "request_rate",
        "error_rate",
        "retry_count",
        "p95_latency",
        "p99_latency",
    }
    assert isinstance(data["timestamp"], int)
    assert data["request_rate"] > 0
    # The counters start at 0 in the window (no extrapolation before the first sample), and
    # the end is extrapolated by at most 0.275 s over >= 3 s of samples: within 10%.
    assert data["request_rate"] * 30 == pytest.approx(20, rel=0.10)
    assert data["error_rate"] == 0
    assert data["retry_count"] == 0
    # Every request spent 10 ms in the database, and a little more in the service.
    assert 10 <= data["p95_latency"] <= 16
    assert data["p95_latency"] <= data["p99_latency"] <= 20


async def test_metrics_json_at_evaluates_a_window_that_ended_earlier(
    http: httpx.AsyncClient,
) -> None:
    await asyncio.sleep(3.0)  # samples of the idle service
    before = time.time()
    await http.post("/v1/traffic/generate", json={"mode": "burst", "count": 20, "payload": PAYLOAD})
    await asyncio.sleep(3.0)
    after = time.time()
    await asyncio.sleep(3.0)  # then quiet again: "now" over 3 s sees nothing
    quiet = (await http.get("/metrics/json", params={"window": "2s"})).json()
    idle = (await http.get("/metrics/json", params={"window": "2s", "at": before})).json()
    busy = (await http.get("/metrics/json", params={"window": "5s", "at": after})).json()
    assert quiet["request_rate"] == idle["request_rate"] == 0
    assert busy["request_rate"] * 5 == pytest.approx(20, rel=0.15)
    assert busy["timestamp"] == int(after * 1000)
    stages = (await http.get("/v1/metrics/latency", params={"window": "5s", "at": after})).json()
    idle_stages = (
        await http.get("/v1/metrics/latency", params={"window": "2s", "at": before})
    ).json()
    assert stages["request"]["samples"] == pytest.approx(20, rel=0.15)
    assert idle_stages["request"]["samples"] == 0
    for at in (after + 60, before - 7200):
        refused = await http.get("/metrics/json", params={"window": "5s", "at": at})
        assert refused.status_code == 422
        assert "FAILURE_LAB_MAX_METRICS_WINDOW_SECONDS" in refused.json()["detail"]
        assert refused.json()["errors"][0]["loc"] == ["query", "at"]
    not_a_time = await http.get("/metrics/json", params={"window": "5s", "at": float("nan")})
    assert not_a_time.status_code == 422
    assert not_a_time.json()["errors"][0]["type"] == "finite_number"


@pytest.mark.parametrize("window", ["0s", "1s", "2h", "abc", "5x", "-1m"])
async def test_bad_windows_are_refused(http: httpx.AsyncClient, window: str) -> None:
    response = await http.get("/metrics/json", params={"window": window})
    assert response.status_code == 422
    assert "window" in response.json()["detail"]


async def test_latency_status_and_health(http: httpx.AsyncClient) -> None:
    await http.post("/v1/traffic/generate", json={"mode": "burst", "count": 10, "payload": PAYLOAD})
    await asyncio.sleep(0.6)
    latency = (await http.get("/v1/metrics/latency", params={"window": "30s"})).json()
    assert latency["window_seconds"] == 30
    assert latency["request"]["samples"] > 0
    assert latency["database"]["samples"] > 0
    assert latency["cache"]["samples"] == 0  # the payload turned the cache off
    for key in ("avg", "p50", "p95", "p99"):
        assert latency["request"][key] > 0

    health = (await http.get("/health")).json()
    assert health["status"] == "healthy"
    assert health["checks"]["embedded"]["status"] == "healthy"

    status = (await http.get("/v1/status")).json()
    assert status["uptime_seconds"] > 0
    assert status["websocket_clients"] == 0
    backends = {b["name"]: b for b in status["backends"]}
    assert backends["embedded"]["healthy"] is True
    assert backends["embedded"]["last_success"] is not None


async def test_concurrent_metrics_asks_make_one_backend_query(http: httpx.AsyncClient) -> None:
    def queries(text: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("failure_lab_exporter_backend_queries_total{")
        )

    before = queries((await http.get("/metrics")).text)
    answers = await asyncio.gather(
        *(http.get("/metrics/json", params={"window": "17s"}) for _ in range(20))
    )
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["request_rate"] for a in answers}) == 1
    assert queries((await http.get("/metrics")).text) - before == 1
