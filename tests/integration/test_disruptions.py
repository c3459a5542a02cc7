"""Disruptions on the real app over loopback HTTP: each type bites while active and lets go
at its deadline on its own, with no call made in between.

Requests go straight to the user API with caching and retries chosen per test in the
options header, so each disruption's effect can be counted exactly.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from simulator.options import HEADER, PipelineOptions
from tests.support.configs import config_with
from tests.support.labs import Lab, running_lab, sample

ONE = "/api/v1/users/{id}"
LIST = "/api/v1/users"
DIRECT = {HEADER: PipelineOptions(cache_enabled=False, retries_enabled=False).encode()}
CACHED = {HEADER: PipelineOptions(cache_enabled=True, retries_enabled=False).encode()}
SPIKE_MS = 200.0
DURATION = 1.5
TYPES = ("db_outage", "db_latency_spike", "cache_outage", "error_burst", "rate_limit_squeeze")


@asynccontextmanager
async def running(**overrides: Any) -> AsyncIterator[Lab]:
    settings = {
        "disruption_latency_spike_ms": SPIKE_MS,
        "disruption_squeeze_rps": 100,
        "max_disruption_seconds": 60,
        **overrides,
    }
    async with running_lab(embedded_shim=False, **settings) as lab:
        healthy = config_with(db_latency_min_ms=0, db_latency_max_ms=1, max_retries=2)
        assert (await lab.http.put("/v1/config/failure", json=healthy.model_dump())).is_success
        yield lab


def server_span(spans: InMemorySpanExporter, response: httpx.Response) -> ReadableSpan:
    trace_id = uuid.UUID(response.headers["x-request-id"]).int
    found = [
        s
        for s in spans.get_finished_spans()
        if s.kind is SpanKind.SERVER and s.context is not None and s.context.trace_id == trace_id
    ]
    assert len(found) == 1
    return found[0]


def trace_of(spans: InMemorySpanExporter, response: httpx.Response) -> list[ReadableSpan]:
    trace_id = uuid.UUID(response.headers["x-request-id"]).int
    return [s for s in spans.get_finished_spans() if s.context and s.context.trace_id == trace_id]


def disruption_events(span: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == "disruption"]


async def create(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await http.post("/v1/disruptions", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def wait_past(created: dict[str, Any]) -> None:
    """Sleep, making no call at all, until the disruption's deadline has passed."""
    await asyncio.sleep(created["time_remaining_seconds"] + 0.2)


# Each probe sends a few requests and says whether the disruption acted on every one of them.
Probe = Callable[[FastAPI, httpx.AsyncClient, InMemorySpanExporter], Awaitable[bool]]


async def _db_outage(app: FastAPI, http: httpx.AsyncClient, spans: InMemorySpanExporter) -> bool:
    responses = [await http.get(f"/api/v1/users/{i}", headers=DIRECT) for i in (1, 2, 3)]
    failed = [
        r.status_code == 503 and "disruption: db_outage" in r.json()["detail"] for r in responses
    ]
    assert all(failed) or not any(failed)
    return all(failed)


async def _latency(app: FastAPI, http: httpx.AsyncClient, spans: InMemorySpanExporter) -> bool:
    delays = []
    for i in (1, 2):
        response = await http.get(f"/api/v1/users/{i}", headers=DIRECT)
        assert response.status_code == 200
        (query,) = [s for s in trace_of(spans, response) if s.name == "db.query"]
        assert query.start_time is not None
        assert query.end_time is not None
        delays.append((query.end_time - query.start_time) / 1e6)
    # Severity 0.5 of a 200 ms spike: every attempt at least 100 ms longer than the ~1 ms base.
    spiked = [d >= 100 for d in delays]
    assert all(spiked) or not any(spiked), delays
    if all(spiked):
        assert all(d < 100 + 400 for d in delays), delays
    return all(spiked)


async def _cache(app: FastAPI, http: httpx.AsyncClient, spans: InMemorySpanExporter) -> bool:
    before = sample(app, "failure_lab_cache_requests_total", operation="get", result="error")
    responses = [await http.get(f"/api/v1/users/{i}", headers=CACHED) for i in (7, 7, 8)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    errors = sample(app, "failure_lab_cache_requests_total", operation="get", result="error")
    kinds = [
        dict(e.attributes or {}).get("kind")
        for r in responses
        for e in server_span(spans, r).events
        if e.name == "cache.error"
    ]
    assert errors - before in (0, 3)
    assert kinds == (["unavailable"] * 3 if errors - before else [])
    return errors - before == 3


async def _burst(app: FastAPI, http: httpx.AsyncClient, spans: InMemorySpanExporter) -> bool:
    responses = [
        await http.get("/api/v1/users/1", headers=DIRECT),
        await http.get("/api/v1/users", headers=DIRECT),
        await http.get("/api/v1/users/error?errorRate=0", headers=DIRECT),
    ]
    burst = [r.status_code == 500 and "error_burst" in r.json()["detail"] for r in responses]
    assert all(burst) or not any(burst)
    return all(burst)


async def _squeeze(app: FastAPI, http: httpx.AsyncClient, spans: InMemorySpanExporter) -> bool:
    statuses = [(await http.get("/api/v1/users/1", headers=DIRECT)).status_code for _ in range(20)]
    assert set(statuses) <= {200, 429}
    # Severity 0.9 of 100 req/s: a token bucket of 10, nearly no refill during the run.
    return 8 <= statuses.count(200) <= 13


PROBES: dict[str, tuple[float, Probe]] = {
    "db_outage": (1.0, _db_outage),
    "db_latency_spike": (0.5, _latency),
    "cache_outage": (1.0, _cache),
    "error_burst": (1.0, _burst),
    "rate_limit_squeeze": (0.9, _squeeze),
}


@pytest.mark.parametrize("kind", TYPES)
async def test_each_type_acts_while_active_and_reverts_at_expiry_without_a_call(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    severity, probe = PROBES[kind]
    caplog.set_level(logging.INFO, logger="simulator.disruptions")
    async with running() as (app, http, spans):
        assert not await probe(app, http, spans)
        created = await create(http, type=kind, severity=severity, duration_seconds=DURATION)
        assert created["status"] == "active"
        assert sample(app, "failure_lab_disruptions_active", type=kind) == 1
        assert await probe(app, http, spans)
        assert (await http.get("/v1/disruptions")).json()["count"] == 1

        await wait_past(created)
        # Nothing was called: the deadline alone ended it, and the timer counted and logged
        # the end; no disruption of any type is left active.
        assert sample(app, "failure_lab_disruptions_ended_total", type=kind, reason="expired") == 1
        assert f"disruption {created['disruption_id']} ({kind}) expired" in caplog.text
        for each in TYPES:
            assert sample(app, "failure_lab_disruptions_active", type=each) == 0

        await asyncio.sleep(1.0)  # let the squeeze's bucket refill
        assert not await probe(app, http, spans)
        listed = (await http.get("/v1/disruptions")).json()
        assert (listed["count"], listed["disruptions"]) == (0, [])
        ended = (await http.get(f"/v1/disruptions/{created['disruption_id']}")).json()
        assert ended["status"] == "expired"
        assert ended["time_remaining_seconds"] == 0
        assert ended["requests_affected"] == sample(
            app, "failure_lab_disruption_requests_affected_total", type=kind
        )
        assert ended["requests_affected"] > 0


async def test_created_disruption_has_the_seed_fields() -> None:
    async with running() as (_, http, _):
        created = await create(
            http, type="db_outage", severity=0.25, duration_seconds=30, endpoints=[ONE]
        )
        assert set(created) >= {
            "disruption_id",
            "type",
            "severity",
            "endpoints",
            "created_at",
            "active_until",
            "time_remaining_seconds",
            "requests_affected",
            "status",
        }
        assert created["endpoints"] == [ONE]
        assert created["requests_affected"] == 0
        assert 29 < created["time_remaining_seconds"] <= 30
        everywhere = await create(http, type="error_burst", severity=0, duration_seconds=30)
        assert everywhere["endpoints"] == [LIST, ONE, "/api/v1/users/error"]
        listed = (await http.get("/v1/disruptions")).json()
        assert [d["disruption_id"] for d in listed["disruptions"]] == [
            created["disruption_id"],
            everywhere["disruption_id"],
        ]
        one = (await http.get(f"/v1/disruptions/{created['disruption_id']}")).json()
        assert one["status"] == "active"
        assert (await http.get("/v1/disruptions/nope")).status_code == 404


async def test_requests_affected_counts_each_request_once_and_events_mark_each_effect() -> None:
    async with running() as (app, http, spans):
        created = await create(http, type="db_outage", severity=1, duration_seconds=30)
        retrying = {HEADER: PipelineOptions(cache_enabled=False).encode()}
        responses = [await http.get("/api/v1/users/5", headers=retrying) for _ in range(4)]
        assert [r.status_code for r in responses] == [503] * 4
        for response in responses:
            assert response.headers["x-failure-lab-retries"] == "2"
            events = disruption_events(server_span(spans, response))
            # Three attempts (max_retries 2), each failed by the disruption.
            assert [e["attempt"] for e in events] == [1, 2, 3]
            assert all(
                e["disruption_id"] == created["disruption_id"]
                and e["type"] == "db_outage"
                and e["severity"] == 1.0
                and e["effect"] == "failed"
                for e in events
            )
        # An untouched request (the error endpoint never reaches the database) has no event.
        untouched = await http.get("/api/v1/users/error?errorRate=0", headers=DIRECT)
        assert untouched.status_code == 200
        assert disruption_events(server_span(spans, untouched)) == []
        one = (await http.get(f"/v1/disruptions/{created['disruption_id']}")).json()
        assert one["requests_affected"] == 4
        assert sample(app, "failure_lab_disruption_requests_affected_total", type="db_outage") == 4
        assert sample(app, "failure_lab_db_errors_total", kind="error") == 12


async def test_endpoints_restrict_the_effect() -> None:
    async with running() as (_, http, spans):
        created = await create(
            http, type="db_outage", severity=1, duration_seconds=30, endpoints=[ONE]
        )
        hit = await http.get("/api/v1/users/3", headers=DIRECT)
        spared = await http.get("/api/v1/users", headers=DIRECT)
        written = await http.post(
            "/api/v1/users", json={"name": "a", "email": "a@b.c"}, headers=DIRECT
        )
        assert (hit.status_code, spared.status_code, written.status_code) == (503, 200, 201)
        assert disruption_events(server_span(spans, spared)) == []
        assert len(disruption_events(server_span(spans, hit))) == 1
        one = (await http.get(f"/v1/disruptions/{created['disruption_id']}")).json()
        assert one["requests_affected"] == 1


async def test_squeeze_refusals_are_counted_exactly_and_limit_unlimited_requests() -> None:
    async with running() as (app, http, spans):
        created = await create(http, type="rate_limit_squeeze", severity=0.9, duration_seconds=30)
        responses = [await http.get("/api/v1/users/1", headers=DIRECT) for _ in range(25)]
        refused = [r for r in responses if r.status_code == 429]
        assert 12 <= len(refused) <= 15
        assert all(r.headers["retry-after"] == "1" for r in refused)
        assert "token_bucket at 10 req/s" in refused[0].json()["detail"]
        limited = sample(
            app,
            "failure_lab_ratelimit_decisions_total",
            algorithm="token_bucket",
            decision="limited",
        )
        assert limited == len(refused)
        one = (await http.get(f"/v1/disruptions/{created['disruption_id']}")).json()
        assert one["requests_affected"] == len(refused)
        events = disruption_events(server_span(spans, refused[0]))
        assert [e["effect"] for e in events] == ["refused"]
        admitted = next(r for r in responses if r.status_code == 200)
        assert disruption_events(server_span(spans, admitted)) == []
        names = [s.name for s in trace_of(spans, admitted)]
        assert names.count("rate_limit") == 1


async def test_cancel_and_clear_all() -> None:
    async with running() as (app, http, _):
        outage = await create(http, type="db_outage", severity=1, duration_seconds=30)
        burst = await create(http, type="error_burst", severity=0, duration_seconds=30)
        assert (await http.get("/api/v1/users/1", headers=DIRECT)).status_code == 503

        cancelled = await http.delete(f"/v1/disruptions/{outage['disruption_id']}")
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["requests_affected"] == 1
        assert (await http.get("/api/v1/users/1", headers=DIRECT)).status_code == 200
        assert sample(app, "failure_lab_disruptions_active", type="db_outage") == 0
        assert (
            sample(app, "failure_lab_disruptions_ended_total", type="db_outage", reason="cancelled")
            == 1
        )
        again = await http.delete(f"/v1/disruptions/{outage['disruption_id']}")
        assert again.status_code == 409  # it exists (GET shows it), and has ended
        assert "already cancelled" in again.json()["detail"]
        assert (await http.delete("/v1/disruptions/unknown")).status_code == 404

        await create(http, type="cache_outage", severity=1, duration_seconds=30)
        cleared = await http.post("/v1/disruptions/clear-all")
        assert cleared.status_code == 200
        assert cleared.json()["cleared"] == 2
        assert {d["status"] for d in cleared.json()["disruptions"]} == {"cancelled"}
        assert (await http.get("/v1/disruptions")).json()["count"] == 0
        for kind in TYPES:
            assert sample(app, "failure_lab_disruptions_active", type=kind) == 0
        assert (await http.delete(f"/v1/disruptions/{burst['disruption_id']}")).status_code == 409
        assert (await http.post("/v1/disruptions/clear-all")).json()["cleared"] == 0
        # Every disruption created here has ended, each counted once.
        ended = "failure_lab_disruptions_ended_total"
        for kind in ("db_outage", "error_burst", "cache_outage"):
            assert sample(app, ended, type=kind, reason="cancelled") == 1


async def test_an_expired_disruption_cannot_be_cancelled() -> None:
    async with running() as (_, http, _):
        created = await create(http, type="error_burst", severity=1, duration_seconds=0.3)
        await wait_past(created)
        response = await http.delete(f"/v1/disruptions/{created['disruption_id']}")
        assert response.status_code == 409
        assert "already expired" in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"type": "meteor", "severity": 0.5, "duration_seconds": 10},
        {"type": "db_outage", "severity": 2, "duration_seconds": 10},
        {"type": "db_outage", "severity": -0.1, "duration_seconds": 10},
        {"type": "db_outage", "severity": "0.5", "duration_seconds": 10},
        {"type": "db_outage", "severity": 0.5, "duration_seconds": -1},
        {"type": "db_outage", "severity": 0.5, "duration_seconds": 0},
        {"type": "db_outage", "severity": 0.5, "duration_seconds": 61},
        {"type": "db_outage", "severity": 0.5, "duration_seconds": 10, "endpoints": ["/nope"]},
        {"type": "db_outage", "severity": 0.5, "duration_seconds": 10, "endpoints": []},
        {"type": "db_outage", "severity": 0.5, "duration_seconds": 10, "target_id": 5},
        {"severity": 0.5, "duration_seconds": 10},
    ],
)
async def test_bad_input_is_422_and_changes_nothing(body: dict[str, Any]) -> None:
    async with running() as (app, http, _):
        kept = await create(http, type="db_outage", severity=0, duration_seconds=30)
        before = (await http.get("/v1/disruptions")).json()["disruptions"]
        response = await http.post("/v1/disruptions", json=body)
        assert response.status_code == 422
        assert response.json()["detail"]
        if body.get("duration_seconds") == 61:
            assert "FAILURE_LAB_MAX_DISRUPTION_SECONDS" in response.json()["detail"]
        after = (await http.get("/v1/disruptions")).json()["disruptions"]
        assert [d["disruption_id"] for d in after] == [kept["disruption_id"]]
        assert [d["disruption_id"] for d in before] == [kept["disruption_id"]]
        created = sum(
            sample(app, "failure_lab_disruptions_created_total", type=kind) for kind in TYPES
        )
        assert created == 1


async def test_too_many_active_is_409() -> None:
    async with running(max_active_disruptions=2) as (_, http, _):
        for _ in range(2):
            await create(http, type="error_burst", severity=0, duration_seconds=30)
        response = await http.post(
            "/v1/disruptions", json={"type": "db_outage", "severity": 1, "duration_seconds": 5}
        )
        assert response.status_code == 409
        assert "FAILURE_LAB_MAX_ACTIVE_DISRUPTIONS" in response.json()["detail"]
        assert (await http.get("/v1/disruptions")).json()["count"] == 2


async def test_disruptions_are_in_process_and_dropped_at_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="simulator")
    async with running() as (_, http, _):
        created = await create(http, type="db_outage", severity=1, duration_seconds=60)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("disruptions are in-process: none survive a restart" in m for m in messages) == 1
    dropped = [m for m in messages if "dropped" in m]
    assert len(dropped) == 1
    assert created["disruption_id"] in dropped[0]
    # A new process (app) starts with none.
    async with running() as (_, http, _):
        assert (await http.get("/v1/disruptions")).json()["count"] == 0
