"""What the shim owns while it runs: its two sources, their health, the live feed.

Built once from settings in a lifespan (the simulator's in embedded mode, the exporter's in
stack mode) and handed to the routes as a dependency. Which backend serves metrics and
traces is decided by whoever builds it and nowhere else; here each source is wrapped once
so every call is watched by the monitor, and metric figures are shared among concurrent
askers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from exporter.coalesce import Coalescer
from exporter.metrics import ExporterMetrics
from exporter.monitor import BackendMonitor
from exporter.sources.base import LatencySummary, MetricsSource, RedFigures, TraceSource
from exporter.sources.monitored import MonitoredMetrics, MonitoredTraces
from failure_lab.settings import Settings

HealthCheck = Callable[[], Awaitable[None]]


class ExporterRuntime:
    def __init__(
        self,
        settings: Settings,
        metrics: MetricsSource,
        traces: TraceSource,
        exporter_metrics: ExporterMetrics,
        checks: dict[str, HealthCheck] | None = None,
    ) -> None:
        """``checks``: further dependencies' probes (the simulator, in stack mode), by name;
        each raises ``SourceError`` when its dependency fails."""
        self.settings = settings
        self.monitor = BackendMonitor(exporter_metrics)
        self.metrics = MonitoredMetrics(metrics, self.monitor)
        self.traces = MonitoredTraces(traces, self.monitor)
        self.checks = {name: self._watched(name, check) for name, check in (checks or {}).items()}
        self.started_at = time.time()
        self.websocket_clients: Callable[[], int] = lambda: 0
        self._shared = Coalescer(
            settings.metrics_cache_seconds, max_entries=settings.metrics_cache_max_entries
        )

    def _watched(self, name: str, check: HealthCheck) -> HealthCheck:
        async def watched() -> None:
            async with self.monitor.watch(name):
                await check()

        return watched

    async def red(self, window_seconds: float, at: float | None = None) -> RedFigures:
        """The RED figures over a window ending at ``at`` (default now): one backend query
        however many ask at once."""
        return await self._shared.get(
            ("red", window_seconds, at), lambda: self.metrics.red(window_seconds, at)
        )

    async def latency(
        self, window_seconds: float, at: float | None = None
    ) -> dict[str, LatencySummary]:
        return await self._shared.get(
            ("latency", window_seconds, at), lambda: self.metrics.latency(window_seconds, at)
        )

    async def aclose(self) -> None:
        await self.metrics.aclose()
        await self.traces.aclose()
