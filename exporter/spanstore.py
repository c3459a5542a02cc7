"""The embedded trace backend: a bounded in-process store fed by a SpanProcessor.

It keeps each span as it ends in a packed form (nested tuples of plain values, see
``exporter.sources.readable.pack``), which the garbage collector stops walking once it has
seen it: kept as the SDK's ``ReadableSpan`` objects, 10,000 traces made every full
collection walk some hundred thousand objects, a pause that showed in the service's p99.
Capacity is counted in traces; when full, the oldest trace goes first and the eviction is
counted. A trace holds at most ``max_spans_per_trace`` spans: a client may send its own
``traceparent`` and keep one trace id for ever, which would otherwise grow one trace without
bound; spans past the bound are not stored, and counted. Readers (the routes and the live
feed) see finished requests through a cursor, so a poll returns each one once.

Spans end on the event loop's thread (the FastAPI and aiohttp instrumentations and the
pipeline all run there), so no lock is taken.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from prometheus_client import Counter

from exporter.sources.readable import PackedSpan, pack, unpack
from exporter.spans import SpanKindName, SpanRecord


@dataclass(frozen=True, slots=True)
class Finished:
    """A request whose SERVER span ended, at position ``seq`` of the store's feed."""

    seq: int
    trace_id: int


class SpanStore(SpanProcessor):
    def __init__(
        self,
        max_traces: int,
        evictions: Counter,
        *,
        max_spans_per_trace: int = 1000,
        refused: Counter | None = None,
    ) -> None:
        self._traces: OrderedDict[int, list[PackedSpan]] = OrderedDict()
        self._max = max_traces
        self._evictions = evictions
        self._max_spans = max_spans_per_trace
        self._refused = refused
        self._requests: deque[Finished] = deque(maxlen=max_traces)
        self._completed: deque[Finished] = deque(maxlen=max_traces)
        self._seq = 0

    # SpanProcessor

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        packed = pack(span)
        if packed is None:
            return
        trace_id = packed[0]
        spans = self._traces.get(trace_id)
        if spans is None:
            self._traces[trace_id] = [packed]
            if len(self._traces) > self._max:
                self._traces.popitem(last=False)
                self._evictions.inc()
        elif len(spans) < self._max_spans:
            spans.append(packed)
        else:
            if self._refused is not None:
                self._refused.inc()
            return
        if packed[4] == "server":
            self._seq += 1
            self._requests.append(Finished(self._seq, trace_id))
        if packed[2] is None:
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

    def spans(self, trace_id: int, kind: SpanKindName | None = None) -> list[SpanRecord]:
        """The trace's stored spans (only those of ``kind``, if given), in the order they
        ended."""
        stored = self._traces.get(trace_id, ())
        return [unpack(packed) for packed in stored if kind is None or packed[4] == kind]

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
