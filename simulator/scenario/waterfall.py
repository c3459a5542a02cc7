"""A request's trace as a waterfall: where its time went, segment by segment.

``GET /v1/trace/{id}`` answers the request's events in time order (the same in both modes,
while the spans themselves differ: an in-process cache makes none). Each event closes the
stretch of time since the one before: a ``db.error`` at 250 ms closes an attempt that began
when the cache missed or when the previous backoff ended; a ``retry.attempt`` opens a wait of
its ``backoff_ms``. Those stretches are the waterfall's bars.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from failure_lab.contract import TraceEvent, TraceResponse


@dataclass(frozen=True, slots=True)
class Segment:
    label: str
    start_ms: float
    end_ms: float
    kind: str  # cache, db_ok, db_fail, wait, refused, other


def _at(event: TraceEvent) -> float:
    return datetime.fromisoformat(event.timestamp_wall.replace("Z", "+00:00")).timestamp()


def _closing(event: TraceEvent, attempts: int, missed: bool) -> tuple[str, str]:
    """The label and kind of the stretch ``event`` closes."""
    kind, meta = event.event_type, event.metadata
    if kind.startswith("cache."):
        return f"cache lookup: {kind.removeprefix('cache.')}", "cache"
    if kind in ("db.error", "db.timeout"):
        return f"database attempt {meta.get('attempt', attempts)}: {kind[3:]}", "db_fail"
    if kind == "rate_limited":
        return "rate limiter: refused (429)", "refused"
    if kind == "circuit.open":
        return "breaker: refused, fail fast", "refused"
    if kind == "response.sent":
        status = int(meta.get("status_code", 0))
        if (attempts or missed) and 200 <= status < 300:
            return f"database attempt {attempts + 1}: ok, answer {status}", "db_ok"
        return f"answer {status}", "db_ok" if status < 400 else "db_fail"
    return kind, "other"


def segments(trace: TraceResponse) -> list[Segment]:
    """The waterfall's bars, in ms since the request arrived."""
    events = sorted(trace.trace.events, key=_at)
    if not events:
        return []
    start = _at(events[0])
    cursor = 0.0
    attempts = 0
    missed = False
    found: list[Segment] = []
    for event in events[1:]:
        at = (_at(event) - start) * 1000.0
        if event.event_type == "retry.attempt":
            wait = float(event.metadata.get("backoff_ms", 0.0))
            found.append(Segment(f"backoff before retry {event.metadata.get('attempt')}", at,
                                 at + wait, "wait"))  # fmt: skip
            cursor = at + wait
            continue
        if event.event_type in ("disruption", "circuit.half_open", "circuit.opened"):
            continue  # marks inside an attempt, not stretches of their own
        if event.event_type in ("db.error", "db.timeout"):
            attempts += 1
        if event.event_type == "cache.miss":
            missed = True
        label, kind = _closing(event, attempts, missed)
        found.append(Segment(label, cursor, max(cursor, at), kind))
        cursor = max(cursor, at)
    return found
