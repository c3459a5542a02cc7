"""The shim in embedded mode: metrics and traces read from this very process.

The sample ring snapshots the process's registry every ``metrics_sample_interval_seconds``
(like a Prometheus scrape) and the span store is one more span processor on the app's
tracer provider (like an OTLP export to Jaeger). Same routes, same translator, other sources.
The process's own dependencies (its Redis) are handed to ``running()`` once they exist, so
the shim's health includes them without the shim knowing what they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Sequence

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from exporter.metrics import ExporterMetrics
from exporter.runtime import ExporterRuntime
from exporter.sampling import SampleRing
from exporter.sources.embedded_metrics import EmbeddedMetricsSource
from exporter.sources.embedded_traces import EmbeddedTraceSource
from exporter.spanstore import SpanStore
from failure_lab.health import Component
from failure_lab.loop_lag import LoopLag
from failure_lab.settings import Settings


class EmbeddedShim:
    """Built with the app (no I/O); ``running()`` samples for as long as the app lives."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry,
        tracer_provider: TracerProvider,
        loop_lag: LoopLag | None = None,
    ) -> None:
        self.metrics = ExporterMetrics(registry)
        self.store = SpanStore(
            settings.trace_store_max_traces,
            self.metrics.trace_evictions,
            max_spans_per_trace=settings.trace_store_max_spans_per_trace,
            refused=self.metrics.trace_store_spans_refused,
        )
        self.metrics.trace_store_traces.set_function(lambda: len(self.store))
        tracer_provider.add_span_processor(self.store)
        interval = settings.metrics_sample_interval_seconds
        capacity = math.ceil(settings.max_metrics_window_seconds / interval) + 5
        self.ring = SampleRing(registry, capacity)
        self._settings = settings
        self._interval = interval
        self._loop_lag = loop_lag

    @contextlib.asynccontextmanager
    async def running(
        self, dependencies: Sequence[Component] = ()
    ) -> AsyncIterator[ExporterRuntime]:
        """The shim's runtime over this process's registry and spans; ``dependencies`` are
        what else the process needs (its Redis), part of the shim's health."""
        runtime = ExporterRuntime(
            settings=self._settings,
            metrics=EmbeddedMetricsSource(self.ring, interval=self._interval),
            traces=EmbeddedTraceSource(self.store),
            exporter_metrics=self.metrics,
            dependencies=dependencies,
            loop_lag=self._loop_lag,
        )
        self.ring.sample()
        sampler = asyncio.create_task(self.ring.run(self._interval), name="metrics-sampler")
        try:
            yield runtime
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            await runtime.aclose()
