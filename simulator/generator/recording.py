"""Accounting for one generated request: metrics, live counters, run samples, the result.

The engine decides when a request goes out; this module records what happened to it, in the
same way for single requests, bursts and open-model runs, so every path yields the same
``TrafficResult`` and moves the same Prometheus series.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from simulator.generator.metrics import GeneratorMetrics
from simulator.generator.planner import PlannedRequest
from simulator.generator.stats import LiveStats, RunSamples
from simulator.models import TrafficResult

logger = logging.getLogger(__name__)

ResultCallback = Callable[[TrafficResult], None]


@dataclass(slots=True)
class RequestTrace:
    """Per-request holder that the client-span hook fills in with the trace id."""

    job_id: str | None
    send_lag_ms: float
    trace_id: int = 0


@dataclass(slots=True)
class Sink:
    """Where a request's accounting goes besides the engine-wide metrics."""

    lives: tuple[LiveStats, ...]
    samples: RunSamples | None = None
    on_result: ResultCallback | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What came back: an HTTP status and the service's retry count, or an error text."""

    http_status: int | None
    retries: int
    error: str | None


class Recorder:
    def __init__(self, metrics: GeneratorMetrics, late_threshold_s: float) -> None:
        self._metrics = metrics
        self._late_threshold_s = late_threshold_s

    def sent(self, sink: Sink, intended: float, actual: float) -> float:
        """Count a request leaving now; returns its send lag in seconds."""
        lag = max(0.0, actual - intended)
        late = lag > self._late_threshold_s
        metrics = self._metrics
        metrics.sent.inc()
        metrics.send_lag.observe(lag)
        if late:
            metrics.late_sends.inc()
        for live in sink.lives:
            live.record_sent(actual, late)
        if sink.samples is not None:
            sink.samples.add_send_lag(lag * 1000)
        return lag

    def dropped(self, lives: tuple[LiveStats, ...]) -> None:
        self._metrics.dropped.inc()
        for live in lives:
            live.record_dropped()

    def finished(
        self,
        sink: Sink,
        planned: PlannedRequest,
        trace: RequestTrace,
        outcome: Outcome,
        *,
        intended: float,
        actual: float,
        ended: float,
    ) -> TrafficResult:
        trace_id = trace.trace_id or uuid.uuid4().int
        status = outcome.http_status
        success = status is not None and 200 <= status < 300
        error = f"HTTP {status}" if status is not None and not success else outcome.error
        result = TrafficResult.model_construct(
            request_id=str(uuid.UUID(int=trace_id)),
            status="success" if success else "failure",
            latency_ms=(ended - intended) * 1000,
            timestamp=iso(intended),
            http_status=status,
            endpoint=planned.route,
            method=planned.method,
            retry_count=outcome.retries,
            service_latency_ms=(ended - actual) * 1000,
            send_lag_ms=trace.send_lag_ms,
            error=error,
        )
        (self._metrics.succeeded if success else self._metrics.failed).inc()
        self._metrics.observe_latency(ended - intended, ended - actual, trace_id)
        for live in sink.lives:
            live.record_result(result)
        if sink.samples is not None:
            sink.samples.add_result(result)
        if sink.on_result is not None:
            try:
                sink.on_result(result)
            except Exception:
                logger.exception("on_result callback failed")
        return result


def iso(instant: float) -> str:
    """Wall-clock ISO 8601 (UTC, ms) of a ``perf_counter`` instant."""
    wall = time.time() - (time.perf_counter() - instant)
    stamp = datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")
