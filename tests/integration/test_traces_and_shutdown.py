"""One request = one trace rooted at the generator; shutdown flushes spans and ends jobs."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from failure_lab.settings import Settings
from simulator.app import create_app
from tests.support.configs import config_with
from tests.support.labs import running_lab
from tests.support.servers import free_port, serve_app

PAYLOAD: dict[str, Any] = {
    "rate_of_requests": 20,
    "number_of_requests": 1,
    "retries_enabled": True,
    "rate_limiting": 100,
    "rate_limiting_algo": "token_bucket",
    "cache_enabled": False,
    "cache_ttl": 0,
    "db_latency": 0,
}


async def test_a_generated_request_is_one_trace_whose_id_is_the_request_id() -> None:
    failing = config_with(
        failure_injection_enabled=True,
        failure_rate=1.0,
        max_retries=2,
        db_latency_min_ms=0,
        db_latency_max_ms=0,
    ).model_dump()
    async with running_lab() as (_, http, spans):
        await http.put("/v1/config/failure", json=failing)
        result = (
            await http.post("/v1/traffic/generate", json={"mode": "single", "payload": PAYLOAD})
        ).json()
    trace_id = uuid.UUID(result["request_id"]).int
    trace = [s for s in spans.get_finished_spans() if s.context and s.context.trace_id == trace_id]
    roots = [s for s in trace if s.parent is None]
    assert len(roots) == 1
    assert roots[0].kind is SpanKind.CLIENT
    servers = [s for s in trace if s.kind is SpanKind.SERVER]
    assert len(servers) == 1
    server = servers[0]
    assert server.parent is not None
    assert server.parent.span_id == roots[0].context.span_id
    names = sorted(s.name for s in trace if s.kind is SpanKind.INTERNAL)
    assert names == ["db.query", "db.query", "db.query", "rate_limit", "retry", "retry"]
    events = [e.name for e in server.events]
    assert events.count("db.error") == 3
    assert events.count("retry.attempt") == 2
    assert server.attributes is not None
    assert server.attributes["failure_lab.request_id"] == result["request_id"]
    assert server.attributes["failure_lab.retry_count"] == 2
    assert server.attributes["http.route"] == "/api/v1/users/{id}"
    # Only the simulated request is traced: the control call made no trace of its own.
    assert {s.context.trace_id for s in spans.get_finished_spans() if s.context} == {trace_id}


async def test_shutdown_during_a_sustained_run_cancels_the_job_and_flushes_spans() -> None:
    port = free_port()
    app = create_app(Settings(port=port))
    spans = InMemorySpanExporter()
    # A batch processor that would not export for a minute on its own: only the flush at
    # shutdown can deliver these spans.
    app.state.tracer_provider.add_span_processor(
        BatchSpanProcessor(
            spans,
            schedule_delay_millis=60_000,
            max_queue_size=100_000,
            max_export_batch_size=100_000,
        )
    )
    async with serve_app(app, port) as url, httpx.AsyncClient(base_url=url) as http:
        await http.put(
            "/v1/config/failure",
            json=config_with(db_latency_min_ms=1, db_latency_max_ms=5).model_dump(),
        )
        job = (
            await http.post(
                "/v1/traffic/generate",
                json={"mode": "sustained", "rps": 100, "duration": 60, "payload": PAYLOAD},
            )
        ).json()
        await asyncio.sleep(1.0)
        assert spans.get_finished_spans() == ()
        runtime = app.state.runtime
    # The server has stopped (serve_app bounds it): the job was cancelled, not left running.
    finished = runtime.jobs.get(job["job_id"])
    assert finished.status == "cancelled"
    assert finished.ended_at is not None
    sent = finished.stats.total
    assert sent >= 50
    roots = [s for s in spans.get_finished_spans() if s.parent is None]
    assert len(roots) == sent
    assert not [t for t in asyncio.all_tasks() if "job" in t.get_name()]
