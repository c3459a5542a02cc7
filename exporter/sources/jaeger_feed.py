"""What the live feed knows between two polls of Jaeger, and when one search answer is enough.

Jaeger has no cursor to resume from: a search names a service and a window of span start
times, and answers at most ``query.num_traces`` traces. Its memory store walks its traces
from the one that reached it last backwards and stops at that many, so a full answer holds
the traces that *arrived* last, whatever their start times; asking for a fixed number per
poll lost most requests as soon as more than that many arrived between two polls.

That order is also what makes a complete answer recognisable. A trace stays where it first
arrived, however many spans join it later. So if a full answer includes a trace an earlier
poll already saw, it includes every trace that arrived after it, hence every trace that
arrived since that poll; and if it includes every trace still waiting for its root span,
it includes whatever joined them too. An answer that is not full holds every trace of the
window anyway. Otherwise the poll asks again for twice as many, up to the bound it is given:
the first page is sized from what the previous poll found, so one request usually does.

Each trace is reported as a request once its server span is there and as a completed trace
once its root span is; a trace starting before the window (the previous poll less the
settle time, when late spans are still awaited) is never reported again.

Pure functions, no I/O: :class:`exporter.sources.jaeger.JaegerSource` does the asking.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Final

from exporter.sources.base import TraceUpdates
from exporter.spans import SpanRecord

FIRST_PAGE_MIN: Final = 100
"""Traces asked for first when the previous poll found (almost) nothing."""
ROOT_WAIT_NANO: Final = 5_000_000_000
"""How long after its start a trace without its root span is still waited for: a search
must reach back to it, which costs every trace that arrived since. A root lost on the way
(the simulator drops spans when its export queue is full) would otherwise make every poll
read back to it until it left the window. A later root is still reported if found."""
PAGE_HEADROOM: Final = 1.5
"""The first page is this many times the traces the previous poll found, plus the waiting
ones: the rate may have risen since."""


@dataclass(frozen=True, slots=True)
class JaegerCursor:
    """Where the live feed stands.

    Traces starting before ``origin_unix_nano`` are never reported. Each mapping holds trace
    ids with their start, forgotten once the start leaves the window: ``requests`` were
    reported as a request, ``traces`` as completed, ``pending`` were seen without a root
    span yet. ``found`` is how many traces the poll that made this cursor saw first.
    """

    origin_unix_nano: int
    polled_unix_nano: int
    requests: Mapping[int, int] = field(default_factory=dict)
    traces: Mapping[int, int] = field(default_factory=dict)
    pending: Mapping[int, int] = field(default_factory=dict)
    found: int = 0

    def seen(self, floor: int, now: int) -> tuple[frozenset[int], frozenset[int]]:
        """The traces an earlier poll saw that still start in the window, and those of
        them still waited for: without their root span, started ``ROOT_WAIT_NANO`` ago
        at most."""
        seen = {t for t, start in self.requests.items() if start >= floor}
        seen.update(t for t, start in self.traces.items() if start >= floor)
        seen.update(t for t, start in self.pending.items() if start >= floor)
        waited = max(floor, now - ROOT_WAIT_NANO)
        pending = frozenset(t for t, start in self.pending.items() if start >= waited)
        return frozenset(seen), pending


def first_page(cursor: JaegerCursor, waiting: int, bound: int) -> int:
    """How many traces the first search of a poll asks for (at most ``bound``)."""
    wanted = max(FIRST_PAGE_MIN, round(cursor.found * PAGE_HEADROOM) + waiting + 1)
    return min(wanted, bound)


def complete(found: Set[int], asked: int, seen: Set[int], pending: Set[int]) -> bool:
    """Whether an answer of the traces ``found`` (``asked`` for) holds every trace that
    arrived or changed since the previous poll: see the module's docstring."""
    if len(found) < asked:
        return True
    return bool(found & seen) and pending <= found


def advance(
    cursor: JaegerCursor, floor: int, now: int, spans: list[SpanRecord], service: str
) -> TraceUpdates:
    """The requests and completed traces of ``spans`` (a search answer over the window
    from ``floor``) not reported yet, and the cursor for the next poll at ``now``."""
    by_trace: dict[int, list[SpanRecord]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    requests = _kept(cursor.requests, floor)
    traces = _kept(cursor.traces, floor)
    pending = _kept(cursor.pending, floor)
    known = requests.keys() | traces.keys() | pending.keys()
    new_requests: list[SpanRecord] = []
    completed: list[list[SpanRecord]] = []
    for trace_id, trace in by_trace.items():
        start = min(span.start_unix_nano for span in trace)
        if start < floor:  # before the origin, or settled in an earlier window
            continue
        server = first_server_spans(trace, service, 1)
        if server and trace_id not in requests:
            requests[trace_id] = start
            new_requests.extend(server)
        if trace_id in traces:
            continue
        if any(span.parent_span_id is None for span in trace):
            traces[trace_id] = start
            pending.pop(trace_id, None)
            completed.append(trace)
        else:
            pending[trace_id] = start
    new_requests.sort(key=lambda span: span.start_unix_nano)
    completed.sort(key=lambda trace: min(span.start_unix_nano for span in trace))
    found = len(by_trace.keys() - known)
    next_cursor = JaegerCursor(cursor.origin_unix_nano, now, requests, traces, pending, found)
    return TraceUpdates(next_cursor, new_requests, completed)


def first_server_spans(spans: list[SpanRecord], service: str, limit: int) -> list[SpanRecord]:
    """One server span per trace (the earliest, i.e. the request as it entered the service),
    newest request first."""
    first: dict[int, SpanRecord] = {}
    for span in spans:
        if span.kind != "server" or span.service_name != service:
            continue
        known = first.get(span.trace_id)
        if known is None or span.start_unix_nano < known.start_unix_nano:
            first[span.trace_id] = span
    ordered = sorted(first.values(), key=lambda span: span.start_unix_nano, reverse=True)
    return ordered[:limit]


def _kept(reported: Mapping[int, int], floor: int) -> dict[int, int]:
    return {trace_id: start for trace_id, start in reported.items() if start >= floor}
