"""What the shim owns while it runs: its two sources, their health, the live feed.

Built once from settings in a lifespan (the simulator's in embedded mode, the exporter's in
stack mode) and handed to the routes as a dependency. Which backend serves metrics and
traces is decided by whoever builds it and nowhere else; here each source is wrapped once
so every call is watched by the monitor, and metric figures are shared among concurrent
askers.

Its health is its two sources plus the ``dependencies`` whoever builds it names: the
simulator the stack's shim forwards to, the Redis of the process the embedded shim lives
in. The shim imports nothing of theirs; each comes as a probe (:mod:`failure_lab.health`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from exporter.coalesce import Coalescer
from exporter.metrics import ExporterMetrics
from exporter.monitor import BackendMonitor
from exporter.sources.base import (
    FigureGroups,
    LatencySummary,
    MetricsSource,
    RedFigures,
    TraceSource,
)
from exporter.sources.monitored import MonitoredMetrics, MonitoredTraces
from failure_lab.health import Component, Dependencies, Probe, bounded
from failure_lab.loop_lag import LoopLag
from failure_lab.settings import Settings


class ExporterRuntime:
    def __init__(
        self,
        settings: Settings,
        metrics: MetricsSource,
        traces: TraceSource,
        exporter_metrics: ExporterMetrics,
        dependencies: Sequence[Component] = (),
        loop_lag: LoopLag | None = None,
    ) -> None:
        """``dependencies``: what else the process needs (the simulator in stack mode, Redis
        embedded), each probed through the monitor within ``backend_timeout_seconds``.
        ``loop_lag``: the process's event-loop lag sampler, for ``/v1/status``."""
        self.settings = settings
        self.monitor = BackendMonitor(exporter_metrics)
        self.metrics = MonitoredMetrics(metrics, self.monitor)
        self.traces = MonitoredTraces(traces, self.monitor)
        self.dependencies = tuple(
            Component(d.name, d.role, self._watched(d.name, d.probe), d.degrades)
            for d in dependencies
        )
        self.started_at = time.time()
        self.websocket_clients: Callable[[], int] = lambda: 0
        self.loop_lag = loop_lag
        self._shared = Coalescer(
            settings.metrics_cache_seconds, max_entries=settings.metrics_cache_max_entries
        )

    def _watched(self, name: str, probe: Probe) -> Probe:
        timeout = self.settings.backend_timeout_seconds

        async def watched() -> None:
            async with self.monitor.watch(name):
                await bounded(name, probe, timeout)()

        return watched

    def sources(self) -> tuple[Component, ...]:
        """The metrics and trace sources as components: each may fail alone (degraded)."""
        metrics, traces = self.metrics, self.traces
        if metrics.name == traces.name:
            return (Component(metrics.name, "metrics and traces", metrics.check, degrades=True),)
        return (
            Component(metrics.name, "metrics", metrics.check, degrades=True),
            Component(traces.name, "traces", traces.check, degrades=True),
        )

    def health(self) -> Dependencies:
        """Everything the shim's health probes ask, each bounded by the backend timeout."""
        return Dependencies(
            (*self.sources(), *self.dependencies), self.settings.backend_timeout_seconds
        )

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

    async def topology(self, window_seconds: float, at: float | None = None) -> FigureGroups:
        """The topology's figures over a window ending at ``at`` (default now), shared like
        the others."""
        return await self._shared.get(
            ("topology", window_seconds, at), lambda: self.metrics.topology(window_seconds, at)
        )

    async def aclose(self) -> None:
        await self.metrics.aclose()
        await self.traces.aclose()
