"""``JaegerSource`` against a real HTTP server replaying Jaeger api_v3 answers.

The answers are made from real spans of this project: the app is served, a failure config
forcing database errors and retries is applied, and bursts of simulated requests are sent.
Their finished spans are encoded with the SDK's OTLP encoder into Jaeger's OTLP/JSON
(``tests.support.otlp_replay``) and served by an aiohttp server on loopback that plays
Jaeger, with switches for the ways a real one answers or fails.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanKind, StatusCode, set_span_in_context
from prometheus_client import CollectorRegistry, Counter

from exporter.errors import SourceTimeout, SourceUnavailable, TraceNotFound
from exporter.otlp_json import parse_answer, spans_from_answer
from exporter.sources.jaeger import JaegerCursor, JaegerSource, rfc3339_nano
from exporter.sources.readable import pack, span_record, unpack
from exporter.spans import SpanRecord, trace_id_to_uuid
from exporter.spanstore import SpanStore
from failure_lab.settings import Settings
from simulator.app import create_app
from tests.support.configs import config_with
from tests.support.otlp_replay import jaeger_json
from tests.support.servers import free_port, serve_app

pytestmark = pytest.mark.timeout(30)

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
RFC3339_NANO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")
NOT_FOUND = {"error": {"httpCode": 404, "message": "No traces found"}}
Call = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Traffic:
    spans: tuple[ReadableSpan, ...]
    results: tuple[dict[str, Any], ...]

    def trace_ids(self) -> list[int]:
        return [uuid.UUID(result["request_id"]).int for result in self.results]

    def of_trace(self, trace_id: int) -> list[ReadableSpan]:
        return [s for s in self.spans if s.context is not None and s.context.trace_id == trace_id]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def traffic() -> Traffic:
    """Two requests that fail every database attempt (retried twice, answered 5xx), then
    three that succeed, all through the real app."""
    port = free_port()
    app = create_app(Settings(port=port))
    memory = InMemorySpanExporter()
    app.state.tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    failing = config_with(
        failure_injection_enabled=True,
        failure_rate=1.0,
        max_retries=2,
        db_latency_min_ms=0,
        db_latency_max_ms=1,
    )
    healthy = config_with(failure_injection_enabled=False, db_latency_min_ms=0, db_latency_max_ms=1)
    results: list[dict[str, Any]] = []
    async with serve_app(app, port) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        for config, count in ((failing, 2), (healthy, 3)):
            answer = await http.put("/v1/config/failure", json=config.model_dump())
            assert answer.status_code == 200, answer.text
            answer = await http.post(
                "/v1/traffic/generate", json={"mode": "burst", "count": count, "payload": PAYLOAD}
            )
            assert answer.status_code == 200, answer.text
            results.extend(answer.json())
    return Traffic(spans=tuple(memory.get_finished_spans()), results=tuple(results))


@dataclass
class FakeJaeger:
    """A loopback HTTP server answering api_v3 paths from a set of real spans."""

    spans: Sequence[ReadableSpan]
    mode: str = "normal"  # normal | slow | error500 | garbage | no_api | empty
    content_type: str = "application/json"
    honour_num_traces: bool = True
    searches: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    def _by_trace(self, trace_id: int) -> list[ReadableSpan]:
        return [s for s in self.spans if s.context is not None and s.context.trace_id == trace_id]

    async def handle(self, request: web.Request) -> web.Response:
        if self.mode == "slow":
            await asyncio.sleep(5)
        if self.mode == "error500":
            return _plain(500, {"error": {"httpCode": 500, "message": "storage is down"}})
        if self.mode == "garbage":
            return web.Response(status=200, text="<html>gateway says hi</html>")
        if self.mode == "no_api":
            return web.Response(status=404, text="404 page not found\n")
        path = request.path
        if path == "/api/v3/services":
            return self._json({"services": [SERVICE]})
        if path == "/api/v3/traces":
            self.searches.append(dict(request.query))
            found = self._search(request.query)
            if self.mode == "empty" or not found:
                return _plain(404, NOT_FOUND)
            # Jaeger concatenates the traces it found; interleave them to be sure nothing
            # depends on a trace's spans being adjacent.
            return self._json(jaeger_json(sorted(found, key=lambda s: s.start_time or 0)))
        if path.startswith("/api/v3/traces/"):
            spans = self._by_trace(int(path.rsplit("/", 1)[1], 16))
            if not spans:
                return _plain(404, NOT_FOUND)
            return self._json(jaeger_json(spans))
        return web.Response(status=404, text="404 page not found\n")

    def _search(self, query: Mapping[str, str]) -> list[ReadableSpan]:
        """Spans of the newest ``num_traces`` traces with a span of the service starting
        in the window, as Jaeger selects them."""
        low = _unix_nano(query["query.start_time_min"])
        high = _unix_nano(query["query.start_time_max"])
        service = query["query.service_name"]
        traces: dict[int, list[ReadableSpan]] = {}
        for span in self.spans:
            assert span.context is not None
            traces.setdefault(span.context.trace_id, []).append(span)
        matching = [
            trace
            for trace in traces.values()
            if any(
                s.resource.attributes.get("service.name") == service
                and low <= (s.start_time or 0) <= high
                for s in trace
            )
        ]
        matching.sort(key=lambda trace: min(s.start_time or 0 for s in trace), reverse=True)
        depth = int(query["query.num_traces"]) if self.honour_num_traces else len(matching)
        return [s for trace in matching[:depth] for s in trace]

    def _json(self, answer: dict[str, Any]) -> web.Response:
        return web.Response(
            status=200,
            body=json.dumps(answer).encode(),
            headers={"Content-Type": self.content_type},
        )


StartJaeger = Callable[[Sequence[ReadableSpan]], Awaitable[FakeJaeger]]


def _plain(status: int, answer: dict[str, Any]) -> web.Response:
    """An error as Jaeger's ``http.Error`` writes it: text/plain, a trailing newline."""
    return web.Response(
        status=status,
        body=(json.dumps(answer, separators=(",", ":")) + "\n").encode(),
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )


@pytest_asyncio.fixture
async def serve_jaeger() -> AsyncIterator[StartJaeger]:
    runners: list[web.AppRunner] = []

    async def start(spans: Sequence[ReadableSpan]) -> FakeJaeger:
        fake = FakeJaeger(spans)
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", fake.handle)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        fake.url = f"http://{host}:{port}"
        return fake

    yield start
    for runner in runners:
        await runner.cleanup()


def _by_span_id(records: Sequence[SpanRecord]) -> list[SpanRecord]:
    return sorted(records, key=lambda r: r.span_id)


def _typed(record: SpanRecord) -> tuple[object, ...]:
    """What equality of records does not see: the Python type of every attribute value
    (``1 == 1.0 == True``)."""
    return (
        sorted((k, type(v).__name__) for k, v in record.attributes.items()),
        [sorted((k, type(v).__name__) for k, v in e.attributes.items()) for e in record.events],
    )


# --- the replayed answers themselves ---------------------------------------------------------


async def test_replayed_answers_have_jaegers_shape(traffic: Traffic) -> None:
    answer = jaeger_json(traffic.spans)
    assert list(answer) == ["result"]
    assert list(answer["result"]) == ["resourceSpans"]
    spans = [
        span
        for resource in answer["result"]["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]
    assert len(spans) == len(traffic.spans)
    for span in spans:
        assert re.fullmatch(r"[0-9a-f]{32}", span["traceId"])
        assert re.fullmatch(r"[0-9a-f]{16}", span["spanId"])
        assert isinstance(span["kind"], int)
        assert re.fullmatch(r"[0-9]+", span["startTimeUnixNano"])
        assert re.fullmatch(r"[0-9]+", span["endTimeUnixNano"])
        assert "droppedAttributesCount" not in span
        if "parentSpanId" in span:
            assert re.fullmatch(r"[0-9a-f]{16}", span["parentSpanId"])
        if "status" in span:
            assert span["status"]["code"] in (1, 2)
    roots = [s for s in spans if "parentSpanId" not in s]
    assert len(roots) == len(traffic.results)
    assert {s["kind"] for s in roots} == {3}  # the generator's client span
    assert any(s.get("status", {}).get("code") == 2 for s in spans)
    assert any("status" not in s for s in spans)
    int_values = [
        a["value"]["intValue"]
        for s in spans
        for a in s.get("attributes", [])
        if "intValue" in a["value"]
    ]
    assert int_values
    assert all(isinstance(v, str) and re.fullmatch(r"-?[0-9]+", v) for v in int_values)
    resource = answer["result"]["resourceSpans"][0]["resource"]["attributes"]
    assert {"key": "service.name", "value": {"stringValue": SERVICE}} in resource
    json.dumps(answer)


async def test_span_record_reads_the_sdk_span(traffic: Traffic) -> None:
    failed = traffic.results[0]
    assert failed["retry_count"] == 2
    trace_id = uuid.UUID(failed["request_id"]).int
    spans = traffic.of_trace(trace_id)
    server = next(s for s in spans if s.kind is SpanKind.SERVER)
    record = span_record(server)
    assert trace_id_to_uuid(record.trace_id) == failed["request_id"]
    assert record.span_id == server.context.span_id
    assert server.parent is not None
    assert record.parent_span_id == server.parent.span_id
    assert record.kind == "server"
    assert record.service_name == SERVICE
    assert (record.start_unix_nano, record.end_unix_nano) == (server.start_time, server.end_time)
    assert record.attributes["failure_lab.retry_count"] == 2
    assert record.attributes["http.route"] == failed["endpoint"]
    assert [e.name for e in record.events].count("retry.attempt") == 2
    root = span_record(next(s for s in spans if s.parent is None))
    assert root.parent_span_id is None
    assert root.kind == "client"
    db = [span_record(s) for s in spans if s.name == "db.query"]
    assert len(db) == 3
    assert {(r.status, r.status_message) for r in db} == {("error", "injected database error")}


async def test_the_span_store_keeps_untracked_packs_that_read_back_as_the_sdk_spans(
    traffic: Traffic,
) -> None:
    store = SpanStore(1000, Counter("evictions", "", registry=CollectorRegistry()))
    for span in traffic.spans:
        store.on_end(span)
    for trace_id in traffic.trace_ids():
        direct = [span_record(s) for s in traffic.of_trace(trace_id)]
        assert _by_span_id(store.spans(trace_id)) == _by_span_id(direct)
        assert store.spans(trace_id, "server") == [r for r in direct if r.kind == "server"]
    # Nested tuples of plain values: the collector untracks them once it has seen them, so
    # stored traces cost full collections nothing.
    packs = [pack(span) for span in traffic.spans]
    for packed, span in zip(packs, traffic.spans, strict=True):
        assert packed is not None
        record = unpack(packed)  # every attribute this project sets is one a record holds
        assert record.attributes == dict(span.attributes or {})
        assert [(e.name, dict(e.attributes)) for e in record.events] == [
            (e.name, dict(e.attributes or {})) for e in span.events
        ]
    for _ in range(5):
        gc.collect()
    assert not any(gc.is_tracked(p) for p in packs)


# --- JaegerSource.trace -----------------------------------------------------------------------


async def test_every_trace_round_trips_to_the_records_of_its_sdk_spans(
    traffic: Traffic, serve_jaeger: StartJaeger
) -> None:
    jaeger = await serve_jaeger(traffic.spans)
    source = JaegerSource(jaeger.url, SERVICE, timeout=2)
    try:
        for trace_id in traffic.trace_ids():
            read = _by_span_id(await source.trace(trace_id))
            direct = _by_span_id([span_record(s) for s in traffic.of_trace(trace_id)])
            # At least the client root, the server span and one db.query attempt.
            assert len(read) >= 3
            assert {"client", "server"} <= {r.kind for r in read}
            assert read == direct
            assert [_typed(r) for r in read] == [_typed(r) for r in direct]
    finally:
        await source.aclose()
    read_all = [r for t in traffic.trace_ids() for r in await _fresh_trace(jaeger.url, t)]
    kinds = {r.kind for r in read_all}
    assert kinds == {"client", "server", "internal"}
    assert {r.service_name for r in read_all} == {SERVICE}
    retry_events = [e for r in read_all for e in r.events if e.name == "retry.attempt"]
    assert len(retry_events) == 4  # two failing requests, two retries each
    assert all(type(e.attributes["attempt"]) is int for e in retry_events)
    assert any(r.status == "error" for r in read_all)


async def _fresh_trace(url: str, trace_id: int) -> list[SpanRecord]:
    source = JaegerSource(url, SERVICE)
    try:
        return await source.trace(trace_id)
    finally:
        await source.aclose()


async def test_an_unknown_trace_is_not_found_and_may_still_arrive(
    traffic: Traffic, serve_jaeger: StartJaeger
) -> None:
    jaeger = await serve_jaeger(traffic.spans)
    source = JaegerSource(jaeger.url, SERVICE)
    missing = uuid.uuid4().int
    try:
        with pytest.raises(TraceNotFound, match="may still be arriving") as caught:
            await source.trace(missing)
    finally:
        await source.aclose()
    assert caught.value.request_id == trace_id_to_uuid(missing)
    assert caught.value.may_still_arrive is True
    assert "jaeger" in str(caught.value)


async def test_a_text_plain_answer_is_parsed(traffic: Traffic, serve_jaeger: StartJaeger) -> None:
    jaeger = await serve_jaeger(traffic.spans)
    jaeger.content_type = "text/plain; charset=utf-8"
    trace_id = traffic.trace_ids()[-1]
    read = await _fresh_trace(jaeger.url, trace_id)
    assert _by_span_id(read) == _by_span_id([span_record(s) for s in traffic.of_trace(trace_id)])


# --- JaegerSource.recent ----------------------------------------------------------------------


def _gateway_spans(server: ReadableSpan) -> tuple[ReadableSpan, ...]:
    """Real SDK spans of another service in ``server``'s trace: a gateway's server span that
    enclosed ours (it started 1 us earlier), as an upstream proxy's would."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "gateway"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("gateway")
    assert server.parent is not None
    assert server.start_time is not None
    assert server.end_time is not None
    context = set_span_in_context(NonRecordingSpan(server.parent))
    span = tracer.start_span(
        "GET /api", context=context, kind=SpanKind.SERVER, start_time=server.start_time - 1000
    )
    span.end(end_time=server.end_time + 1000)
    provider.shutdown()
    return memory.get_finished_spans()


async def test_recent_gives_the_newest_server_spans_of_the_service(
    traffic: Traffic, serve_jaeger: StartJaeger
) -> None:
    servers = sorted(
        (s for s in traffic.spans if s.kind is SpanKind.SERVER),
        key=lambda s: s.start_time or 0,
        reverse=True,
    )
    assert len(servers) == len(traffic.results) == 5
    gateway = _gateway_spans(servers[0])
    jaeger = await serve_jaeger(traffic.spans + gateway)
    source = JaegerSource(jaeger.url, SERVICE)
    try:
        before = time.time_ns()
        newest = await source.recent(3, 60)
        after = time.time_ns()
        everything = await source.recent(50, 120)
    finally:
        await source.aclose()

    assert set(gateway) <= set(jaeger._search(jaeger.searches[0]))  # answered, then left out
    assert newest == [span_record(s) for s in servers[:3]]
    assert everything == [span_record(s) for s in servers]
    assert {r.trace_id for r in everything} == set(traffic.trace_ids())
    assert all(r.kind == "server" and r.service_name == SERVICE for r in everything)
    starts = [r.start_unix_nano for r in everything]
    assert starts == sorted(starts, reverse=True)

    first, second = jaeger.searches
    assert set(first) == {
        "query.service_name",
        "query.start_time_min",
        "query.start_time_max",
        "query.num_traces",
    }
    assert first["query.service_name"] == SERVICE
    assert first["query.num_traces"] == "3"
    assert second["query.num_traces"] == "50"
    for name in ("query.start_time_min", "query.start_time_max"):
        assert RFC3339_NANO.fullmatch(first[name]), first[name]
    low, high = (_unix_nano(first[n]) for n in ("query.start_time_min", "query.start_time_max"))
    assert high - low == 60_000_000_000
    assert before - 1000 <= high <= after + 1000
    low, high = (_unix_nano(second[n]) for n in ("query.start_time_min", "query.start_time_max"))
    assert high - low == 120_000_000_000


def _unix_nano(text: str) -> int:
    whole, fraction = text.rstrip("Z").split(".")
    seconds = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return int(seconds) * 1_000_000_000 + int(fraction)


async def test_recent_keeps_to_the_limit_when_jaeger_answers_more(
    traffic: Traffic, serve_jaeger: StartJaeger
) -> None:
    jaeger = await serve_jaeger(traffic.spans)
    jaeger.honour_num_traces = False
    source = JaegerSource(jaeger.url, SERVICE)
    try:
        newest = await source.recent(2, 60)
    finally:
        await source.aclose()
    servers = sorted(
        (s for s in traffic.spans if s.kind is SpanKind.SERVER),
        key=lambda s: s.start_time or 0,
        reverse=True,
    )
    assert len(jaeger._search(jaeger.searches[0])) == len(traffic.spans)
    assert newest == [span_record(s) for s in servers[:2]]


async def test_no_traces_found_is_an_empty_list(serve_jaeger: StartJaeger) -> None:
    jaeger = await serve_jaeger(())
    source = JaegerSource(jaeger.url, SERVICE)
    try:
        assert await source.recent(10, 60) == []
    finally:
        await source.aclose()
    assert len(jaeger.searches) == 1


# --- JaegerSource.updates ---------------------------------------------------------------------


async def test_updates_report_each_request_and_completed_trace_once(
    traffic: Traffic, serve_jaeger: StartJaeger
) -> None:
    origin = min(s.start_time or 0 for s in traffic.spans) - 1
    first_two = traffic.trace_ids()[:2]
    # The two first requests' spans have arrived except their roots (the generator's spans,
    # which end last).
    early = [
        s
        for s in traffic.spans
        if s.context is not None and s.context.trace_id in first_two and s.parent is not None
    ]
    jaeger = await serve_jaeger(early)
    source = JaegerSource(jaeger.url, SERVICE, settle_seconds=600, feed_max_traces=50)
    servers = sorted(
        (s for s in traffic.spans if s.kind is SpanKind.SERVER), key=lambda s: s.start_time or 0
    )
    try:
        start = await source.updates(None)
        assert (start.requests, start.completed, jaeger.searches) == ([], [], [])
        assert isinstance(start.cursor, JaegerCursor)

        cursor = JaegerCursor(origin, origin)
        first = await source.updates(cursor)
        assert {r.trace_id for r in first.requests} == set(first_two)
        assert first.requests == [span_record(s) for s in servers[:2]]
        assert first.completed == []

        jaeger.spans = traffic.spans
        second = await source.updates(first.cursor)
        assert second.requests == [span_record(s) for s in servers[2:]]
        roots = sorted(
            (s for s in traffic.spans if s.parent is None), key=lambda s: s.start_time or 0
        )
        assert [t[0].trace_id for t in second.completed] == [
            s.context.trace_id for s in roots if s.context is not None
        ]
        for trace in second.completed:
            expected = [span_record(s) for s in traffic.of_trace(trace[0].trace_id)]
            assert _by_span_id(trace) == _by_span_id(expected)

        third = await source.updates(second.cursor)
        assert (third.requests, third.completed) == ([], [])
        assert jaeger.searches[-1]["query.num_traces"] == "50"
        assert _unix_nano(jaeger.searches[-1]["query.start_time_min"]) == origin
    finally:
        await source.aclose()


async def test_updates_skip_traces_that_settled_before_the_window(
    traffic: Traffic, serve_jaeger: StartJaeger
) -> None:
    jaeger = await serve_jaeger(traffic.spans)
    source = JaegerSource(jaeger.url, SERVICE, settle_seconds=0.001)
    origin = min(s.start_time or 0 for s in traffic.spans) - 1
    try:
        late = await source.updates(JaegerCursor(origin, time.time_ns()))
    finally:
        await source.aclose()
    assert (late.requests, late.completed) == ([], [])
    assert _unix_nano(jaeger.searches[0]["query.start_time_min"]) > origin


async def test_updates_do_not_repeat_a_trace_once_it_left_the_window(
    traffic: Traffic, serve_jaeger: StartJaeger
) -> None:
    """A span arriving late puts an old trace back into the search answer; it was reported
    when it was new and is not reported again."""
    jaeger = await serve_jaeger(traffic.spans)
    origin = min(s.start_time or 0 for s in traffic.spans) - 1
    source = JaegerSource(jaeger.url, SERVICE, settle_seconds=0.001)
    server = next(s for s in traffic.spans if s.kind is SpanKind.SERVER)
    try:
        first = await source.updates(JaegerCursor(origin, origin))
        assert len(first.requests) == len(first.completed) == 5
        assert isinstance(first.cursor, JaegerCursor)
        cursor = JaegerCursor(origin, time.time_ns(), first.cursor.requests, first.cursor.traces)
        jaeger.spans = traffic.spans + _late_child(server)
        again = await source.updates(cursor)
    finally:
        await source.aclose()
    assert server in jaeger._search(jaeger.searches[-1])
    assert (again.requests, again.completed) == ([], [])


def _late_child(parent: ReadableSpan) -> tuple[ReadableSpan, ...]:
    """A real span of the service in ``parent``'s trace, started now."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    assert parent.context is not None
    context = set_span_in_context(NonRecordingSpan(parent.context))
    with provider.get_tracer("late").start_as_current_span("late", context=context):
        pass
    provider.shutdown()
    return memory.get_finished_spans()


def test_times_are_written_rfc3339_with_nanoseconds() -> None:
    assert rfc3339_nano(1_705_314_600_123_456_789) == "2024-01-15T10:30:00.123456789Z"
    assert rfc3339_nano(1_705_314_600_000_000_001) == "2024-01-15T10:30:00.000000001Z"
    assert rfc3339_nano(0) == "1970-01-01T00:00:00.000000000Z"


# --- failures ---------------------------------------------------------------------------------


async def test_a_slow_jaeger_times_out_within_the_bound(
    traffic: Traffic, serve_jaeger: StartJaeger
) -> None:
    jaeger = await serve_jaeger(traffic.spans)
    jaeger.mode = "slow"
    source = JaegerSource(jaeger.url, SERVICE, timeout=0.5)
    try:
        calls: list[Call] = [
            lambda: source.trace(traffic.trace_ids()[0]),
            lambda: source.recent(5, 60),
            source.check,
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(SourceTimeout) as caught:
                await call()
            assert time.monotonic() - started < 1.0
            assert caught.value.backend == "jaeger"
            assert "0.5 s" in caught.value.message
    finally:
        await source.aclose()


async def test_an_overall_bound_holds_while_the_body_trickles(serve_jaeger: StartJaeger) -> None:
    """Each chunk comes before the client's read timeout, the whole answer does not."""

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        for _ in range(40):
            await response.write(b" ")
            await asyncio.sleep(0.1)
        await response.write(json.dumps(NOT_FOUND).encode())
        return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", trickle)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        source = JaegerSource(f"http://{host}:{port}", SERVICE, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(SourceTimeout):
            await source.recent(5, 60)
        assert time.monotonic() - started < 1.0
        await source.aclose()
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("error500", r"HTTP 500: storage is down"),
        ("garbage", r"not JSON"),
        ("no_api", r"HTTP 404: 404 page not found"),
    ],
)
async def test_backend_errors_are_unavailable_naming_jaeger(
    traffic: Traffic, serve_jaeger: StartJaeger, mode: str, expected: str
) -> None:
    jaeger = await serve_jaeger(traffic.spans)
    jaeger.mode = mode
    source = JaegerSource(jaeger.url, SERVICE)
    try:
        calls: list[Call] = [
            lambda: source.trace(traffic.trace_ids()[0]),
            lambda: source.recent(5, 60),
        ]
        for call in calls:
            with pytest.raises(SourceUnavailable, match=expected) as caught:
                await call()
            assert caught.value.backend == "jaeger"
            assert str(caught.value).startswith("jaeger: ")
        with pytest.raises(SourceUnavailable):
            await source.check()
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


async def test_check_passes_on_a_services_answer(serve_jaeger: StartJaeger) -> None:
    jaeger = await serve_jaeger(())
    source = JaegerSource(jaeger.url + "/", SERVICE)
    try:
        await source.check()
        jaeger.mode = "error500"
        with pytest.raises(SourceUnavailable, match="HTTP 500"):
            await source.check()
    finally:
        await source.aclose()


async def test_only_a_client_the_source_made_is_closed(serve_jaeger: StartJaeger) -> None:
    jaeger = await serve_jaeger(())
    own = JaegerSource(jaeger.url, SERVICE)
    await own.check()
    await own.aclose()
    # Closed with the source: it cannot send any more.
    with pytest.raises(RuntimeError, match="client has been closed"):
        await own.check()
    async with httpx.AsyncClient() as client:
        lent = JaegerSource(jaeger.url, SERVICE, client=client)
        await lent.check()
        await lent.aclose()
        assert not client.is_closed
        # Still the lender's to use, and still working.
        assert (await client.get(f"{jaeger.url}/api/v3/services")).status_code == 200


# --- the parser on its own ----------------------------------------------------------------------


def _first_span(answer: dict[str, Any]) -> dict[str, Any]:
    span: dict[str, Any] = answer["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    return span


async def test_missing_optional_fields_take_their_defaults(traffic: Traffic) -> None:
    answer = jaeger_json([s for s in traffic.spans if s.kind is SpanKind.SERVER][:1])
    span = _first_span(answer)
    for name in ("parentSpanId", "kind", "status", "attributes", "events", "endTimeUnixNano"):
        span.pop(name, None)
    del answer["result"]["resourceSpans"][0]["resource"]
    (record,) = spans_from_answer(answer)
    assert record.parent_span_id is None
    assert record.kind == "unspecified"
    assert (record.status, record.status_message) == ("unset", None)
    assert record.attributes == {}
    assert record.events == ()
    assert record.end_unix_nano == 0
    assert record.service_name == ""
    assert spans_from_answer({"result": {}}) == []


async def test_doubles_written_without_a_fraction_stay_floats(traffic: Traffic) -> None:
    """Go's OTLP/JSON writes the double 100.0 as ``100``."""
    rate_limit = next(s for s in traffic.spans if s.name == "rate_limit")
    answer = jaeger_json([rate_limit])
    text = json.dumps(answer).replace('"doubleValue": 1000.0', '"doubleValue": 1000')
    assert '"doubleValue": 1000}' in text
    (record,) = parse_answer(text)
    value = record.attributes["failure_lab.ratelimit.rate"]
    assert type(value) is float
    assert value == 1000.0
    assert record == span_record(rate_limit)


def test_arrays_kinds_and_statuses_of_any_sdk_span_round_trip() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "arrays"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("arrays")
    attributes: dict[str, Any] = {
        "strings": ["a", "b"],
        "ints": [1, -2, 2**62],
        "bools": [True, False],
        "doubles": [0.5, -1.25],
        "empty": [],
        "bytes": b"\x00\x01",
        "mapping": {"a": 1},
        "nested": [[1], [2]],
        "negative": -7,
    }
    for kind in (SpanKind.PRODUCER, SpanKind.CONSUMER):
        with tracer.start_as_current_span("work", kind=kind, attributes=attributes) as span:
            span.add_event("marked", {"count": 3, "tags": ["x"], "ratio": 0.25, "ok": True})
            span.set_status(StatusCode.OK)
    provider.shutdown()
    spans = memory.get_finished_spans()
    read = parse_answer(json.dumps(jaeger_json(spans)))
    direct = [span_record(s) for s in spans]
    assert _by_span_id(read) == _by_span_id(direct)
    assert [_typed(r) for r in _by_span_id(read)] == [_typed(r) for r in _by_span_id(direct)]
    record = read[0]
    assert {r.kind for r in read} == {"producer", "consumer"}
    assert record.status == "ok"
    assert dict(record.attributes) == {
        "strings": ("a", "b"),
        "ints": (1, -2, 2**62),
        "bools": (True, False),
        "doubles": (0.5, -1.25),
        "empty": (),
        "negative": -7,
    }
    assert record.events[0].attributes == {"count": 3, "tags": ("x",), "ratio": 0.25, "ok": True}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a: {"data": a["result"]}, r"no 'result'"),
        (lambda a: {"result": []}, r"result is not a JSON object"),
        (lambda a: [a], r"the answer is not a JSON object"),
        (lambda a: _set(a, "traceId", None), r"spans\[0\]\.traceId is not 32 hex digits"),
        (lambda a: _set(a, "spanId", "zMFkgeuyklY="), r"spanId is not 16 hex digits"),
        (lambda a: _set(a, "startTimeUnixNano", "soon"), r"startTimeUnixNano is not an integer"),
        (lambda a: _set(a, "attributes", {"k": "v"}), r"attributes is not a JSON array"),
        (lambda a: _set(a, "status", {"code": [2]}), r"status\.code is not an integer"),
    ],
)
def test_a_structurally_wrong_body_is_a_value_error(
    traffic: Traffic, mutate: Callable[[dict[str, Any]], Any], message: str
) -> None:
    answer = jaeger_json(traffic.spans[:1])
    with pytest.raises(ValueError, match=message):
        spans_from_answer(mutate(copy.deepcopy(answer)))


def _set(answer: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    _first_span(answer)[name] = value
    return answer
