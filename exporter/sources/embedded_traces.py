"""The embedded trace source: the in-process ``SpanStore`` behind the ``TraceSource`` interface."""

from __future__ import annotations

from exporter.errors import TraceNotFound
from exporter.sources.base import TraceUpdates
from exporter.spans import SpanRecord, trace_id_to_uuid
from exporter.spanstore import SpanStore


class EmbeddedTraceSource:
    name = "embedded"

    def __init__(self, store: SpanStore) -> None:
        self._store = store

    async def trace(self, trace_id: int) -> list[SpanRecord]:
        spans = self._store.spans(trace_id)
        if not spans:
            raise TraceNotFound(
                trace_id_to_uuid(trace_id),
                may_still_arrive=True,
                backend=self.name,
                hint=(
                    "it may still be arriving if the request is in flight (spans are stored "
                    f"as they end); otherwise it is unknown or older than the newest "
                    f"{self._store.capacity} traces kept"
                ),
            )
        return spans

    async def recent(self, limit: int, lookback_seconds: float) -> list[SpanRecord]:
        """The newest ``limit`` finished requests, ordered newest first by start time (as
        the Jaeger source orders them); the store's capacity bounds how far back it goes."""
        out: list[SpanRecord] = []
        for trace_id in self._store.newest_requests(limit):
            out.extend(self._store.spans(trace_id, "server")[:1])
        out.sort(key=lambda span: span.start_unix_nano, reverse=True)
        return out

    async def updates(self, cursor: object | None) -> TraceUpdates:
        if not isinstance(cursor, int):
            return TraceUpdates(self._store.cursor, [], [])
        requests: list[SpanRecord] = []
        for finished in self._store.finished_requests(cursor):
            requests.extend(self._store.spans(finished.trace_id, "server")[-1:])
        completed = [
            self._store.spans(done.trace_id) for done in self._store.completed_traces(cursor)
        ]
        return TraceUpdates(self._store.cursor, requests, [c for c in completed if c])

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
