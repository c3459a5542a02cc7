"""The simulated request path: rate limiter -> cache -> database with retries -> cache.

One call of ``Pipeline.handle`` is one request of the simulated service. Stages that take
time or can fail get a child span (``rate_limit``, each ``db.query`` attempt, each
``retry`` wait, and with Redis ``cache.get``, ``cache.set``, ``cache.invalidate``); what
happened is
written as span events on the request's server span, which are cheaper than spans and are
what the trace explorer lists. Metrics for every stage are recorded here too, so the
route handlers only translate HTTP.

Active disruptions act at each stage through a per-request ``DisruptionScope``; the
circuit breaker is asked before every database attempt. With no disruption active and
the breaker off, each costs the request one attribute check.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from simulator.backoff import Backoff
from simulator.breaker import Admission, CircuitBreaker
from simulator.cache import Cache
from simulator.cache_stage import CacheStage, cache_keys
from simulator.database import DatabaseError, DatabaseTimeout, Query, SimulatedDatabase
from simulator.disruptions import DisruptionRegistry, DisruptionScope
from simulator.faults import FailureConfigStore
from simulator.models import FailureConfig, RateLimitAlgorithm
from simulator.options import PipelineOptions
from simulator.ratelimit import Decision, RateLimiter, RateLimiterUnavailable
from simulator.telemetry.metrics import ServiceMetrics

Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class Outcome:
    """What the service answers, and the labels its metrics and traces carry."""

    status: int
    body: bytes
    outcome: str
    retries: int = 0
    cache: str = "off"
    extra_headers: dict[str, str] = field(default_factory=dict)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def detail_json(message: str) -> bytes:
    return _json({"detail": message})


class Pipeline:
    def __init__(
        self,
        *,
        limiter: RateLimiter,
        cache: Cache,
        config_store: FailureConfigStore,
        database: SimulatedDatabase,
        backoff: Backoff,
        metrics: ServiceMetrics,
        tracer: Tracer,
        sleep: Sleep,
        breaker: CircuitBreaker,
        disruptions: DisruptionRegistry,
    ) -> None:
        self._limiter = limiter
        self._cache_stage = CacheStage(cache, tracer, metrics)
        self._config = config_store
        self._db = database
        self._backoff = backoff
        self._metrics = metrics
        self._tracer = tracer
        self._sleep = sleep
        self._breaker = breaker
        self._disruptions = disruptions

    def scope(self, route: str, server_span: Span) -> DisruptionScope | None:
        """The disruptions acting on a request to ``route`` that starts now, if any."""
        disruptions = self._disruptions
        return disruptions.scope(route, server_span) if disruptions.active else None

    async def admit(
        self, options: PipelineOptions, server_span: Span, scope: DisruptionScope | None = None
    ) -> Outcome | None:
        """Apply disruptions and the rate limit; an ``Outcome`` means the request was refused."""
        if scope is not None:
            refused = await self._disrupted_admission(scope, server_span)
            if refused is not None:
                return refused
        if options.rate_limit <= 0:
            return None
        return await self._limit(options.algorithm, options.rate_limit, server_span)

    async def _disrupted_admission(
        self, scope: DisruptionScope, server_span: Span
    ) -> Outcome | None:
        burst = scope.error_burst()
        if burst is not None:
            return Outcome(
                500,
                detail_json(
                    f"disruption error_burst {burst.disruption_id} "
                    f"(severity {burst.severity:g}) failed this request"
                ),
                "error_burst",
            )
        for entry in scope.live("rate_limit_squeeze"):
            refused = await self._limit(
                "token_bucket", scope.squeeze_rate(entry), server_span, entry.disruption_id
            )
            if refused is not None:
                scope.touch(entry, "refused")
                return refused
        return None

    async def _limit(
        self,
        algorithm: RateLimitAlgorithm,
        rate: float,
        server_span: Span,
        disruption_id: str | None = None,
    ) -> Outcome | None:
        attributes: dict[str, str | float] = {
            "failure_lab.ratelimit.algorithm": algorithm,
            "failure_lab.ratelimit.rate": rate,
        }
        if disruption_id is not None:
            attributes["failure_lab.disruption_id"] = disruption_id
        with self._tracer.start_as_current_span("rate_limit", attributes=attributes) as span:
            try:
                # A squeeze down to 0 req/s admits nothing: a bucket that never refills.
                decision = (
                    await self._limiter.acquire(algorithm, rate)
                    if rate > 0
                    else Decision(allowed=False)
                )
            except RateLimiterUnavailable as exc:
                self._metrics.ratelimit_errors.inc()
                span.set_attribute("failure_lab.ratelimit.decision", "error")
                server_span.add_event("rate_limit.error", {"error": str(exc), "fail_open": True})
                decision = Decision(allowed=True)
            else:
                span.set_attribute(
                    "failure_lab.ratelimit.decision", "allowed" if decision.allowed else "limited"
                )
                self._metrics.ratelimit_decisions.labels(
                    algorithm, "allowed" if decision.allowed else "limited"
                ).inc()
            if not decision.allowed:
                server_span.add_event("rate_limited", {"algorithm": algorithm, "rate": rate})
                cause = "" if disruption_id is None else f" (disruption {disruption_id})"
                return Outcome(
                    429,
                    detail_json(f"rate limited: {algorithm} at {rate:g} req/s{cause}"),
                    "rate_limited",
                    extra_headers={"retry-after": "1"},
                )
            if decision.delay > 0:
                span.set_attribute("failure_lab.ratelimit.delay_ms", decision.delay * 1000)
                self._metrics.ratelimit_delay.labels(algorithm).inc(decision.delay)
                await self._sleep(decision.delay)
        return None

    async def handle(self, query: Query, route: str, options: PipelineOptions) -> Outcome:
        server_span = trace.get_current_span()
        disruptions = self._disruptions
        scope = disruptions.scope(route, server_span) if disruptions.active else None
        refused = await self.admit(options, server_span, scope)
        if refused is not None:
            return refused
        config = await self._config.current()
        read_key, invalidate = cache_keys(query)
        cache_state = "off"

        if read_key is not None and options.cache_enabled:
            cached, cache_state = await self._cache_stage.get(
                read_key, config.redis_timeout_seconds, server_span, scope
            )
            if cached is not None:
                return Outcome(200, cached, "success", cache=cache_state)

        breaker = self._breaker
        retries = 0
        probe = False
        if breaker.enabled:
            admission = self._pass_breaker(server_span, 1)
            if admission is Admission.REFUSED:
                return self._circuit_open(server_span, retries, cache_state)
            probe = admission is Admission.PROBE
        try:
            while True:
                row, failure = await self._attempt(query, config, options, retries + 1, scope)
                if breaker.enabled:
                    changed = breaker.record(failure is None, probe)
                    if changed is not None:
                        self._circuit_changed(server_span, changed)
                probe = False
                if failure is None:
                    break
                self._metrics.db_errors.labels(failure.kind).inc()
                server_span.add_event(
                    f"db.{failure.kind}", {"attempt": retries + 1, "error": str(failure)}
                )
                if not options.retries_enabled or retries >= config.max_retries:
                    status = 504 if failure.kind == "timeout" else 503
                    tried = f" after {retries} retries" if options.retries_enabled else ""
                    return Outcome(
                        status,
                        detail_json(f"database {failure.kind}{tried}: {failure}"),
                        f"db_{failure.kind}",
                        retries=retries,
                        cache=cache_state,
                    )
                if breaker.enabled:
                    # Asked before the backoff: a retry the breaker refuses is not waited for.
                    admission = self._pass_breaker(server_span, retries + 2)
                    if admission is Admission.REFUSED:
                        return self._circuit_open(server_span, retries, cache_state)
                    probe = admission is Admission.PROBE
                delay = self._backoff.delay(retries)
                retries += 1
                self._metrics.retries.labels(route, failure.kind).inc()
                server_span.add_event(
                    "retry.attempt",
                    {
                        "attempt": retries,
                        "reason": failure.kind,
                        "backoff_ms": round(delay * 1000, 3),
                    },
                )
                with self._tracer.start_as_current_span(
                    "retry",
                    attributes={
                        "failure_lab.attempt": retries,
                        "failure_lab.backoff_ms": delay * 1000,
                    },
                ):
                    await self._sleep(delay)
        except BaseException:
            breaker.abandon(probe)
            raise

        if row is None:
            return Outcome(
                404,
                detail_json(f"user {query.user_id} not found"),
                "not_found",
                retries=retries,
                cache=cache_state,
            )
        body = _json(row)
        if read_key is not None and options.cache_enabled and cache_state != "error":
            await self._cache_stage.write(
                "set",
                [read_key],
                body,
                options.cache_ttl,
                config.redis_timeout_seconds,
                server_span,
                scope,
            )
        if invalidate:
            await self._cache_stage.write(
                "delete", invalidate, b"", 0.0, config.redis_timeout_seconds, server_span, scope
            )
        status = 201 if query.kind == "create" else 200
        return Outcome(status, body, "success", retries=retries, cache=cache_state)

    async def _attempt(
        self,
        query: Query,
        config: FailureConfig,
        options: PipelineOptions,
        attempt: int,
        scope: DisruptionScope | None,
    ) -> tuple[Any, DatabaseError | DatabaseTimeout | None]:
        """One database attempt in its ``db.query`` span: the row, or why it failed."""
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
                extra_ms = 0.0 if scope is None else scope.db_attempt(attempt)
                row = await self._db.execute(query, config, options.db_latency_ms + extra_ms)
            except (DatabaseError, DatabaseTimeout) as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                self._metrics.db_duration.labels(exc.kind).observe(time.perf_counter() - started)
                return None, exc
        self._metrics.db_duration.labels("ok").observe(time.perf_counter() - started)
        return row, None

    def _pass_breaker(self, server_span: Span, attempt: int) -> Admission:
        breaker = self._breaker
        admission = breaker.acquire()
        if admission is Admission.PROBE:
            server_span.add_event("circuit.half_open", {"attempt": attempt})
        server_span.set_attribute("failure_lab.circuit_state", breaker.state)
        return admission

    def _circuit_open(self, server_span: Span, retries: int, cache_state: str) -> Outcome:
        """Fail fast: the breaker refused this database attempt."""
        breaker = self._breaker
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
            retries=retries,
            cache=cache_state,
            extra_headers={"retry-after": str(max(1, math.ceil(wait)))},
        )

    def _circuit_changed(self, server_span: Span, state: str) -> None:
        if state == "open":
            breaker = self._breaker
            server_span.add_event(
                "circuit.opened",
                {
                    "failure_threshold": breaker.config.failure_threshold,
                    "open_seconds": breaker.config.open_seconds,
                },
            )
        else:
            server_span.add_event(f"circuit.{state}")
