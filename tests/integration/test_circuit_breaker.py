"""The database circuit breaker through real HTTP: it opens after N failed attempts, fails
fast without touching the database, and lets one probe through after ``open_seconds``."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from simulator.options import HEADER, PipelineOptions
from tests.support.configs import config_with
from tests.support.labs import Lab, running_lab, sample

ONCE = {HEADER: PipelineOptions(cache_enabled=False, retries_enabled=False).encode()}
RETRYING = {HEADER: PipelineOptions(cache_enabled=False, retries_enabled=True).encode()}
FAILING = config_with(
    failure_injection_enabled=True,
    failure_rate=1.0,
    db_latency_min_ms=0,
    db_latency_max_ms=0,
    max_retries=5,
).model_dump()
HEALTHY = config_with(db_latency_min_ms=0, db_latency_max_ms=0, max_retries=5).model_dump()
OPEN_SECONDS = 0.8


def running(**overrides: Any) -> AbstractAsyncContextManager[Lab]:
    return running_lab(embedded_shim=False, **overrides)


def state_of(app: FastAPI) -> str:
    (state,) = [
        s
        for s in ("closed", "open", "half_open")
        if sample(app, "failure_lab_circuit_breaker_state", state=s) == 1
    ]
    return state


def trace_of(spans: InMemorySpanExporter, response: httpx.Response) -> list[ReadableSpan]:
    trace_id = uuid.UUID(response.headers["x-request-id"]).int
    return [s for s in spans.get_finished_spans() if s.context and s.context.trace_id == trace_id]


def server_of(spans: InMemorySpanExporter, response: httpx.Response) -> ReadableSpan:
    (server,) = [s for s in trace_of(spans, response) if s.kind is SpanKind.SERVER]
    return server


def event_names(spans: InMemorySpanExporter, response: httpx.Response) -> list[str]:
    return [e.name for e in server_of(spans, response).events]


async def test_opens_after_n_failures_fails_fast_then_a_probe_closes_it() -> None:
    settings = {
        "circuit_breaker_enabled": True,
        "circuit_breaker_failure_threshold": 3,
        "circuit_breaker_open_seconds": OPEN_SECONDS,
    }
    async with running(**settings) as (app, http, spans):
        assert state_of(app) == "closed"
        assert sample(app, "failure_lab_circuit_breaker_enabled") == 1
        await http.put("/v1/config/failure", json=FAILING)
        first = [await http.get("/api/v1/users/1", headers=ONCE) for _ in range(3)]
        assert [r.status_code for r in first] == [503] * 3
        assert all(r.json()["detail"].startswith("database error") for r in first)
        assert "circuit.opened" in event_names(spans, first[2])
        assert "circuit.opened" not in event_names(spans, first[1])
        assert state_of(app) == "open"
        assert sample(app, "failure_lab_circuit_breaker_trips_total") == 1

        fast = [await http.get("/api/v1/users/1", headers=ONCE) for _ in range(4)]
        assert [r.status_code for r in fast] == [503] * 4
        for response in fast:
            assert response.json()["detail"].startswith("circuit open: ")
            assert int(response.headers["retry-after"]) >= 1
            names = [s.name for s in trace_of(spans, response)]
            assert "db.query" not in names
            server = server_of(spans, response)
            assert server.attributes is not None
            assert server.attributes["failure_lab.outcome"] == "circuit_open"
            assert server.attributes["failure_lab.circuit_state"] == "open"
            assert "circuit.open" in [e.name for e in server.events]
        answered = sample(
            app,
            "failure_lab_http_requests_total",
            endpoint="/api/v1/users/{id}",
            method="GET",
            status="503",
            outcome="circuit_open",
        )
        assert answered == 4
        assert sample(app, "failure_lab_db_errors_total", kind="error") == 3

        # The database recovers; the breaker does not know until a probe tells it.
        await http.put("/v1/config/failure", json=HEALTHY)
        assert (await http.get("/api/v1/users/1", headers=ONCE)).status_code == 503
        await asyncio.sleep(OPEN_SECONDS + 0.1)
        assert state_of(app) == "open"
        probe = await http.get("/api/v1/users/1", headers=ONCE)
        assert probe.status_code == 200
        events = event_names(spans, probe)
        assert events.index("circuit.half_open") < events.index("circuit.closed")
        assert state_of(app) == "closed"
        after = [await http.get("/api/v1/users/2", headers=ONCE) for _ in range(3)]
        assert [r.status_code for r in after] == [200] * 3
        status = (await http.get("/v1/config/circuit-breaker")).json()
        assert status == {
            "enabled": True,
            "failure_threshold": 3,
            "open_seconds": OPEN_SECONDS,
            "state": "closed",
            "consecutive_failures": 0,
            "trips": 1,
        }


async def test_a_failed_probe_reopens_it() -> None:
    settings = {
        "circuit_breaker_enabled": True,
        "circuit_breaker_failure_threshold": 1,
        "circuit_breaker_open_seconds": OPEN_SECONDS,
    }
    async with running(**settings) as (app, http, spans):
        await http.put("/v1/config/failure", json=FAILING)
        assert (await http.get("/api/v1/users/1", headers=ONCE)).status_code == 503
        await asyncio.sleep(OPEN_SECONDS + 0.1)
        probe = await http.get("/api/v1/users/1", headers=ONCE)
        assert probe.status_code == 503
        assert probe.json()["detail"].startswith("database error")
        events = event_names(spans, probe)
        assert events.index("circuit.half_open") < events.index("circuit.opened")
        assert [s.name for s in trace_of(spans, probe)].count("db.query") == 1
        assert state_of(app) == "open"
        assert sample(app, "failure_lab_circuit_breaker_trips_total") == 2
        refused = await http.get("/api/v1/users/1", headers=ONCE)
        assert refused.json()["detail"].startswith("circuit open: ")


async def test_retries_count_and_a_refused_retry_ends_the_request() -> None:
    settings = {"circuit_breaker_enabled": True, "circuit_breaker_failure_threshold": 3}
    async with running(**settings) as (app, http, spans):
        await http.put("/v1/config/failure", json=FAILING)
        response = await http.get("/api/v1/users/1", headers=RETRYING)
        # Attempts 1-3 fail; the third opens the breaker, which refuses the next retry.
        assert response.status_code == 503
        assert response.json()["detail"].startswith("circuit open: ")
        assert response.headers["x-failure-lab-retries"] == "2"
        names = [s.name for s in trace_of(spans, response)]
        assert names.count("db.query") == 3
        assert names.count("retry") == 2
        events = event_names(spans, response)
        assert events.index("circuit.opened") < events.index("circuit.open")
        assert (
            sample(app, "failure_lab_retries_total", endpoint="/api/v1/users/{id}", reason="error")
            == 2
        )


async def test_cached_reads_are_served_while_it_is_open() -> None:
    settings = {"circuit_breaker_enabled": True, "circuit_breaker_failure_threshold": 1}
    async with running(**settings) as (_, http, _):
        await http.put("/v1/config/failure", json=HEALTHY)
        cached = {HEADER: PipelineOptions(retries_enabled=False).encode()}
        assert (await http.get("/api/v1/users/9", headers=cached)).status_code == 200
        await http.put("/v1/config/failure", json=FAILING)
        assert (await http.get("/api/v1/users/1", headers=ONCE)).status_code == 503
        assert (
            (await http.get("/api/v1/users/1", headers=ONCE))
            .json()["detail"]
            .startswith("circuit open")
        )
        assert (await http.get("/api/v1/users/9", headers=cached)).status_code == 200


async def test_switched_at_run_time_without_a_restart() -> None:
    async with running() as (app, http, _):
        assert (await http.get("/v1/config/circuit-breaker")).json()["enabled"] is False
        assert sample(app, "failure_lab_circuit_breaker_enabled") == 0
        await http.put("/v1/config/failure", json=FAILING)
        off = [await http.get("/api/v1/users/1", headers=ONCE) for _ in range(6)]
        assert all(r.json()["detail"].startswith("database error") for r in off)

        on = {"enabled": True, "failure_threshold": 2, "open_seconds": 30}
        put = await http.put("/v1/config/circuit-breaker", json=on)
        assert put.status_code == 200
        assert put.json()["state"] == "closed"
        statuses = [
            (await http.get("/api/v1/users/1", headers=ONCE)).json()["detail"].split(":")[0]
            for _ in range(4)
        ]
        assert statuses == ["database error", "database error", "circuit open", "circuit open"]
        assert (await http.get("/v1/config/circuit-breaker")).json()["state"] == "open"

        for bad in (
            {**on, "failure_threshold": 0},
            {**on, "open_seconds": 0},
            {**on, "open_seconds": -1},
            {**on, "extra": 1},
            {"enabled": True},
            {**on, "enabled": "yes"},
        ):
            response = await http.put("/v1/config/circuit-breaker", json=bad)
            assert response.status_code == 422, bad
            assert response.json()["detail"]
        assert (await http.get("/v1/config/circuit-breaker")).json()["failure_threshold"] == 2

        off_again = await http.put("/v1/config/circuit-breaker", json={**on, "enabled": False})
        assert off_again.json()["state"] == "closed"
        assert state_of(app) == "closed"
        assert sample(app, "failure_lab_circuit_breaker_enabled") == 0
        response = await http.get("/api/v1/users/1", headers=ONCE)
        assert response.json()["detail"].startswith("database error")
