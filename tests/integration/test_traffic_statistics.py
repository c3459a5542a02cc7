"""``GET /v1/traffic/statistics`` against the real app: every count checked against the
results the generator handed back, the service's own circuit breaker, the Prometheus
counters, and the request bodies as the server received them.

The bodies are taken at the ASGI boundary (after the HTTP parser, before the app), which
is what the generator put on the wire, and summed here without the tally's help.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from failure_lab.settings import Settings
from simulator.app import create_app
from tests.support.configs import config_with
from tests.support.labs import sample
from tests.support.servers import free_port, serve_app

PAYLOAD: dict[str, Any] = {
    "rate_of_requests": 20,
    "number_of_requests": 20,
    "retries_enabled": True,
    "rate_limiting": 0,
    "rate_limiting_algo": "token_bucket",
    "cache_enabled": False,
    "cache_ttl": 30,
    "db_latency": 0,
}
FAILING = config_with(
    failure_injection_enabled=True,
    failure_rate=1.0,
    db_latency_min_ms=0,
    db_latency_max_ms=0,
    max_retries=2,
).model_dump()
HEALTHY = config_with(db_latency_min_ms=0, db_latency_max_ms=0, max_retries=2).model_dump()


class BodyCapture:
    """Pure ASGI: keeps the body of each POST/PATCH to the user API as the server got it."""

    def __init__(self, app: ASGIApp, bodies: list[bytes]) -> None:
        self.app = app
        self.bodies = bodies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("POST", "PATCH")
            or not scope["path"].startswith("/api/v1/users")
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def recording() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self.bodies.append(b"".join(chunks))
            return message

        await self.app(scope, recording, send)


@dataclass
class Lab:
    app: FastAPI
    http: httpx.AsyncClient
    bodies: list[bytes]


@asynccontextmanager
async def lab_with(**settings: Any) -> AsyncIterator[Lab]:
    port = free_port()
    app = create_app(Settings(port=port, **settings), embedded_shim=False)
    bodies: list[bytes] = []
    app.add_middleware(BodyCapture, bodies=bodies)
    async with serve_app(app, port) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        yield Lab(app, http, bodies)


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    async with lab_with() as running:
        yield running


async def put(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> None:
    response = await http.put(path, json=body)
    assert response.status_code == 200, response.text


async def burst(http: httpx.AsyncClient, count: int, **payload: Any) -> list[dict[str, Any]]:
    response = await http.post(
        "/v1/traffic/generate",
        json={"mode": "burst", "count": count, "payload": {**PAYLOAD, **payload}},
    )
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()
    assert len(results) == count
    return results


async def statistics(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/v1/traffic/statistics")
    assert response.status_code == 200, response.text
    stats: dict[str, Any] = response.json()
    return stats


def expected_kind(status: int) -> str:
    if status >= 500:
        return "http_5xx"
    return "rate_limited" if status == 429 else "http_4xx"


async def test_before_any_traffic_everything_is_zero(lab: Lab) -> None:
    stats = await statistics(lab.http)
    assert stats["totals"] == {
        "sent": 0,
        "succeeded": 0,
        "failed": 0,
        "in_flight": 0,
        "dropped": 0,
        "late_sends": 0,
        "elapsed_seconds": 0.0,
        "mean_send_rps": 0.0,
    }
    assert stats["endpoint_counts"] == {}
    assert stats["status_counts"] == {}
    assert set(stats["error_counts"]) == {
        "http_5xx",
        "rate_limited",
        "http_4xx",
        "timeout",
        "connection",
        "cancelled",
        "other",
    }
    assert set(stats["error_counts"].values()) == {0}
    assert (stats["retries"], stats["bytes_sent"], stats["circuit_breaker_trips"]) == (0, 0, 0)
    assert stats["first_send_time"] is None
    assert stats["last_send_time"] is None


async def test_statistics_account_for_every_request_of_the_bursts(lab: Lab) -> None:
    http = lab.http
    started = datetime.now().astimezone()

    # Every database attempt fails: each request retries twice and answers 503.
    await put(http, "/v1/config/failure", FAILING)
    failing = await burst(http, 20)
    assert {r["http_status"] for r in failing} == {503}
    assert {r["retry_count"] for r in failing} == {2}

    # A healthy database behind a limiter of 2 req/s: a few pass, the rest are 429.
    await put(http, "/v1/config/failure", HEALTHY)
    limited = await burst(http, 20, rate_limiting=2, cache_enabled=True)
    statuses = Counter(r["http_status"] for r in limited)
    assert statuses[429] > 0
    assert statuses[200] + statuses[201] > 0

    # The breaker opens after 3 failed attempts and then fails requests fast.
    breaker = {"enabled": True, "failure_threshold": 3, "open_seconds": 60}
    await put(http, "/v1/config/circuit-breaker", breaker)
    await put(http, "/v1/config/failure", FAILING)
    tripped = await burst(http, 10)
    assert {r["http_status"] for r in tripped} == {503}

    results = failing + limited + tripped
    stats = await statistics(http)
    circuit = (await http.get("/v1/config/circuit-breaker")).json()

    totals = stats["totals"]
    succeeded = sum(r["status"] == "success" for r in results)
    assert totals["sent"] == len(results) == 50
    assert (totals["succeeded"], totals["failed"]) == (succeeded, 50 - succeeded)
    assert (totals["in_flight"], totals["dropped"]) == (0, 0)
    assert totals["sent"] == sample(lab.app, "failure_lab_generator_requests_total", result="sent")
    assert totals["late_sends"] == sample(lab.app, "failure_lab_generator_late_sends_total")
    assert totals["elapsed_seconds"] > 0
    assert totals["mean_send_rps"] * totals["elapsed_seconds"] == pytest.approx(50)

    per_endpoint: dict[str, Counter[str]] = {}
    for r in results:
        key = f"{r['method']} {r['endpoint']}"
        per_endpoint.setdefault(key, Counter())["sent"] += 1
        per_endpoint[key]["succeeded" if r["status"] == "success" else "failed"] += 1
    assert stats["endpoint_counts"] == {
        key: {"sent": c["sent"], "succeeded": c["succeeded"], "failed": c["failed"]}
        for key, c in per_endpoint.items()
    }
    assert set(stats["endpoint_counts"]) == {
        "GET /api/v1/users/{id}",
        "GET /api/v1/users",
        "POST /api/v1/users",
        "PATCH /api/v1/users/{id}",
    }
    assert sum(c["sent"] for c in stats["endpoint_counts"].values()) == totals["sent"]

    assert stats["status_counts"] == dict(Counter(str(r["http_status"]) for r in results))
    failures = Counter(expected_kind(r["http_status"]) for r in results if r["status"] != "success")
    assert stats["error_counts"] == {
        "http_5xx": failures["http_5xx"],
        "rate_limited": failures["rate_limited"],
        "http_4xx": failures["http_4xx"],
        "timeout": 0,
        "connection": 0,
        "cancelled": 0,
        "other": 0,
    }
    assert stats["error_counts"]["http_5xx"] >= 30
    assert stats["error_counts"]["rate_limited"] == statuses[429]

    assert stats["retries"] == sum(r["retry_count"] for r in results)
    assert stats["retries"] >= 40  # the first burst alone: 20 requests x 2 retries

    writes = [r for r in results if r["method"] in ("POST", "PATCH")]
    assert len(lab.bodies) == len(writes) == 10
    assert stats["bytes_sent"] == sum(len(body) for body in lab.bodies)

    assert circuit["trips"] >= 1
    assert stats["circuit_breaker_trips"] == circuit["trips"]

    first = datetime.fromisoformat(stats["first_send_time"])
    last = datetime.fromisoformat(stats["last_send_time"])
    assert first.utcoffset() == last.utcoffset() == timedelta(0)
    assert started - timedelta(seconds=1) <= first <= last <= datetime.now().astimezone()


async def test_dropped_and_late_sends_match_the_job() -> None:
    async with lab_with(max_in_flight=1) as lab:
        http = lab.http
        slow = config_with(db_latency_min_ms=20, db_latency_max_ms=20).model_dump()
        await put(http, "/v1/config/failure", slow)
        # One request in flight at a time, each at least 20 ms: at 100 req/s most are dropped.
        started = await http.post(
            "/v1/traffic/generate",
            json={"mode": "sustained", "rps": 100, "duration": 0.5, "payload": PAYLOAD},
        )
        assert started.status_code == 202, started.text
        job_id = started.json()["job_id"]
        job: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            job = (await http.get(f"/v1/traffic/jobs/{job_id}")).json()
            if job["status"] != "running":
                break
            await asyncio.sleep(0.05)
        assert job["status"] == "completed"

        totals = (await statistics(http))["totals"]
        job_stats = job["stats"]
        assert totals["dropped"] == job_stats["dropped"] > 0
        assert totals["sent"] == job_stats["total"]
        assert totals["succeeded"] == job_stats["succeeded"]
        assert totals["failed"] == job_stats["failed"]
        assert totals["late_sends"] == job_stats["late_sends"]
        assert totals["dropped"] == sample(
            lab.app, "failure_lab_generator_requests_total", result="dropped"
        )
