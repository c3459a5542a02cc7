"""Each backend's health as the shim last saw it, for ``/v1/status`` and ``/health``.

Every query a route or the live feed makes goes through ``BackendMonitor.call``, which bounds
it in time and records its outcome, so health is a by-product of real use rather than a
separate probe that could disagree with what users get.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from exporter.errors import SourceError, SourceTimeout, TraceNotFound
from exporter.metrics import ExporterMetrics

T = TypeVar("T")


@dataclass(slots=True)
class BackendState:
    name: str
    healthy: bool | None = None
    last_success: float | None = None
    last_latency_ms: float | None = None
    last_error: str | None = None
    last_checked: float | None = None


class BackendMonitor:
    def __init__(self, timeout_seconds: float, metrics: ExporterMetrics) -> None:
        self._timeout = timeout_seconds
        self._metrics = metrics
        self._states: dict[str, BackendState] = {}

    def state(self, name: str) -> BackendState:
        if name not in self._states:
            self._states[name] = BackendState(name)
        return self._states[name]

    @property
    def states(self) -> list[BackendState]:
        return list(self._states.values())

    async def call(self, name: str, awaitable: Awaitable[T]) -> T:
        """Await a backend query within the timeout, recording what happened."""
        state = self.state(name)
        started = time.perf_counter()
        outcome = "error"
        try:
            async with asyncio.timeout(self._timeout):
                try:
                    result = await awaitable
                except TraceNotFound:
                    outcome = "ok"  # the backend answered: a normal answer, not a failure
                    self._succeeded(state, started)
                    raise
            outcome = "ok"
        except TimeoutError:
            outcome = "timeout"
            self._failed(state, f"no answer within {self._timeout:g}s")
            raise SourceTimeout(name, f"no answer within {self._timeout:g}s") from None
        except SourceTimeout as exc:
            outcome = "timeout"
            self._failed(state, exc.message)
            raise
        except SourceError as exc:
            self._failed(state, exc.message)
            raise
        finally:
            self._metrics.backend_queries.labels(name, outcome).inc()
            self._metrics.backend_duration.labels(name).observe(time.perf_counter() - started)
        self._succeeded(state, started)
        return result

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
