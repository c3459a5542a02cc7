"""Liveness, readiness and the detailed view on both processes, against a real redis-server
that is killed and started again, and against peers that never answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.app import create_exporter_app
from failure_lab.settings import Settings
from simulator.app import create_app
from tests.support.servers import RedisProcess, free_port, serve_app
from tests.support.sockets import SilentServer

TIMEOUT = 0.5  # backend_timeout_seconds of every app here


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProcess]:
    process = RedisProcess(tmp_path)
    process.start()
    yield process
    process.kill()


@asynccontextmanager
async def app_on(
    *, embedded_shim: bool = True, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    app = create_app(
        Settings(port=port, backend_timeout_seconds=TIMEOUT, **settings),
        embedded_shim=embedded_shim,
    )
    async with serve_app(app, port) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield http


async def timed(http: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = await http.get(path)
    return answer, time.monotonic() - started


async def ready_again(http: httpx.AsyncClient, within: float = 5.0) -> httpx.Response:
    deadline = time.monotonic() + within
    while True:
        answer = await http.get("/health/ready")
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.1)


async def assert_redis_down(http: httpx.AsyncClient) -> None:
    ready, elapsed = await timed(http, "/health/ready")
    assert elapsed < TIMEOUT + 0.5
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not_ready"
    assert body["detail"].startswith("not ready: redis unavailable")
    assert body["checks"]["redis"]["status"] == "unhealthy"
    health, elapsed = await timed(http, "/health")
    assert elapsed < TIMEOUT + 0.5
    assert health.status_code == 503
    assert health.json()["status"] == "unhealthy"
    assert health.json()["checks"]["redis"]["status"] == "unhealthy"
    assert "connect" in health.json()["checks"]["redis"]["error"].lower()
    live = await http.get("/health/live")
    assert live.status_code == 200
    assert live.json()["status"] == "alive"


async def test_embedded_health_follows_its_redis(redis: RedisProcess) -> None:
    async with app_on(redis_url=redis.url) as http:
        ready = await http.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        health = (await http.get("/health")).json()
        assert health["status"] == "healthy"
        assert set(health["checks"]) == {"embedded", "redis"}
        role = "failure config, rate limits, cache, disruptions, breaker config"
        assert health["checks"]["redis"]["role"] == role

        redis.kill()
        await assert_redis_down(http)
        assert (await http.get("/health")).json()["checks"]["embedded"]["status"] == "healthy"
        status = (await http.get("/v1/status")).json()
        backends = {b["name"]: b for b in status["backends"]}
        assert backends["redis"]["healthy"] is False
        assert backends["redis"]["last_error"]
        assert backends["redis"]["last_success"] is not None  # before the kill
        assert backends["embedded"]["role"] == "metrics and traces"

        redis.start()
        assert (await ready_again(http)).status_code == 200
        assert (await http.get("/health")).status_code == 200
        status = (await http.get("/v1/status")).json()
        assert {b["name"]: b["healthy"] for b in status["backends"]}["redis"] is True


async def test_the_stack_simulator_serves_the_same_probes(redis: RedisProcess) -> None:
    async with app_on(embedded_shim=False, redis_url=redis.url) as http:
        ready = await http.get("/health/ready")
        assert ready.status_code == 200
        assert set(ready.json()["checks"]) == {"redis"}
        assert (await http.get("/health")).json()["status"] == "healthy"
        redis.kill()
        await assert_redis_down(http)
        redis.start()
        assert (await ready_again(http)).status_code == 200


async def test_without_redis_a_simulator_depends_on_nothing() -> None:
    async with app_on(embedded_shim=False) as http:
        ready = (await http.get("/health/ready")).json()
        assert ready == {"status": "ready", "detail": "every dependency answers", "checks": {}}
        assert (await http.get("/health")).json()["status"] == "healthy"


async def test_a_redis_that_never_answers_is_an_answer_within_the_timeout() -> None:
    with SilentServer() as silent:
        async with app_on(redis_url=f"redis://127.0.0.1:{silent.port}/0") as http:
            ready, elapsed = await timed(http, "/health/ready")
            assert ready.status_code == 503
            assert TIMEOUT <= elapsed < TIMEOUT + 0.5
            check = ready.json()["checks"]["redis"]
            assert check["error"] == f"did not answer in time: no answer within {TIMEOUT:g} s"


async def test_the_stack_shim_follows_its_backends_and_its_simulators_readiness(
    redis: RedisProcess,
) -> None:
    shim_port = free_port()
    with SilentServer() as prometheus:
        async with app_on(embedded_shim=False, redis_url=redis.url) as simulator:
            shim_app = create_exporter_app(
                Settings(
                    port=shim_port,
                    prometheus_url=prometheus.url,
                    jaeger_url=f"http://127.0.0.1:{free_port()}",
                    simulator_url=str(simulator.base_url),
                    backend_timeout_seconds=TIMEOUT,
                )
            )
            async with (
                serve_app(shim_app, shim_port) as url,
                httpx.AsyncClient(base_url=url, timeout=10) as shim,
            ):
                health, elapsed = await timed(shim, "/health")
                assert elapsed < TIMEOUT + 0.5
                assert health.status_code == 503  # neither metrics nor traces can be read
                checks = health.json()["checks"]
                assert checks["prometheus"]["error"].startswith("did not answer in time")
                assert checks["jaeger"]["status"] == "unhealthy"
                assert checks["simulator"]["status"] == "healthy"

                redis.kill()
                ready = await shim.get("/health/ready")
                assert ready.status_code == 503
                simulator_check = ready.json()["checks"]["simulator"]
                assert simulator_check["status"] == "unhealthy"
                assert "redis unavailable" in simulator_check["error"]
                status = (await shim.get("/v1/status")).json()
                backends = {b["name"]: b for b in status["backends"]}
                assert backends["simulator"]["healthy"] is False
                assert backends["simulator"]["role"] == "control calls"
                assert (await shim.get("/health/live")).status_code == 200
