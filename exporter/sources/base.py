"""The two source interfaces the shim's routes and live feed are written against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from exporter.spans import SpanRecord

Groups = dict[tuple[str, ...], float]
"""One figure's answer by group: keyed by the values of the labels it keeps, in order ("" for a
label a series lacks; ``()`` for a figure that keeps none)."""
FigureGroups = dict[str, Groups]
"""Answers to several figures, keyed by figure."""


@dataclass(frozen=True, slots=True)
class RedFigures:
    """The figures of the contract's ``MetricsData``, over one window."""

    request_rate: float
    error_rate: float
    retry_count: float
    p95_latency_ms: float | None
    p99_latency_ms: float | None


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """The latency summary of one stage over a window (milliseconds)."""

    avg: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    samples: float


class MetricsSource(Protocol):
    name: str

    async def red(self, window_seconds: float, at: float | None = None) -> RedFigures:
        """Request rate (req/s), error rate (0..1, 5xx and 429 over all), retries in the
        window ending at unix time ``at`` (default now), p95/p99 of request duration.
        Raises ``SourceError``."""
        ...

    async def latency(
        self, window_seconds: float, at: float | None = None
    ) -> dict[str, LatencySummary]:
        """Summaries for the stages ``request``, ``database`` and ``cache``, over the window
        ending at unix time ``at`` (default now)."""
        ...

    async def topology(self, window_seconds: float, at: float | None = None) -> FigureGroups:
        """The answers to :data:`exporter.topology_figures.TOPOLOGY` over the window ending at
        unix time ``at`` (default now), each by its groups; a figure that selects no series
        answers no group. Raises ``SourceError``."""
        ...

    async def check(self) -> None:
        """A cheap query proving the backend answers; raises ``SourceError``."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TraceUpdates:
    """What a trace backend learnt since the last poll.

    ``requests``: SERVER spans of requests that finished since ``cursor``, oldest first.
    ``completed``: traces whose root span has arrived since ``cursor`` (all their spans).
    Pass the returned ``cursor`` to the next poll; ``None`` starts from now.
    """

    cursor: object
    requests: list[SpanRecord]
    completed: list[list[SpanRecord]]


class TraceSource(Protocol):
    name: str

    async def trace(self, trace_id: int) -> list[SpanRecord]:
        """Every span of one trace; raises ``TraceNotFound`` or ``SourceError``."""
        ...

    async def recent(self, limit: int, lookback_seconds: float) -> list[SpanRecord]:
        """Server spans of the newest ``limit`` simulated requests, newest first."""
        ...

    async def updates(self, cursor: object | None) -> TraceUpdates:
        """Finished requests and completed traces since ``cursor`` (for the live feed)."""
        ...

    async def check(self) -> None:
        """A cheap query proving the backend answers; raises ``SourceError``."""
        ...

    async def aclose(self) -> None: ...
