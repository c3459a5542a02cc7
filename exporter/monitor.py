"""Each backend's health as the shim last saw it, for ``/v1/status`` and ``/health``.

Every call a route or the live feed makes to a backend is watched here (the runtime wraps
each source once, :mod:`exporter.sources.monitored`), which records its outcome and latency,
so health is a by-product of real use rather than a separate probe that could disagree with
what users get. Bounding the call in time is not done here: that is the one timeout of the
backend call itself (:mod:`exporter.boundary`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from exporter.errors import TraceNotFound
from exporter.metrics import ExporterMetrics
from failure_lab.errors import BackendFailure


@dataclass(slots=True)
class BackendState:
    name: str
    healthy: bool | None = None
    last_success: float | None = None
    last_latency_ms: float | None = None
    last_error: str | None = None
    last_checked: float | None = None


class BackendMonitor:
    def __init__(self, metrics: ExporterMetrics) -> None:
        self._metrics = metrics
        self._states: dict[str, BackendState] = {}

    def state(self, name: str) -> BackendState:
        if name not in self._states:
            self._states[name] = BackendState(name)
        return self._states[name]

    @property
    def states(self) -> list[BackendState]:
        return list(self._states.values())

    @asynccontextmanager
    async def watch(self, name: str) -> AsyncIterator[None]:
        """Record the outcome of the backend call made in the block."""
        state = self.state(name)
        started = time.perf_counter()
        outcome = "error"
        try:
            yield
        except TraceNotFound:
            outcome = "ok"  # the backend answered: a normal answer, not a failure
            self._succeeded(state, started)
            raise
        except BackendFailure as exc:
            outcome = "timeout" if exc.timed_out else "error"
            self._failed(state, exc.message)
            raise
        else:
            outcome = "ok"
            self._succeeded(state, started)
        finally:
            self._metrics.backend_queries.labels(name, outcome).inc()
            self._metrics.backend_duration.labels(name).observe(time.perf_counter() - started)

    @staticmethod
    def _succeeded(state: BackendState, started: float) -> None:
        state.healthy = True
        state.last_success = state.last_checked = time.time()
        state.last_latency_ms = (time.perf_counter() - started) * 1000
        state.last_error = None

    @staticmethod
    def _failed(state: BackendState, error: str) -> None:
        state.healthy = False
        state.last_checked = time.time()
        state.last_error = error
