"""``JaegerSource`` against a real Jaeger (``tests/support/jaeger.py``).

The spans are this project's own: the app is served with ``OTEL_EXPORTER_OTLP_ENDPOINT``
pointing at Jaeger, so its own OTLP exporter sends them, a failure config forces database
errors and retries, and bursts of simulated requests are sent. The same spans are kept in
memory too, so what the source reads back from Jaeger is compared with the SDK's spans.

A stand-in server remains for the two ways of failing a real Jaeger cannot be made to show:
an answer that trickles in byte by byte, and a body that is not JSON at all (what a proxy's
error page in front of Jaeger looks like). A hung Jaeger is the real one stopped (SIGSTOP).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry import trace as trace_api

from exporter.errors import SourceTimeout, SourceUnavailable, TraceNotFound
from exporter.sources.jaeger import JaegerCursor, JaegerSource, rfc3339_nano
from exporter.sources.readable import span_record
from exporter.spans import SpanRecord, trace_id_to_uuid
from tests.support.jaeger import JaegerProcess
from tests.support.labs import Traffic
from tests.support.servers import free_port
from tests.support.spanmaker import other_service_server, requests_of

pytestmark = pytest.mark.timeout(60)

SERVICE = "failure-lab-simulator"
PAYLOAD: dict[str, Any] = {
    "rate_of_requests": 50,
    "number_of_requests": 1,
    "retries_enabled": True,
    "rate_limiting": 1000,
    "rate_limiting_algo": "token_bucket",
    "cache_enabled": True,
    "cache_ttl": 30,
    "db_latency": 0,
}
Call = Callable[[], Awaitable[object]]


def _by_span_id(records: Sequence[SpanRecord]) -> list[SpanRecord]:
    return sorted(records, key=lambda r: r.span_id)


def _types(record: SpanRecord) -> tuple[object, ...]:
    """What equality of records does not see: the Python type of every attribute value
    (``1 == 1.0 == True``)."""
    return (
        sorted((k, type(v).__name__) for k, v in record.attributes.items()),
        [sorted((k, type(v).__name__) for k, v in e.attributes.items()) for e in record.events],
    )


async def _with(url: str, call: Callable[[JaegerSource], Awaitable[Any]], **options: Any) -> Any:
    source = JaegerSource(url, options.pop("service", SERVICE), **options)
    try:
        return await call(source)
    finally:
        await source.aclose()


# --- JaegerSource.trace -----------------------------------------------------------------------


async def test_every_trace_round_trips_to_the_records_of_its_sdk_spans(
    traffic: Traffic, jaeger: JaegerProcess
) -> None:
    for trace_id in traffic.trace_ids():
        read = _by_span_id(await _with(jaeger.query_url, lambda s, t=trace_id: s.trace(t)))
        direct = _by_span_id([span_record(s) for s in traffic.of_trace(trace_id)])
        # At least the client root, the server span and one db.query attempt.
        assert len(read) >= 3
        assert {"client", "server"} <= {r.kind for r in read}
        assert read == direct
        assert [_types(r) for r in read] == [_types(r) for r in direct]
    read_all = [
        r
        for t in traffic.trace_ids()
        for r in await _with(jaeger.query_url, lambda s, t=t: s.trace(t))
    ]
    assert {r.kind for r in read_all} == {"client", "server", "internal"}
    assert {r.service_name for r in read_all} == {SERVICE}
    retry_events = [e for r in read_all for e in r.events if e.name == "retry.attempt"]
    assert len(retry_events) == 4  # two failing requests, two retries each
    assert all(type(e.attributes["attempt"]) is int for e in retry_events)
    assert any(r.status == "error" for r in read_all)


async def test_an_unknown_trace_is_not_found_and_may_still_arrive(
    traffic: Traffic, jaeger: JaegerProcess
) -> None:
    missing = uuid.uuid4().int
    with pytest.raises(TraceNotFound, match="may still be arriving") as caught:
        await _with(jaeger.query_url, lambda s: s.trace(missing))
    assert caught.value.request_id == trace_id_to_uuid(missing)
    assert caught.value.may_still_arrive is True
    assert "jaeger" in str(caught.value)


# --- JaegerSource.recent ----------------------------------------------------------------------


async def test_recent_gives_the_newest_server_spans_of_the_service(
    traffic: Traffic, own_jaeger: JaegerProcess
) -> None:
    servers = traffic.servers()[::-1]
    assert len(servers) == len(traffic.results) == 5
    gateway = other_service_server(servers[0], "gateway")  # in our newest trace
    await own_jaeger.send(traffic.spans + gateway)
    url = own_jaeger.query_url
    newest = await _with(url, lambda s: s.recent(3, 60))
    everything = await _with(url, lambda s: s.recent(50, 120))
    assert newest == [span_record(s) for s in servers[:3]]
    assert everything == [span_record(s) for s in servers]
    assert {r.trace_id for r in everything} == set(traffic.trace_ids())
    assert all(r.kind == "server" and r.service_name == SERVICE for r in everything)
    # The gateway is a service of Jaeger's, and its server span is in the trace Jaeger
    # answers, but it is not a request of the simulated service.
    assert await _with(url, lambda s: s.recent(5, 60), service="gateway") == [
        span_record(gateway[0])
    ]
    whole = await _with(url, lambda s: s.trace(servers[0].context.trace_id))
    assert span_record(gateway[0]) in whole


async def test_recent_finds_the_newest_among_traces_that_arrived_together(
    own_jaeger: JaegerProcess,
) -> None:
    """Thirty requests reach Jaeger in one export, so it holds them in no order: the five
    newest by start are still the five answered."""
    made = requests_of("explorer", 30)
    await own_jaeger.send(made.spans)
    servers = sorted(
        (s for s in made.spans if s.kind is trace_api.SpanKind.SERVER),
        key=lambda s: s.start_time or 0,
        reverse=True,
    )
    for limit in (1, 5, 12):
        newest = await _with(
            own_jaeger.query_url, lambda s, n=limit: s.recent(n, 60), service="explorer"
        )
        assert newest == [span_record(s) for s in servers[:limit]]


async def test_recent_keeps_to_its_window(traffic: Traffic, jaeger: JaegerProcess) -> None:
    """Requests that started before the lookback are left out."""
    await asyncio.sleep(0.3)
    assert await _with(jaeger.query_url, lambda s: s.recent(10, 0.2)) == []
    assert len(await _with(jaeger.query_url, lambda s: s.recent(10, 120))) == 5


async def test_no_traces_found_is_an_empty_list(jaeger: JaegerProcess) -> None:
    assert await _with(jaeger.query_url, lambda s: s.recent(10, 60), service="nobody") == []


def test_times_are_written_rfc3339_with_nanoseconds() -> None:
    assert rfc3339_nano(1_705_314_600_123_456_789) == "2024-01-15T10:30:00.123456789Z"
    assert rfc3339_nano(1_705_314_600_000_000_001) == "2024-01-15T10:30:00.000000001Z"
    assert rfc3339_nano(0) == "1970-01-01T00:00:00.000000000Z"


# --- failures ---------------------------------------------------------------------------------


async def test_a_hung_jaeger_times_out_within_the_bound(
    traffic: Traffic, own_jaeger: JaegerProcess
) -> None:
    source = JaegerSource(own_jaeger.query_url, SERVICE, timeout=0.5)
    await source.check()  # a connection to reuse, as a running shim has
    own_jaeger.pause()
    try:
        calls: list[Call] = [
            lambda: source.trace(traffic.trace_ids()[0]),
            lambda: source.recent(5, 60),
            lambda: source.updates(JaegerCursor(0, time.time_ns())),
            source.check,
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(SourceTimeout) as caught:
                await call()
            assert time.monotonic() - started < 2.0  # the 0.5 s bound, not the hang
            assert caught.value.backend == "jaeger"
            assert "0.5 s" in caught.value.message
    finally:
        own_jaeger.resume()
        await source.aclose()


async def test_a_search_deeper_than_the_store_is_a_500_naming_jaeger(jaeger: JaegerProcess) -> None:
    """jaeger/config.yaml keeps 50000 traces; Jaeger refuses to search deeper than that."""
    with pytest.raises(SourceUnavailable, match="HTTP 500: search depth must be") as caught:
        await _with(jaeger.query_url, lambda s: s.recent(50_001, 60))
    assert caught.value.backend == "jaeger"
    assert str(caught.value).startswith("jaeger: ")


async def test_the_otlp_port_instead_of_the_query_port_is_unavailable(
    traffic: Traffic, jaeger: JaegerProcess
) -> None:
    """Jaeger's OTLP receiver answers api_v3 paths with a plain 404 page."""
    source = JaegerSource(jaeger.otlp_url, SERVICE)
    try:
        calls: list[Call] = [
            lambda: source.trace(traffic.trace_ids()[0]),
            lambda: source.recent(5, 60),
            source.check,
        ]
        for call in calls:
            with pytest.raises(SourceUnavailable, match="HTTP 404: 404 page not found") as caught:
                await call()
            assert caught.value.backend == "jaeger"
    finally:
        await source.aclose()


async def test_a_closed_port_is_unavailable() -> None:
    source = JaegerSource(f"http://127.0.0.1:{free_port()}", SERVICE, timeout=2)
    try:
        calls: list[Call] = [lambda: source.trace(1), lambda: source.recent(5, 60), source.check]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(SourceUnavailable, match="cannot reach") as caught:
                await call()
            assert caught.value.backend == "jaeger"
            assert time.monotonic() - started < 2.5
    finally:
        await source.aclose()


async def test_check_passes_while_jaeger_runs_and_fails_once_it_is_gone(
    own_jaeger: JaegerProcess,
) -> None:
    source = JaegerSource(own_jaeger.query_url + "/", SERVICE)
    try:
        await source.check()
        own_jaeger.kill()
        with pytest.raises(SourceUnavailable, match="cannot reach"):
            await source.check()
        await own_jaeger.start()
        await source.check()
    finally:
        await source.aclose()


async def test_only_a_client_the_source_made_is_closed(jaeger: JaegerProcess) -> None:
    own = JaegerSource(jaeger.query_url, SERVICE)
    await own.check()
    await own.aclose()
    # Closed with the source: it cannot send any more.
    with pytest.raises(RuntimeError, match="client has been closed"):
        await own.check()
    async with httpx.AsyncClient() as client:
        lent = JaegerSource(jaeger.query_url, SERVICE, client=client)
        await lent.check()
        await lent.aclose()
        assert not client.is_closed
        # Still the lender's to use, and still working.
        assert (await client.get(f"{jaeger.query_url}/api/v3/services")).status_code == 200


# --- what a real Jaeger cannot be made to do ----------------------------------------------------


@pytest_asyncio.fixture
async def stand_in() -> AsyncIterator[Callable[[web.Application], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_an_overall_bound_holds_while_the_body_trickles(
    stand_in: Callable[[web.Application], Awaitable[str]],
) -> None:
    """Each chunk comes before the client's read timeout, the whole answer does not."""

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        for _ in range(40):
            await response.write(b" ")
            await asyncio.sleep(0.1)
        await response.write(b'{"error":{"httpCode":404,"message":"No traces found"}}')
        return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", trickle)
    url = await stand_in(app)
    started = time.monotonic()
    with pytest.raises(SourceTimeout):
        await _with(url, lambda s: s.recent(5, 60), timeout=0.5)
    assert time.monotonic() - started < 2.0  # the 0.5 s bound, not the 4 s the answer takes


async def test_a_body_that_is_not_json_is_unavailable_naming_jaeger(
    stand_in: Callable[[web.Application], Awaitable[str]],
) -> None:
    """A proxy in front of Jaeger answering its own error page with 200."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(status=200, text="<html>gateway says hi</html>")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    url = await stand_in(app)
    for call in (lambda s: s.trace(1), lambda s: s.recent(5, 60), lambda s: s.check()):
        with pytest.raises(SourceUnavailable, match=r"not JSON|unexpected services") as caught:
            await _with(url, call)
        assert caught.value.backend == "jaeger"
