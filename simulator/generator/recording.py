"""Accounting for one generated request: metrics, tally, live counters, samples, the result.

The engine decides when a request goes out; this module records what happened to it, in the
same way for single requests, bursts and open-model runs, so every path moves the same
Prometheus series and counters. A request is carried by one small ``Exchange`` record; its
``TrafficResult`` (a pydantic model, with an ISO timestamp and a UUID, costly at thousands of
requests per second) is built only where results are handed out: single requests, bursts, and
runs given an ``on_result`` callback.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from failure_lab.control import TrafficResult
from simulator.generator.metrics import GeneratorMetrics
from simulator.generator.planner import PlannedRequest
from simulator.generator.senders import TransportErrorKind
from simulator.generator.stats import LiveStats, RunSamples
from simulator.generator.tally import TrafficTally

logger = logging.getLogger(__name__)

ResultCallback = Callable[[TrafficResult], None]


@dataclass(slots=True, eq=False)
class Exchange:
    """One request, filled in as it goes: the client-span hook sets ``trace_id``, the engine
    the outcome (an HTTP status and the service's retry count, or an error text and its
    ``error_kind``) and ``ended``.

    Instants are ``time.perf_counter()`` values; ``trace_id`` is 0 until a span was started.
    """

    planned: PlannedRequest
    job_id: str | None
    intended: float
    actual: float
    send_lag_ms: float
    trace_id: int = 0
    ended: float = 0.0
    http_status: int | None = None
    retries: int = 0
    error: str | None = None
    error_kind: TransportErrorKind | None = None

    @property
    def succeeded(self) -> bool:
        status = self.http_status
        return status is not None and 200 <= status < 300

    def result(self, offset: float | None = None) -> TrafficResult:
        """The public record; ``offset`` is a ``wall_offset()``, taken now if not given.

        Pass one offset for a batch so results intended at one instant share a timestamp.
        """
        if not self.trace_id:  # no client span was started: the id is only an id
            self.trace_id = uuid.uuid4().int
        status = self.http_status
        success = self.succeeded
        return TrafficResult.model_construct(
            request_id=str(uuid.UUID(int=self.trace_id)),
            status="success" if success else "failure",
            latency_ms=(self.ended - self.intended) * 1000,
            timestamp=iso(self.intended, offset),
            http_status=status,
            endpoint=self.planned.route,
            method=self.planned.method,
            retry_count=self.retries,
            service_latency_ms=(self.ended - self.actual) * 1000,
            send_lag_ms=self.send_lag_ms,
            error=f"HTTP {status}" if status is not None and not success else self.error,
        )


@dataclass(slots=True)
class Sink:
    """Where a request's accounting goes besides the engine-wide metrics and tally."""

    live: LiveStats | None
    samples: RunSamples | None = None
    on_result: ResultCallback | None = None


class Recorder:
    def __init__(
        self, metrics: GeneratorMetrics, late_threshold_s: float, tally: TrafficTally
    ) -> None:
        self._metrics = metrics
        self._late_threshold_s = late_threshold_s
        self._tally = tally

    def sent(self, sink: Sink, intended: float, actual: float) -> float:
        """Count a request leaving now; returns its send lag in seconds."""
        lag = actual - intended if actual > intended else 0.0
        late = lag > self._late_threshold_s
        metrics = self._metrics
        metrics.sent.inc()
        metrics.send_lag.observe(lag)
        if late:
            metrics.late_sends.inc()
        self._tally.record_sent(actual, late)
        if sink.live is not None:
            sink.live.record_sent(actual, late)
        if sink.samples is not None:
            sink.samples.add_send_lag(lag * 1000)
        return lag

    def dropped(self, live: LiveStats | None) -> None:
        self._metrics.dropped.inc()
        self._tally.record_dropped()
        if live is not None:
            live.record_dropped()

    def finished(self, sink: Sink, exchange: Exchange) -> None:
        latency_s = exchange.ended - exchange.intended
        service_s = exchange.ended - exchange.actual
        success = exchange.succeeded
        metrics = self._metrics
        (metrics.succeeded if success else metrics.failed).inc()
        metrics.observe_latency(latency_s, service_s, exchange.trace_id, exchange.ended)
        self._tally.record_finished(
            exchange.planned, exchange.http_status, exchange.error_kind, exchange.retries
        )
        latency_ms = latency_s * 1000
        if sink.live is not None:
            sink.live.record_finished(success, latency_ms)
        if sink.samples is not None:
            sink.samples.add_latency(latency_ms, service_s * 1000)
            sink.samples.add_outcome(latency_ms, exchange.trace_id, success, exchange.ended)
        if sink.on_result is not None:
            try:
                sink.on_result(exchange.result())
            except Exception:
                logger.exception("on_result callback failed")


def wall_offset() -> float:
    """``time.time() - time.perf_counter()``: adds to a ``perf_counter`` instant for wall time."""
    return time.time() - time.perf_counter()


def iso(instant: float, offset: float | None = None) -> str:
    """Wall-clock ISO 8601 (UTC, ms) of a ``perf_counter`` instant."""
    wall = instant + (wall_offset() if offset is None else offset)
    stamp = datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")
