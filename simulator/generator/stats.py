"""Counters a status endpoint reads while traffic runs, and the exact summary of a run.

``LiveStats`` is cheap to update on every request and answers "how is it going now": counts,
the send rate over the last second and the mean latency. ``RunSamples`` keeps the run's own
samples so the summary quotes percentiles of them rather than bucket interpolations: every
sample while the run has made at most ``capacity`` of them (the exact percentiles), a uniform
sample of ``capacity`` beyond (reservoir sampling), so a long run at a high rate holds a
bounded number of floats (``FAILURE_LAB_RUN_SAMPLES_MAX``) and its early requests are not
over-represented. The summary is the contract's ``JobSummary`` itself, built once here:
the job API serves it and the scenario report embeds it, so a run's figures keep one shape
and one set of names from the engine to the report.

A job split over worker processes is summarised the same way: each worker hands back its
samples (``SamplesPart``) and the parent's ``RunSamples`` absorbs them, so its percentiles are
those of every request, exactly as one process would quote them, and its slowest and most
recent failed requests are those of the whole job.
"""

from __future__ import annotations

import heapq
import math
import random
import time
import uuid
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from failure_lab.control import JobSummary, Percentiles, SlowRequest

RPS_WINDOW_S = 1.0
SLOWEST_KEPT = 10
FAILED_KEPT = 20


class LiveCounts(NamedTuple):
    """The counts of a ``LiveStats`` at one moment (or the difference of two)."""

    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    dropped: int = 0
    late_sends: int = 0
    latency_sum_ms: float = 0.0

    def minus(self, earlier: LiveCounts) -> LiveCounts:
        return LiveCounts(
            self.sent - earlier.sent,
            self.succeeded - earlier.succeeded,
            self.failed - earlier.failed,
            self.dropped - earlier.dropped,
            self.late_sends - earlier.late_sends,
            self.latency_sum_ms - earlier.latency_sum_ms,
        )


@dataclass(slots=True)
class LiveStats:
    """Running counts of one generation: a request, a burst or a job."""

    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    dropped: int = 0
    late_sends: int = 0
    latency_sum_ms: float = 0.0
    outside_rps: float = 0.0
    """Requests sent during the last second by worker processes, as they last said."""
    _recent_sends: deque[float] = field(default_factory=deque, repr=False)

    def counts(self) -> LiveCounts:
        return LiveCounts(
            self.sent,
            self.succeeded,
            self.failed,
            self.dropped,
            self.late_sends,
            self.latency_sum_ms,
        )

    def add(self, delta: LiveCounts) -> None:
        """Count what a worker process reported since its last report."""
        self.sent += delta.sent
        self.succeeded += delta.succeeded
        self.failed += delta.failed
        self.dropped += delta.dropped
        self.late_sends += delta.late_sends
        self.latency_sum_ms += delta.latency_sum_ms

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
        return len(self._recent_sends) / RPS_WINDOW_S + self.outside_rps

    def _trim(self, now: float) -> None:
        horizon = now - RPS_WINDOW_S
        recent = self._recent_sends
        while recent and recent[0] <= horizon:
            recent.popleft()


@dataclass(frozen=True, slots=True)
class SamplesPart:
    """One worker's samples, in a form that crosses a pipe cheaply (8 bytes a sample)."""

    send_lag_ms: array[float]
    latency_ms: array[float]
    service_latency_ms: array[float]
    slowest: tuple[tuple[float, int], ...]
    """(latency ms, trace id) of its slowest requests."""
    failed: tuple[tuple[float, int], ...]
    """(``perf_counter`` instant it ended, trace id) of its most recent failed requests."""


class RunSamples:
    """Per-request samples of one run, at most ``capacity`` of each (a uniform sample of
    them once more were made), plus the ids of its slowest and its most recent failed
    requests (trace ids, 0 when none)."""

    def __init__(self, capacity: int, rng: random.Random | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._rng = rng or random.Random(0)
        self.send_lag_ms = array("d")
        self.latency_ms = array("d")
        self.service_latency_ms = array("d")
        self._lags_seen = 0
        self._latencies_seen = 0
        self._slowest: list[tuple[float, int]] = []  # a min-heap of the SLOWEST_KEPT largest
        self._failed: deque[tuple[float, int]] = deque(maxlen=FAILED_KEPT)

    def add_outcome(self, latency_ms: float, trace_id: int, success: bool, ended: float) -> None:
        """A finished request; ``ended`` is its ``perf_counter`` instant (orders failures)."""
        if not trace_id:
            return
        if not success:
            self._failed.append((ended, trace_id))
        if len(self._slowest) < SLOWEST_KEPT:
            heapq.heappush(self._slowest, (latency_ms, trace_id))
        elif latency_ms > self._slowest[0][0]:
            heapq.heapreplace(self._slowest, (latency_ms, trace_id))

    def part(self) -> SamplesPart:
        """Everything kept, to be absorbed by another process's ``RunSamples``."""
        return SamplesPart(
            array("d", self.send_lag_ms),
            array("d", self.latency_ms),
            array("d", self.service_latency_ms),
            tuple(self._slowest),
            tuple(self._failed),
        )

    def absorb(self, part: SamplesPart) -> None:
        """Add another run's samples, within this one's capacity: the union of both."""
        room = self._capacity - len(self.send_lag_ms)
        self.send_lag_ms.extend(part.send_lag_ms[: max(0, room)])
        room = self._capacity - len(self.latency_ms)
        self.latency_ms.extend(part.latency_ms[: max(0, room)])
        self.service_latency_ms.extend(part.service_latency_ms[: max(0, room)])
        for latency_ms, trace_id in part.slowest:
            if len(self._slowest) < SLOWEST_KEPT:
                heapq.heappush(self._slowest, (latency_ms, trace_id))
            elif latency_ms > self._slowest[0][0]:
                heapq.heapreplace(self._slowest, (latency_ms, trace_id))
        failed = sorted([*self._failed, *part.failed])
        self._failed = deque(failed[-FAILED_KEPT:], maxlen=FAILED_KEPT)

    def add_send_lag(self, lag_ms: float) -> None:
        self._lags_seen += 1
        slot = self._slot(self._lags_seen)
        if slot == len(self.send_lag_ms):
            self.send_lag_ms.append(lag_ms)
        elif slot >= 0:
            self.send_lag_ms[slot] = lag_ms

    def add_latency(self, latency_ms: float, service_latency_ms: float) -> None:
        self._latencies_seen += 1
        slot = self._slot(self._latencies_seen)
        if slot == len(self.latency_ms):
            self.latency_ms.append(latency_ms)
            self.service_latency_ms.append(service_latency_ms)
        elif slot >= 0:
            self.latency_ms[slot] = latency_ms
            self.service_latency_ms[slot] = service_latency_ms

    def _slot(self, seen: int) -> int:
        """Where the ``seen``-th sample goes: appended while there is room, then (algorithm
        R) over a random kept one with probability capacity/seen, else nowhere (-1)."""
        if seen <= self._capacity:
            return seen - 1
        slot = self._rng.randrange(seen)
        return slot if slot < self._capacity else -1

    def summarise(
        self, live: LiveStats, *, planned: int, elapsed: float, send_window: float
    ) -> JobSummary:
        """The run's summary; ``achieved_rps`` is what was sent over ``send_window`` s."""
        return JobSummary(
            planned=planned,
            sent=live.sent,
            dropped=live.dropped,
            succeeded=live.succeeded,
            failed=live.failed,
            late_sends=live.late_sends,
            elapsed_seconds=elapsed,
            achieved_rps=live.sent / send_window if send_window > 0 else 0.0,
            latency_ms=percentiles(self.latency_ms),
            service_latency_ms=percentiles(self.service_latency_ms),
            send_lag_ms=percentiles(self.send_lag_ms),
            slowest=[
                SlowRequest(request_id=request_id(trace_id), latency_ms=latency)
                for latency, trace_id in sorted(self._slowest, reverse=True)
            ],
            failed_request_ids=[request_id(trace_id) for _ended, trace_id in self._failed],
        )


def request_id(trace_id: int) -> str:
    """The public request id of a trace id: its UUID form, as in ``TrafficResult``."""
    return str(uuid.UUID(int=trace_id))


def percentiles(values: Sequence[float]) -> Percentiles:
    """p50, p95 and p99 of unsorted values; each None if there are none."""
    ordered = sorted(values)
    return Percentiles(
        p50=percentile(ordered, 50), p95=percentile(ordered, 95), p99=percentile(ordered, 99)
    )


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
