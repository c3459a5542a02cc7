"""Counters a status endpoint reads while traffic runs, and the exact summary of a run.

``LiveStats`` is cheap to update on every request and answers "how is it going now": counts,
the send rate over the last second and the mean latency. ``RunSamples`` keeps the run's own
samples (bounded by its planned count) so ``RunStats`` quotes exact percentiles rather than
bucket interpolations.
"""

from __future__ import annotations

import heapq
import math
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

RPS_WINDOW_S = 1.0
SLOWEST_KEPT = 10
FAILED_KEPT = 20


@dataclass(slots=True)
class LiveStats:
    """Running counts of one generation (or of a whole engine)."""

    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    dropped: int = 0
    late_sends: int = 0
    latency_sum_ms: float = 0.0
    _recent_sends: deque[float] = field(default_factory=deque, repr=False)

    def record_sent(self, now: float, late: bool) -> None:
        self.sent += 1
        if late:
            self.late_sends += 1
        self._recent_sends.append(now)
        self._trim(now)

    def record_dropped(self) -> None:
        self.dropped += 1

    def record_finished(self, success: bool, latency_ms: float) -> None:
        if success:
            self.succeeded += 1
        else:
            self.failed += 1
        self.latency_sum_ms += latency_ms

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed

    @property
    def avg_latency_ms(self) -> float | None:
        """Mean latency from the intended send time, None before the first result."""
        return self.latency_sum_ms / self.finished if self.finished else None

    def current_rps(self, now: float | None = None) -> float:
        """Requests sent during the last second."""
        self._trim(time.perf_counter() if now is None else now)
        return len(self._recent_sends) / RPS_WINDOW_S

    def _trim(self, now: float) -> None:
        horizon = now - RPS_WINDOW_S
        recent = self._recent_sends
        while recent and recent[0] <= horizon:
            recent.popleft()


@dataclass(frozen=True, slots=True)
class RunStats:
    """Summary of one open-model run; latencies in ms, percentiles exact over its samples."""

    sent: int
    dropped: int
    succeeded: int
    failed: int
    late_sends: int
    target: int
    elapsed: float
    achieved_rps: float
    send_lag_p50_ms: float | None
    send_lag_p95_ms: float | None
    send_lag_p99_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    service_latency_p50_ms: float | None
    service_latency_p95_ms: float | None
    service_latency_p99_ms: float | None
    slowest: tuple[tuple[str, float], ...] = ()
    """(request id, latency ms) of the slowest requests, slowest first."""
    failed_ids: tuple[str, ...] = ()
    """Request ids of the most recent failed requests, oldest first."""


class RunSamples:
    """Per-request samples of one run, never more than ``capacity`` of each, plus the ids
    of its slowest and its most recent failed requests (trace ids, 0 when none)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self.send_lag_ms: list[float] = []
        self.latency_ms: list[float] = []
        self.service_latency_ms: list[float] = []
        self._slowest: list[tuple[float, int]] = []  # a min-heap of the SLOWEST_KEPT largest
        self._failed: deque[int] = deque(maxlen=FAILED_KEPT)

    def add_outcome(self, latency_ms: float, trace_id: int, success: bool) -> None:
        if not trace_id:
            return
        if not success:
            self._failed.append(trace_id)
        if len(self._slowest) < SLOWEST_KEPT:
            heapq.heappush(self._slowest, (latency_ms, trace_id))
        elif latency_ms > self._slowest[0][0]:
            heapq.heapreplace(self._slowest, (latency_ms, trace_id))

    def add_send_lag(self, lag_ms: float) -> None:
        if len(self.send_lag_ms) < self._capacity:
            self.send_lag_ms.append(lag_ms)

    def add_latency(self, latency_ms: float, service_latency_ms: float) -> None:
        if len(self.latency_ms) < self._capacity:
            self.latency_ms.append(latency_ms)
            self.service_latency_ms.append(service_latency_ms)

    def summarise(
        self, live: LiveStats, *, target: int, elapsed: float, send_window: float
    ) -> RunStats:
        lag = sorted(self.send_lag_ms)
        latency = sorted(self.latency_ms)
        service = sorted(self.service_latency_ms)
        return RunStats(
            sent=live.sent,
            dropped=live.dropped,
            succeeded=live.succeeded,
            failed=live.failed,
            late_sends=live.late_sends,
            target=target,
            elapsed=elapsed,
            achieved_rps=live.sent / send_window if send_window > 0 else 0.0,
            send_lag_p50_ms=percentile(lag, 50),
            send_lag_p95_ms=percentile(lag, 95),
            send_lag_p99_ms=percentile(lag, 99),
            latency_p50_ms=percentile(latency, 50),
            latency_p95_ms=percentile(latency, 95),
            latency_p99_ms=percentile(latency, 99),
            service_latency_p50_ms=percentile(service, 50),
            service_latency_p95_ms=percentile(service, 95),
            service_latency_p99_ms=percentile(service, 99),
            slowest=tuple(
                (request_id(trace_id), latency)
                for latency, trace_id in sorted(self._slowest, reverse=True)
            ),
            failed_ids=tuple(request_id(trace_id) for trace_id in self._failed),
        )


def request_id(trace_id: int) -> str:
    """The public request id of a trace id: its UUID form, as in ``TrafficResult``."""
    return str(uuid.UUID(int=trace_id))


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The q-th percentile of sorted values, linear between closest ranks; None if empty."""
    if not ordered:
        return None
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
