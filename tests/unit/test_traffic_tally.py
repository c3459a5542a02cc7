"""The traffic tally: error kinds from real failures, and exact counts through the real engine.

Transport failures are produced for real on 127.0.0.1 (a closed port, a socket that never
answers, a peer that hangs up, a peer that answers garbage) and classified where the
sender catches them; the engine runs against a small aiohttp server whose answers per
route are fixed, which also records the request bodies exactly as they arrived.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from failure_lab.control import TrafficErrorCounts
from simulator.generator.engine import TrafficEngine
from simulator.generator.metrics import GeneratorMetrics
from simulator.generator.planner import ENDPOINTS, PlannedRequest, RequestPlanner
from simulator.generator.senders import (
    AiohttpSender,
    SenderConfig,
    TransportError,
    transport_error_kind,
)
from simulator.generator.tally import ErrorKind, TrafficTally, body_bytes, error_kind
from simulator.options import PipelineOptions

OPTIONS = PipelineOptions(retries_enabled=True, rate_limit=0, cache_ttl=5, db_latency_ms=0)
GET = PlannedRequest("GET", "/api/v1/users/{id}", "/api/v1/users/1")


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """Listens and never accepts: connections complete in the backlog, nothing answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    await writer.drain()
    writer.close()


async def transport_failure(base_url: str, timeout_s: float = 5.0) -> TransportError:
    """The error a real sender raises for one GET to ``base_url``."""
    sender = sender_for(base_url, timeout_s)
    try:
        with pytest.raises(TransportError) as caught:
            await sender.request(GET, {})
    finally:
        await sender.aclose()
    return caught.value


def sender_for(base_url: str, timeout_s: float = 5.0) -> AiohttpSender:
    return AiohttpSender(
        SenderConfig(
            base_url=base_url,
            tracer_provider=TracerProvider(),
            max_in_flight=4,
            request_timeout_s=timeout_s,
            span_hook=lambda _span: None,
        )
    )


# -- error kinds -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "transport", "kind"),
    [
        (500, None, "http_5xx"),
        (503, None, "http_5xx"),
        (504, None, "http_5xx"),
        (429, None, "rate_limited"),
        (400, None, "http_4xx"),
        (404, None, "http_4xx"),
        (422, None, "http_4xx"),
        (302, None, "other"),
        (None, "timeout", "timeout"),
        (None, "connection", "connection"),
        (None, "cancelled", "cancelled"),
        (None, None, "other"),
    ],
)
def test_error_kind_from_status_or_transport(
    status: int | None, transport: Any, kind: ErrorKind
) -> None:
    assert error_kind(status, transport) == kind


def test_every_error_kind_is_a_field_of_the_answer() -> None:
    kinds = {value for part in typing.get_args(ErrorKind) for value in typing.get_args(part)}
    assert kinds == set(TrafficErrorCounts.model_fields)
    assert len(kinds) == 7


async def test_refused_connection_is_a_connection_error() -> None:
    port = closed_port()
    with pytest.raises(ConnectionRefusedError) as raw:
        await asyncio.open_connection("127.0.0.1", port)
    assert transport_error_kind(raw.value) == "connection"

    error = await transport_failure(f"http://127.0.0.1:{port}")
    assert error.kind == "connection"
    assert isinstance(error.__cause__, aiohttp.ClientConnectorError)


async def test_no_answer_is_a_timeout() -> None:
    async with silent_server() as url:
        error = await transport_failure(url, timeout_s=0.2)
    assert error.kind == "timeout"
    assert str(error) == "timeout after 0.2s"
    # A TimeoutError is an OSError too: it must not be taken for a connection error.
    assert isinstance(error.__cause__, TimeoutError | OSError)


async def test_peer_hanging_up_is_a_connection_error() -> None:
    async with raw_server(hang_up) as url:
        error = await transport_failure(url)
    assert error.kind == "connection"
    assert isinstance(error.__cause__, aiohttp.ServerDisconnectedError)


async def test_malformed_response_is_other() -> None:
    async with raw_server(garbage) as url:
        error = await transport_failure(url)
    assert error.kind == "other"
    assert isinstance(error.__cause__, aiohttp.ClientResponseError)


# -- the tally on its own ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [{"name": "Ada"}, {"name": "Zoë Ørsted", "email": "zoe@example.org"}, {"n": "日本"}],
)
def test_body_bytes_are_what_aiohttp_puts_on_the_wire(body: dict[str, str]) -> None:
    assert body_bytes(body) == aiohttp.payload.JsonPayload(body).size
    assert body_bytes(None) == 0


def test_body_bytes_of_a_known_body() -> None:
    assert body_bytes({"name": "Ada"}) == len(b'{"name": "Ada"}') == 15


def test_totals_rate_and_send_times() -> None:
    tally = TrafficTally()
    tally.record_sent(100.0, late=False)
    tally.record_sent(101.0, late=True)
    tally.record_sent(102.0, late=False)
    tally.record_dropped()
    tally.record_finished(GET, 200, None, 0)
    tally.record_finished(GET, 503, None, 3)
    patch = PlannedRequest("PATCH", "/api/v1/users/{id}", "/api/v1/users/2", {"name": "Ada"})

    stats = tally.statistics(circuit_breaker_trips=4, now=104.0)

    totals = stats.totals
    assert (totals.sent, totals.succeeded, totals.failed, totals.in_flight) == (3, 1, 1, 1)
    assert (totals.dropped, totals.late_sends) == (1, 1)
    assert totals.elapsed_seconds == 4.0
    assert totals.mean_send_rps == 0.75
    assert stats.endpoint_counts["GET /api/v1/users/{id}"].model_dump() == {
        "sent": 2,
        "succeeded": 1,
        "failed": 1,
    }
    assert stats.status_counts == {"200": 1, "503": 1}
    assert stats.error_counts.http_5xx == 1
    assert stats.retries == 3
    assert stats.circuit_breaker_trips == 4
    assert stats.bytes_sent == 0
    assert stats.first_send_time is not None
    assert stats.last_send_time is not None
    assert stats.last_send_time - stats.first_send_time == timedelta(seconds=2)
    assert stats.last_send_time.utcoffset() == timedelta(0)

    tally.record_finished(patch, 404, None, 0)
    later = tally.statistics(circuit_breaker_trips=4, now=104.0)
    assert later.totals.in_flight == 0
    assert later.bytes_sent == 15
    assert later.error_counts.http_4xx == 1
    assert later.status_counts == {"200": 1, "404": 1, "503": 1}


def test_nothing_sent_yet() -> None:
    stats = TrafficTally().statistics(circuit_breaker_trips=0)
    assert stats.totals.sent == 0
    assert stats.totals.elapsed_seconds == 0.0
    assert stats.totals.mean_send_rps == 0.0
    assert stats.first_send_time is None
    assert stats.last_send_time is None
    assert stats.endpoint_counts == {}
    assert stats.status_counts == {}
    assert set(stats.error_counts.model_dump().values()) == {0}


# -- through the engine ------------------------------------------------------------------------

# What the server answers per route key: (status, retries header).
ANSWERS: dict[str, tuple[int, int]] = {
    "GET /api/v1/users/{id}": (200, 1),
    "GET /api/v1/users": (429, 0),
    "POST /api/v1/users": (201, 0),
    "PATCH /api/v1/users/{id}": (404, 0),
    "GET /api/v1/users/error": (503, 2),
}


@dataclass
class UserApi:
    bodies: list[bytes] = field(default_factory=list)
    content_lengths: list[int] = field(default_factory=list)
    delay: float = 0.0

    def handler(self, key: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        status, retries = ANSWERS[key]

        async def handle(request: web.Request) -> web.Response:
            raw = await request.read()
            if raw:
                self.bodies.append(raw)
                self.content_lengths.append(int(request.headers["Content-Length"]))
            if self.delay:
                await asyncio.sleep(self.delay)
            return web.json_response(
                {}, status=status, headers={"x-failure-lab-retries": str(retries)}
            )

        return handle

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/users/error", self.handler("GET /api/v1/users/error"))
        app.router.add_get("/api/v1/users", self.handler("GET /api/v1/users"))
        app.router.add_post("/api/v1/users", self.handler("POST /api/v1/users"))
        app.router.add_get("/api/v1/users/{id}", self.handler("GET /api/v1/users/{id}"))
        app.router.add_patch("/api/v1/users/{id}", self.handler("PATCH /api/v1/users/{id}"))
        return app


@asynccontextmanager
async def user_api(api: UserApi) -> AsyncIterator[str]:
    runner = web.AppRunner(api.app(), handle_signals=False, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def engine_for(
    base_url: str, registry: CollectorRegistry | None = None, **overrides: Any
) -> AsyncIterator[TrafficEngine]:
    settings: dict[str, Any] = {
        "base_url": base_url,
        "tracer_provider": TracerProvider(),
        "metrics": GeneratorMetrics(registry or CollectorRegistry()),
        "planner": RequestPlanner(users=10, rng=random.Random(7), endpoints=ENDPOINTS),
        "max_in_flight": 8,
        "late_threshold_s": 0.005,
    }
    settings.update(overrides)
    async with TrafficEngine(**settings) as engine:
        yield engine


async def test_engine_tally_counts_what_the_server_answered() -> None:
    api = UserApi()
    async with user_api(api) as url, engine_for(url) as engine:
        # The rotation over all five endpoints is 11 long: 6 get, 2 list, 1 create, 1 update,
        # 1 error; two rounds of it.
        results = await engine.burst(OPTIONS, 22)
        stats = engine.tally.statistics(circuit_breaker_trips=0)

    assert len(results) == 22
    totals = stats.totals
    assert (totals.sent, totals.succeeded, totals.failed, totals.in_flight) == (22, 14, 8, 0)
    assert totals.dropped == 0
    assert {key: counts.model_dump() for key, counts in stats.endpoint_counts.items()} == {
        "GET /api/v1/users/{id}": {"sent": 12, "succeeded": 12, "failed": 0},
        "GET /api/v1/users": {"sent": 4, "succeeded": 0, "failed": 4},
        "POST /api/v1/users": {"sent": 2, "succeeded": 2, "failed": 0},
        "PATCH /api/v1/users/{id}": {"sent": 2, "succeeded": 0, "failed": 2},
        "GET /api/v1/users/error": {"sent": 2, "succeeded": 0, "failed": 2},
    }
    assert stats.status_counts == {"200": 12, "201": 2, "404": 2, "429": 4, "503": 2}
    assert stats.error_counts.model_dump() == {
        "http_5xx": 2,
        "rate_limited": 4,
        "http_4xx": 2,
        "timeout": 0,
        "connection": 0,
        "cancelled": 0,
        "other": 0,
    }
    assert stats.retries == 12 * 1 + 2 * 2 == sum(r.retry_count for r in results)
    assert len(api.bodies) == 4
    assert stats.bytes_sent == sum(len(raw) for raw in api.bodies) == sum(api.content_lengths)
    assert all(json.loads(raw) for raw in api.bodies)


async def test_engine_tally_counts_transport_failures_by_kind() -> None:
    registry = CollectorRegistry()
    async with engine_for(f"http://127.0.0.1:{closed_port()}", registry) as engine:
        await engine.burst(OPTIONS, 3)
        refused = engine.tally.statistics(circuit_breaker_trips=0)
    assert refused.error_counts.connection == 3
    assert refused.totals.failed == 3
    assert refused.status_counts == {}
    assert sum(c.sent for c in refused.endpoint_counts.values()) == 3

    async with silent_server() as url, engine_for(url, request_timeout_s=0.2) as engine:
        await engine.burst(OPTIONS, 2)
        timed_out = engine.tally.statistics(circuit_breaker_trips=0)
    assert timed_out.error_counts.timeout == 2
    assert timed_out.error_counts.connection == 0

    async with silent_server() as url, engine_for(url, request_timeout_s=30) as engine:
        burst = asyncio.create_task(engine.burst(OPTIONS, 3))
        for _ in range(1000):  # all three go out at once: 8 slots are free
            if engine.tally.sent == 3:
                break
            await asyncio.sleep(0.01)
        assert engine.tally.sent == 3
        burst.cancel()
        with pytest.raises(asyncio.CancelledError):
            await burst
        cancelled = engine.tally.statistics(circuit_breaker_trips=0)
    assert cancelled.error_counts.cancelled == 3
    assert (cancelled.totals.sent, cancelled.totals.failed, cancelled.totals.in_flight) == (3, 3, 0)


async def test_dropped_and_late_sends_match_the_engine_and_its_metrics() -> None:
    api = UserApi(delay=0.05)
    registry = CollectorRegistry()
    async with user_api(api) as url, engine_for(url, registry, max_in_flight=1) as engine:
        # One request in flight at a time, each held 50 ms: at 200 req/s most are dropped.
        run = await engine.run(OPTIONS, rate=200, duration=0.3)
        stats = engine.tally.statistics(circuit_breaker_trips=0)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert stats.totals.dropped == run.dropped > 0
    assert (
        stats.totals.sent
        == run.sent
        == sample("failure_lab_generator_requests_total", result="sent")
    )
    assert stats.totals.dropped == sample("failure_lab_generator_requests_total", result="dropped")
    assert (
        stats.totals.late_sends
        == run.late_sends
        == sample("failure_lab_generator_late_sends_total")
    )
    assert stats.totals.succeeded + stats.totals.failed == run.succeeded + run.failed
