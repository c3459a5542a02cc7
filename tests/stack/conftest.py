"""Fixtures of the stack tests: the metric names the simulator, the exporter and HAProxy really
serve."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from exporter.app import create_exporter_app
from failure_lab.settings import Settings
from simulator.app import create_app
from tests.stack.stackfiles import exposition_names
from tests.support.haproxy import HAProxyProcess
from tests.support.servers import free_port

_NOWHERE = "http://127.0.0.1:9"


async def _metrics_text(app: FastAPI) -> str:
    """``GET /metrics`` of an app that is built but not started (the route reads only the
    app's registry, which exists from construction)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.get("/metrics")
    response.raise_for_status()
    return response.text


def _haproxy_metrics_text(workdir: Path) -> str:
    """HAProxy's ``/metrics`` with the repository's haproxy.cfg and no replica resolved (its
    nameserver is a closed port): every server slot has its series all the same."""
    haproxy = HAProxyProcess(workdir, nameserver=f"127.0.0.1:{free_port()}", simulator_port=8001)
    haproxy.start()
    try:
        return haproxy.metrics()
    finally:
        haproxy.stop()


@pytest.fixture(scope="session")
def served_metric_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every sample name of the simulator's, the exporter's and HAProxy's ``/metrics``."""
    simulator = create_app(Settings(), embedded_shim=False)
    exporter = create_exporter_app(
        Settings(prometheus_url=_NOWHERE, jaeger_url=_NOWHERE, simulator_url=_NOWHERE)
    )
    texts = [asyncio.run(_metrics_text(app)) for app in (simulator, exporter)]
    texts.append(_haproxy_metrics_text(tmp_path_factory.mktemp("haproxy")))
    return set().union(*(exposition_names(text) for text in texts))
