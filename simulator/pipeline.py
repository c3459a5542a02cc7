"""The simulated request path: admission -> cache read -> database with retries -> cache write.

One call of ``Pipeline.handle`` is one request of the simulated service. Each stage is a
module of its own that records its own telemetry (``admission_stage``, ``cache_stage``,
``database_stage``): stages that take time or can fail get a child span (``rate_limit``,
each ``db.query`` attempt, each ``retry`` wait, and with Redis ``cache.get``, ``cache.set``,
``cache.invalidate``); what happened is written as span events on the request's server span,
which are cheaper than spans and are what the trace explorer lists. The route handlers only
translate HTTP; this module only orders the stages and turns the row into the answer.

Every stage receives the request's one ``RequestScope``. Active disruptions act at each stage
through it; the circuit breaker is asked before every database attempt. With no disruption
active and the breaker off, each costs the request one attribute check.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import Span, Tracer

from simulator.admission_stage import AdmissionStage
from simulator.backoff import Backoff
from simulator.breaker import CircuitBreaker
from simulator.cache import Cache
from simulator.cache_stage import CacheStage, cache_keys
from simulator.database import Query, SimulatedDatabase
from simulator.database_stage import DatabaseStage
from simulator.disruptions import DisruptionRegistry
from simulator.faults import FailureConfigStore
from simulator.options import PipelineOptions
from simulator.ratelimit import RateLimiter
from simulator.request_scope import Outcome, RequestScope, Sleep, detail_json, encode_json
from simulator.telemetry.metrics import ServiceMetrics


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
        self.admission = AdmissionStage(limiter, tracer, metrics, sleep)
        self._cache = CacheStage(cache, tracer, metrics)
        self._database = DatabaseStage(database, backoff, breaker, tracer, metrics, sleep)
        self._config = config_store
        self._disruptions = disruptions

    def scope(self, route: str, options: PipelineOptions, server_span: Span) -> RequestScope:
        """The scope of a request to ``route`` that starts now, with the disruptions on it."""
        disruptions = self._disruptions
        disrupted = disruptions.scope(route, server_span) if disruptions.active else None
        return RequestScope(server_span, route, options, disrupted)

    async def handle(self, query: Query, route: str, options: PipelineOptions) -> Outcome:
        scope = self.scope(route, options, trace.get_current_span())
        refused = await self.admission.admit(scope)
        if refused is not None:
            return refused
        scope.config = await self._config.current()
        read_key, invalidate = cache_keys(query)
        if read_key is not None and options.cache_enabled:
            cached = await self._cache.get(read_key, scope)
            if cached is not None:
                return scope.answer(200, cached, "success")
        failed = await self._database.run(query, scope)
        if failed is not None:
            return failed
        if scope.row is None:
            return scope.answer(404, detail_json(f"user {query.user_id} not found"), "not_found")
        body = encode_json(scope.row)
        if read_key is not None and options.cache_enabled and scope.cache != "error":
            await self._cache.write("set", [read_key], body, options.cache_ttl, scope)
        if invalidate:
            await self._cache.write("delete", invalidate, b"", 0.0, scope)
        return scope.answer(201 if query.kind == "create" else 200, body, "success")
