"""Fixtures of the stack tests: the metric names the simulator and the exporter really serve."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from exporter.app import create_exporter_app
from failure_lab.settings import Settings
from simulator.app import create_app
from tests.stack.stackfiles import exposition_names

_NOWHERE = "http://127.0.0.1:9"


async def _metrics_text(app: FastAPI) -> str:
    """``GET /metrics`` of an app that is built but not started (the route reads only the
    app's registry, which exists from construction)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.get("/metrics")
    response.raise_for_status()
    return response.text


@pytest.fixture(scope="session")
def served_metric_names() -> set[str]:
    """Every sample name of the simulator's and the exporter's ``/metrics``."""
    simulator = create_app(Settings(), embedded_shim=False)
    exporter = create_exporter_app(
        Settings(prometheus_url=_NOWHERE, jaeger_url=_NOWHERE, simulator_url=_NOWHERE)
    )
    texts = [asyncio.run(_metrics_text(app)) for app in (simulator, exporter)]
    return exposition_names(texts[0]) | exposition_names(texts[1])
