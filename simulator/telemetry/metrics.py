"""The simulated service's Prometheus metrics, registered in a registry the app owns.

Names follow ``failure_lab_<subsystem>_<name>_<unit>``; labels are bounded (route
templates, fixed enums), never raw paths or ids. Latency histograms use the fine
geometric buckets of ``buckets.py`` and carry ``trace_id`` exemplars, which Prometheus
stores when it scrapes in OpenMetrics format with exemplar storage on.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from failure_lab.control import DisruptionType, FailureConfig, RateLimitAlgorithm
from simulator.ratelimit.base import UnavailableReason
from simulator.routes import ANSWERS, ERROR, SHED
from simulator.telemetry.buckets import CACHE_BUCKETS, LATENCY_BUCKETS

DISRUPTION_TYPES: tuple[str, ...] = get_args(DisruptionType)
BREAKER_STATES = ("closed", "open", "half_open")
BACKEND_COMPONENTS = ("ratelimit", "cache", "failure_config")
SPAN_DROP_REASONS = ("queue_full", "export_failed", "shutdown")


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        ProcessCollector(registry=registry)
        GCCollector(registry=registry)
        PlatformCollector(registry=registry)

        self.requests = Counter(
            "failure_lab_http_requests",
            "Requests answered by the simulated service.",
            ["endpoint", "method", "status", "outcome"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "failure_lab_http_request_duration_seconds",
            "Time the simulated service spent on a request, rate limiting to response.",
            ["endpoint", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "failure_lab_retries",
            "Database retries made by the service, by the reason of the failed attempt.",
            ["endpoint", "reason"],
            registry=registry,
        )
        self.ratelimit_decisions = Counter(
            "failure_lab_ratelimit_decisions",
            "Rate limiter decisions by algorithm.",
            ["algorithm", "decision"],
            registry=registry,
        )
        self.ratelimit_delay = Counter(
            "failure_lab_ratelimit_delay_seconds",
            "Seconds admitted requests waited for their slot (leaky bucket shaping).",
            ["algorithm"],
            registry=registry,
        )
        self.ratelimit_errors = Counter(
            "failure_lab_ratelimit_errors",
            "Limiter backend failures; the request was admitted (fail open).",
            registry=registry,
        )
        self.ratelimit_fail_open = Counter(
            "failure_lab_ratelimit_fail_open",
            "Requests admitted without a decision because the limiter's backend did not "
            "decide (fail open), by reason: timeout, pool_exhausted, unavailable.",
            ["algorithm", "reason"],
            registry=registry,
        )
        self.cache_requests = Counter(
            "failure_lab_cache_requests",
            "Cache operations by result (get: hit/miss/error; set, delete: ok/error).",
            ["operation", "result"],
            registry=registry,
        )
        self.cache_duration = Histogram(
            "failure_lab_cache_operation_duration_seconds",
            "Time spent on cache operations, errors and timeouts included.",
            ["operation"],
            buckets=CACHE_BUCKETS,
            registry=registry,
        )
        self.db_duration = Histogram(
            "failure_lab_db_query_duration_seconds",
            "Simulated database query time per attempt, by outcome.",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.db_errors = Counter(
            "failure_lab_db_errors",
            "Failed database attempts by kind.",
            ["kind"],
            registry=registry,
        )
        self.config_changes = Counter(
            "failure_lab_failure_config_changes",
            "Failure config changes seen by this process.",
            registry=registry,
        )
        self.config_last_change = Gauge(
            "failure_lab_failure_config_last_change_timestamp_seconds",
            "Unix time of the last failure config change seen by this process.",
            registry=registry,
        )
        self.config = Gauge(
            "failure_lab_failure_config",
            "The failure config this process applies, one series per field (booleans 0/1, "
            "latencies in ms, timeouts in seconds as in the config).",
            ["field"],
            registry=registry,
        )
        self.spans_dropped = Counter(
            "failure_lab_tracing_spans_dropped",
            "Finished spans that never reached the collector, by reason (queue_full, "
            "export_failed, shutdown).",
            ["reason"],
            registry=registry,
        )
        self.spans_queue_capacity = Gauge(
            "failure_lab_tracing_span_queue_capacity",
            "Capacity of the span export queue.",
            registry=registry,
        )
        self.breaker_state = Gauge(
            "failure_lab_circuit_breaker_state",
            "The database circuit breaker's state: 1 for the current one, 0 for the others.",
            ["state"],
            registry=registry,
        )
        self.breaker_enabled = Gauge(
            "failure_lab_circuit_breaker_enabled",
            "Whether the database circuit breaker is on (1) or off (0).",
            registry=registry,
        )
        self.breaker_trips = Counter(
            "failure_lab_circuit_breaker_trips",
            "Times the database circuit breaker opened (a failed half-open probe included).",
            registry=registry,
        )
        self.disruptions_active = Gauge(
            "failure_lab_disruptions_active",
            "Disruptions active in this process, by type.",
            ["type"],
            registry=registry,
        )
        self.disruption_planned_end = Gauge(
            "failure_lab_disruption_planned_end_timestamp_seconds",
            "Latest planned end (Unix time) of the active disruptions, by type; 0 when none "
            "of the type is active.",
            ["type"],
            registry=registry,
        )
        self.disruptions_created = Counter(
            "failure_lab_disruptions_created",
            "Disruptions created in this process, by type.",
            ["type"],
            registry=registry,
        )
        self.disruptions_ended = Counter(
            "failure_lab_disruptions_ended",
            "Disruptions that ended, by type and reason (expired, cancelled).",
            ["type", "reason"],
            registry=registry,
        )
        self.disruption_requests_affected = Counter(
            "failure_lab_disruption_requests_affected",
            "Requests a disruption changed (counted once per request and disruption).",
            ["type"],
            registry=registry,
        )
        self.requests_in_flight = Gauge(
            "failure_lab_http_requests_in_flight",
            "Requests of the simulated user API admitted and not answered yet.",
            registry=registry,
        )
        self.max_concurrent_requests = Gauge(
            "failure_lab_http_max_concurrent_requests",
            "The bound on requests in flight beyond which the user API sheds load (answers "
            "503, outcome shed); 0 when there is no bound.",
            registry=registry,
        )
        self.backend_info = Gauge(
            "failure_lab_backend_info",
            "Where each shared component lives: 1 for its backend (redis or memory).",
            ["component", "backend"],
            registry=registry,
        )
        self._register_upkeep(registry)
        for state in BREAKER_STATES:
            self.breaker_state.labels(state).set(1.0 if state == "closed" else 0.0)
        for kind in DISRUPTION_TYPES:
            self.disruptions_active.labels(kind)
            self.disruption_planned_end.labels(kind)
            self.disruptions_created.labels(kind)
            self.disruption_requests_affected.labels(kind)
            for reason in ("expired", "cancelled"):
                self.disruptions_ended.labels(kind, reason)
        for (endpoint, method), answers in ANSWERS.items():
            self.request_duration.labels(endpoint, method)
            for status, outcome in answers:
                self.requests.labels(endpoint, method, status, outcome)
            if endpoint != ERROR:
                for reason in ("error", "timeout"):
                    self.retries.labels(endpoint, reason)
        for outcome in ("ok", "error", "timeout"):
            self.db_duration.labels(outcome)
        for operation in ("get", "set", "delete"):
            self.cache_duration.labels(operation)
        for kind in ("error", "timeout"):
            self.db_errors.labels(kind)
        for result in ("hit", "miss", "error"):
            self.cache_requests.labels("get", result)
        for algorithm in get_args(RateLimitAlgorithm):  # at 0: the fail-open ratio exists
            for reason in get_args(UnavailableReason):
                self.ratelimit_fail_open.labels(algorithm, reason)
        for operation in ("set", "delete"):
            for result in ("ok", "error"):
                self.cache_requests.labels(operation, result)

    def _register_upkeep(self, registry: CollectorRegistry) -> None:
        """What keeps the process within its bounds and its shared state in Redis."""
        for reason in SPAN_DROP_REASONS:
            self.spans_dropped.labels(reason)
        self.ratelimit_limits = Gauge(
            "failure_lab_ratelimit_limits",
            "Limits the in-process rate limiter holds (one per algorithm and rate).",
            registry=registry,
        )
        self.ratelimit_evictions = Counter(
            "failure_lab_ratelimit_evictions",
            "In-process limits forgotten, least recently used first, to stay within "
            "FAILURE_LAB_MEMORY_RATELIMIT_MAX_KEYS.",
            registry=registry,
        )
        self.db_created_users = Gauge(
            "failure_lab_db_created_users",
            "Users created by POST that the simulated table holds.",
            registry=registry,
        )
        self.db_created_evictions = Counter(
            "failure_lab_db_created_users_evicted",
            "Created users forgotten, oldest first, to stay within FAILURE_LAB_MAX_CREATED_USERS.",
            registry=registry,
        )
        self.redis_restores = Counter(
            "failure_lab_redis_state_restored",
            "Times this process wrote shared state back to a Redis that had lost it, by state.",
            ["state"],
            registry=registry,
        )

    def show_breaker(self, state: str, enabled: bool) -> None:
        for name in BREAKER_STATES:
            self.breaker_state.labels(name).set(1.0 if name == state else 0.0)
        self.breaker_enabled.set(1.0 if enabled else 0.0)

    def watch_in_flight(self, in_flight: Callable[[], int], bound: int) -> None:
        """The user API's requests in flight, read at scrape time, and the bound on them."""
        self.requests_in_flight.set_function(in_flight)
        self.max_concurrent_requests.set(bound)

    def count_shed(self, route: str, method: str) -> None:
        self.requests.labels(route, method, *SHED).inc()

    def watch_disruptions(self, active: Callable[[str], int]) -> None:
        """Read the active count of each type at scrape time, so expiry shows at once."""
        for kind in DISRUPTION_TYPES:
            self.disruptions_active.labels(kind).set_function(partial(active, kind))

    def watch_disruption_ends(self, planned_end: Callable[[str], float]) -> None:
        """Read each type's latest planned end at scrape time, like the active count."""
        for kind in DISRUPTION_TYPES:
            self.disruption_planned_end.labels(kind).set_function(partial(planned_end, kind))

    def show_backends(self, backend: str) -> None:
        """The rate limiter, cache and failure config all live in ``backend``."""
        for component in BACKEND_COMPONENTS:
            self.backend_info.labels(component, backend).set(1.0)

    def show_config(self, config: FailureConfig) -> None:
        for field, value in config.model_dump().items():
            self.config.labels(field).set(float(value))
