"""The database stage of the request path: attempts, retries with backoff, the breaker.

Each attempt runs in a ``db.query`` span and each wait before a retry in a ``retry`` span;
what happened is written as events on the request's server span (``db.error``,
``retry.attempt``, ``circuit.*``), and failures, retries and attempt durations are counted.
A request that runs out of retries is answered 503 (error) or 504 (timeout).

The circuit breaker is asked before every attempt, a retry included, and before its backoff:
a retry it refuses is not waited for, and the request fails fast with 503. Every finished
attempt is recorded with it; an attempt that ends without a result (the request was
cancelled) gives back the probe it may hold. With the breaker off, each of these costs the
request one attribute check, and so do disruptions when none is active.

Kept apart from the pipeline because it is the stage with a loop and a state machine of its
own; the pipeline only reads the row it leaves in the scope.
"""

from __future__ import annotations

import math
import time

from opentelemetry.trace import Span, Status, StatusCode, Tracer

from simulator.backoff import Backoff
from simulator.breaker import Admission, CircuitBreaker
from simulator.database import DatabaseError, DatabaseTimeout, Query, SimulatedDatabase
from simulator.request_scope import Outcome, RequestScope, Sleep, detail_json
from simulator.telemetry.metrics import ServiceMetrics


class DatabaseStage:
    def __init__(
        self,
        database: SimulatedDatabase,
        backoff: Backoff,
        breaker: CircuitBreaker,
        tracer: Tracer,
        metrics: ServiceMetrics,
        sleep: Sleep,
    ) -> None:
        self._db = database
        self._backoff = backoff
        self._breaker = breaker
        self._tracer = tracer
        self._metrics = metrics
        self._sleep = sleep

    async def run(self, query: Query, scope: RequestScope) -> Outcome | None:
        """Query until an attempt succeeds; an ``Outcome`` means the request failed.

        On success the row (None for an unknown user) is in ``scope.row``; ``scope.retries``
        counts the retries made either way. The attempt is written out here rather than in
        a method of its own so that a request which succeeds at once awaits nothing extra.
        """
        breaker, server_span, disruption = self._breaker, scope.server_span, scope.disruption
        probe = False
        if breaker.enabled:
            admission = self._pass_breaker(server_span, 1)
            if admission is Admission.REFUSED:
                return self._circuit_open(scope)
            probe = admission is Admission.PROBE
        try:
            while True:
                failure: DatabaseError | DatabaseTimeout | None = None
                attempt = scope.retries + 1
                started = time.perf_counter()
                with self._tracer.start_as_current_span(
                    "db.query",
                    attributes={
                        "db.system": "failure-lab-simulated",
                        "db.operation": query.kind,
                        "failure_lab.attempt": attempt,
                    },
                ) as span:
                    try:
                        extra_ms = 0.0 if disruption is None else disruption.db_attempt(attempt)
                        latency_ms = scope.options.db_latency_ms + extra_ms
                        scope.row = await self._db.execute(query, scope.config, latency_ms)
                    except (DatabaseError, DatabaseTimeout) as exc:
                        span.set_status(Status(StatusCode.ERROR, str(exc)))
                        elapsed = time.perf_counter() - started
                        self._metrics.db_duration.labels(exc.kind).observe(elapsed)
                        failure = exc
                if failure is None:
                    self._metrics.db_duration.labels("ok").observe(time.perf_counter() - started)
                if breaker.enabled:
                    changed = breaker.record(failure is None, probe)
                    if changed is not None:
                        self._circuit_changed(server_span, changed)
                probe = False
                if failure is None:
                    return None
                given_up = self._failed(failure, scope)
                if given_up is not None:
                    return given_up
                if breaker.enabled:
                    # Asked before the backoff: a retry the breaker refuses is not waited for.
                    admission = self._pass_breaker(server_span, scope.retries + 2)
                    if admission is Admission.REFUSED:
                        return self._circuit_open(scope)
                    probe = admission is Admission.PROBE
                await self._back_off(failure, scope)
        except BaseException:
            breaker.abandon(probe)
            raise

    def _failed(
        self, failure: DatabaseError | DatabaseTimeout, scope: RequestScope
    ) -> Outcome | None:
        """Count a failed attempt; the answer when no retry is left for it."""
        retries = scope.retries
        self._metrics.db_errors.labels(failure.kind).inc()
        scope.server_span.add_event(
            f"db.{failure.kind}", {"attempt": retries + 1, "error": str(failure)}
        )
        retries_enabled = scope.options.retries_enabled
        if retries_enabled and retries < scope.config.max_retries:
            return None
        status = 504 if failure.kind == "timeout" else 503
        tried = f" after {retries} retries" if retries_enabled else ""
        return scope.answer(
            status, detail_json(f"database {failure.kind}{tried}: {failure}"), f"db_{failure.kind}"
        )

    async def _back_off(
        self, failure: DatabaseError | DatabaseTimeout, scope: RequestScope
    ) -> None:
        """Wait before the next retry, in a ``retry`` span, and count the retry."""
        delay = self._backoff.delay(scope.retries)
        scope.retries += 1
        retries = scope.retries
        self._metrics.retries.labels(scope.route, failure.kind).inc()
        scope.server_span.add_event(
            "retry.attempt",
            {"attempt": retries, "reason": failure.kind, "backoff_ms": round(delay * 1000, 3)},
        )
        with self._tracer.start_as_current_span(
            "retry",
            attributes={"failure_lab.attempt": retries, "failure_lab.backoff_ms": delay * 1000},
        ):
            await self._sleep(delay)

    def _pass_breaker(self, server_span: Span, attempt: int) -> Admission:
        breaker = self._breaker
        admission = breaker.acquire()
        if admission is Admission.PROBE:
            server_span.add_event("circuit.half_open", {"attempt": attempt})
        server_span.set_attribute("failure_lab.circuit_state", breaker.state)
        return admission

    def _circuit_open(self, scope: RequestScope) -> Outcome:
        """Fail fast: the breaker refused this database attempt."""
        breaker, server_span = self._breaker, scope.server_span
        state = breaker.state
        wait = breaker.retry_after()
        server_span.set_attribute("failure_lab.circuit_state", state)
        server_span.add_event("circuit.open", {"state": state, "retry_in_ms": round(wait * 1000)})
        why = (
            f"database failed {breaker.config.failure_threshold} consecutive attempts; "
            f"next probe in {wait:.1f}s"
            if state == "open"
            else "a probe of the database is in flight"
        )
        return Outcome(
            503,
            detail_json(f"circuit open: {why}"),
            "circuit_open",
            retries=scope.retries,
            cache=scope.cache,
            extra_headers={"retry-after": str(max(1, math.ceil(wait)))},
        )

    def _circuit_changed(self, server_span: Span, state: str) -> None:
        if state == "open":
            config = self._breaker.config
            server_span.add_event(
                "circuit.opened",
                {
                    "failure_threshold": config.failure_threshold,
                    "open_seconds": config.open_seconds,
                },
            )
        else:
            server_span.add_event(f"circuit.{state}")
