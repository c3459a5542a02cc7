"""Real SDK spans made on purpose, for the trace backends' tests.

Some cases need spans the simulator does not make on its own: hundreds of requests at once,
a span of another service in one of its traces, a span arriving long after its trace. They
are made here by the OpenTelemetry SDK, as the simulator's are, never written by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
    set_span_in_context,
)


@dataclass(frozen=True)
class Requests:
    """Requests of one service, each a client root span around a server span around one
    internal span; ``trace_ids`` in the order they were made."""

    spans: tuple[ReadableSpan, ...]
    trace_ids: tuple[int, ...]

    def root(self, index: int) -> ReadableSpan:
        trace_id = self.trace_ids[index]
        return next(
            s
            for s in self.spans
            if s.parent is None and s.context is not None and s.context.trace_id == trace_id
        )


def _tracer(service: str) -> tuple[TracerProvider, Tracer, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, provider.get_tracer(service), memory


def requests_of(service: str, count: int) -> Requests:
    provider, tracer, memory = _tracer(service)
    trace_ids: list[int] = []
    route = "/api/v1/users/{user_id}"
    for _ in range(count):
        with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as root:
            trace_ids.append(root.get_span_context().trace_id)
            with tracer.start_as_current_span(f"GET {route}", kind=SpanKind.SERVER) as server:
                server.set_attributes({"http.route": route, "http.response.status_code": 200})
                with tracer.start_as_current_span("db.query"):
                    pass
    provider.shutdown()
    return Requests(tuple(memory.get_finished_spans()), tuple(trace_ids))


def other_service_server(server: ReadableSpan, service: str) -> tuple[ReadableSpan, ...]:
    """A server span of ``service`` in ``server``'s trace that enclosed it (it started 1 us
    earlier), as an upstream gateway's would."""
    provider, tracer, memory = _tracer(service)
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


def late_child(parent: ReadableSpan, service: str) -> tuple[ReadableSpan, ...]:
    """A span of ``service`` in ``parent``'s trace, started now."""
    provider, tracer, memory = _tracer(service)
    assert parent.context is not None
    context = set_span_in_context(NonRecordingSpan(parent.context))
    with tracer.start_as_current_span("late", context=context):
        pass
    provider.shutdown()
    return memory.get_finished_spans()


def orphan_server(service: str, trace_id: int, start_unix_nano: int) -> tuple[ReadableSpan, ...]:
    """A server span of ``service`` whose parent (the trace's root) never comes: the other
    side dropped it. It started at ``start_unix_nano`` and lasted a millisecond."""
    provider, tracer, memory = _tracer(service)
    parent = SpanContext(trace_id, 0x1234, is_remote=True, trace_flags=TraceFlags(1))
    context = set_span_in_context(NonRecordingSpan(parent))
    span = tracer.start_span(
        "GET /api/v1/users", context=context, kind=SpanKind.SERVER, start_time=start_unix_nano
    )
    span.end(end_time=start_unix_nano + 1_000_000)
    provider.shutdown()
    return memory.get_finished_spans()
