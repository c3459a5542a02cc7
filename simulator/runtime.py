"""Everything a running simulator owns, built in the app's lifespan and closed with it.

Backends are chosen here, once, from settings (Redis when ``redis_url`` is set, in-process
otherwise); handlers receive the finished objects and never branch on the backend.
Closing order matters: stop generating traffic first, then the client, then flush spans,
then drop the Redis connection. All of it fits in the shutdown's deadline
(:mod:`simulator.shutdown`): the flush gets what is left, and spans it could not export
are dropped, counted and logged. Without Redis, disruptions and the breaker's settings are
state of this process only, so a restart starts with none and the start-up settings; with
Redis they are shared by every replica (a copy in each, kept in step by ``SyncLoop``). The
breaker's state is always this process's own, as every real client keeps its own.

Its dependencies (Redis, when configured) are named once here for the health probes: the
stack's simulator serves them itself, the embedded default hands them to its shim.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import TracerProvider

from failure_lab.bounds import within_bounds
from failure_lab.control import CircuitBreakerConfig, FailureConfig
from failure_lab.errors import BackendFailure
from failure_lab.health import Component, Dependencies, bounded
from failure_lab.settings import Settings
from simulator.backoff import Backoff
from simulator.breaker import CircuitBreaker, State
from simulator.breaker_config import (
    BreakerConfigStore,
    MemoryBreakerConfigStore,
    RedisBreakerConfigStore,
)
from simulator.cache import Cache, MemoryCache, RedisCache
from simulator.database import SimulatedDatabase
from simulator.disruption_stores import Disruptions, LocalDisruptions
from simulator.disruptions import DisruptionRegistry
from simulator.faults import FailureConfigStore, MemoryConfigStore, RedisConfigStore
from simulator.generator.engine import TrafficEngine
from simulator.generator.jobs import JobManager
from simulator.generator.metrics import GeneratorMetrics
from simulator.generator.planner import RequestPlanner
from simulator.generator.split import SplitRunner
from simulator.options import OptionBounds
from simulator.pipeline import Pipeline
from simulator.ratelimit import RateLimiter
from simulator.ratelimit.memory import MemoryRateLimiter
from simulator.ratelimit.redis import RedisRateLimiter
from simulator.redis_client import redis_client, redis_probe
from simulator.redis_disruptions import RedisDisruptions
from simulator.shared_state import SharedState, StateKeeper
from simulator.shared_sync import SyncLoop
from simulator.shutdown import Deadline
from simulator.telemetry.metrics import ServiceMetrics
from simulator.telemetry.span_export import BoundedBatchProcessor
from simulator.telemetry.tracing import otlp_configured, otlp_processor

log = logging.getLogger(__name__)

MIN_FLUSH_SECONDS = 0.05
"""Given to in-process span processors even when the deadline is spent (they take
microseconds; a collector's export, which may hang, is the OTLP processor's and bounded)."""


@dataclass
class Runtime:
    settings: Settings
    metrics: ServiceMetrics
    tracer_provider: TracerProvider
    rng: random.Random
    config_store: FailureConfigStore
    pipeline: Pipeline
    engine: TrafficEngine
    jobs: JobManager
    breaker: CircuitBreaker
    breaker_store: BreakerConfigStore
    disruptions: Disruptions
    redis: aioredis.Redis | None = None
    closers: list[Cache | RateLimiter | StateKeeper | SyncLoop] = field(default_factory=list)
    span_export: BoundedBatchProcessor | None = None
    started_at: float = field(default_factory=time.time)
    deadline: Deadline | None = None
    """Set by the server when it begins to stop; ``aclose`` starts one otherwise."""
    option_bounds: OptionBounds = field(init=False)
    """What the options header of a user API request may ask for."""

    def __post_init__(self) -> None:
        self.option_bounds = OptionBounds.from_settings(self.settings)

    @classmethod
    async def start(
        cls,
        settings: Settings,
        metrics: ServiceMetrics,
        tracer_provider: TracerProvider,
        generator_metrics: GeneratorMetrics,
        base_url: str,
    ) -> Runtime:
        rng = random.Random()
        span_export = None
        if settings.telemetry_enabled and otlp_configured():
            span_export = otlp_processor(settings, metrics.spans_dropped)
            tracer_provider.add_span_processor(span_export)
            metrics.spans_queue_capacity.set(settings.span_queue_size)
        backends = _backends(settings, metrics, tracer_provider)
        metrics.show_config(await backends.store.current())
        breaker = _breaker(settings, metrics)
        registry = DisruptionRegistry(settings, metrics, rng)
        metrics.watch_disruptions(registry.count_active)
        metrics.watch_disruption_ends(registry.planned_end)
        shared = await _shared(settings, metrics, backends, breaker, registry)
        log.info("disruptions are %s", shared.disruptions.where)
        pipeline = Pipeline(
            limiter=backends.limiter,
            cache=backends.cache,
            config_store=backends.store,
            database=_database(settings, metrics, rng),
            backoff=Backoff(settings.retry_base_ms / 1000, settings.retry_cap_ms / 1000, rng),
            metrics=metrics,
            tracer=tracer_provider.get_tracer("failure_lab.simulator"),
            sleep=asyncio.sleep,
            breaker=breaker,
            disruptions=registry,
        )
        engine, jobs = await _generator(settings, tracer_provider, generator_metrics, rng, base_url)
        return cls(
            settings=settings,
            metrics=metrics,
            tracer_provider=tracer_provider,
            rng=rng,
            config_store=backends.store,
            pipeline=pipeline,
            engine=engine,
            jobs=jobs,
            breaker=breaker,
            breaker_store=shared.breaker_store,
            disruptions=shared.disruptions,
            redis=backends.redis,
            closers=[*shared.loops, backends.limiter, backends.cache],
            span_export=span_export,
        )

    def dependencies(self) -> tuple[Component, ...]:
        """What this process needs to do its work: Redis, when configured (the failure
        config, shared limits, cache, disruptions and breaker config live there)."""
        if self.redis is None:
            return ()
        timeout = self.settings.backend_timeout_seconds
        probe = bounded("redis", redis_probe(self.redis), timeout)
        role = "failure config, rate limits, cache, disruptions, breaker config"
        return (Component("redis", role, probe),)

    def health(self) -> Dependencies:
        return Dependencies(self.dependencies(), self.settings.backend_timeout_seconds)

    async def configure_breaker(self, config: CircuitBreakerConfig) -> None:
        """Set the breaker's config for every replica (Redis) or this one; this replica's
        breaker applies it at once, the others when they next sync."""
        await self.breaker_store.put(config)

    async def read_breaker_config(self) -> None:
        """Bring this replica's breaker in step with the shared config, if Redis answers."""
        with contextlib.suppress(BackendFailure):
            await self.breaker_store.get()

    def stop_by(self, deadline: Deadline) -> None:
        """The server began to stop: everything ``aclose`` does must be done by then."""
        self.deadline = deadline

    async def aclose(self) -> None:
        deadline = self.deadline or Deadline.after(self.settings.shutdown_grace_seconds)
        await self.jobs.aclose(timeout=deadline.left_before_flush())
        await self.engine.aclose()
        for closer in self.closers:  # the sync loops first: they may use what follows
            await closer.aclose()
        await self.disruptions.aclose()
        await self._finish_spans(deadline)
        if self.redis is not None:
            await self.redis.aclose()

    async def _finish_spans(self, deadline: Deadline) -> None:
        """Export what can be by the deadline, off the event loop; count and log the rest."""
        if self.span_export is not None:
            report = await asyncio.to_thread(self.span_export.finish, deadline.left())
            log.log(
                logging.WARNING if report.lost else logging.INFO,
                "spans at shutdown: %d exported, %d not exported (%d dropped at the "
                "shutdown deadline, %d failed to export, %d dropped at a full queue)",
                report.exported,
                report.lost,
                report.shutdown,
                report.export_failed,
                report.queue_full,
            )
        left = max(deadline.left(), MIN_FLUSH_SECONDS)
        flush = asyncio.to_thread(self.tracer_provider.force_flush, int(left * 1000))
        try:  # other processors (the embedded span store; tests' own), within what is left
            await asyncio.wait_for(flush, timeout=left)
        except TimeoutError:
            log.warning("spans of other processors not flushed by the shutdown deadline")
        self.tracer_provider.shutdown()


@dataclass(frozen=True, slots=True)
class _Backends:
    """Where limits, cached reads and the failure config live: Redis, or this process."""

    limiter: RateLimiter
    cache: Cache
    store: FailureConfigStore
    redis: aioredis.Redis | None = None
    shared: tuple[SharedState, ...] = ()
    """What Redis holds that someone set on purpose, to be written back if Redis loses it."""


@dataclass(frozen=True, slots=True)
class _Shared:
    """The state replicas share when Redis is configured, and what keeps it in step."""

    breaker_store: BreakerConfigStore
    disruptions: Disruptions
    loops: tuple[StateKeeper | SyncLoop, ...] = ()


async def _shared(
    settings: Settings,
    metrics: ServiceMetrics,
    backends: _Backends,
    breaker: CircuitBreaker,
    registry: DisruptionRegistry,
) -> _Shared:
    apply = _breaker_applier(breaker, metrics)
    if backends.redis is None:
        return _Shared(MemoryBreakerConfigStore(breaker.config, apply), LocalDisruptions(registry))
    breaker_store = RedisBreakerConfigStore(
        backends.redis, defaults=breaker.config, on_change=apply
    )
    disruptions = RedisDisruptions(backends.redis, registry)
    sync = SyncLoop([breaker_store, disruptions], settings.shared_sync_interval_seconds)
    with suppress_instrumentation():  # housekeeping, not a request: no trace of its own
        await sync.sync()  # a replica starting applies what the others do, from its first request
    sync.start()
    keeper = StateKeeper(
        [*backends.shared, breaker_store, disruptions],
        settings.redis_restore_interval_seconds,
        on_restored=lambda name: metrics.redis_restores.labels(name).inc(),
    )
    keeper.start()
    return _Shared(breaker_store, disruptions, (sync, keeper))


def _backends(
    settings: Settings, metrics: ServiceMetrics, tracer_provider: TracerProvider
) -> _Backends:
    def on_config(config: FailureConfig) -> None:
        log.info(
            "failure config: injection %s at %g, db latency %g-%g ms, timeout %g s, "
            "%d retries",
            "on" if config.failure_injection_enabled else "off", config.failure_rate,
            config.db_latency_min_ms, config.db_latency_max_ms, config.db_timeout_seconds,
            config.max_retries,
        )  # fmt: skip
        metrics.show_config(config)
        metrics.config_changes.inc()
        metrics.config_last_change.set_to_current_time()

    metrics.show_backends("redis" if settings.redis_url else "memory")
    # A fresh process applies the default config, lowered to whatever bounds its settings set.
    defaults = within_bounds(FailureConfig.defaults(), settings)
    if not settings.redis_url:
        limiter = MemoryRateLimiter(
            max_keys=settings.memory_ratelimit_max_keys, on_evict=metrics.ratelimit_evictions.inc
        )
        metrics.ratelimit_limits.set_function(lambda: len(limiter))
        return _Backends(
            limiter,
            MemoryCache(settings.memory_cache_max_entries),
            MemoryConfigStore(defaults, on_change=on_config),
        )
    client = redis_client(
        settings.redis_url, settings.redis_pool_size, settings.redis_call_max_seconds
    )
    redis_tracer = None
    if settings.telemetry_enabled:
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        RedisInstrumentor.instrument_client(client, tracer_provider=tracer_provider)
        # The limiter and the cache time their own round trips (simulator/redis_call.py),
        # past the instrumented client: they draw the same CLIENT spans themselves.
        redis_tracer = tracer_provider.get_tracer("failure_lab.simulator.redis")
    log.info(
        "redis backends on %s, at most %d connections",
        settings.redis_url,
        settings.redis_pool_size,
    )
    store = RedisConfigStore(client, on_change=on_config, defaults=defaults)
    bound = settings.redis_call_max_seconds
    shared = RedisRateLimiter(
        client,
        timeout=settings.redis_ratelimit_timeout_seconds,
        bound=bound,
        tracer=redis_tracer,
    )
    cache = RedisCache(client, bound=bound, tracer=redis_tracer)
    return _Backends(shared, cache, store, client, (store,))


def _database(settings: Settings, metrics: ServiceMetrics, rng: random.Random) -> SimulatedDatabase:
    database = SimulatedDatabase(
        settings.simulated_users,
        rng,
        max_created=settings.max_created_users,
        on_evict=metrics.db_created_evictions.inc,
    )
    metrics.db_created_users.set_function(lambda: database.created_users)
    return database


def _breaker(settings: Settings, metrics: ServiceMetrics) -> CircuitBreaker:
    def on_breaker(old: State, new: State) -> None:
        metrics.show_breaker(new, breaker.enabled)
        if new == "open":
            metrics.breaker_trips.inc()
        log.info("circuit breaker %s -> %s", old, new)

    breaker = CircuitBreaker(
        CircuitBreakerConfig(
            enabled=settings.circuit_breaker_enabled,
            failure_threshold=settings.circuit_breaker_failure_threshold,
            open_seconds=settings.circuit_breaker_open_seconds,
        ),
        on_transition=on_breaker,
    )
    metrics.show_breaker(breaker.state, breaker.enabled)
    return breaker


def _breaker_applier(
    breaker: CircuitBreaker, metrics: ServiceMetrics
) -> Callable[[CircuitBreakerConfig], None]:
    """What a new breaker config does here, whichever replica set it."""

    def apply(config: CircuitBreakerConfig) -> None:
        log.info(
            "circuit breaker config: %s",
            "off"
            if not config.enabled
            else f"on, opens after {config.failure_threshold} "
            f"consecutive failures for {config.open_seconds:g} s",
        )
        breaker.configure(config)
        metrics.show_breaker(breaker.state, breaker.enabled)

    return apply


async def _generator(
    settings: Settings,
    tracer_provider: TracerProvider,
    metrics: GeneratorMetrics,
    rng: random.Random,
    base_url: str,
) -> tuple[TrafficEngine, JobManager]:
    target = settings.target_url or base_url
    engine = TrafficEngine(
        base_url=target,
        tracer_provider=tracer_provider,
        metrics=metrics,
        planner=RequestPlanner(settings.simulated_users, rng),
        max_in_flight=settings.max_in_flight,
        late_threshold_s=settings.late_send_threshold_ms / 1000,
        max_samples=settings.run_samples_max,
    )
    await engine.start()
    jobs = JobManager(
        engine,
        max_active_jobs=settings.max_active_jobs,
        finished_jobs_kept=settings.finished_jobs_kept,
        max_total_rps=settings.max_rps,
        max_queued_requests=settings.max_queued_requests,
        finished_ttl_s=settings.finished_job_ttl_seconds,
        metrics=metrics,
        split=SplitRunner(
            settings,
            base_url=target,
            engine=engine,
            metrics=metrics,
            tracer_provider=tracer_provider,
        ),
        rng=rng,
    )
    return engine, jobs
