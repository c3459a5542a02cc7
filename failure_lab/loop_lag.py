"""Event-loop lag: how late the process's event loop wakes a task that asked to sleep.

Everything in a failure-lab process shares one event loop: the simulated service, the traffic
generator, the shim and its live feed. When something holds the loop (a slow callback, a
long garbage collection, a burst of work), every request waits, and the service's latency
figures grow for reasons no stage of the request path shows. A small task sleeps
``interval`` seconds (0.1) again and again and measures how much later than asked it woke;
that overshoot is the lag every other task saw at that moment.

Each measurement is observed in ``failure_lab_event_loop_lag_seconds`` (a histogram, so
Prometheus can rate and quantile it like the others) and kept for ``keep_seconds`` (60), for
``/v1/status`` to give the 99th percentile and the maximum over the last minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Histogram

INTERVAL_SECONDS: Final = 0.1
KEEP_SECONDS: Final = 60.0
LAG_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


@dataclass(frozen=True, slots=True)
class LagSummary:
    """The lag measured over the last ``window_seconds``: None before any measurement."""

    p99_ms: float | None
    max_ms: float | None
    samples: int
    window_seconds: float
    interval_seconds: float


class LoopLag:
    """The sampler of one process; ``running()`` measures for as long as the block lasts."""

    def __init__(
        self,
        registry: CollectorRegistry | None,
        *,
        interval: float = INTERVAL_SECONDS,
        keep_seconds: float = KEEP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``registry``: where the histogram is registered (None: nowhere)."""
        if interval <= 0 or keep_seconds <= 0:
            raise ValueError("interval and keep_seconds must be positive")
        self._interval = interval
        self._keep = keep_seconds
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque()
        self._histogram = Histogram(
            "failure_lab_event_loop_lag_seconds",
            f"How much later than asked the event loop woke a task sleeping {interval:g} s.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )

    def record(self, lag_seconds: float) -> None:
        """One measurement, taken now."""
        now = self._clock()
        self._histogram.observe(lag_seconds)
        self._samples.append((now, lag_seconds))
        self._forget_before(now - self._keep)

    def summary(self) -> LagSummary:
        """p99 (nearest rank) and maximum of the measurements of the last ``keep_seconds``."""
        self._forget_before(self._clock() - self._keep)
        lags = sorted(lag for _, lag in self._samples)
        p99 = lags[max(0, math.ceil(0.99 * len(lags)) - 1)] * 1000 if lags else None
        return LagSummary(
            p99_ms=None if p99 is None else round(p99, 3),
            max_ms=round(lags[-1] * 1000, 3) if lags else None,
            samples=len(lags),
            window_seconds=self._keep,
            interval_seconds=self._interval,
        )

    async def run(self) -> None:
        """Measure until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self._interval)
            self.record(max(0.0, loop.time() - asked - self._interval))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LoopLag]:
        task = asyncio.create_task(self.run(), name="event-loop-lag")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _forget_before(self, moment: float) -> None:
        samples = self._samples
        while samples and samples[0][0] < moment:
            samples.popleft()
