"""Stack mode's trace side end to end: simulator -> real Jaeger (OTLP in) -> the shim.

The simulator runs without the embedded shim and exports its spans over OTLP/HTTP to a real
Jaeger (``tests/support/jaeger.py``), as in the stack; the shim (``create_exporter_app``)
reads them back over api_v3. Prometheus is not part of these tests: its URL is a closed
port. The simulator's spans are also kept in memory, so the shim's answers are compared with
what the embedded translator makes of the very same spans.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from exporter.app import create_exporter_app
from exporter.sources.readable import span_record
from exporter.translate import build_trace
from failure_lab.settings import Settings
from simulator.app import create_app
from tests.support.configs import config_with
from tests.support.jaeger import JaegerProcess
from tests.support.labs import BURST_PAYLOAD
from tests.support.servers import free_port, serve_app

pytestmark = pytest.mark.timeout(90)

FAILING = config_with(
    failure_injection_enabled=True,
    failure_rate=1.0,
    max_retries=2,
    db_latency_min_ms=0,
    db_latency_max_ms=1,
)
HEALTHY = config_with(failure_injection_enabled=False, db_latency_min_ms=0, db_latency_max_ms=1)


@dataclass
class Stack:
    shim: httpx.AsyncClient
    jaeger: JaegerProcess
    spans: InMemorySpanExporter

    async def burst(self, config: Any, count: int) -> list[dict[str, Any]]:
        """``count`` requests under ``config``, sent through the shim's forwarded control API."""
        answer = await self.shim.put("/v1/config/failure", json=config.model_dump())
        assert answer.status_code == 200, answer.text
        answer = await self.shim.post(
            "/v1/traffic/generate", json={"mode": "burst", "count": count, "payload": BURST_PAYLOAD}
        )
        assert answer.status_code == 200, answer.text
        results: list[dict[str, Any]] = answer.json()
        return results


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    sim_port, shim_port = free_port(), free_port()
    memory = InMemorySpanExporter()
    async with JaegerProcess(tmp_path) as jaeger:
        # Exported every 100 ms rather than every second: the tests wait less.
        simulator = create_app(
            Settings(port=sim_port, span_schedule_delay_ms=100), embedded_shim=False
        )
        simulator.state.tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
        shim_app = create_exporter_app(
            Settings(
                port=shim_port,
                prometheus_url=f"http://127.0.0.1:{free_port()}",
                simulator_url=f"http://127.0.0.1:{sim_port}",
                jaeger_url=jaeger.query_url,
                backend_timeout_seconds=1.0,
            )
        )
        with pytest.MonkeyPatch.context() as env:
            # Read when the simulator starts: its own OTLP exporter sends to this Jaeger.
            env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger.otlp_url)
            async with (
                serve_app(simulator, sim_port),
                serve_app(shim_app, shim_port) as shim_url,
                httpx.AsyncClient(base_url=shim_url, timeout=15) as shim,
            ):
                yield Stack(shim, jaeger, memory)


async def until(ask: Callable[[], Any], timeout: float, what: str) -> Any:
    """Ask again until the answer is truthy; that answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await ask()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.1)


async def test_requests_and_traces_come_from_jaeger(stack: Stack) -> None:
    results = await stack.burst(FAILING, 2) + await stack.burst(HEALTHY, 3)
    by_id = {r["request_id"]: r for r in results}

    async def all_five() -> list[dict[str, Any]] | None:
        answer = await stack.shim.get("/v1/requests/recent", params={"limit": 5})
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()
        return found if len(found) == 5 else None

    recent = await until(all_five, 15, "five requests in Jaeger")
    # The request explorer: every request, newest first, as the generator saw it.
    assert {r["request_id"] for r in recent} == set(by_id)
    stamps = [r["timestamp"] for r in recent]
    assert stamps == sorted(stamps, reverse=True)
    for summary in recent:
        result = by_id[summary["request_id"]]
        assert summary["endpoint"] == result["endpoint"]
        assert summary["method"] == result["method"]
        assert summary["retry_count"] == result["retry_count"]
        assert (summary["status"] >= 500) is (result["status"] == "failure")
    # Search: the newest two of the five.
    newest = (await stack.shim.get("/v1/requests/recent", params={"limit": 2})).json()
    assert newest == recent[:2]

    # Trace lookup of a request that failed and was retried.
    failed = results[0]
    assert failed["retry_count"] == 2
    await stack.jaeger.wait_for(stack.spans.get_finished_spans())
    answer = await stack.shim.get(f"/v1/trace/{failed['request_id']}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    types = [e["event_type"] for e in body["trace"]["events"]]
    assert types[0] == "request.received"
    assert types.count("db.error") == 3
    assert types.count("retry.attempt") == 2
    assert [e["event_type"] for e in body["failure_points"]] == ["db.error"] * 3
    assert [e["event_type"] for e in body["retry_attempts"]] == ["retry.attempt"] * 2
    assert body["trace"]["status_code"] >= 500
    # Exactly what the embedded translator makes of the same spans, kept in memory.
    trace_id = uuid.UUID(failed["request_id"]).int
    spans = [
        span_record(s)
        for s in stack.spans.get_finished_spans()
        if s.context is not None and s.context.trace_id == trace_id
    ]
    assert body == build_trace(spans).model_dump(mode="json")


async def test_an_unknown_request_is_404_naming_jaeger(stack: Stack) -> None:
    unknown = str(uuid.uuid4())
    answer = await stack.shim.get(f"/v1/trace/{unknown}")
    assert answer.status_code == 404
    assert answer.json() == {
        "detail": f"trace {unknown} not found in jaeger; it may still be arriving: spans "
        "reach the backend a few seconds after the request"
    }
    assert (await stack.shim.get("/v1/trace/not-a-uuid")).status_code == 422


async def test_jaeger_killed_is_503_naming_it_then_answers_again(stack: Stack) -> None:
    (result,) = await stack.burst(HEALTHY, 1)
    await stack.jaeger.wait_for(stack.spans.get_finished_spans())
    assert (await stack.shim.get(f"/v1/trace/{result['request_id']}")).status_code == 200

    stack.jaeger.kill()
    for path in ("/v1/requests/recent", f"/v1/trace/{result['request_id']}"):
        started = time.monotonic()
        answer = await stack.shim.get(path)
        assert time.monotonic() - started < 3.0  # the 1 s backend bound, and some
        assert answer.status_code == 503
        assert answer.json()["detail"].startswith("jaeger unavailable")
    health = (await stack.shim.get("/health")).json()
    assert health["checks"]["jaeger"]["status"] == "unhealthy"

    await stack.jaeger.start()
    # A new Jaeger's memory store is empty: the old request is gone, new ones arrive.
    assert (await stack.shim.get("/v1/requests/recent")).json() == []
    (again,) = await stack.burst(HEALTHY, 1)

    async def found() -> bool:
        recent = (await stack.shim.get("/v1/requests/recent")).json()
        return [r["request_id"] for r in recent] == [again["request_id"]]

    await until(found, 15, "the new request in the restarted Jaeger")
    health = (await stack.shim.get("/health")).json()
    assert health["checks"]["jaeger"]["status"] == "healthy"
