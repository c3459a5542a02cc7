"""The real app on loopback with its spans kept in memory, and its metric samples."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from failure_lab.settings import Settings
from simulator.app import create_app
from tests.support.configs import config_with
from tests.support.servers import free_port, serve_app

BURST_PAYLOAD: dict[str, Any] = {
    "rate_of_requests": 50,
    "number_of_requests": 1,
    "retries_enabled": True,
    "rate_limiting": 1000,
    "rate_limiting_algo": "token_bucket",
    "cache_enabled": True,
    "cache_ttl": 30,
    "db_latency": 0,
}


class Lab(NamedTuple):
    app: FastAPI
    http: httpx.AsyncClient
    spans: InMemorySpanExporter


@asynccontextmanager
async def running_lab(*, embedded_shim: bool = True, **settings: Any) -> AsyncIterator[Lab]:
    """``create_app(Settings(**settings))`` served on a free port, every span kept."""
    port = free_port()
    app = create_app(Settings(port=port, **settings), embedded_shim=embedded_shim)
    spans = InMemorySpanExporter()
    app.state.tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    async with serve_app(app, port) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield Lab(app, http, spans)


@dataclass(frozen=True)
class Traffic:
    """The finished spans of some simulated requests, and the generator's results."""

    spans: tuple[ReadableSpan, ...]
    results: tuple[dict[str, Any], ...]

    def trace_ids(self) -> list[int]:
        return [uuid.UUID(result["request_id"]).int for result in self.results]

    def of_trace(self, trace_id: int) -> list[ReadableSpan]:
        return [s for s in self.spans if s.context is not None and s.context.trace_id == trace_id]

    def servers(self) -> list[ReadableSpan]:
        """The server spans, oldest first."""
        found = [s for s in self.spans if s.kind is SpanKind.SERVER]
        return sorted(found, key=lambda s: s.start_time or 0)


async def failing_then_healthy(otlp_endpoint: str | None = None) -> Traffic:
    """Two requests that fail every database attempt (retried twice, answered 5xx), then
    three that succeed, all through the real app; with ``otlp_endpoint`` its own OTLP
    exporter also sends every span there (flushed when the app stops)."""
    port = free_port()
    memory = InMemorySpanExporter()
    failing = config_with(
        failure_injection_enabled=True,
        failure_rate=1.0,
        max_retries=2,
        db_latency_min_ms=0,
        db_latency_max_ms=1,
    )
    healthy = config_with(failure_injection_enabled=False, db_latency_min_ms=0, db_latency_max_ms=1)
    results: list[dict[str, Any]] = []
    with pytest.MonkeyPatch.context() as env:
        if otlp_endpoint is not None:
            env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint)
        app = create_app(Settings(port=port))
        app.state.tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
        async with serve_app(app, port) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
            for config, count in ((failing, 2), (healthy, 3)):
                answer = await http.put("/v1/config/failure", json=config.model_dump())
                assert answer.status_code == 200, answer.text
                answer = await http.post(
                    "/v1/traffic/generate",
                    json={"mode": "burst", "count": count, "payload": BURST_PAYLOAD},
                )
                assert answer.status_code == 200, answer.text
                results.extend(answer.json())
    return Traffic(spans=tuple(memory.get_finished_spans()), results=tuple(results))


async def metrics_again(http: httpx.AsyncClient, service: dict[str, Any]) -> dict[str, Any]:
    """``/metrics/json`` asked for the window a run report's ``service`` figures cover."""
    at = datetime.fromisoformat(service["window_end"]).timestamp()
    params = {"window": f"{service['window_seconds']:.3f}", "at": f"{at:.3f}"}
    answer: dict[str, Any] = (await http.get("/metrics/json", params=params)).json()
    return answer


def sample(app: FastAPI, name: str, **labels: str) -> float:
    """A sample of the app's registry; 0 for a series that does not exist (yet)."""
    value = app.state.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)
