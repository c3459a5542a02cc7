"""The figures behind ``GET /v1/topology``, in the expressions of :mod:`exporter.figures`.

The topology is built from the same metrics source as ``/metrics/json``, so its figures are
data of the same kind: each is one PromQL expression that Prometheus answers in stack mode and
the sample ring answers in embedded mode. They keep the labels the graph needs: ``instance``
(one node per replica, as Prometheus labels each scrape target; absent in embedded mode), the
limiter's decision, the cache's operation and result, and for the gauges read at the window's
end the disruption type, the failure config field and the breaker state.

Only sums, quantiles and gauges are asked here; :mod:`exporter.topology` divides them into
ratios with the same IEEE division as PromQL, so a replica's error rate is bit for bit the one
``/metrics/json`` answers when it is the only replica.
"""

from __future__ import annotations

from typing import Final

from exporter.figures import (
    CACHE_DURATION,
    DB_DURATION,
    MILLISECONDS,
    REQUEST_DURATION,
    REQUESTS,
    RETRIES,
    SERVICE_ERROR_STATUSES,
    Figure,
    Latest,
    Matcher,
    Quantile,
    Scaled,
    Selector,
    SumOf,
)

INSTANCE: Final = "instance"
"""The label Prometheus gives each scrape target: one replica of the simulator."""
RATELIMIT_DECISIONS: Final = "failure_lab_ratelimit_decisions_total"
RATELIMIT_ERRORS: Final = "failure_lab_ratelimit_errors_total"
CACHE_REQUESTS: Final = "failure_lab_cache_requests_total"
DB_ERRORS: Final = "failure_lab_db_errors_total"
GENERATOR_REQUESTS: Final = "failure_lab_generator_requests_total"
GENERATOR_LATENCY: Final = "failure_lab_generator_latency_seconds"
DISRUPTIONS_ACTIVE: Final = "failure_lab_disruptions_active"
FAILURE_CONFIG: Final = "failure_lab_failure_config"
BREAKER_STATE: Final = "failure_lab_circuit_breaker_state"
BREAKER_ENABLED: Final = "failure_lab_circuit_breaker_enabled"
BACKEND_INFO: Final = "failure_lab_backend_info"

_BY_INSTANCE: Final = (INSTANCE,)


def _rate(metric: str, *matchers: Matcher, by: tuple[str, ...] = ()) -> SumOf:
    return SumOf("rate", Selector(metric, matchers), by)


def _p99(histogram: str, *matchers: Matcher, by: tuple[str, ...] = ()) -> Scaled:
    return Scaled(MILLISECONDS, Quantile(0.99, histogram, matchers, by))


TOPOLOGY: Final = (
    # Each replica: what it answered, what it failed or refused, how long it took.
    Figure("service.requests", _rate(REQUESTS, by=_BY_INSTANCE)),
    Figure(
        "service.errors",
        _rate(REQUESTS, Matcher("status", "=~", SERVICE_ERROR_STATUSES), by=_BY_INSTANCE),
    ),
    Figure("service.p99_ms", _p99(REQUEST_DURATION, by=_BY_INSTANCE)),
    # The rate limiter, asked by each replica: allowed or limited, or its backend failed.
    Figure("ratelimit.decisions", _rate(RATELIMIT_DECISIONS, by=(INSTANCE, "decision"))),
    Figure("ratelimit.errors", _rate(RATELIMIT_ERRORS, by=_BY_INSTANCE)),
    # The cache: every operation by result; latency of reads, as /v1/metrics/latency.
    Figure("cache.operations", _rate(CACHE_REQUESTS, by=("operation", "result"))),
    Figure("cache.p99_ms", _p99(CACHE_DURATION, Matcher("operation", "=", "get"))),
    # The database: attempts (retries included), failed attempts, retries, attempt latency.
    Figure("database.attempts", _rate(f"{DB_DURATION}_count")),
    Figure("database.errors", _rate(DB_ERRORS)),
    Figure("database.retries", _rate(RETRIES)),
    Figure("database.p99_ms", _p99(DB_DURATION)),
    # The traffic generator: what it sent or had to drop, latency from the intended send.
    Figure("generator.requests", _rate(GENERATOR_REQUESTS, by=("result",))),
    Figure("generator.p99_ms", _p99(GENERATOR_LATENCY, Matcher("basis", "=", "intended"))),
    # State at the window's end: faults, the failure config, the breaker, the backends.
    Figure("disruptions", Latest(Selector(DISRUPTIONS_ACTIVE), (INSTANCE, "type"))),
    Figure("failure_config", Latest(Selector(FAILURE_CONFIG), (INSTANCE, "field"))),
    Figure("breaker.state", Latest(Selector(BREAKER_STATE), (INSTANCE, "state"))),
    Figure("breaker.enabled", Latest(Selector(BREAKER_ENABLED), _BY_INSTANCE)),
    Figure("backends", Latest(Selector(BACKEND_INFO), ("component", "backend"))),
)
"""Every figure of the topology, keyed as :mod:`exporter.topology` reads them."""
