"""The OTLP/JSON reader on what a real Jaeger answers, and SDK spans read into records.

Every answer here is one a real Jaeger (``tests/support/jaeger.py``) gave for spans this
project made: the simulator's own, or spans made by the OpenTelemetry SDK to show one case
(``tests/support/spanmaker.py``). A broken body is a real answer with one field broken.
"""

from __future__ import annotations

import copy
import gc
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry, Counter

from exporter.otlp_json import JAEGER_WARNINGS_KEY, parse_answer, spans_from_answer
from exporter.sources.jaeger import JaegerSource
from exporter.sources.readable import pack, span_record, unpack
from exporter.spans import SpanRecord, trace_id_to_uuid
from exporter.spanstore import SpanStore
from tests.support.jaeger import JaegerProcess, spans_of
from tests.support.labs import Traffic
from tests.support.spanmaker import requests_of

pytestmark = pytest.mark.timeout(60)

SERVICE = "failure-lab-simulator"


async def _answer_of(jaeger: JaegerProcess, traffic: Traffic) -> dict[str, Any]:
    """Jaeger's raw answer for the first (failed, retried) request."""
    return await jaeger.answer(traffic.trace_ids()[0])


def _by_span_id(records: list[SpanRecord]) -> list[SpanRecord]:
    return sorted(records, key=lambda r: r.span_id)


# --- what Jaeger writes -------------------------------------------------------------------------


async def test_jaegers_answers_have_the_shape_the_reader_expects(
    traffic: Traffic, jaeger: JaegerProcess
) -> None:
    for trace_id in traffic.trace_ids():
        answer = await jaeger.answer(trace_id)
        assert list(answer) == ["result"]
        assert list(answer["result"]) == ["resourceSpans"]
        spans = spans_of(answer)
        assert len(spans) == len(traffic.of_trace(trace_id))
        for span in spans:
            assert re.fullmatch(r"[0-9a-f]{32}", span["traceId"])
            assert re.fullmatch(r"[0-9a-f]{16}", span["spanId"])
            assert isinstance(span["kind"], int)
            assert re.fullmatch(r"[0-9]+", span["startTimeUnixNano"])
            assert re.fullmatch(r"[0-9]+", span["endTimeUnixNano"])
            if "parentSpanId" in span:
                assert re.fullmatch(r"[0-9a-f]{16}", span["parentSpanId"])
            # Always there: empty for an unset status, a code for an error.
            assert span["status"] == {} or span["status"]["code"] == 2
        roots = [s for s in spans if "parentSpanId" not in s]
        assert [s["kind"] for s in roots] == [3]  # the generator's client span
        resource = answer["result"]["resourceSpans"][0]["resource"]["attributes"]
        assert {"key": "service.name", "value": {"stringValue": SERVICE}} in resource
        read = _by_span_id(parse_answer(json.dumps(answer)))
        assert read == _by_span_id([span_record(s) for s in traffic.of_trace(trace_id)])
    failed = spans_of(await _answer_of(jaeger, traffic))
    assert any(s["status"].get("code") == 2 for s in failed)
    int_values = [
        a["value"]["intValue"]
        for s in failed
        for a in s.get("attributes", [])
        if "intValue" in a["value"]
    ]
    assert int_values
    assert all(isinstance(v, str) and re.fullmatch(r"-?[0-9]+", v) for v in int_values)


async def test_an_attribute_with_an_empty_key_is_dropped_and_its_span_kept(
    jaeger: JaegerProcess,
) -> None:
    """The SDK drops an empty key itself, so one is added to its encoded request, as
    another OTLP sender could send it; Jaeger keeps it and writes it without a key."""
    made = requests_of("empty-key", 1)
    request = encode_spans(made.spans)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.append(KeyValue(key="", value=AnyValue(string_value="nameless")))
    await jaeger.send(made.spans, request)
    trace_id = made.trace_ids[0]
    answer = await jaeger.answer(trace_id)
    written = next(s for s in spans_of(answer) if s["spanId"] == span.span_id.hex())
    assert {"value": {"stringValue": "nameless"}} in written["attributes"]

    source = JaegerSource(jaeger.query_url, "empty-key")
    try:
        read = await source.trace(trace_id)
    finally:
        await source.aclose()
    assert _by_span_id(read) == _by_span_id([span_record(s) for s in made.spans])
    assert all("" not in r.attributes for r in read)


async def test_jaegers_own_warnings_are_left_out(jaeger: JaegerProcess) -> None:
    """A span whose parent has not arrived gets a warning from Jaeger's clock-skew adjuster
    each time the trace is read adjusted, as the UI reads it; the store keeps them."""
    made = requests_of("orphans", 1)
    children = [s for s in made.spans if s.parent is not None]
    await jaeger.send(children)
    trace_id = made.trace_ids[0]
    for _ in range(3):
        await jaeger.answer(trace_id, raw=False)
    raw = spans_of(await jaeger.answer(trace_id))
    warnings = [
        a["value"]["arrayValue"]["values"]
        for s in raw
        for a in s.get("attributes", [])
        if a["key"] == JAEGER_WARNINGS_KEY
    ]
    assert warnings
    assert max(len(w) for w in warnings) == 3  # one more with every adjusted read
    source = JaegerSource(jaeger.query_url, "orphans")
    try:
        read = await source.trace(trace_id)
    finally:
        await source.aclose()
    assert _by_span_id(read) == _by_span_id([span_record(s) for s in children])


async def test_doubles_written_without_a_fraction_stay_floats(
    traffic: Traffic, jaeger: JaegerProcess
) -> None:
    """Go's OTLP/JSON writes the double 1000.0 as ``1000``."""
    rate_limit = next(s for s in traffic.spans if s.name == "rate_limit")
    assert rate_limit.context is not None
    answer = await jaeger.answer(rate_limit.context.trace_id)
    text = json.dumps(answer)
    assert '"doubleValue": 1000}' in text
    (record,) = [r for r in parse_answer(text) if r.span_id == rate_limit.context.span_id]
    value = record.attributes["failure_lab.ratelimit.rate"]
    assert type(value) is float
    assert value == 1000.0
    assert record == span_record(rate_limit)


async def test_arrays_kinds_and_statuses_of_any_sdk_span_round_trip(
    jaeger: JaegerProcess,
) -> None:
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
        "negative": -7,
    }
    with (
        tracer.start_as_current_span("work", kind=SpanKind.PRODUCER, attributes=attributes),
        tracer.start_as_current_span("child", kind=SpanKind.CONSUMER) as span,
    ):
        span.add_event("marked", {"count": 3, "tags": ["x"], "ratio": 0.25, "ok": True})
        span.set_status(StatusCode.OK)
    provider.shutdown()
    spans = memory.get_finished_spans()
    await jaeger.send(spans)
    assert spans[0].context is not None
    read = parse_answer(json.dumps(await jaeger.answer(spans[0].context.trace_id)))
    direct = [span_record(s) for s in spans]
    assert _by_span_id(read) == _by_span_id(direct)
    assert {r.kind for r in read} == {"producer", "consumer"}
    child = next(r for r in read if r.kind == "consumer")
    assert child.status == "ok"
    assert child.events[0].attributes == {"count": 3, "tags": ("x",), "ratio": 0.25, "ok": True}
    parent = next(r for r in read if r.kind == "producer")
    assert dict(parent.attributes) == {
        "strings": ("a", "b"),
        "ints": (1, -2, 2**62),
        "bools": (True, False),
        "doubles": (0.5, -1.25),
        "empty": (),
        "negative": -7,
    }  # bytes are left out: a record holds no bytes


async def test_missing_optional_fields_take_their_defaults(
    traffic: Traffic, jaeger: JaegerProcess
) -> None:
    answer = await _answer_of(jaeger, traffic)
    server = next(s for s in spans_of(answer) if s["kind"] == 2)
    answer["result"]["resourceSpans"] = [
        {"scopeSpans": [{"spans": [server]}]}  # the resource left out
    ]
    for name in ("parentSpanId", "kind", "status", "attributes", "events", "endTimeUnixNano"):
        server.pop(name, None)
    (record,) = spans_from_answer(answer)
    assert record.parent_span_id is None
    assert record.kind == "unspecified"
    assert (record.status, record.status_message) == ("unset", None)
    assert record.attributes == {}
    assert record.events == ()
    assert record.end_unix_nano == 0
    assert record.service_name == ""
    assert spans_from_answer({"result": {}}) == []


def _set(answer: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    spans_of(answer)[0][name] = value
    return answer


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
async def test_a_structurally_wrong_body_is_a_value_error(
    traffic: Traffic,
    jaeger: JaegerProcess,
    mutate: Callable[[dict[str, Any]], Any],
    message: str,
) -> None:
    answer = await _answer_of(jaeger, traffic)
    with pytest.raises(ValueError, match=message):
        spans_from_answer(mutate(copy.deepcopy(answer)))


# --- SDK spans read into records ----------------------------------------------------------------


async def test_span_record_reads_the_sdk_span(traffic: Traffic) -> None:
    failed = traffic.results[0]
    assert failed["retry_count"] == 2
    trace_id = traffic.trace_ids()[0]
    spans = traffic.of_trace(trace_id)
    server = next(s for s in spans if s.kind is SpanKind.SERVER)
    record = span_record(server)
    assert trace_id_to_uuid(record.trace_id) == failed["request_id"]
    assert server.context is not None
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
