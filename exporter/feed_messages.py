"""The live feed's messages: what a ``trace_update`` and a ``status`` say, and the envelope.

Kept apart from the feed's machinery (clients, queues, the poller) because this is the part
of the WebSocket contract a client reads, documented in docs/api.md: each message is a JSON
text frame ``{"type": ..., "data": ...}``, serialized once and sent to every client as is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

from pydantic import BaseModel

from exporter.spans import SpanRecord
from exporter.translate import build_trace

logger = logging.getLogger(__name__)
T = TypeVar("T")

Role = Literal["metrics", "traces"]


class TraceUpdate(BaseModel):
    """What a ``trace_update`` says about a completed trace (the full trace is one
    ``GET /v1/trace/{request_id}`` away)."""

    request_id: str
    trace_id: str
    span_count: int
    event_count: int
    status_code: int | None
    total_latency_ms: float | None
    failure_points: int
    retry_attempts: int


class BackendHealth(BaseModel):
    backend: str
    role: Role
    healthy: bool
    error: str | None = None


def trace_update(spans: Sequence[SpanRecord]) -> TraceUpdate:
    """The compact summary of one trace (every span of it, non-empty)."""
    response = build_trace(spans)
    trace = response.trace
    return TraceUpdate(
        request_id=trace.request_id,
        trace_id=trace.trace_id,
        span_count=len(spans),
        event_count=response.event_count,
        status_code=trace.status_code,
        total_latency_ms=trace.total_latency_ms,
        failure_points=len(response.failure_points),
        retry_attempts=len(response.retry_attempts),
    )


def envelope(kind: str, data: BaseModel | str) -> str:
    """``{"type": kind, "data": data}`` as compact JSON; ``data`` is a model or JSON text."""
    body = data if isinstance(data, str) else data.model_dump_json()
    return f'{{"type":"{kind}","data":{body}}}'


def translated(
    kind: str, translate: Callable[[T], BaseModel], items: Sequence[T]
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for item in items:
        try:
            out.append((kind, envelope(kind, translate(item))))
        except Exception:
            logger.exception("live feed: could not translate a %s; skipped", kind)
    return out
