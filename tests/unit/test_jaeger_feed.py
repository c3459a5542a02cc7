"""``JaegerSource.updates``, the live feed's reading of a real Jaeger (``tests/support/jaeger.py``).

Each request is reported once its server span is in Jaeger, each trace once its root span
is, however many arrived between two polls, and never again; a poll reads at most its bound.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from exporter.sources.base import TraceUpdates
from exporter.sources.jaeger import JaegerCursor, JaegerSource
from exporter.sources.readable import span_record
from exporter.spans import SpanRecord
from tests.support.jaeger import JaegerProcess
from tests.support.labs import Traffic
from tests.support.spanmaker import late_child, orphan_server, requests_of

pytestmark = pytest.mark.timeout(60)

SERVICE = "failure-lab-simulator"


def _by_span_id(records: Sequence[SpanRecord]) -> list[SpanRecord]:
    return sorted(records, key=lambda r: r.span_id)


async def _updates(url: str, cursor: JaegerCursor, **options: Any) -> TraceUpdates:
    source = JaegerSource(url, options.pop("service", SERVICE), **options)
    try:
        return await source.updates(cursor)
    finally:
        await source.aclose()


async def test_updates_report_each_request_and_completed_trace_once(
    traffic: Traffic, own_jaeger: JaegerProcess
) -> None:
    origin = min(s.start_time or 0 for s in traffic.spans) - 1
    first_two = traffic.trace_ids()[:2]
    # The first two requests' spans have arrived except their roots (the generator's spans,
    # which end last).
    early = [
        s
        for s in traffic.spans
        if s.context is not None and s.context.trace_id in first_two and s.parent is not None
    ]
    await own_jaeger.send(early)
    servers = traffic.servers()
    source = JaegerSource(own_jaeger.query_url, SERVICE, settle_seconds=600)
    try:
        start = await source.updates(None)
        assert (start.requests, start.completed) == ([], [])
        assert isinstance(start.cursor, JaegerCursor)

        first = await source.updates(JaegerCursor(origin, origin))
        assert first.requests == [span_record(s) for s in servers[:2]]
        assert first.completed == []

        await own_jaeger.send([s for s in traffic.spans if s not in early])
        second = await source.updates(first.cursor)
        assert second.requests == [span_record(s) for s in servers[2:]]
        roots = sorted(
            (s for s in traffic.spans if s.parent is None), key=lambda s: s.start_time or 0
        )
        assert [t[0].trace_id for t in second.completed] == [
            s.context.trace_id for s in roots if s.context is not None
        ]
        for trace in second.completed:
            expected = [span_record(s) for s in traffic.of_trace(trace[0].trace_id)]
            assert _by_span_id(trace) == _by_span_id(expected)

        third = await source.updates(second.cursor)
        assert (third.requests, third.completed) == ([], [])
    finally:
        await source.aclose()


async def test_updates_skip_traces_that_settled_before_the_window(
    traffic: Traffic, jaeger: JaegerProcess
) -> None:
    origin = min(s.start_time or 0 for s in traffic.spans) - 1
    late = await _updates(
        jaeger.query_url, JaegerCursor(origin, time.time_ns()), settle_seconds=0.001
    )
    assert (late.requests, late.completed) == ([], [])


async def test_updates_do_not_repeat_a_trace_once_it_left_the_window(
    traffic: Traffic, own_jaeger: JaegerProcess
) -> None:
    """A span arriving late puts an old trace back into the search answer; it was reported
    when it was new and is not reported again."""
    await own_jaeger.send(traffic.spans)
    origin = min(s.start_time or 0 for s in traffic.spans) - 1
    source = JaegerSource(own_jaeger.query_url, SERVICE, settle_seconds=0.001)
    server = traffic.servers()[0]
    try:
        first = await source.updates(JaegerCursor(origin, origin))
        assert len(first.requests) == len(first.completed) == 5
        assert isinstance(first.cursor, JaegerCursor)
        cursor = JaegerCursor(origin, time.time_ns(), first.cursor.requests, first.cursor.traces)
        late = late_child(server, SERVICE)
        await own_jaeger.send(late)
        assert span_record(late[0]) in await source.trace(server.context.trace_id)
        again = await source.updates(cursor)
    finally:
        await source.aclose()
    assert (again.requests, again.completed) == ([], [])


def _requests_in(records: Sequence[SpanRecord]) -> set[int]:
    return {r.trace_id for r in records}


async def test_updates_report_every_new_trace_however_many_arrived(
    own_jaeger: JaegerProcess,
) -> None:
    """More traces than one search's first page arrive between two polls, and the root of
    an early trace arrives after hundreds of newer traces: each is reported, once."""
    asked: list[int] = []

    async def record(request: httpx.Request) -> None:
        if request.url.path == "/api/v3/traces":
            asked.append(int(request.url.params["query.num_traces"]))

    service = "paged"
    origin = time.time_ns()
    first_batch = requests_of(service, 350)
    held_back = first_batch.root(0)
    await own_jaeger.send([s for s in first_batch.spans if s is not held_back])
    async with httpx.AsyncClient(event_hooks={"request": [record]}) as client:
        source = JaegerSource(own_jaeger.query_url, service, client=client, settle_seconds=600)
        first = await source.updates(JaegerCursor(origin, origin))
        assert _requests_in(first.requests) == set(first_batch.trace_ids)
        assert len(first.requests) == 350
        completed = {t[0].trace_id for t in first.completed}
        assert completed == set(first_batch.trace_ids[1:])
        assert asked == [100, 200, 400]  # twice as many until an answer is not full

        second_batch = requests_of(service, 300)
        await own_jaeger.send(second_batch.spans)
        await own_jaeger.send([held_back])
        asked.clear()
        second = await source.updates(first.cursor)
        assert _requests_in(second.requests) == set(second_batch.trace_ids)
        assert len(second.requests) == 300
        late_root = {t[0].trace_id for t in second.completed} - set(second_batch.trace_ids)
        assert late_root == {first_batch.trace_ids[0]}
        assert len(second.completed) == 301
        # Sized from the previous poll: 1.5 x 350 traces, one waiting for its root, plus one.
        assert asked[0] == 527

        asked.clear()
        third = await source.updates(second.cursor)
        assert (third.requests, third.completed) == ([], [])
        assert len(asked) == 1  # an answer reaching traces seen before is complete


async def test_a_root_that_never_comes_is_not_waited_for_long(own_jaeger: JaegerProcess) -> None:
    """A request whose trace's root was lost (6 s old) is reported, and later polls do not
    read back through every newer trace to see whether its root came after all."""
    asked: list[int] = []

    async def record(request: httpx.Request) -> None:
        if request.url.path == "/api/v3/traces":
            asked.append(int(request.url.params["query.num_traces"]))

    service = "lost-roots"
    origin = time.time_ns() - 7_000_000_000
    lost = orphan_server(service, uuid.uuid4().int, origin + 1_000_000_000)
    await own_jaeger.send(lost)
    older = requests_of(service, 300)
    await own_jaeger.send(older.spans)
    async with httpx.AsyncClient(event_hooks={"request": [record]}) as client:
        source = JaegerSource(own_jaeger.query_url, service, client=client, settle_seconds=600)
        first = await source.updates(JaegerCursor(origin, origin))
        assert len(first.requests) == 301
        assert first.requests[0] == span_record(lost[0])  # the oldest
        assert len(first.completed) == 300

        newer = requests_of(service, 300)
        await own_jaeger.send(newer.spans)
        asked.clear()
        second = await source.updates(first.cursor)
        assert _requests_in(second.requests) == set(newer.trace_ids)
        assert len(asked) == 1  # not twice as many again to reach the lost root's trace


async def test_updates_read_at_most_the_bound_a_poll(
    own_jaeger: JaegerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    service = "bounded"
    origin = time.time_ns()
    batch = requests_of(service, 120)
    await own_jaeger.send(batch.spans)
    update = await _updates(
        own_jaeger.query_url, JaegerCursor(origin, origin), service=service, feed_max_traces=50
    )
    assert len(update.requests) == len(update.completed) == 50
    assert _requests_in(update.requests) <= set(batch.trace_ids)
    assert "more new traces in Jaeger than feed_max_traces=50" in caplog.text
