"""What the shim owns while it runs: its two sources, their health, the live feed.

Built once from settings in a lifespan (the simulator's in embedded mode, the exporter's in
stack mode) and handed to the routes through ``app.state.exporter``. Which backend serves
metrics and traces is decided here and nowhere else.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from exporter.monitor import BackendMonitor
from exporter.sources.base import MetricsSource, TraceSource
from simulator.settings import Settings

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

    async def aclose(self) -> None:
        await self.metrics.aclose()
        await self.traces.aclose()
