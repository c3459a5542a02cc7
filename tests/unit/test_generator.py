"""The traffic engine against a real HTTP server on 127.0.0.1.

The server is a tiny aiohttp app serving the user API with a configurable delay, status and
retry header; it records what it received (traceparent, options header, body) and how many
requests it held at once, which is what the open-model assertions are about.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from types import FrameType
from typing import Any

import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from failure_lab.control import TrafficResult, TrafficStatus, TrafficTotals
from simulator.generator.engine import TrafficEngine
from simulator.generator.jobs import JobManager, JobNotFound, TooManyJobs
from simulator.generator.metrics import GeneratorMetrics
from simulator.generator.planner import GET_USER, RequestPlanner
from simulator.options import HEADER, PipelineOptions

OPTIONS = PipelineOptions(retries_enabled=False, rate_limit=10, cache_ttl=5, db_latency_ms=3)


@dataclass
class Received:
    method: str
    path: str
    traceparent: str | None
    options: str | None
    body: Any
    at: float


@dataclass
class UserApi:
    delay: float = 0.0
    status: int = 200
    retries: int = 0
    received: list[Received] = field(default_factory=list)
    held: int = 0
    max_held: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.received.append(
            Received(
                request.method,
                request.path_qs,
                request.headers.get("traceparent"),
                request.headers.get(HEADER),
                json.loads(raw) if raw else None,
                time.perf_counter(),
            )
        )
        self.held += 1
        self.max_held = max(self.max_held, self.held)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.held -= 1
        headers = {"x-failure-lab-retries": str(self.retries)} if self.retries else {}
        return web.json_response(
            {"traceparent": request.headers.get("traceparent")},
            status=self.status,
            headers=headers,
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/users", self.handle)
        app.router.add_post("/api/v1/users", self.handle)
        app.router.add_get("/api/v1/users/error", self.handle)
        app.router.add_get("/api/v1/users/{id}", self.handle)
        app.router.add_patch("/api/v1/users/{id}", self.handle)
        return app


@dataclass
class Lab:
    api: UserApi
    url: str
    exporter: InMemorySpanExporter
    provider: TracerProvider
    registry: CollectorRegistry
    make: Callable[..., TrafficEngine]

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.registry.get_sample_value(name, labels)


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class ServerThread:
    """Serves ``api`` from its own thread and event loop, as a separate service would."""

    def __init__(self, api: UserApi) -> None:
        self.api = api
        self.sock = _free_socket()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = web.AppRunner(self.api.app(), handle_signals=False, shutdown_timeout=0.2)
        await runner.setup()
        await web.SockSite(runner, self.sock).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(5), "test server did not start"
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    api = UserApi()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    metrics = GeneratorMetrics(registry)
    engines: list[TrafficEngine] = []
    with ServerThread(api) as server:

        def make(**overrides: Any) -> TrafficEngine:
            settings: dict[str, Any] = {
                "base_url": server.url,
                "tracer_provider": provider,
                "metrics": metrics,
                "planner": RequestPlanner(users=10, rng=random.Random(42)),
                "max_in_flight": 64,
                "late_threshold_s": 0.005,
            }
            settings.update(overrides)
            engine = TrafficEngine(**settings)
            engines.append(engine)
            return engine

        yield Lab(api, server.url, exporter, provider, registry, make)
        for engine in engines:
            await engine.aclose()
    provider.shutdown()


def _client_spans(exporter: InMemorySpanExporter) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]


def _totals(engine: TrafficEngine) -> TrafficTotals:
    """What ``GET /v1/traffic/statistics`` reports of everything ``engine`` sent."""
    return engine.tally.statistics(circuit_breaker_trips=0).totals


@contextmanager
def _results_built() -> Iterator[list[str]]:
    """How each ``TrafficResult`` made while open was made, seen by a profiler on this
    thread's calls (the code under test runs as it is; the test server has its own thread)."""
    made: list[str] = []

    def watch(frame: FrameType, event: str, _arg: object) -> None:
        if event != "call":
            return
        name = frame.f_code.co_name
        constructed = name == "model_construct" and frame.f_locals.get("cls") is TrafficResult
        validated = name == "__init__" and isinstance(frame.f_locals.get("self"), TrafficResult)
        if constructed or validated:
            made.append(name)

    sys.setprofile(watch)
    try:
        yield made
    finally:
        sys.setprofile(None)


async def test_request_id_is_the_root_client_span_trace_id(lab: Lab) -> None:
    global_provider = trace.get_tracer_provider()
    async with lab.make() as engine:
        outer = lab.provider.get_tracer("test").start_as_current_span("caller's span")
        with outer as caller:
            result = await engine.send(OPTIONS, job_id="job-1")

    (span,) = _client_spans(lab.exporter)
    assert span.parent is None
    assert span.context.trace_id != caller.get_span_context().trace_id
    assert result.request_id == str(uuid.UUID(int=span.context.trace_id))
    assert span.attributes["failure_lab.generator.job_id"] == "job-1"
    assert span.attributes["failure_lab.generator.send_lag_ms"] == result.send_lag_ms

    (received,) = lab.api.received
    assert received.traceparent is not None
    version, trace_id, parent_id, flags = received.traceparent.split("-")
    assert (version, trace_id) == ("00", f"{span.context.trace_id:032x}")
    assert parent_id == f"{span.context.span_id:016x}"  # the server's parent is our root span
    assert int(flags, 16) & 1  # sampled
    assert received.options == OPTIONS.encode()
    assert result.status == "success"
    assert result.http_status == 200
    assert result.endpoint == "/api/v1/users/{id}"
    assert result.method == "GET"
    assert result.retry_count == 0
    assert result.error is None
    assert result.timestamp.endswith("Z")
    assert result.latency_ms >= result.service_latency_ms > 0
    # The engine traced with the provider it was given and installed no global one.
    assert trace.get_tracer_provider() is global_provider


async def test_each_request_is_its_own_trace_and_bodies_arrive(lab: Lab) -> None:
    async with lab.make() as engine:
        results = [await engine.send(OPTIONS) for _ in range(10)]
    spans = _client_spans(lab.exporter)
    assert len(spans) == 10
    assert all(span.parent is None for span in spans)
    assert len({r.request_id for r in results}) == 10
    assert {r.request_id for r in results} == {
        str(uuid.UUID(int=span.context.trace_id)) for span in spans
    }
    posts = [r for r in lab.api.received if r.method == "POST"]
    patches = [r for r in lab.api.received if r.method == "PATCH"]
    assert len(posts) == 1
    assert len(patches) == 1
    assert set(posts[0].body) == {"name", "email"}
    assert patches[0].body


async def test_http_errors_and_retry_header(lab: Lab) -> None:
    lab.api.status, lab.api.retries = 503, 2
    async with lab.make() as engine:
        result = await engine.send(OPTIONS)
    assert result.status == "failure"
    assert result.http_status == 503
    assert result.retry_count == 2
    assert lab.sample("failure_lab_generator_responses_total", {"outcome": "failure"}) == 1.0
    assert lab.sample("failure_lab_generator_responses_total", {"outcome": "success"}) == 0.0


async def test_connection_refused_is_a_failure_not_an_exception(lab: Lab) -> None:
    closed = _free_socket()
    port = closed.getsockname()[1]
    closed.close()
    async with lab.make(base_url=f"http://127.0.0.1:{port}") as engine:
        result = await engine.send(OPTIONS)
    assert result.status == "failure"
    assert result.http_status is None
    assert result.error
    assert len(result.error) <= 200
    assert uuid.UUID(result.request_id)
    (span,) = _client_spans(lab.exporter)
    assert result.request_id == str(uuid.UUID(int=span.context.trace_id))
    assert engine.in_flight == 0


async def test_timeout_is_a_failure(lab: Lab) -> None:
    lab.api.delay = 2.0
    async with lab.make(request_timeout_s=0.2) as engine:
        result = await engine.send(OPTIONS)
    assert result.status == "failure"
    assert result.http_status is None
    assert result.error == "timeout after 0.2s"


async def test_open_model_keeps_sending_while_responses_are_slow(lab: Lab) -> None:
    lab.api.delay = 0.2  # ten times the send interval
    results: list[TrafficResult] = []
    async with lab.make() as engine:
        stats = await engine.run(OPTIONS, rate=50, duration=1.0, on_result=results.append)

    assert stats.planned == 50
    assert stats.sent == 50
    assert stats.dropped == 0
    assert stats.succeeded == 50
    assert stats.failed == 0
    assert len(results) == len(lab.api.received) == 50
    # Requests kept leaving at their times while earlier ones were still being served.
    assert lab.api.max_held >= 5
    for result in results:
        assert result.latency_ms >= result.service_latency_ms >= 200.0
        assert result.latency_ms == pytest.approx(result.service_latency_ms + result.send_lag_ms)
    assert stats.latency_ms.p50 is not None
    assert stats.service_latency_ms.p50 is not None
    assert stats.latency_ms.p50 >= stats.service_latency_ms.p50
    assert stats.send_lag_ms.p50 is not None
    assert stats.send_lag_ms.p99 is not None
    assert stats.send_lag_ms.p99 >= stats.send_lag_ms.p50 >= 0
    assert 40 <= stats.achieved_rps <= 50  # sent over max(duration, last send)
    late = sum(1 for r in results if r.send_lag_ms > 5.0)
    assert stats.late_sends == late

    assert lab.sample("failure_lab_generator_requests_total", {"result": "sent"}) == 50
    assert lab.sample("failure_lab_generator_requests_total", {"result": "dropped"}) == 0
    assert lab.sample("failure_lab_generator_responses_total", {"outcome": "success"}) == 50
    assert lab.sample("failure_lab_generator_late_sends_total") == late
    assert lab.sample("failure_lab_generator_send_lag_seconds_count") == 50
    for basis in ("intended", "actual"):
        labels = {"basis": basis}
        assert lab.sample("failure_lab_generator_latency_seconds_count", labels) == 50
    intended_sum = lab.sample("failure_lab_generator_latency_seconds_sum", {"basis": "intended"})
    actual_sum = lab.sample("failure_lab_generator_latency_seconds_sum", {"basis": "actual"})
    assert intended_sum is not None
    assert actual_sum is not None
    assert intended_sum >= actual_sum
    assert lab.sample("failure_lab_generator_target_rps") == 0
    assert lab.sample("failure_lab_generator_in_flight") == 0


async def test_target_gauge_is_set_while_running(lab: Lab) -> None:
    lab.api.delay = 0.01
    async with lab.make() as engine:
        run = asyncio.create_task(engine.run(OPTIONS, rate=40, duration=0.5))
        await asyncio.sleep(0.1)
        assert lab.sample("failure_lab_generator_target_rps") == 40
        await run
    assert lab.sample("failure_lab_generator_target_rps") == 0


async def test_ramp_follows_the_rate_function(lab: Lab) -> None:
    # rate(t) = 100 t over 0.5 s: the integral reaches 12.5, so 12 requests (none at t = 0).
    async with lab.make() as engine:
        run = asyncio.create_task(engine.run(OPTIONS, rate=lambda t: 100.0 * t, duration=0.5))
        await asyncio.sleep(0.3)
        ramping = lab.sample("failure_lab_generator_target_rps")
        stats = await run
    assert ramping is not None
    assert 5.0 <= ramping <= 50.0
    assert (stats.planned, stats.sent, stats.dropped) == (12, 12, 0)
    sent_at = [r.at for r in lab.api.received]
    assert sent_at == sorted(sent_at)
    assert lab.sample("failure_lab_generator_target_rps") == 0


async def test_in_flight_bound_drops_instead_of_queueing(lab: Lab) -> None:
    lab.api.delay = 1.0  # holds both slots beyond the end of the run
    async with lab.make(max_in_flight=2) as engine:
        stats = await engine.run(OPTIONS, rate=20, duration=0.5)
    assert stats.planned == 10
    assert stats.sent == 2
    assert stats.dropped == 8
    assert stats.succeeded == 2
    assert len(lab.api.received) == 2
    assert _totals(engine).dropped == 8
    assert lab.sample("failure_lab_generator_requests_total", {"result": "sent"}) == 2
    assert lab.sample("failure_lab_generator_requests_total", {"result": "dropped"}) == 8


async def test_burst_queues_behind_the_bound_and_keeps_order(lab: Lab) -> None:
    lab.api.delay = 0.1
    async with lab.make(max_in_flight=2) as engine:
        results = await engine.burst(OPTIONS, 6, job_id="b")
    planner = RequestPlanner(users=10, rng=random.Random(42))
    expected = [planner.next() for _ in range(6)]
    assert [(r.method, r.endpoint) for r in results] == [(p.method, p.route) for p in expected]
    assert len(lab.api.received) == 6
    assert all(r.status == "success" for r in results)
    # Two slots and 100 ms per request: the fifth and sixth wait for two full rounds.
    for result in results[4:]:
        assert result.send_lag_ms >= 195.0
        assert result.latency_ms >= 295.0
    for result in results:
        assert result.latency_ms >= result.service_latency_ms
    assert len({r.timestamp for r in results}) == 1
    assert lab.api.max_held == 2
    assert lab.sample("failure_lab_generator_requests_total", {"result": "dropped"}) == 0
    assert lab.sample("failure_lab_generator_requests_total", {"result": "sent"}) == 6


async def test_latency_observations_carry_trace_id_exemplars(lab: Lab) -> None:
    async with lab.make() as engine:
        result = await engine.send(OPTIONS)
    trace_id = uuid.UUID(result.request_id).hex
    exemplars = [
        (sample.labels["basis"], sample.exemplar.labels["trace_id"])
        for family in lab.registry.collect()
        if family.name == "failure_lab_generator_latency_seconds"
        for sample in family.samples
        if sample.exemplar is not None
    ]
    assert sorted(exemplars) == [("actual", trace_id), ("intended", trace_id)]


async def test_a_run_without_callback_builds_no_results(lab: Lab) -> None:
    handed_out: list[TrafficResult] = []
    async with lab.make() as engine:
        with _results_built() as made:
            stats = await engine.run(OPTIONS, rate=100, duration=0.3)
        assert made == []
        assert (stats.sent, stats.succeeded, stats.failed) == (30, 30, 0)
        assert stats.latency_ms.p50 is not None
        # The same watch sees every result a run hands out to its callback.
        with _results_built() as made:
            await engine.run(OPTIONS, rate=100, duration=0.1, on_result=handed_out.append)
        assert len(made) == len(handed_out) == 10
    assert lab.sample("failure_lab_generator_responses_total", {"outcome": "success"}) == 40
    intended = lab.sample("failure_lab_generator_latency_seconds_count", {"basis": "intended"})
    assert intended == 40


async def test_run_exemplars_are_client_span_trace_ids(lab: Lab) -> None:
    async with lab.make() as engine:
        await engine.run(OPTIONS, rate=100, duration=0.3)
    trace_ids = {f"{span.context.trace_id:032x}" for span in _client_spans(lab.exporter)}
    exemplars = [
        (sample.labels["basis"], sample.labels["le"], sample.exemplar.labels["trace_id"])
        for family in lab.registry.collect()
        if family.name == "failure_lab_generator_latency_seconds"
        for sample in family.samples
        if sample.exemplar is not None
    ]
    assert exemplars
    assert len(exemplars) < 2 * 30  # at most one per bucket per second, not one per request
    assert {trace_id for _basis, _le, trace_id in exemplars} <= trace_ids


async def test_cancelling_a_run_drains_and_reraises(lab: Lab) -> None:
    lab.api.delay = 0.05
    async with lab.make() as engine:
        run = asyncio.create_task(engine.run(OPTIONS, rate=40, duration=30.0))
        await asyncio.sleep(0.3)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        assert engine.in_flight == 0
        totals = _totals(engine)
        sent = totals.sent
        assert sent >= 1
        assert totals.succeeded + totals.failed == sent
        assert totals.in_flight == 0
        assert asyncio.all_tasks() == {asyncio.current_task()}
    assert lab.sample("failure_lab_generator_target_rps") == 0
    assert lab.sample("failure_lab_generator_in_flight") == 0
    assert lab.sample("failure_lab_generator_requests_total", {"result": "sent"}) == sent


async def test_cancel_cuts_requests_that_outlive_the_drain_timeout(lab: Lab) -> None:
    lab.api.delay = 5.0
    async with lab.make(drain_timeout_s=0.1) as engine:
        run = asyncio.create_task(engine.run(OPTIONS, rate=20, duration=30.0))
        await asyncio.sleep(0.12)
        started = time.perf_counter()
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        assert time.perf_counter() - started < 2.0
        assert engine.in_flight == 0
        totals = _totals(engine)
        assert totals.sent >= 2
        assert totals.failed == totals.sent
        assert totals.in_flight == 0
    failures = lab.sample("failure_lab_generator_responses_total", {"outcome": "failure"})
    assert failures == totals.sent


async def test_endpoint_subset_only_hits_that_route(lab: Lab) -> None:
    planner = RequestPlanner(users=3, rng=random.Random(1), endpoints=[GET_USER])
    async with lab.make(planner=planner) as engine:
        await engine.run(OPTIONS, rate=100, duration=0.1)
    assert len(lab.api.received) == 10
    assert all(r.method == "GET" and r.path.startswith("/api/v1/users/") for r in lab.api.received)


async def test_using_an_engine_before_start_is_an_error(lab: Lab) -> None:
    engine = lab.make()
    with pytest.raises(RuntimeError, match="not started"):
        await engine.run(OPTIONS, rate=10, duration=0.1)


# -- job manager ---------------------------------------------------------------------------------


async def _until(predicate: Callable[[], bool]) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached within 5 s")


def _finished(jobs: JobManager, job_id: str) -> bool:
    return jobs.get(job_id).status != "running"


def _manager(engine: TrafficEngine, *, active: int = 4, kept: int = 100) -> JobManager:
    return JobManager(engine, max_active_jobs=active, finished_jobs_kept=kept)


async def test_status_follows_single_and_burst_generations(lab: Lab) -> None:
    lab.api.delay = 0.2
    async with lab.make(max_in_flight=4) as engine:
        jobs = _manager(engine)
        assert jobs.status() == TrafficStatus(active=False, count=0)

        single = asyncio.create_task(jobs.single(OPTIONS))
        await _until(lambda: len(lab.api.received) == 1)
        status = jobs.status()
        assert (status.active, status.count, status.mode) == (True, 1, "single")
        result = await single
        status = jobs.status()
        assert (status.active, status.count, status.mode) == (False, 1, "single")
        assert (status.succeeded, status.failed) == (1, 0)
        assert (status.job_id, status.target_rps, status.achieved_rps) == (None, None, None)
        assert result.status == "success"

        burst = asyncio.create_task(jobs.burst(OPTIONS, 8))
        await _until(lambda: len(lab.api.received) == 5)
        status = jobs.status()
        assert (status.active, status.count, status.mode) == (True, 4, "burst")
        results = await burst
        status = jobs.status()
        assert (status.active, status.count, status.mode) == (False, 8, "burst")
        assert status.succeeded == 8
        assert len(results) == 8


async def test_sustained_job_runs_to_completion(lab: Lab) -> None:
    async with lab.make() as engine:
        jobs = _manager(engine)
        job = jobs.start_sustained(OPTIONS, rps=20, duration=0.5)
        assert job.status == "running"
        assert job.mode == "sustained"
        assert (job.rps, job.duration) == (20, 0.5)
        status = jobs.status()
        assert (status.active, status.job_id, status.mode) == (True, job.job_id, "sustained")
        assert status.target_rps == 20

        await _until(lambda: jobs.get(job.job_id).status != "running")
        done = jobs.get(job.job_id)
        assert done.status == "completed"
        assert done.ended_at is not None
        assert done.ended_at >= done.started_at
        assert done.stats.total == 10
        assert done.stats.succeeded == 10
        assert done.stats.dropped == 0
        assert done.stats.target_rps == 20
        assert 15 <= done.stats.achieved_rps <= 20
        assert done.stats.avg_latency_ms is not None

        status = jobs.status()
        assert (status.active, status.count, status.job_id) == (False, 10, job.job_id)
        assert status.succeeded == 10
        assert jobs.list() == [done]
        assert lab.sample("failure_lab_generator_requests_total", {"result": "sent"}) == 10


async def test_stop_cancels_a_running_job(lab: Lab) -> None:
    async with lab.make() as engine:
        jobs = _manager(engine)
        job = jobs.start_sustained(OPTIONS, rps=50, duration=30)
        await _until(lambda: jobs.get(job.job_id).stats.total >= 3)
        stopped = await jobs.stop(job.job_id)
        assert stopped.status == "cancelled"
        assert stopped.ended_at is not None
        assert stopped.stats.total == stopped.stats.succeeded + stopped.stats.failed
        assert await jobs.stop(job.job_id) == stopped  # a finished job is left as it is
        assert jobs.get(job.job_id) == stopped
        assert jobs.status().active is False
        assert jobs.status().count == stopped.stats.total
        assert engine.in_flight == 0
        assert lab.sample("failure_lab_generator_target_rps") == 0


async def test_active_jobs_are_bounded(lab: Lab) -> None:
    async with lab.make() as engine:
        jobs = _manager(engine, active=1)
        first = jobs.start_sustained(OPTIONS, rps=10, duration=30)
        with pytest.raises(TooManyJobs, match="FAILURE_LAB_MAX_ACTIVE_JOBS"):
            jobs.start_sustained(OPTIONS, rps=10, duration=30)
        assert len(jobs.list()) == 1
        await jobs.stop(first.job_id)
        second = jobs.start_sustained(OPTIONS, rps=10, duration=30)
        assert second.status == "running"
        await jobs.aclose()


async def test_unknown_job_is_not_found_and_bad_jobs_are_refused(lab: Lab) -> None:
    async with lab.make() as engine:
        jobs = _manager(engine)
        with pytest.raises(ValueError, match="rps and duration"):
            jobs.start_sustained(OPTIONS, rps=0, duration=1)
        with pytest.raises(ValueError, match="rps and duration"):
            jobs.start_sustained(OPTIONS, rps=10, duration=float("inf"))
        with pytest.raises(ValueError, match="workers must be >= 1"):
            jobs.start_sustained(OPTIONS, rps=10, duration=1, workers=0)
        with pytest.raises(ValueError, match="runs no worker processes"):
            jobs.start_sustained(OPTIONS, rps=10, duration=1, workers=2)
        assert jobs.list() == []
        with pytest.raises(JobNotFound):
            jobs.get("nope")
        with pytest.raises(JobNotFound):
            await jobs.stop("nope")


async def test_finished_jobs_are_bounded_newest_kept(lab: Lab) -> None:
    async with lab.make() as engine:
        jobs = _manager(engine, kept=2)
        ids = []
        for _ in range(3):
            job = jobs.start_sustained(OPTIONS, rps=20, duration=0.1)
            ids.append(job.job_id)
            await _until(partial(_finished, jobs, job.job_id))
        assert [job.job_id for job in jobs.list()] == [ids[2], ids[1]]
        with pytest.raises(JobNotFound):
            jobs.get(ids[0])


async def test_a_job_whose_task_raises_is_error(lab: Lab) -> None:
    engine = lab.make()  # never started: the run raises
    jobs = _manager(engine)
    job = jobs.start_sustained(OPTIONS, rps=10, duration=1)
    await _until(lambda: jobs.get(job.job_id).status != "running")
    failed = jobs.get(job.job_id)
    assert failed.status == "error"
    assert failed.ended_at is not None
    assert jobs.status().active is False


async def test_aclose_cancels_every_job_and_leaves_no_task(lab: Lab) -> None:
    lab.api.delay = 0.05
    async with lab.make() as engine:
        jobs = _manager(engine)
        started = [jobs.start_sustained(OPTIONS, rps=30, duration=30) for _ in range(2)]
        await _until(lambda: sum(job.stats.total for job in jobs.list()) >= 4)
        await jobs.aclose()
        for job in started:
            closed = jobs.get(job.job_id)
            assert closed.status == "cancelled"
            assert closed.ended_at is not None
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert jobs.status().active is False
        assert engine.in_flight == 0
