"""The control contract through real HTTP on a running server.

Each bad input must answer a 4xx JSON ``detail`` and change nothing: no request is
generated, the failure config stays as it was.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from failure_lab.settings import Settings
from simulator.app import create_app
from tests.support.servers import free_port, serve_app

PAYLOAD: dict[str, Any] = {
    "rate_of_requests": 20,
    "number_of_requests": 4,
    "retries_enabled": True,
    "rate_limiting": 0,
    "rate_limiting_algo": "token_bucket",
    "cache_enabled": True,
    "cache_ttl": 30,
    "db_latency": 0,
}
HEALTHY: dict[str, Any] = {
    "failure_injection_enabled": False,
    "failure_rate": 0.0,
    "db_latency_min_ms": 1,
    "db_latency_max_ms": 2,
    "db_timeout_seconds": 1.0,
    "redis_timeout_seconds": 0.05,
    "max_retries": 2,
}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    settings = Settings(
        port=port, max_burst_count=50, max_rps=100, max_duration_seconds=30, max_retries_cap=5
    )
    app = create_app(settings)
    async with (
        serve_app(app, port) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10) as http,
    ):
        assert (await http.put("/v1/config/failure", json=HEALTHY)).status_code == 200
        yield http


def assert_traffic_result(result: dict[str, Any]) -> None:
    assert set(result) >= {"request_id", "status", "latency_ms", "timestamp"}
    assert str(uuid.UUID(result["request_id"])) == result["request_id"]
    assert result["status"] in ("success", "failure")
    assert isinstance(result["latency_ms"], float)
    assert result["latency_ms"] > 0
    assert datetime.fromisoformat(result["timestamp"]).tzinfo is not None


async def test_single_answers_one_traffic_result(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/traffic/generate", json={"mode": "single", "payload": PAYLOAD}
    )
    assert response.status_code == 200
    result = response.json()
    assert_traffic_result(result)
    assert result["status"] == "success"
    assert result["http_status"] == 200
    assert result["latency_ms"] >= result["service_latency_ms"]


async def test_burst_answers_a_list_defaulting_to_number_of_requests(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/traffic/generate", json={"mode": "burst", "payload": PAYLOAD})
    assert response.status_code == 200
    results = response.json()
    assert len(results) == PAYLOAD["number_of_requests"]
    for result in results:
        assert_traffic_result(result)
    assert len({r["request_id"] for r in results}) == len(results)

    response = await client.post(
        "/v1/traffic/generate", json={"mode": "burst", "count": 7, "payload": PAYLOAD}
    )
    assert len(response.json()) == 7
    status = (await client.get("/v1/traffic/status")).json()
    assert status["active"] is False
    assert status["count"] == 7


async def test_sustained_answers_202_with_a_job_that_runs_and_stops(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/traffic/generate",
        json={"mode": "sustained", "rps": 50, "duration": 20, "payload": PAYLOAD},
    )
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "running"
    await asyncio.sleep(0.5)
    status = (await client.get("/v1/traffic/status")).json()
    assert status["active"] is True
    assert status["job_id"] == job["job_id"]
    assert 10 <= status["count"] <= 40
    stopped = (await client.post(f"/v1/traffic/jobs/{job['job_id']}/stop")).json()
    assert stopped["status"] == "cancelled"
    status = (await client.get("/v1/traffic/status")).json()
    assert status["active"] is False
    assert status["count"] == stopped["stats"]["total"]
    assert (await client.get(f"/v1/traffic/jobs/{job['job_id']}")).json()["status"] == "cancelled"


async def test_failure_config_put_replaces_and_get_reads_back(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/config/failure")).json() == HEALTHY
    changed = {**HEALTHY, "failure_injection_enabled": True, "failure_rate": 1.0, "max_retries": 1}
    response = await client.put("/v1/config/failure", json=changed)
    assert response.status_code == 200
    assert response.json() == changed
    assert (await client.get("/v1/config/failure")).json() == changed

    # Takes effect for the next request: every attempt fails, one retry, then 503.
    single = {"mode": "single", "payload": {**PAYLOAD, "cache_enabled": False}}
    result = (await client.post("/v1/traffic/generate", json=single)).json()
    assert result["status"] == "failure"
    assert result["http_status"] == 503
    assert result["retry_count"] == 1


BAD_TRAFFIC: list[tuple[str, Any, str]] = [
    ("unknown mode", {"mode": "flood", "payload": PAYLOAD}, "single"),
    ("missing payload", {"mode": "single"}, "payload"),
    (
        "count above cap",
        {"mode": "burst", "count": 51, "payload": PAYLOAD},
        "FAILURE_LAB_MAX_BURST_COUNT",
    ),
    (
        "rps above cap",
        {"mode": "sustained", "rps": 101, "duration": 1, "payload": PAYLOAD},
        "FAILURE_LAB_MAX_RPS",
    ),
    (
        "duration above cap",
        {"mode": "sustained", "rps": 1, "duration": 31, "payload": PAYLOAD},
        "FAILURE_LAB_MAX_DURATION_SECONDS",
    ),
    ("negative count", {"mode": "burst", "count": -1, "payload": PAYLOAD}, "greater than"),
    (
        "negative db latency",
        {"mode": "single", "payload": {**PAYLOAD, "db_latency": -5}},
        "db_latency",
    ),
    (
        "unknown algorithm",
        {"mode": "single", "payload": {**PAYLOAD, "rate_limiting_algo": "magic"}},
        "'token_bucket', 'leaky_bucket', 'fixed_window' or 'sliding_window'",
    ),
    ("string for a number", {"mode": "burst", "count": "5", "payload": PAYLOAD}, "integer"),
    ("unknown field", {"mode": "single", "payload": PAYLOAD, "colour": 1}, "colour"),
    ("sustained without duration", {"mode": "sustained", "rps": 5, "payload": PAYLOAD}, "duration"),
    (
        "missing payload field",
        {"mode": "single", "payload": {k: v for k, v in PAYLOAD.items() if k != "cache_ttl"}},
        "cache_ttl",
    ),
]


@pytest.mark.parametrize(("case", "body", "named"), BAD_TRAFFIC, ids=[c[0] for c in BAD_TRAFFIC])
async def test_bad_traffic_requests_are_refused_and_generate_nothing(
    client: httpx.AsyncClient, case: str, body: Any, named: str
) -> None:
    before = (await client.get("/v1/traffic/status")).json()
    response = await client.post("/v1/traffic/generate", json=body)
    assert response.status_code == 422, response.text
    assert named in str(response.json()["detail"])
    assert (await client.get("/v1/traffic/status")).json() == before
    assert (await client.get("/v1/traffic/jobs")).json() == []


@pytest.mark.parametrize(
    "content",
    [b"not json", b"", b"[1, 2]", b'{"mode": "single", "payload": ', b"\xff\xfe"],
)
async def test_non_json_bodies_are_refused(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post(
        "/v1/traffic/generate", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "detail" in response.json()


BAD_CONFIGS: list[tuple[str, dict[str, Any], str]] = [
    ("rate above 1", {**HEALTHY, "failure_rate": 2}, "failure_rate"),
    ("negative rate", {**HEALTHY, "failure_rate": -0.1}, "failure_rate"),
    (
        "min above max",
        {**HEALTHY, "db_latency_min_ms": 10, "db_latency_max_ms": 5},
        "db_latency_min_ms must not exceed db_latency_max_ms",
    ),
    ("zero timeout", {**HEALTHY, "db_timeout_seconds": 0}, "db_timeout_seconds"),
    ("zero redis timeout", {**HEALTHY, "redis_timeout_seconds": 0}, "redis_timeout_seconds"),
    ("retries above cap", {**HEALTHY, "max_retries": 6}, "FAILURE_LAB_MAX_RETRIES_CAP"),
    ("negative retries", {**HEALTHY, "max_retries": -1}, "max_retries"),
    ("missing field", {k: v for k, v in HEALTHY.items() if k != "failure_rate"}, "failure_rate"),
    ("unknown field", {**HEALTHY, "chaos": True}, "chaos"),
]


@pytest.mark.parametrize(("case", "body", "named"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
async def test_bad_failure_configs_are_refused_and_change_nothing(
    client: httpx.AsyncClient, case: str, body: dict[str, Any], named: str
) -> None:
    response = await client.put("/v1/config/failure", json=body)
    assert response.status_code == 422, response.text
    assert named in str(response.json()["detail"])
    assert (await client.get("/v1/config/failure")).json() == HEALTHY


async def test_unknown_job_and_route_answer_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/traffic/jobs/nope")
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]
    response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
