"""The cache stage of the request path: reads, writes and invalidations, with their telemetry.

Kept apart from the pipeline because it is the one stage that behaves differently with its
backend: a Redis call leaves the process and gets a span of its own, while an in-process
lookup takes microseconds and is recorded as events on the request's span only. Either way
every operation is timed and counted by result, and a disruption can fail it.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext

from opentelemetry.trace import INVALID_SPAN, Span, Status, StatusCode, Tracer

from simulator.cache import Cache, CacheError
from simulator.database import Query
from simulator.request_scope import RequestScope
from simulator.telemetry.metrics import ServiceMetrics


def cache_keys(query: Query) -> tuple[str | None, list[str]]:
    """The key a read is cached under, and the keys a write invalidates."""
    match query.kind:
        case "get":
            return f"user:{query.user_id}", []
        case "list":
            return "users:list", []
        case "create":
            return None, ["users:list"]
        case "update":
            return None, [f"user:{query.user_id}", "users:list"]


class CacheStage:
    def __init__(self, cache: Cache, tracer: Tracer, metrics: ServiceMetrics) -> None:
        self._cache = cache
        self._tracer = tracer
        self._metrics = metrics

    def _span(self, name: str, attributes: dict[str, str]) -> AbstractContextManager[Span]:
        """A span for a cache call that leaves the process (Redis); an in-process lookup
        takes microseconds, so its span would cost more than it says: events cover it."""
        if self._cache.remote:
            return self._tracer.start_as_current_span(name, attributes=attributes)
        return nullcontext(INVALID_SPAN)

    async def get(self, key: str, scope: RequestScope) -> bytes | None:
        """The cached body, or None; what the cache said (hit, miss, error) is ``scope.cache``."""
        started = time.perf_counter()
        with self._span("cache.get", {"failure_lab.cache.key": key}) as span:
            try:
                if scope.disruption is not None:
                    scope.disruption.cache_operation("get")
                value = await self._cache.get(key, scope.config.redis_timeout_seconds)
            except CacheError as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                value, result, attributes = None, "error", {"kind": exc.kind, "error": str(exc)}
            else:
                result = "miss" if value is None else "hit"
                attributes = {"key": key}
            span.set_attribute("failure_lab.cache.result", result)
        self._metrics.cache_duration.labels("get").observe(time.perf_counter() - started)
        self._metrics.cache_requests.labels("get", result).inc()
        scope.server_span.add_event(f"cache.{result}", attributes)
        scope.cache = result
        return value

    async def write(
        self, operation: str, keys: list[str], value: bytes, ttl: float, scope: RequestScope
    ) -> None:
        """Set (one key) or delete; a failure is counted and recorded, never raised."""
        started = time.perf_counter()
        name = "cache.set" if operation == "set" else "cache.invalidate"
        timeout = scope.config.redis_timeout_seconds
        with self._span(name, {}) as span:
            try:
                if scope.disruption is not None:
                    scope.disruption.cache_operation(operation)
                if operation == "set":
                    await self._cache.set(keys[0], value, ttl, timeout)
                else:
                    await self._cache.delete(keys, timeout)
            except CacheError as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                result = "error"
                scope.server_span.add_event(
                    "cache.error", {"operation": operation, "kind": exc.kind, "error": str(exc)}
                )
            else:
                result = "ok"
        self._metrics.cache_duration.labels(operation).observe(time.perf_counter() - started)
        self._metrics.cache_requests.labels(operation, result).inc()
