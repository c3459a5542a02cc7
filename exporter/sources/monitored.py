"""Sources whose every call is watched by the backend monitor, wrapped once in the runtime.

Routes and the live feed call these like any source; what each call did (answered, failed,
timed out, how fast) lands in the monitor on the way, so no caller has to remember to ask
through it, and no call is counted twice.
"""

from __future__ import annotations

from exporter.monitor import BackendMonitor
from exporter.sources.base import (
    FigureGroups,
    LatencySummary,
    MetricsSource,
    RedFigures,
    TraceSource,
    TraceUpdates,
)
from exporter.spans import SpanRecord


class MonitoredMetrics:
    def __init__(self, source: MetricsSource, monitor: BackendMonitor) -> None:
        self.name = source.name
        self._source = source
        self._monitor = monitor

    async def red(self, window_seconds: float, at: float | None = None) -> RedFigures:
        async with self._monitor.watch(self.name):
            return await self._source.red(window_seconds, at)

    async def latency(
        self, window_seconds: float, at: float | None = None
    ) -> dict[str, LatencySummary]:
        async with self._monitor.watch(self.name):
            return await self._source.latency(window_seconds, at)

    async def topology(self, window_seconds: float, at: float | None = None) -> FigureGroups:
        async with self._monitor.watch(self.name):
            return await self._source.topology(window_seconds, at)

    async def check(self) -> None:
        async with self._monitor.watch(self.name):
            await self._source.check()

    async def aclose(self) -> None:
        await self._source.aclose()


class MonitoredTraces:
    def __init__(self, source: TraceSource, monitor: BackendMonitor) -> None:
        self.name = source.name
        self._source = source
        self._monitor = monitor

    async def trace(self, trace_id: int) -> list[SpanRecord]:
        async with self._monitor.watch(self.name):
            return await self._source.trace(trace_id)

    async def recent(self, limit: int, lookback_seconds: float) -> list[SpanRecord]:
        async with self._monitor.watch(self.name):
            return await self._source.recent(limit, lookback_seconds)

    async def updates(self, cursor: object | None) -> TraceUpdates:
        async with self._monitor.watch(self.name):
            return await self._source.updates(cursor)

    async def check(self) -> None:
        async with self._monitor.watch(self.name):
            await self._source.check()

    async def aclose(self) -> None:
        await self._source.aclose()
