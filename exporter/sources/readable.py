"""The SDK's finished spans as ``SpanRecord``s, by way of a packed form the store keeps.

Used wherever spans are read in-process (the embedded span store) and as the reference the
Jaeger reading is checked against, so both give equal records for the same span. The SDK
also accepts attribute values a record cannot hold (bytes, mappings, None, nested
sequences); those are left out, as the OTLP/JSON reading leaves out what they encode to.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, TypeAlias, cast

from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util.types import Attributes

from exporter.spans import AttributeValue, EventRecord, SpanKindName, SpanRecord, StatusName

_KINDS: Final[Mapping[SpanKind, SpanKindName]] = {
    SpanKind.INTERNAL: "internal",
    SpanKind.SERVER: "server",
    SpanKind.CLIENT: "client",
    SpanKind.PRODUCER: "producer",
    SpanKind.CONSUMER: "consumer",
}
_STATUSES: Final[Mapping[StatusCode, StatusName]] = {
    StatusCode.UNSET: "unset",
    StatusCode.OK: "ok",
    StatusCode.ERROR: "error",
}
_NO_ATTRIBUTES: Final[Mapping[str, AttributeValue]] = MappingProxyType({})
_PackedAttributes: TypeAlias = tuple[tuple[str, AttributeValue], ...]
PackedSpan: TypeAlias = tuple[
    int,  # trace id
    int,  # span id
    int | None,  # parent span id
    str,  # name
    SpanKindName,
    int,  # start, unix ns
    int,  # end, unix ns
    StatusName,
    str | None,  # status message
    _PackedAttributes,
    tuple[tuple[str, int, _PackedAttributes], ...],  # events: name, time, attributes
    str,  # service name
]
"""A finished span as nested tuples of plain values: what the embedded store keeps.

Tuples holding only strings, numbers and other such tuples are untracked by the garbage
collector once it has seen them, so 10,000 stored traces add nothing to each full
collection; the SDK's span objects (dicts, locks, event and context objects) would be walked
every time."""
_INT64_MIN: Final = -(2**63)
_INT64_END: Final = 2**63


def span_record(span: ReadableSpan) -> SpanRecord:
    """One finished span as a record; ``ValueError`` for a span without a context.

    The same path the embedded store takes (``pack`` as a span ends, ``unpack`` when read),
    so the Jaeger reading checked against this is checked against what the store serves.
    """
    packed = pack(span)
    if packed is None:
        raise ValueError(f"span {span.name!r} has no span context")
    return unpack(packed)


def pack(span: ReadableSpan) -> PackedSpan | None:
    """A finished span in the store's form; None for a span without a context. Attribute
    values a record cannot hold are left out (see ``_recordable``)."""
    context = span.get_span_context()
    if context is None:
        return None
    parent = span.parent
    service = span.resource.attributes.get(SERVICE_NAME, "")
    return (
        context.trace_id,
        context.span_id,
        parent.span_id if parent is not None else None,
        span.name,
        _KINDS.get(span.kind, "unspecified"),
        span.start_time or 0,
        span.end_time or 0,
        _STATUSES[span.status.status_code],
        span.status.description or None,
        _packed(span.attributes),
        tuple((e.name, e.timestamp, _packed(e.attributes)) for e in span.events),
        service if isinstance(service, str) else str(service),
    )


def unpack(packed: PackedSpan) -> SpanRecord:
    """The record of a packed span."""
    (trace_id, span_id, parent, name, kind, start, end, status, message, attrs, events, svc) = (
        packed
    )
    return SpanRecord(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind=kind,
        start_unix_nano=start,
        end_unix_nano=end,
        status=status,
        status_message=message,
        attributes=dict(attrs) if attrs else _NO_ATTRIBUTES,
        events=tuple(
            EventRecord(
                name=event_name,
                time_unix_nano=time,
                attributes=dict(event_attrs) if event_attrs else _NO_ATTRIBUTES,
            )
            for event_name, time, event_attrs in events
        ),
        service_name=svc,
    )


def _packed(attributes: Attributes) -> _PackedAttributes:
    if not attributes:
        return ()
    return tuple(
        (key, cast(AttributeValue, value))
        for key, value in attributes.items()
        if _recordable(value)
    )


def _recordable(value: object) -> bool:
    """A scalar OTLP can carry, or a tuple of them (the SDK stores sequences as tuples)."""
    if isinstance(value, tuple):
        return all(_scalar(item) for item in value)
    return _scalar(value)


def _scalar(value: object) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return _INT64_MIN <= value < _INT64_END
    return isinstance(value, str | bool | float)
