"""The database stage's sequencing of attempts, backoff waits and breaker calls, exactly.

The database answers from a script and the stage waits on a recording sleep, so each test
sees every wait the stage asked for and every event it wrote on the request's span, in order.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from failure_lab.control import CircuitBreakerConfig, FailureConfig
from simulator.backoff import Backoff
from simulator.breaker import CircuitBreaker, State
from simulator.database import DatabaseError, DatabaseTimeout, Query, SimulatedDatabase
from simulator.database_stage import DatabaseStage
from simulator.options import PipelineOptions
from simulator.request_scope import RequestScope
from simulator.routes import ONE
from simulator.telemetry.metrics import ServiceMetrics
from tests.support.configs import config_with

INSTANT = config_with(db_latency_min_ms=0, db_latency_max_ms=0, max_retries=3)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Scripted(SimulatedDatabase):
    """Each attempt takes the next step: ``ok``, ``error``, ``timeout`` or ``hang``."""

    def __init__(self, steps: list[str]) -> None:
        super().__init__(100, random.Random(0))
        self.steps = steps
        self.attempts = 0
        self.hanging = asyncio.Event()

    async def execute(self, query: Query, config: FailureConfig, extra_ms: float) -> Any:
        step = self.steps[self.attempts]
        self.attempts += 1
        if step == "error":
            raise DatabaseError("scripted error")
        if step == "timeout":
            raise DatabaseTimeout("scripted timeout")
        if step == "hang":
            self.hanging.set()
            await asyncio.Event().wait()
        return await super().execute(query, config, extra_ms)


class Lab:
    def __init__(self, steps: list[str], breaker: CircuitBreaker | None = None) -> None:
        self.database = Scripted(steps)
        self.slept: list[float] = []
        self.spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.tracer = provider.get_tracer("test")
        self.metrics = ServiceMetrics(CollectorRegistry())
        off = CircuitBreakerConfig(enabled=False, failure_threshold=1, open_seconds=5.0)
        self.breaker = breaker or CircuitBreaker(off)
        self.stage = DatabaseStage(
            self.database, backoff(), self.breaker, self.tracer, self.metrics, self.sleep
        )

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    @contextmanager
    def request(self, retries: bool = True) -> Iterator[RequestScope]:
        with self.tracer.start_as_current_span("request") as span:
            scope = RequestScope(span, ONE, PipelineOptions(retries_enabled=retries), None)
            scope.config = INSTANT
            yield scope

    def events(self) -> list[str]:
        (server,) = [s for s in self.spans.get_finished_spans() if s.name == "request"]
        return [event.name for event in server.events]

    def span_names(self) -> list[str]:
        return [s.name for s in self.spans.get_finished_spans() if s.name != "request"]


def backoff() -> Backoff:
    """The stage's backoff; a second one draws the same waits, which the tests expect."""
    return Backoff(0.01, 0.5, random.Random(7))


def expected_waits(count: int) -> list[float]:
    same = backoff()
    return [same.delay(attempt) for attempt in range(count)]


def state(breaker: CircuitBreaker) -> State:
    return breaker.state


def breaker_on(clock: FakeClock, threshold: int) -> CircuitBreaker:
    config = CircuitBreakerConfig(enabled=True, failure_threshold=threshold, open_seconds=5.0)
    return CircuitBreaker(config, clock=clock)


async def test_each_retry_waits_its_backoff_first_and_the_last_failure_waits_nothing() -> None:
    lab = Lab(["error", "timeout", "error", "timeout"])
    with lab.request() as scope:
        outcome = await lab.stage.run(Query("get", 1), scope)
    assert outcome is not None
    assert (outcome.status, outcome.outcome, outcome.retries) == (504, "db_timeout", 3)
    assert outcome.body == b'{"detail":"database timeout after 3 retries: scripted timeout"}'
    assert lab.slept == expected_waits(3)
    assert lab.span_names() == ["db.query", "retry"] * 3 + ["db.query"]
    assert lab.events() == [
        "db.error",
        "retry.attempt",
        "db.timeout",
        "retry.attempt",
        "db.error",
        "retry.attempt",
        "db.timeout",
    ]


async def test_a_success_after_retries_leaves_the_row_and_the_retry_count() -> None:
    lab = Lab(["timeout", "ok"])
    with lab.request() as scope:
        assert await lab.stage.run(Query("get", 7), scope) is None
    assert scope.row == {"id": 7, "name": "user-7", "email": "user7@example.test"}
    assert scope.retries == 1
    assert lab.slept == expected_waits(1)
    assert lab.events() == ["db.timeout", "retry.attempt"]


async def test_without_retries_the_first_failure_answers() -> None:
    lab = Lab(["error", "ok"])
    with lab.request(retries=False) as scope:
        outcome = await lab.stage.run(Query("get", 1), scope)
    assert outcome is not None
    assert (outcome.status, outcome.retries) == (503, 0)
    assert outcome.body == b'{"detail":"database error: scripted error"}'
    assert lab.database.attempts == 1
    assert lab.slept == []


async def test_a_retry_the_breaker_refuses_is_not_waited_for() -> None:
    clock = FakeClock()
    lab = Lab(["error", "error", "ok"], breaker_on(clock, threshold=2))
    with lab.request() as scope:
        outcome = await lab.stage.run(Query("get", 1), scope)
    assert outcome is not None
    assert (outcome.status, outcome.outcome, outcome.retries) == (503, "circuit_open", 1)
    assert outcome.extra_headers == {"retry-after": "5"}
    assert lab.slept == expected_waits(1)
    assert lab.database.attempts == 2
    assert lab.events() == [
        "db.error",
        "retry.attempt",
        "circuit.opened",
        "db.error",
        "circuit.open",
    ]


async def test_a_probe_cancelled_mid_attempt_lets_the_next_request_probe() -> None:
    clock = FakeClock()
    lab = Lab(["error", "hang", "ok"], breaker_on(clock, threshold=1))
    with lab.request(retries=False) as scope:
        assert await lab.stage.run(Query("get", 1), scope) is not None
    assert state(lab.breaker) == "open"
    clock.now += 5.0

    async def probe() -> None:
        with lab.request(retries=False) as scope:
            await lab.stage.run(Query("get", 1), scope)

    task = asyncio.create_task(probe())
    await lab.database.hanging.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert state(lab.breaker) == "half_open"

    with lab.request(retries=False) as scope:
        assert await lab.stage.run(Query("get", 2), scope) is None
    assert scope.row is not None
    assert state(lab.breaker) == "closed"
