"""What the shim owns while it runs: its two sources, their health, the live feed.

Built once from settings in a lifespan (the simulator's in embedded mode, the exporter's in
stack mode) and handed to the routes through ``app.state.exporter``. Which backend serves
metrics and traces is decided here and nowhere else.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from exporter.coalesce import Coalescer
from exporter.monitor import BackendMonitor
from exporter.sources.base import LatencySummary, MetricsSource, RedFigures, TraceSource
from failure_lab.settings import Settings

HealthCheck = Callable[[], Awaitable[None]]


@dataclass
class ExporterRuntime:
    settings: Settings
    metrics: MetricsSource
    traces: TraceSource
    monitor: BackendMonitor
    extra_checks: dict[str, HealthCheck] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    websocket_clients: Callable[[], int] = lambda: 0
    shared: Coalescer = field(init=False)

    def __post_init__(self) -> None:
        self.shared = Coalescer(self.settings.metrics_cache_seconds)

    async def red(self, window_seconds: float, at: float | None = None) -> RedFigures:
        """The RED figures over a window ending at ``at`` (default now): one backend query
        however many ask at once."""
        return await self.shared.get(
            ("red", window_seconds, at),
            lambda: self.monitor.call(self.metrics.name, self.metrics.red(window_seconds, at)),
        )

    async def latency(
        self, window_seconds: float, at: float | None = None
    ) -> dict[str, LatencySummary]:
        return await self.shared.get(
            ("latency", window_seconds, at),
            lambda: self.monitor.call(self.metrics.name, self.metrics.latency(window_seconds, at)),
        )

    async def aclose(self) -> None:
        await self.metrics.aclose()
        await self.traces.aclose()
