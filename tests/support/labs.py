"""The real app on loopback with its spans kept in memory, and its metric samples."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, NamedTuple

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from failure_lab.settings import Settings
from simulator.app import create_app
from tests.support.servers import free_port, serve_app


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
