"""``MetricsSource`` on the process's own registry, through a :class:`SampleRing`.

Embedded mode has no Prometheus: the ring samples the app's registry as a scrape would, and
this source evaluates the figures of :mod:`exporter.figures` on it, the same expressions that
the Prometheus source sends as PromQL, evaluated at "now" as Prometheus does. A ring that has
stopped sampling would freeze every figure at its last value, so figures are refused (as a
backend that is down) once the newest snapshot is older than three sampling intervals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from exporter.errors import SourceUnavailable
from exporter.figures import (
    LATENCY,
    RED,
    evaluate_all,
    evaluate_groups,
    latency_summaries,
    red_figures,
)
from exporter.sampling import SampleRing
from exporter.sources.base import FigureGroups, LatencySummary, RedFigures
from exporter.topology_figures import TOPOLOGY

STALE_AFTER_INTERVALS: Final = 3


class EmbeddedMetricsSource:
    name = "embedded"

    def __init__(
        self,
        ring: SampleRing,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``interval`` is how often the ring is sampled (seconds); ``clock`` gives "now"
        and must be the ring's clock."""
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._ring = ring
        self._interval = interval
        self._clock = clock

    async def red(self, window_seconds: float, at: float | None = None) -> RedFigures:
        now = self._fresh_now()
        when = now if at is None else min(at, now)
        return red_figures(evaluate_all(RED, self._ring, window_seconds, when))

    async def latency(
        self, window_seconds: float, at: float | None = None
    ) -> dict[str, LatencySummary]:
        now = self._fresh_now()
        when = now if at is None else min(at, now)
        return latency_summaries(evaluate_all(LATENCY, self._ring, window_seconds, when))

    async def topology(self, window_seconds: float, at: float | None = None) -> FigureGroups:
        now = self._fresh_now()
        when = now if at is None else min(at, now)
        return {
            figure.key: evaluate_groups(figure.expr, self._ring, window_seconds, when)
            for figure in TOPOLOGY
        }

    async def check(self) -> None:
        self._fresh_now()

    async def aclose(self) -> None:
        return None

    def _fresh_now(self) -> float:
        """The evaluation time, after checking that the ring is being sampled."""
        now = self._clock()
        newest = self._ring.newest
        if newest is None:
            raise SourceUnavailable(self.name, "no metrics snapshot taken yet")
        age = now - newest
        limit = STALE_AFTER_INTERVALS * self._interval
        if age > limit:
            raise SourceUnavailable(
                self.name,
                f"newest metrics snapshot is {age:.1f} s old (sampled every "
                f"{self._interval:g} s, limit {limit:g} s): sampling has stopped",
            )
        return now
