"""Prometheus metrics of the traffic generator, in the app's own registry.

They answer "did the generator do what was asked?" before anyone reads the service's numbers:
target rate, requests sent or dropped at the in-flight bound, send lag and late sends, and
latency both from the intended send time (corrected for coordinated omission) and from the
actual send (what a closed-loop client would report). Latency observations carry the request's
trace id as an exemplar so a dashboard can jump from a slow bucket to its trace.

Prometheus keeps one exemplar per bucket, the latest, and a scrape shows only that one; so at
most one request per bucket per second offers its trace id. Validating and storing an exemplar
costs more than the observation itself, and thousands of requests a second would otherwise
overwrite each other's in vain.

A worker process (a job split over processes) keeps these instruments in a registry of its
own; it reports their counts (``counts()``) and the parent adds what changed (``absorb``),
bucket by bucket, so this process's series count every request of its jobs wherever it was
sent from. prometheus_client has no public way to add to a histogram other than one
observation at a time, so ``_add`` adds to the buckets it keeps; a test holds it equal to
observing the same values.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.samples import Exemplar

from simulator.telemetry.buckets import LATENCY_BUCKETS, geometric_buckets

# Send lag lives far below request latency: 10 us .. 1 s, ratio 1.25 from 100 us.
SEND_LAG_BUCKETS: Final[tuple[float, ...]] = (
    0.00001,
    0.000025,
    0.00005,
    *geometric_buckets(0.0001, 1.0, 1.25),
)
EXEMPLAR_INTERVAL_S: Final = 1.0


class ExemplarGate:
    """Admits one exemplar per histogram bucket per ``interval_s``."""

    def __init__(self, bounds: Sequence[float], interval_s: float = EXEMPLAR_INTERVAL_S) -> None:
        self._bounds = tuple(bounds)  # finite upper bounds; above the last is the +Inf bucket
        self._interval_s = interval_s
        self._next = [float("-inf")] * (len(self._bounds) + 1)

    def admits(self, value: float, now: float) -> bool:
        """Whether an observation of ``value`` at monotonic ``now`` carries an exemplar."""
        bucket = bisect_left(self._bounds, value)  # the first bound >= value, as Prometheus
        if now < self._next[bucket]:
            return False
        self._next[bucket] = now + self._interval_s
        return True


@dataclass(frozen=True, slots=True)
class HistogramCounts:
    """One histogram's cumulative bucket counts, sum and latest exemplar per bucket."""

    buckets: tuple[float, ...]
    total: float
    exemplars: tuple[Exemplar | None, ...]


@dataclass(frozen=True, slots=True)
class MetricCounts:
    """What a worker's histograms hold (its counters are its tally's counts)."""

    send_lag: HistogramCounts
    latency_intended: HistogramCounts
    latency_actual: HistogramCounts


class GeneratorMetrics:
    """The generator's instruments; label children are bound once and exist at 0 from start."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.target_rps = Gauge(
            "failure_lab_generator_target_rps",
            "Request rate the generator is asked to sustain (0 when idle).",
            registry=registry,
        )
        requests = Counter(
            "failure_lab_generator_requests",
            "Requests due to be sent: sent, or dropped because the in-flight bound was reached.",
            ["result"],
            registry=registry,
        )
        self.sent = requests.labels(result="sent")
        self.dropped = requests.labels(result="dropped")
        responses = Counter(
            "failure_lab_generator_responses",
            "Finished requests by outcome (success = HTTP 2xx).",
            ["outcome"],
            registry=registry,
        )
        self.succeeded = responses.labels(outcome="success")
        self.failed = responses.labels(outcome="failure")
        self.send_lag = Histogram(
            "failure_lab_generator_send_lag_seconds",
            "Actual minus intended send time.",
            buckets=SEND_LAG_BUCKETS,
            registry=registry,
        )
        self.late_sends = Counter(
            "failure_lab_generator_late_sends",
            "Requests sent later than the late-send threshold after their intended time.",
            registry=registry,
        )
        latency = Histogram(
            "failure_lab_generator_latency_seconds",
            "Request latency seen by the generator, from the intended or the actual send time.",
            ["basis"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.latency_intended = latency.labels(basis="intended")
        self.latency_actual = latency.labels(basis="actual")
        self._intended_exemplars = ExemplarGate(LATENCY_BUCKETS)
        self._actual_exemplars = ExemplarGate(LATENCY_BUCKETS)
        self.in_flight = Gauge(
            "failure_lab_generator_in_flight",
            "Requests sent and not yet finished.",
            registry=registry,
        )
        self.scenario_phase = Gauge(
            "failure_lab_generator_scenario_phase",
            "Scenario jobs in each phase of their load shape (peak: ramp_up, hold, ramp_down).",
            ["scenario", "phase"],
            registry=registry,
        )

    def observe_latency(
        self, intended_s: float, actual_s: float, trace_id: int, now: float
    ) -> None:
        """Latency from both bases, at monotonic ``now`` (``time.perf_counter()``).

        ``trace_id`` 0 (no client span was started) offers no exemplar.
        """
        with_intended = trace_id != 0 and self._intended_exemplars.admits(intended_s, now)
        with_actual = trace_id != 0 and self._actual_exemplars.admits(actual_s, now)
        exemplar = {"trace_id": f"{trace_id:032x}"} if with_intended or with_actual else None
        self.latency_intended.observe(intended_s, exemplar=exemplar if with_intended else None)
        self.latency_actual.observe(actual_s, exemplar=exemplar if with_actual else None)

    def counts(self) -> MetricCounts:
        return MetricCounts(
            _counts(self.send_lag), _counts(self.latency_intended), _counts(self.latency_actual)
        )

    def absorb(self, now: MetricCounts, earlier: MetricCounts | None) -> None:
        """Add what a worker's histograms counted between ``earlier`` and ``now``."""
        then = earlier
        _add(self.send_lag, now.send_lag, then.send_lag if then else None)
        _add(self.latency_intended, now.latency_intended, then.latency_intended if then else None)
        _add(self.latency_actual, now.latency_actual, then.latency_actual if then else None)


def _counts(histogram: Histogram) -> HistogramCounts:
    buckets: list[float] = []
    exemplars: list[Exemplar | None] = []
    total = 0.0
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_bucket"):
                buckets.append(sample.value)
                exemplars.append(sample.exemplar)
            elif sample.name.endswith("_sum"):
                total = sample.value
    return HistogramCounts(tuple(buckets), total, tuple(exemplars))


def _add(histogram: Histogram, now: HistogramCounts, earlier: HistogramCounts | None) -> None:
    """Add the observations counted between ``earlier`` and ``now`` to ``histogram``."""
    before = earlier.buckets if earlier is not None else (0.0,) * len(now.buckets)
    seen = earlier.exemplars if earlier is not None else (None,) * len(now.exemplars)
    buckets = histogram._buckets  # per-bucket (not cumulative) counts
    previous = 0.0
    for index, (cumulative, was) in enumerate(zip(now.buckets, before, strict=True)):
        added = (cumulative - was) - previous
        previous = cumulative - was
        if added:
            buckets[index].inc(added)
        exemplar = now.exemplars[index]
        if exemplar is not None and exemplar != seen[index]:
            buckets[index].set_exemplar(exemplar)
    if now.total != (earlier.total if earlier is not None else 0.0):
        histogram._sum.inc(now.total - (earlier.total if earlier is not None else 0.0))
