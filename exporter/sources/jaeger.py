"""Traces read from Jaeger v2 over its stable HTTP api_v3.

``GET /api/v3/traces/{hex id}`` gives one trace, ``GET /api/v3/traces`` searches by service
and start-time window; both answer OTLP/JSON (see ``exporter.otlp_json``). The snake_case
search parameters are used because every v2 release accepts them (newer ones also accept
camelCase names and keep these as aliases), and ``query.num_traces`` is always sent since
older releases take a missing one as 0 and fail. Traces are read raw (``raw_traces``): Jaeger's
query adjusters, which run otherwise, sort each span's events by name and, in its memory
store, modify the stored trace itself, adding a warning to a span whose parent has not
arrived on every read, so a shim polling every second would grow Jaeger's memory. "No
traces found" is a 404 whose body is a JSON error, sent as text/plain; answers are parsed
whatever their content type.

The live feed's ``updates`` has no cursor to resume from in Jaeger, so each poll searches a
trailing window (spans reach Jaeger seconds after they end, so the window reaches back
``settle_seconds`` before the previous poll) and the cursor remembers which traces of that
window were already reported. A search answers at most as many traces as asked for, the
ones that reached Jaeger last; ``exporter.sources.jaeger_feed`` says how a poll knows it has
every new one, and asks again for more when not, up to ``feed_max_traces`` a poll.

Each HTTP request runs inside :func:`exporter.boundary.backend_call` (one timeout, transport
failures mapped there); every public method but ``updates`` makes exactly one. A JSON or
shape failure of an answer is ``SourceUnavailable`` naming the backend, mapped here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Final

import httpx

from exporter.boundary import backend_call
from exporter.errors import SourceUnavailable, TraceNotFound
from exporter.otlp_json import parse_answer
from exporter.sources.base import TraceUpdates
from exporter.sources.jaeger_feed import (
    JaegerCursor,
    advance,
    complete,
    first_page,
    first_server_spans,
)
from exporter.spans import SpanRecord, trace_id_to_uuid

__all__ = ["BACKEND", "JaegerCursor", "JaegerSource", "rfc3339_nano"]

logger = logging.getLogger(__name__)
BACKEND: Final = "jaeger"
RECENT_SEARCHES: Final = 6
"""Bound on the searches of one ``recent`` call (each narrower than the one before)."""
_TRACE_ID_END: Final = 2**128


def rfc3339_nano(unix_nano: int) -> str:
    """A Unix time in nanoseconds as RFC 3339 UTC with nine fraction digits, which Go's
    ``time.RFC3339Nano`` layout parses."""
    seconds, nanos = divmod(unix_nano, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


class JaegerSource:
    """A ``TraceSource`` on Jaeger's api_v3 at ``base_url`` (e.g. ``http://jaeger:16686``)."""

    name = BACKEND

    def __init__(
        self,
        base_url: str,
        service_name: str,
        *,
        timeout: float = 2.0,
        client: httpx.AsyncClient | None = None,
        settle_seconds: float = 10.0,
        feed_max_traces: int = 10_000,
    ) -> None:
        """``feed_max_traces`` bounds the traces one ``updates`` poll reads, over all its
        searches; it must not exceed the ``max_traces`` of Jaeger's memory store, which
        refuses a deeper search."""
        if timeout <= 0 or settle_seconds <= 0 or feed_max_traces <= 0:
            raise ValueError("timeout, settle_seconds and feed_max_traces must be positive")
        self._settle_nano = round(settle_seconds * 1e9)
        self._feed_max_traces = feed_max_traces
        self._base = base_url.rstrip("/")
        self._service = service_name
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=None)

    async def trace(self, trace_id: int) -> list[SpanRecord]:
        """Every span of one trace; ``TraceNotFound`` while Jaeger has none of them."""
        if not 0 < trace_id < _TRACE_ID_END:
            raise ValueError(f"not a 128-bit trace id: {trace_id}")
        request_id = trace_id_to_uuid(trace_id)
        status, body = await self._get(f"/api/v3/traces/{trace_id:032x}", {"raw_traces": "true"})
        if status == 404 and _jaeger_error(body) is not None:
            raise TraceNotFound(request_id, may_still_arrive=True, backend=BACKEND)
        _raise_for_status(status, body)
        spans = [span for span in _parse(body) if span.trace_id == trace_id]
        if not spans:
            raise TraceNotFound(request_id, may_still_arrive=True, backend=BACKEND)
        return spans

    async def recent(self, limit: int, lookback_seconds: float) -> list[SpanRecord]:
        """The server span of each of the newest ``limit`` requests of the service that
        started within ``lookback_seconds``, newest first.

        Jaeger answers the traces that reached it last, in no order within one batch of
        spans it received, so a full answer may miss one of the newest. Every one of them
        started no earlier than the ``limit``-th newest request found, so the search is
        narrowed to start there, asking for twice as many each time, until an answer is not
        full (then it holds them all) or ``RECENT_SEARCHES`` were made."""
        if lookback_seconds <= 0:
            raise ValueError("lookback_seconds must be positive")
        if limit <= 0:
            return []
        now = time.time_ns()
        low = now - round(lookback_seconds * 1e9)
        depth = 2 * limit
        for _ in range(RECENT_SEARCHES):
            spans = await self._search(low, now, depth)
            newest = first_server_spans(spans, self._service, limit)
            full = len({span.trace_id for span in spans}) >= depth
            if not full or len(newest) < limit or newest[-1].start_unix_nano <= low:
                break
            low = newest[-1].start_unix_nano
            depth = min(2 * depth, max(self._feed_max_traces, 2 * limit))
        return newest

    async def updates(self, cursor: object | None) -> TraceUpdates:
        """Requests (server spans, oldest first) and completed traces (root span present)
        that reached Jaeger since ``cursor``; ``None`` or a foreign cursor starts from now."""
        now = time.time_ns()
        if not isinstance(cursor, JaegerCursor):
            return TraceUpdates(JaegerCursor(now, now), [], [])
        floor = max(cursor.origin_unix_nano, cursor.polled_unix_nano - self._settle_nano)
        if floor >= now:
            return TraceUpdates(cursor, [], [])
        spans = await self._arrived_since(cursor, floor, now)
        return advance(cursor, floor, now, spans, self._service)

    async def _arrived_since(self, cursor: JaegerCursor, floor: int, now: int) -> list[SpanRecord]:
        """The spans of a search over the window that holds every trace arrived or changed
        since the previous poll, asking for twice as many until it does (or the bound)."""
        seen, pending = cursor.seen(floor, now)
        asked = first_page(cursor, len(pending), self._feed_max_traces)
        while True:
            spans = await self._search(floor, now, asked)
            found = {span.trace_id for span in spans}
            if complete(found, asked, seen, pending):
                return spans
            if asked >= self._feed_max_traces:
                logger.warning(
                    "live feed: more new traces in Jaeger than feed_max_traces=%d; "
                    "the earliest to arrive are not reported",
                    self._feed_max_traces,
                )
                return spans
            asked = min(asked * 2, self._feed_max_traces)

    async def check(self) -> None:
        """List the services: proves Jaeger answers api_v3 without touching trace storage."""
        status, body = await self._get("/api/v3/services")
        _raise_for_status(status, body)
        answer = _decode(body)
        if not isinstance(answer, dict) or not isinstance(answer.get("services", []), list):
            raise SourceUnavailable(BACKEND, f"unexpected services answer: {_snippet(body)}")

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def _search(self, start_min: int, start_max: int, num_traces: int) -> list[SpanRecord]:
        """The spans of up to ``num_traces`` traces of the service started in the window."""
        params = {
            "query.service_name": self._service,
            "query.start_time_min": rfc3339_nano(start_min),
            "query.start_time_max": rfc3339_nano(start_max),
            "query.num_traces": str(num_traces),
            "query.raw_traces": "true",
        }
        status, body = await self._get("/api/v3/traces", params)
        if status == 404 and _jaeger_error(body) is not None:
            return []
        _raise_for_status(status, body)
        return _parse(body)

    async def _get(self, path: str, params: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        url = self._base + path
        async with backend_call(BACKEND, url, self._timeout):
            response = await self._client.get(url, params=params)
            return response.status_code, response.content


def _parse(body: bytes) -> list[SpanRecord]:
    try:
        return parse_answer(body)
    except ValueError as exc:
        raise SourceUnavailable(BACKEND, f"unreadable trace answer: {exc}") from exc


def _raise_for_status(status: int, body: bytes) -> None:
    if 200 <= status < 300:
        return
    message = _jaeger_error(body) or _snippet(body)
    raise SourceUnavailable(BACKEND, f"HTTP {status}: {message}")


def _jaeger_error(body: bytes) -> str | None:
    """The message of a ``{"error": {"httpCode": ..., "message": ...}}`` answer, else None."""
    answer = _decode(body)
    if not isinstance(answer, dict):
        return None
    error = answer.get("error")
    if not isinstance(error, dict):
        return None
    message = error.get("message")
    return message if isinstance(message, str) else ""


def _decode(body: bytes) -> object:
    """The JSON value of ``body``, or None when it is not JSON."""
    try:
        value: object = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value


def _snippet(body: bytes) -> str:
    text = body[:200].decode("utf-8", errors="replace").strip()
    return text or "(empty body)"
