"""Client spans of worker processes, carried back to the process that started them.

A job split over worker processes sends its requests from those processes, so its client
spans end there. Each worker exports them itself when OTLP is configured (the same
``OTEL_*`` variables, the same service name: they reach Jaeger as the parent's would). What
stays in the parent (the embedded span store behind ``/v1/trace``, a test's in-memory
exporter) never sees another process's spans, so a worker also ships its finished spans as
plain tuples (``ShippedSpan``) and the parent hands them, rebuilt as the SDK's
``ReadableSpan`` with its own resource, to the processors of its tracer provider that keep
spans in the process: every one but the OTLP export, which the worker already did.

The SDK has no public list of a provider's processors; ``local_processors`` reads the one it
keeps, in one place.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeAlias

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from simulator.telemetry.span_export import BoundedBatchProcessor

_Attributes: TypeAlias = tuple[tuple[str, Any], ...]
ShippedSpan: TypeAlias = tuple[
    int,  # trace id
    int,  # span id
    int | None,  # parent span id
    str,  # name
    int,  # SpanKind value
    int,  # start, unix ns
    int,  # end, unix ns
    int,  # StatusCode value
    str | None,  # status description
    _Attributes,
    tuple[tuple[str, int, _Attributes], ...],  # events: name, time, attributes
    str,  # instrumentation scope name
    str | None,  # instrumentation scope version
]


class SpanShipper(SpanProcessor):
    """Keeps a worker's finished spans as ``ShippedSpan`` until ``take()``."""

    def __init__(self) -> None:
        self._spans: list[ShippedSpan] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        shipped = ship(span)
        if shipped is not None:
            self._spans.append(shipped)

    def take(self) -> list[ShippedSpan]:
        spans, self._spans = self._spans, []
        return spans

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def ship(span: ReadableSpan) -> ShippedSpan | None:
    context = span.get_span_context()
    if context is None:
        return None
    scope = span.instrumentation_scope
    return (
        context.trace_id,
        context.span_id,
        span.parent.span_id if span.parent is not None else None,
        span.name,
        span.kind.value,
        span.start_time or 0,
        span.end_time or 0,
        span.status.status_code.value,
        span.status.description,
        tuple((span.attributes or {}).items()),
        tuple((e.name, e.timestamp, tuple((e.attributes or {}).items())) for e in span.events),
        scope.name if scope is not None else "",
        scope.version if scope is not None else None,
    )


def rebuild(shipped: ShippedSpan, provider: TracerProvider) -> ReadableSpan:
    """The span as the SDK ended it, with ``provider``'s resource (its service name)."""
    (trace_id, span_id, parent_id, name, kind, start, end, code, description, attributes,
     events, scope, version) = shipped  # fmt: skip
    flags = TraceFlags(TraceFlags.SAMPLED)
    parent = None
    if parent_id is not None:
        parent = SpanContext(trace_id, parent_id, is_remote=False, trace_flags=flags)
    return ReadableSpan(
        name=name,
        context=SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags),
        parent=parent,
        resource=provider.resource,
        attributes=dict(attributes),
        events=[Event(n, dict(attrs), timestamp=t) for n, t, attrs in events],
        kind=SpanKind(kind),
        status=Status(StatusCode(code), description if code == StatusCode.ERROR.value else None),
        start_time=start,
        end_time=end,
        instrumentation_scope=InstrumentationScope(scope, version),
    )


def local_processors(provider: TracerProvider) -> tuple[SpanProcessor, ...]:
    """The provider's processors that keep spans in this process (not the OTLP export)."""
    active = getattr(provider, "_active_span_processor", None)
    processors: tuple[SpanProcessor, ...] = getattr(active, "_span_processors", ())
    return tuple(p for p in processors if not isinstance(p, BoundedBatchProcessor))


def deliver(
    spans: Iterable[ShippedSpan], provider: TracerProvider, to: tuple[SpanProcessor, ...]
) -> None:
    """Hand shipped spans to ``to`` as if they had ended here."""
    for shipped in spans:
        span = rebuild(shipped, provider)
        for processor in to:
            processor.on_end(span)
