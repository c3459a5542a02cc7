"""From spans and RED figures to the contract's answers: ``RequestSummary``, ``TraceResponse``
and ``MetricsData`` (defined in ``failure_lab.contract``, which their clients read them with).

One translator serves every trace source, so Jaeger and the embedded store give the same
answer for the same spans. A request's summary comes from its SERVER span (status code,
route template, method, retry count); its trace lists the span events of every span in
time order, plus a synthetic ``span.error`` event for a span that ended in error when no
event says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from exporter.sources.base import RedFigures
from exporter.spans import AttributeValue, SpanRecord, trace_id_to_uuid
from failure_lab.contract import (
    MetricsData,
    RequestSummary,
    RequestTrace,
    TraceEvent,
    TraceResponse,
)

FAILURE_EVENTS = frozenset(
    {
        "rate_limited",
        "rate_limit.error",
        "cache.error",
        "db.error",
        "db.timeout",
        "injected_error",
        "circuit.open",
        "span.error",
    }
)
RETRY_EVENTS = frozenset({"retry.attempt"})
STATUS_KEYS = ("http.response.status_code", "http.status_code")
METHOD_KEYS = ("http.request.method", "http.method")


def _ms(value: float | None) -> float:
    return round(value, 3) if value is not None else 0.0


def metrics_data(red: RedFigures, timestamp_ms: int) -> MetricsData:
    """The contract's ``MetricsData`` from the RED figures of a window."""
    return MetricsData(
        timestamp=timestamp_ms,
        request_rate=round(red.request_rate, 4),
        error_rate=round(red.error_rate, 6),
        retry_count=round(red.retry_count, 3),
        p95_latency=_ms(red.p95_latency_ms),
        p99_latency=_ms(red.p99_latency_ms),
    )


def is_failure(event: TraceEvent) -> bool:
    """A failure point: a failing stage, or a disruption that failed or refused the request
    (a disruption that only delayed it is not a failure)."""
    if event.event_type == "disruption":
        return event.metadata.get("effect") in ("failed", "refused")
    return event.event_type in FAILURE_EVENTS


def iso(unix_nano: int) -> str:
    """ISO 8601 UTC with microseconds and a Z, as JavaScript's Date parses it."""
    moment = datetime.fromtimestamp(unix_nano / 1e9, tz=UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _first(attributes: Any, keys: Iterable[str]) -> AttributeValue | None:
    for key in keys:
        value = attributes.get(key)
        if value is not None:
            return value  # type: ignore[no-any-return]
    return None


def _int(value: AttributeValue | None, default: int = 0) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def server_span(spans: Sequence[SpanRecord]) -> SpanRecord | None:
    """The simulated service's SERVER span (the earliest, should there be several)."""
    servers = [s for s in spans if s.kind == "server"]
    return min(servers, key=lambda s: s.start_unix_nano) if servers else None


def summarize(span: SpanRecord) -> RequestSummary:
    """A ``RequestSummary`` from a request's SERVER span."""
    attributes = span.attributes
    route = attributes.get("http.route") or attributes.get("url.path") or span.name
    return RequestSummary(
        request_id=trace_id_to_uuid(span.trace_id),
        status=_int(_first(attributes, STATUS_KEYS)),
        latency_ms=round(span.duration_ms, 3),
        retry_count=_int(attributes.get("failure_lab.retry_count")),
        timestamp=iso(span.start_unix_nano),
        endpoint=str(route),
        method=str(_first(attributes, METHOD_KEYS) or span.name.split(" ")[0]),
    )


def _events(spans: Sequence[SpanRecord], request_id: str) -> list[TraceEvent]:
    """Every span event in time order; a span that failed silently gets a ``span.error``.

    "Silently": the trace holds no failure event at all, e.g. the generator's request never
    reached the service. Otherwise the failure events already say what went wrong.
    """
    found: list[tuple[int, TraceEvent]] = []
    for span in spans:
        span_hex = f"{span.span_id:016x}"
        if span.kind == "server":
            found.extend(_edges(span, span_hex, request_id))
        for index, event in enumerate(span.events):
            metadata: dict[str, Any] = {"span": span.name, "span_id": span_hex}
            metadata.update({k: _plain(v) for k, v in event.attributes.items()})
            found.append(
                _timed(
                    f"{span_hex}-{index}", request_id, event.time_unix_nano, event.name, metadata
                )
            )
    if not any(is_failure(event) for _, event in found):
        for span in spans:
            if span.status == "error":
                span_hex = f"{span.span_id:016x}"
                metadata = {
                    "span": span.name,
                    "span_id": span_hex,
                    "error": span.status_message or "",
                }
                found.append(
                    _timed(
                        f"{span_hex}-error", request_id, span.end_unix_nano, "span.error", metadata
                    )
                )
    found.sort(key=lambda pair: (pair[0], pair[1].event_id))
    return [event for _, event in found]


def _edges(span: SpanRecord, span_hex: str, request_id: str) -> list[tuple[int, TraceEvent]]:
    """``request.received`` and ``response.sent``: the server span's own start and end.

    They are read off the span rather than recorded as events on every request, which
    would cost the service time to say what the span already says.
    """
    attributes = span.attributes
    received = {
        "span": span.name,
        "span_id": span_hex,
        "endpoint": attributes.get("http.route", span.name),
        "method": _first(attributes, METHOD_KEYS) or span.name.split(" ")[0],
    }
    sent: dict[str, Any] = {
        "span": span.name,
        "span_id": span_hex,
        "status_code": _int(_first(attributes, STATUS_KEYS)),
        "latency_ms": attributes.get("failure_lab.service_latency_ms", round(span.duration_ms, 3)),
    }
    return [
        _timed(
            f"{span_hex}-received", request_id, span.start_unix_nano, "request.received", received
        ),
        _timed(f"{span_hex}-sent", request_id, span.end_unix_nano, "response.sent", sent),
    ]


def _timed(
    event_id: str, request_id: str, unix_nano: int, event_type: str, metadata: dict[str, Any]
) -> tuple[int, TraceEvent]:
    """A ``TraceEvent`` with the time it sorts by."""
    event = TraceEvent(
        event_id=event_id,
        request_id=request_id,
        timestamp_wall=iso(unix_nano),
        event_type=event_type,
        metadata=metadata,
    )
    return unix_nano, event


def _plain(value: AttributeValue) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def build_trace(spans: Sequence[SpanRecord]) -> TraceResponse:
    """A ``TraceResponse`` from every span of one trace (non-empty)."""
    if not spans:
        raise ValueError("a trace needs at least one span")
    trace_id = spans[0].trace_id
    request_id = trace_id_to_uuid(trace_id)
    roots = [s for s in spans if s.parent_span_id is None]
    root = min(roots or spans, key=lambda s: s.start_unix_nano)
    server = server_span(spans)
    events = _events(spans, request_id)
    complete = bool(roots)
    status = _first(server.attributes, STATUS_KEYS) if server else None
    trace = RequestTrace(
        trace_id=f"{trace_id:032x}",
        request_id=request_id,
        start_time=iso(root.start_unix_nano),
        end_time=iso(root.end_unix_nano) if complete else None,
        total_latency_ms=round(root.duration_ms, 3) if complete else None,
        status_code=_int(status) if status is not None else None,
        events=events,
    )
    return TraceResponse(
        trace=trace,
        event_count=len(events),
        failure_points=[e for e in events if is_failure(e)],
        retry_attempts=[e for e in events if e.event_type in RETRY_EVENTS],
    )
