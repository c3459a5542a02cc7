"""Settings for every failure-lab process, read once at start-up.

One validated object, built from flags and ``FAILURE_LAB_*`` variables, is handed to
``create_app``; nothing reads the environment later. Standard ``OTEL_*`` variables are
left to the OpenTelemetry SDK, which reads them itself.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class Settings(BaseSettings):
    """Everything a simulator or embedded server needs to start."""

    model_config = SettingsConfigDict(
        env_prefix="FAILURE_LAB_", extra="ignore", allow_inf_nan=False
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    redis_url: str | None = Field(
        default=None, description="Turns Redis on: shared rate limits, cache and failure config."
    )
    redis_restore_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often a replica checks whether Redis lost the shared state it "
        "holds (failure config, breaker settings, disruptions: a restart without "
        "persistence), to write it back.",
    )
    shared_sync_interval_seconds: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="With Redis: how often a replica brings its copy of the shared "
        "disruptions and circuit breaker settings in step with Redis (a change made through "
        "another replica acts here within this time).",
    )
    redis_max_connections: int | None = Field(
        default=None,
        ge=1,
        description="Connections to Redis one process opens at most (default: "
        "max_in_flight). A call finding them all busy waits for one, within "
        "redis_call_max_seconds.",
    )
    redis_call_max_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="The longest one Redis call of the request path (a limiter decision, a "
        "cache read or write) may take when this process is the slow part: waiting for a "
        "free connection, or an event loop too busy to notice the reply in time. A Redis "
        "that does not answer still fails at the call's own timeout on an idle loop.",
    )
    redis_ratelimit_timeout_seconds: float = Field(
        default=0.05,
        gt=0,
        le=60,
        description="How long the Redis rate limiter waits for Redis's answer to a decision "
        "(the round trip, not this process's own queueing) before it admits the request "
        "(fail open).",
    )
    gc_young_threshold: int = Field(
        default=50_000,
        ge=1,
        description="Allocations between collections of the garbage collector's youngest "
        "generation in a served process (Python's default is 700). With hundreds of "
        "requests in flight a low threshold makes every request cost more CPU the more "
        'connections there are (docs/benchmarks.md, "Saturation").',
    )
    service_name: str = Field(default="failure-lab-simulator")
    target_url: str | None = Field(
        default=None,
        description="Base URL the traffic generator sends to; default: this server itself.",
    )

    # Server-side caps on traffic generation (422 names the cap and this setting).
    max_burst_count: int = Field(default=1000, ge=1)
    max_rps: float = Field(default=2000.0, gt=0)
    max_duration_seconds: float = Field(default=600.0, gt=0)
    max_in_flight: int = Field(
        default=256,
        ge=1,
        description="The traffic generator's bound: requests it has in flight at once (a "
        "client-side bound; the server's own is max_concurrent_requests).",
    )
    max_queued_requests: int = Field(
        default=2000,
        ge=1,
        description="Bound on the requests single runs and bursts running at once hold.",
    )
    late_send_threshold_ms: float = Field(default=5.0, gt=0)
    max_active_jobs: int = Field(default=4, ge=1)
    max_workers: int = Field(
        default=1,
        ge=1,
        description="Bound on the worker processes one job's arrivals may be split over "
        "(the workers field of a job); 1 keeps every job in this process.",
    )
    finished_jobs_kept: int = Field(default=100, ge=1)
    finished_job_ttl_seconds: float = Field(
        default=300.0, gt=0, description="How long a finished job can still be read."
    )
    # Scenario jobs.
    scenario_default_rps: float = Field(
        default=20.0, gt=0, description="Peak rate of a scenario job that names none."
    )
    scenario_latency_growth_ms: float = Field(
        default=500.0, ge=0, description="latency_degradation: database latency added by the end."
    )
    job_stream_interval_seconds: float = Field(
        default=0.5, gt=0, le=60, description="Interval of a job's Server-Sent Events."
    )

    # Bounds on the failure config and the pipeline options (docs/api.md, "Bounds"): a request
    # above one gets 422 (400 in the options header) naming the bound and this setting.
    max_retries_cap: int = Field(default=10, ge=0)
    max_db_latency_ms: float = Field(
        default=60_000.0, gt=0, description="Bound on database latencies (config and payload)."
    )
    max_db_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Bound on db_timeout_seconds: the longest attempt."
    )
    max_redis_timeout_seconds: float = Field(
        default=1.0, gt=0, description="Bound on redis_timeout_seconds: the longest Redis call."
    )
    max_cache_ttl_seconds: float = Field(
        default=86_400.0, gt=0, description="Bound on a request's cache TTL."
    )
    max_rate_limit: float = Field(
        default=100_000.0, gt=0, description="Bound on a request's own rate limit (req/s)."
    )

    # Retry backoff: full jitter over base * 2**attempt, capped.
    retry_base_ms: float = Field(default=20.0, gt=0)
    retry_cap_ms: float = Field(default=1000.0, gt=0)

    # In-process bounds: every store that grows with requests or clients has one (the Redis
    # cache and limits are bounded by Redis itself, their keys expiring).
    memory_cache_max_entries: int = Field(default=10_000, ge=1)
    memory_ratelimit_max_keys: int = Field(
        default=10_000,
        ge=1,
        description="Limits the in-process rate limiter keeps (one per algorithm and rate "
        "clients ask for); the least recently used is forgotten first.",
    )
    # Users in the simulated table; reads pick ids in 1..users so caches warm up.
    simulated_users: int = Field(default=100, ge=1)
    max_created_users: int = Field(
        default=10_000,
        ge=1,
        description="Users made by POST kept besides the initial ones; the oldest created "
        "is forgotten first (POST keeps answering 201).",
    )
    run_samples_max: int = Field(
        default=100_000,
        ge=1,
        description="Latency samples one generator run keeps for its percentiles: all of "
        "them up to this many, a uniform sample of this many beyond.",
    )

    # Circuit breaker around the database (also switchable at run time).
    circuit_breaker_enabled: bool = False
    circuit_breaker_failure_threshold: int = Field(default=5, ge=1, le=10_000)
    circuit_breaker_open_seconds: float = Field(default=5.0, gt=0, le=3600)

    # Disruptions: time-boxed faults, in this process or shared through Redis.
    max_disruption_seconds: float = Field(default=3600.0, gt=0)
    max_active_disruptions: int = Field(default=100, ge=1)
    finished_disruptions_kept: int = Field(default=100, ge=0)
    disruption_latency_spike_ms: float = Field(default=1000.0, ge=0)
    disruption_squeeze_rps: float = Field(default=100.0, gt=0)

    # Telemetry.
    telemetry_enabled: bool = True
    span_queue_size: int = Field(default=8192, ge=1)
    span_batch_size: int = Field(default=512, ge=1)
    span_schedule_delay_ms: int = Field(default=1000, ge=1)
    span_export_timeout_seconds: float = Field(
        default=3.0,
        gt=0,
        le=60,
        description="Bound on one OTLP export, retries included (instead of "
        "OTEL_EXPORTER_OTLP_TIMEOUT's 10 s).",
    )
    shutdown_grace_seconds: float = Field(
        default=5.0,
        gt=0,
        description="SIGTERM to exit: connections drain, jobs stop, spans are flushed with "
        "what is left; spans not exported by then are dropped and counted.",
    )

    # The shim (exporter): backends in stack mode, bounds in both.
    prometheus_url: str | None = Field(default=None, description="Stack mode metrics backend.")
    jaeger_url: str | None = Field(default=None, description="Stack mode trace backend.")
    simulator_url: str | None = Field(
        default=None, description="Stack mode: where control calls are forwarded."
    )
    grafana_url: str | None = Field(
        default=None, description="Grafana as a browser reaches it (stack mode): linked from /."
    )
    jaeger_ui_url: str | None = Field(
        default=None, description="Jaeger's UI as a browser reaches it (stack mode): linked from /."
    )
    backend_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    forward_timeout_seconds: float = Field(
        default=120.0, gt=0, description="Bound on forwarded control calls (a burst takes time)."
    )
    metrics_window_seconds: float = Field(default=60.0, gt=0)
    max_metrics_window_seconds: float = Field(default=3600.0, gt=0)
    metrics_sample_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    metrics_cache_seconds: float = Field(
        default=0.5, ge=0, description="How long one answer of a metrics backend is shared."
    )
    metrics_cache_max_entries: int = Field(
        default=256, ge=1, description="Shared metric answers kept at most (one per window)."
    )
    trace_store_max_traces: int = Field(default=10_000, ge=1)
    trace_store_max_spans_per_trace: int = Field(
        default=1000, ge=1, description="Spans the embedded trace store keeps of one trace."
    )
    ws_poll_interval_seconds: float = Field(default=1.0, gt=0)
    ws_topology_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often the live feed asks for the topology."
    )
    ws_client_queue_size: int = Field(default=256, ge=1)
    ws_heartbeat_seconds: float = Field(default=15.0, gt=0)
    ws_max_clients: int = Field(default=1000, ge=1)
    jaeger_feed_max_traces: int = Field(
        default=10_000,
        ge=1,
        description="Stack mode: bound on the traces one live-feed poll reads from Jaeger; "
        "the default covers max_rps for a poll with room. Jaeger's memory store refuses a "
        "search deeper than its max_traces (50000 in jaeger/config.yaml).",
    )

    # Admission of outside load: the user API's bound on requests in flight (server side).
    max_concurrent_requests: int = Field(
        default=512,
        ge=0,
        description="Requests of the simulated user API (/api/v1/users...) in flight at once, "
        "from anyone; one more is answered 503 with Retry-After at once, before any work. "
        "0 turns the bound off. The default is the most the lab's own generator holds: "
        "max_in_flight (256) in this process and as many again in worker processes.",
    )
    shed_retry_after_seconds: int = Field(
        default=1, ge=1, le=3600, description="Retry-After of a shed request's 503."
    )
    shed_hold_connection: bool = Field(
        default=True,
        description="A shed request's connection is not read again for Retry-After seconds, "
        "so a client that asks again at once waits instead of keeping the server busy "
        "refusing it. Behind a proxy that reuses connections for many clients, the next "
        "client on that connection waits too: false turns it off.",
    )

    # The control plane: what one client may send and start (docs/api.md, "Security").
    max_body_bytes: int = Field(
        default=1_048_576, ge=1, le=1 << 30, description="Larger request bodies get 413."
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="When set, state-changing control calls need Authorization: Bearer <token>.",
    )
    api_token_for_reads: bool = Field(
        default=False, description="The token is needed for the read API and /ws too."
    )
    control_rate_limit: str = Field(
        default="20/second;600/minute",
        description="Per-client limit on /v1/traffic, /v1/config and /v1/disruptions calls, "
        "in the 'N/second;M/minute' form; 0 turns it off.",
    )
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins browsers may call from (comma-separated)."
    )
    allowed_hosts: Annotated[list[str] | None, NoDecode] = Field(
        default=None,
        description="Host header values served (comma-separated, '*' for any); default: "
        "loopback names when bound to loopback, any otherwise.",
    )

    @field_validator("api_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """An empty FAILURE_LAB_API_TOKEN (as compose passes an unset one) means no token."""
        return None if value == "" else value

    @field_validator("cors_allow_origins", "allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def served_hosts(self) -> list[str]:
        """The Host names this process answers: the setting, or its loopback default."""
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        return list(LOOPBACK_NAMES) if _is_loopback(self.host) else ["*"]

    @property
    def redis_pool_size(self) -> int:
        """Connections to Redis at most: ``redis_max_connections``, else ``max_in_flight``."""
        return self.redis_max_connections or self.max_in_flight

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.span_batch_size > self.span_queue_size:
            raise ValueError("span_batch_size must not exceed span_queue_size")
        if self.max_queued_requests < self.max_burst_count:
            raise ValueError("max_queued_requests must be at least max_burst_count")
        if self.retry_base_ms > self.retry_cap_ms:
            raise ValueError("retry_base_ms must not exceed retry_cap_ms")
        return self


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
