"""The embedded trace backend: a bounded in-process store fed by a SpanProcessor.

It keeps the SDK's ``ReadableSpan`` objects as they end and converts them only when read,
so the request path pays one dict append per span. Capacity is counted in traces; when
full, the oldest trace goes first and the eviction is counted. Readers (the routes and the
live feed) see finished requests through a cursor, so a poll returns each one once.

Spans end on the event loop's thread (the FastAPI and aiohttp instrumentations and the
pipeline all run there), so no lock is taken.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind
from prometheus_client import Counter


@dataclass(frozen=True, slots=True)
class Finished:
    """A request whose SERVER span ended, at position ``seq`` of the store's feed."""

    seq: int
    trace_id: int


class SpanStore(SpanProcessor):
    def __init__(self, max_traces: int, evictions: Counter) -> None:
        self._traces: OrderedDict[int, list[ReadableSpan]] = OrderedDict()
        self._max = max_traces
        self._evictions = evictions
        self._requests: deque[Finished] = deque(maxlen=max_traces)
        self._completed: deque[Finished] = deque(maxlen=max_traces)
        self._seq = 0

    # SpanProcessor

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None:
            return
        trace_id = context.trace_id
        spans = self._traces.get(trace_id)
        if spans is None:
            self._traces[trace_id] = [span]
            if len(self._traces) > self._max:
                self._traces.popitem(last=False)
                self._evictions.inc()
        else:
            spans.append(span)
        if span.kind is SpanKind.SERVER:
            self._seq += 1
            self._requests.append(Finished(self._seq, trace_id))
        if span.parent is None:
            self._seq += 1
            self._completed.append(Finished(self._seq, trace_id))

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # Reading

    @property
    def capacity(self) -> int:
        return self._max

    @property
    def cursor(self) -> int:
        return self._seq

    def spans(self, trace_id: int) -> list[ReadableSpan]:
        return list(self._traces.get(trace_id, ()))

    def has(self, trace_id: int) -> bool:
        return trace_id in self._traces

    def __len__(self) -> int:
        return len(self._traces)

    def finished_requests(self, after: int = 0) -> list[Finished]:
        """Requests whose server span ended after cursor ``after``, oldest first."""
        return [f for f in self._requests if f.seq > after]

    def completed_traces(self, after: int = 0) -> list[Finished]:
        """Traces whose root span ended after cursor ``after``, oldest first."""
        return [f for f in self._completed if f.seq > after]

    def newest_requests(self, limit: int) -> list[int]:
        """Trace ids of the newest ``limit`` finished requests still stored, newest first."""
        out: list[int] = []
        for finished in reversed(self._requests):
            if finished.trace_id in self._traces:
                out.append(finished.trace_id)
                if len(out) == limit:
                    break
        return out
