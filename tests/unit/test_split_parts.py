"""The pure parts of splitting a job over worker processes: segments of the schedule and of
the requests, and merging the workers' samples, tallies, histograms, spans and messages."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from failure_lab.control import ScenarioName
from failure_lab.settings import Settings
from simulator.generator.arrivals import schedule
from simulator.generator.job_spec import JobSpec
from simulator.generator.metrics import GeneratorMetrics
from simulator.generator.planner import ERROR, GET_USER, PlannedRequest
from simulator.generator.scenarios import peak_shape
from simulator.generator.segments import Segment
from simulator.generator.stats import (
    FAILED_KEPT,
    SLOWEST_KEPT,
    LiveStats,
    RunSamples,
    percentiles,
)
from simulator.generator.tally import TrafficTally
from simulator.generator.wire import Start, frame, read_message
from simulator.options import PipelineOptions
from simulator.telemetry.relay import SpanShipper, deliver, local_processors
from simulator.telemetry.span_export import BoundedBatchProcessor

OPTIONS = PipelineOptions(db_latency_ms=10.0)
Arrival = tuple[float, PlannedRequest, PipelineOptions]


def spec(scenario: ScenarioName, *, duration: float = 3.0, max_rps: float = 97.0) -> JobSpec:
    return JobSpec(
        scenario=scenario,
        duration=duration,
        max_rps=max_rps,
        options=OPTIONS,
        endpoints=None,
        users=40,
        seed=20261123,
        latency_growth_ms=500.0,
    )


def arrivals(job: JobSpec, segment: Segment | None = None) -> list[Arrival]:
    """(offset, request, options) of every arrival a process with ``segment`` sends."""
    plan = job.plan()
    offsets: Any = schedule(plan.rate, plan.duration).offsets
    requests = plan.requests
    if segment is not None:
        offsets, requests = segment.offsets(offsets), segment.requests(requests)
    at = plan.options if callable(plan.options) else (lambda _t: plan.options)
    return [(offset, requests.next(), at(offset)) for offset in offsets]


@pytest.mark.parametrize("scenario", ["normal", "peak", "error_injection", "latency_degradation"])
@pytest.mark.parametrize("workers", [1, 2, 3, 4, 7])
def test_the_union_of_the_segments_is_the_one_process_schedule(
    scenario: ScenarioName, workers: int
) -> None:
    job = spec(scenario)
    whole = arrivals(job)
    parts = [arrivals(job, segment) for segment in Segment.all(workers)]
    planned = schedule(job.plan().rate, job.duration).planned
    assert len(whole) == planned
    assert [len(part) for part in parts] == [s.share(planned) for s in Segment.all(workers)]
    assert sum(len(part) for part in parts) == planned
    # Worker i's k-th arrival is arrival i + k * workers of the whole: offset, request (its
    # route, path and body) and options, all equal.
    merged: list[Arrival | None] = [None] * planned
    for index, part in enumerate(parts):
        for k, arrival in enumerate(part):
            merged[index + k * workers] = arrival
    assert merged == whole


def test_a_sustained_job_is_the_default_rotation_at_its_constant_rate() -> None:
    job = JobSpec.sustained(OPTIONS, 50.0, 2.0, users=40, seed=1)
    plan = job.plan()
    assert (plan.rate, plan.options) == (50.0, OPTIONS)
    whole = arrivals(job)
    assert [offset for offset, _r, _o in whole] == [i / 50.0 for i in range(100)]
    assert [r.endpoint for _t, r, _o in whole].count(GET_USER) == 60
    assert all(r.endpoint != ERROR for _t, r, _o in whole)


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_each_workers_own_sends_are_evenly_spaced_at_a_constant_rate(workers: int) -> None:
    rate = 200.0
    offsets = list(schedule(rate, 2.0).offsets)
    for segment in Segment.all(workers):
        own = list(segment.offsets(offsets))
        assert own[0] == segment.index / rate
        gaps = {round(b - a, 9) for a, b in itertools.pairwise(own)}
        assert gaps == {round(workers / rate, 9)}


def test_each_worker_follows_the_whole_shape() -> None:
    """Striped, not contiguous: every worker ramps up, holds and ramps down."""
    offsets = list(schedule(peak_shape(400.0, 4.0), 4.0).offsets)
    for segment in Segment.all(2):
        own = list(segment.offsets(offsets))
        counts = [sum(1 for t in own if second <= t < second + 1) for second in range(4)]
        assert counts == pytest.approx([100, 200, 200, 100], abs=2)


def test_segments_split_counts_and_the_in_flight_bound_without_remainder() -> None:
    for count in (1, 2, 3, 8):
        segments = Segment.all(count)
        for planned in (0, 1, 5, 7, 1000, 1001):
            assert sum(s.share(planned) for s in segments) == planned
        assert sum(s.bound(256) for s in segments) == 256
        assert max(s.bound(256) for s in segments) - min(s.bound(256) for s in segments) <= 1
    assert [s.bound(1) for s in Segment.all(2)] == [1, 1]  # never 0: each sends something
    for index, count in ((-1, 2), (2, 2), (0, 0)):
        with pytest.raises(ValueError, match="segment"):
            Segment(index, count)


def _samples(seed: int, count: int) -> tuple[RunSamples, list[tuple[float, float, float]]]:
    """A worker's run: (send lag, latency, service latency) per request, every 5th failed."""
    rng = random.Random(seed)
    samples = RunSamples(count)
    values = []
    for i in range(count):
        lag, latency = rng.expovariate(2.0), rng.lognormvariate(3.0, 0.8)
        values.append((lag, latency, latency - lag))
        samples.add_send_lag(lag)
        samples.add_latency(latency, latency - lag)
        samples.add_outcome(latency, seed * 10_000 + i + 1, i % 5 != 0, ended=seed + i * 0.01)
    return samples, values


def test_merged_samples_give_the_exact_percentiles_of_all_requests() -> None:
    first, a = _samples(1, 1500)
    second, b = _samples(2, 1499)
    merged = RunSamples(2999)
    merged.absorb(first.part())
    merged.absorb(second.part())
    everything = a + b
    assert percentiles(merged.send_lag_ms) == percentiles([v[0] for v in everything])
    assert percentiles(merged.latency_ms) == percentiles([v[1] for v in everything])
    assert percentiles(merged.service_latency_ms) == percentiles([v[2] for v in everything])
    summary = merged.summarise(LiveStats(), planned=2999, elapsed=3.0, send_window=3.0)
    assert summary.latency_ms == percentiles([v[1] for v in everything])
    # The slowest of the whole job, slowest first; the most recent failures of either worker.
    slowest = sorted(everything, key=lambda v: v[1], reverse=True)[:SLOWEST_KEPT]
    assert [s.latency_ms for s in summary.slowest] == [v[1] for v in slowest]
    failed = sorted(
        [(1 + i * 0.01, 10_000 + i + 1) for i in range(0, 1500, 5)]
        + [(2 + i * 0.01, 20_000 + i + 1) for i in range(0, 1499, 5)]
    )[-FAILED_KEPT:]
    assert summary.failed_request_ids == [
        str(uuid.UUID(int=trace_id)) for _ended, trace_id in failed
    ]


def test_merged_samples_stay_within_the_runs_capacity() -> None:
    first, _a = _samples(1, 10)
    merged = RunSamples(15)
    merged.absorb(first.part())
    merged.absorb(first.part())
    assert len(merged.latency_ms) == len(merged.send_lag_ms) == 15
    assert len(merged.service_latency_ms) == 15


def test_a_tally_absorbing_workers_counts_equals_one_tally_of_everything() -> None:
    requests = [
        PlannedRequest("GET", "/api/v1/users/{id}", "/api/v1/users/3"),
        PlannedRequest("POST", "/api/v1/users", "/api/v1/users", {"name": "Ada", "email": "a@b"}),
        PlannedRequest("GET", "/api/v1/users", "/api/v1/users"),
    ]
    outcomes: list[tuple[int | None, Any, int]] = [
        (200, None, 0), (503, None, 2), (None, "timeout", 0), (429, None, 0), (201, None, 1),
    ]  # fmt: skip
    one, workers = TrafficTally(), [TrafficTally(), TrafficTally()]
    parent = TrafficTally()
    reported: list[Any] = [None, None]
    for i in range(60):
        worker = i % 2
        request, (status, transport, retries) = requests[i % 3], outcomes[i % 5]
        for tally in (one, workers[worker]):
            tally.record_sent(10.0 + i, late=i % 7 == 0)
            if i % 11 == 0:
                tally.record_dropped()
            tally.record_finished(request, status, transport, retries)
        if i % 4 == 3:  # a worker reports now and then: running totals, applied as changes
            now = workers[worker].counts()
            before = reported[worker]
            parent.absorb(now.minus(before) if before is not None else now)
            reported[worker] = now
    for worker, tally in enumerate(workers):
        now = tally.counts()
        before = reported[worker]
        parent.absorb(now.minus(before) if before is not None else now)
    wall = {"first_send_time", "last_send_time"}  # perf_counter instants, dated when asked
    assert parent.statistics(circuit_breaker_trips=0, now=100.0).model_dump(
        exclude=wall
    ) == one.statistics(circuit_breaker_trips=0, now=100.0).model_dump(exclude=wall)
    assert (parent.first_send, parent.last_send) == (one.first_send, one.last_send) == (10, 69)


def test_histograms_absorbing_workers_counts_equal_observing_every_value() -> None:
    reference_registry, parent_registry = CollectorRegistry(), CollectorRegistry()
    reference, parent = GeneratorMetrics(reference_registry), GeneratorMetrics(parent_registry)
    workers = [GeneratorMetrics(CollectorRegistry()) for _ in range(2)]
    reported: list[Any] = [None, None]
    rng = random.Random(3)
    for i in range(400):
        intended, actual, lag = rng.expovariate(20), rng.expovariate(30), rng.expovariate(900)
        for metrics in (reference, workers[i % 2]):
            metrics.observe_latency(intended, actual, trace_id=0, now=float(i))
            metrics.send_lag.observe(lag)
        if i % 50 == 49:  # reports now and then: running totals, applied as changes
            now = workers[i % 2].counts()
            parent.absorb(now, reported[i % 2])
            reported[i % 2] = now
    for index, metrics in enumerate(workers):
        parent.absorb(metrics.counts(), reported[index])
    assert _histograms(parent_registry) == _histograms(reference_registry)
    assert (
        _histograms(reference_registry)[
            ("failure_lab_generator_latency_seconds_count", (("basis", "actual"),))
        ]
        == 400
    )


def _histograms(
    registry: CollectorRegistry,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every bucket, count and sum of the registry's histograms (sums to 1e-9)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): round(sample.value, 9)
        for family in registry.collect()
        if family.type == "histogram"
        for sample in family.samples
        if sample.name.endswith(("_bucket", "_sum", "_count"))
    }


def test_exemplars_of_worker_histograms_reach_this_process() -> None:
    registry, worker_registry = CollectorRegistry(), CollectorRegistry()
    parent, worker = GeneratorMetrics(registry), GeneratorMetrics(worker_registry)
    worker.observe_latency(0.012, 0.011, trace_id=0xABC, now=1.0)
    parent.absorb(worker.counts(), None)
    seen = _exemplars(registry)
    assert seen == _exemplars(worker_registry)
    assert sorted(basis for basis, _le in seen) == ["actual", "intended"]
    assert set(seen.values()) == {f"{0xABC:032x}"}


def _exemplars(registry: CollectorRegistry) -> dict[tuple[str, str], str]:
    return {
        (sample.labels["basis"], sample.labels["le"]): sample.exemplar.labels["trace_id"]
        for family in registry.collect()
        for sample in family.samples
        if sample.exemplar is not None
    }


def test_shipped_spans_reach_the_local_processors_as_they_ended() -> None:
    worker = TracerProvider()
    shipper = SpanShipper()
    worker.add_span_processor(shipper)
    tracer = worker.get_tracer("failure_lab.test", "1.2")
    with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as live:
        live.set_attributes({"http.status_code": 503, "failure_lab.generator.job_id": "j"})
        live.add_event("retry", {"attempt": 2})
        live.set_status(StatusCode.ERROR, "HTTP 503")
    original = live
    assert isinstance(original, ReadableSpan)
    shipped = shipper.take()
    assert len(shipped) == 1
    assert shipper.take() == []

    parent = TracerProvider()
    kept = InMemorySpanExporter()
    parent.add_span_processor(SimpleSpanProcessor(kept))
    exported = InMemorySpanExporter()
    parent.add_span_processor(
        BoundedBatchProcessor(
            exported, lambda reason, count: None, queue_size=8, batch_size=8, delay_s=0.01
        )
    )
    local = local_processors(parent)
    assert len(local) == 1  # the OTLP export is the worker's own
    deliver(shipped, parent, local)
    parent.force_flush()
    (rebuilt,) = kept.get_finished_spans()
    assert exported.get_finished_spans() == ()
    assert rebuilt.context is not None
    assert original.context is not None
    assert (rebuilt.context.trace_id, rebuilt.context.span_id) == (
        original.context.trace_id,
        original.context.span_id,
    )
    assert (rebuilt.name, rebuilt.kind, rebuilt.parent) == ("GET", SpanKind.CLIENT, None)
    assert (rebuilt.start_time, rebuilt.end_time) == (original.start_time, original.end_time)
    assert dict(rebuilt.attributes or {}) == dict(original.attributes or {})
    assert [(e.name, dict(e.attributes or {})) for e in rebuilt.events] == [
        ("retry", {"attempt": 2})
    ]
    assert (rebuilt.status.status_code, rebuilt.status.description) == (
        StatusCode.ERROR,
        "HTTP 503",
    )
    assert rebuilt.resource is parent.resource
    assert rebuilt.instrumentation_scope is not None
    assert rebuilt.instrumentation_scope.name == "failure_lab.test"


async def test_messages_cross_a_pipe_whole_however_large() -> None:
    reader = asyncio.StreamReader(limit=1024)
    payload = {"samples": list(range(200_000)), "start": Start(12.5)}
    reader.feed_data(frame(payload) + frame(Start(1.0)))
    reader.feed_eof()
    assert await read_message(reader) == payload
    assert await read_message(reader) == Start(1.0)
    with pytest.raises(EOFError):
        await read_message(reader)


def test_one_process_per_job_unless_a_setting_allows_more() -> None:
    assert Settings().max_workers == 1
    with pytest.raises(ValueError, match="max_workers"):
        Settings(max_workers=0)
