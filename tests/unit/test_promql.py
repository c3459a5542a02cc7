"""The embedded metrics engine gives the numbers Prometheus gives, bit for bit.

Three layers: hand-derived tables for ``extrapolated_rate`` and ``bucket_quantile`` (windows
and intervals are powers of two where possible, so every expected value is exact); the
``SampleRing`` on a real ``CollectorRegistry`` with a scripted clock; and random series (counters
with resets, histograms with the project's buckets, series appearing, vanishing and missing
from single snapshots) replayed both into a ``SampleRing`` and into ``promtool test rules``,
whose expected samples are the ring's answers. promtool is the pinned 3.13.1 (``make
backends``), the Prometheus of the stack; without ``fuzzy_compare`` it compares expected and
actual samples with ``cmp.Equal``: no tolerance, so a pass means equal floats. NaN is never
equal to itself there, so NaN answers are checked as ``count(E != E)``. The edges where
Prometheus 3 differs from 2.x are pinned down one by one in ``test_promql_edges.py``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString as _float_to_go_string

from exporter.promql import bucket_quantile, extrapolated_rate, range_seconds
from exporter.sampling import Result, SampleRing, scalar
from simulator.telemetry.buckets import LATENCY_BUCKETS
from tests.support.promtool import run_rule_tests as run_promtool

INF = math.inf


def le_label(bound: float) -> str:
    """An ``le`` label value as prometheus_client writes it."""
    text: str = _float_to_go_string(bound)  # type: ignore[no-untyped-call]
    return text


BOUNDS = (*LATENCY_BUCKETS, INF)

# --- extrapolated_rate ----------------------------------------------------------------------

Points = list[tuple[float, float]]
WINDOW_START: Points = [(0, 0), (8, 16), (16, 24), (24, 32), (32, 40)]
RESETS: Points = [(0, 5), (8, 8), (16, 2), (24, 1), (32, 4)]

RATE_CASES: list[tuple[str, Points, float, float, bool, bool, float | None]] = [
    # id, points, range start, range end, is_counter, is_rate, expected
    # The range (0, 32] leaves out the sample at 0 s: 16 -> 40 from 8 s, the 8 s gap (under
    # 8.8) extrapolated over, the zero point (16 s back) farther: 24 * 32/24. (2.x: 40.)
    ("sample at the range start left out", WINDOW_START, 0, 32, True, False, 32.0),
    ("sample at the range start left out, rate", WINDOW_START, 0, 32, True, True, 1.0),
    ("two points, one at the range start", [(0, 1), (8, 2)], 0, 8, True, True, None),
    # Gaps of 8 s at both ends, under 1.1 x the 8 s interval: extrapolated over fully.
    ("both gaps extrapolated", [(8, 10), (16, 18), (24, 26)], 0, 32, True, False, 32.0),
    ("both gaps extrapolated, rate", [(8, 10), (16, 18), (24, 26)], 0, 32, True, True, 1.0),
    # Gaps of 16 s at both ends, over 8.8 s: half an interval (4 s) at each end (the zero
    # point, 10 s back, is farther), 16 s in all, twice the sampled 8 s.
    ("both gaps limited", [(16, 10), (24, 18)], 0, 64, True, False, 16.0),
    ("both gaps limited, rate", [(16, 10), (24, 18)], 0, 64, True, True, 0.25),
    # Only 8 s and 16 s are in (0, 20]: 8 s back (the zero point is as far) and 4 s forward.
    ("end gap extrapolated", [(0, 0), (8, 8), (16, 16)], 0, 20, True, False, 20.0),
    ("end gap extrapolated, rate", [(0, 0), (8, 8), (16, 16)], 0, 20, True, True, 1.0),
    # 1 at 8 s rising 0.5/s: zero at 6 s, so 26 s of growth to 32 s, not 32 s.
    ("zero clamp", [(8, 1), (16, 5), (24, 9)], 0, 32, True, False, 13.0),
    ("zero clamp, rate", [(8, 1), (16, 5), (24, 9)], 0, 32, True, True, 0.40625),
    ("no zero clamp for gauges", [(8, 1), (16, 5), (24, 9)], 0, 32, False, False, 16.0),
    ("zero clamp at first value 0", [(8, 0), (16, 4), (24, 8), (32, 12)], 0, 32, True, False, 12.0),
    # Start gap 16 s, over 8.8 s: half an interval (4 s) first, then the zero point (6 s back)
    # is not shorter: 8 * 12/8. (2.x cut to the zero point first, then extrapolated 6 s: 14.)
    ("half an interval before the zero point", [(16, 6), (24, 14)], 0, 24, True, False, 12.0),
    # 5 -> 8, reset to 2, reset to 1, -> 4: -1 + 8 + 2 = 9, the 8 s gap before 0 s extrapolated
    # over (the zero point is 17.8 s back): 9 * 40/32 over the 40 s range.
    ("counter resets", RESETS, -8, 32, True, False, 11.25),
    ("counter resets, rate", RESETS, -8, 32, True, True, 0.28125),
    ("gauge decrease", RESETS, -8, 32, False, False, -1.25),
    ("no change", [(0, 7), (16, 7), (32, 7)], 0, 32, True, True, 0.0),
    # Sub-second timestamps: a 0.5 s gap under 1.1 x 1 s, extrapolated over.
    ("milliseconds", [(0.5, 3), (1.5, 4), (2.5, 5)], 0, 2.5, True, False, 2.5),
    ("milliseconds, rate", [(0.5, 3), (1.5, 4), (2.5, 5)], 0, 2.5, True, True, 1.0),
    ("one point", [(8, 1)], 0, 32, True, True, None),
    ("no points", [], 0, 32, True, True, None),
]


@pytest.mark.parametrize(
    ("points", "start", "end", "is_counter", "is_rate", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in RATE_CASES],
)
def test_extrapolated_rate(
    points: Points,
    start: float,
    end: float,
    is_counter: bool,
    is_rate: bool,
    expected: float | None,
) -> None:
    assert extrapolated_rate(points, start, end, is_counter, is_rate) == expected


@pytest.mark.parametrize(
    ("gap", "expected"),
    [
        pytest.param(10.5, 30.5, id="under 1.1 intervals: whole gap"),
        pytest.param(11.0, 25.0, id="exactly 1.1 intervals: half an interval"),
        pytest.param(12.0, 25.0, id="over 1.1 intervals: half an interval"),
    ],
)
def test_extrapolation_threshold(gap: float, expected: float) -> None:
    """A gap is extrapolated over only if strictly shorter than 1.1 average intervals
    (10 s * 1.1 rounds to exactly 11.0); otherwise half an interval (5 s) is added."""
    points = [(gap, 100.0), (gap + 10, 110.0), (gap + 20, 120.0)]
    assert extrapolated_rate(points, 0, gap + 20, False, False) == expected


def test_range_seconds_as_go_duration() -> None:
    assert range_seconds(30_000) == 30.0
    assert range_seconds(1_500) == 1.5
    assert range_seconds(100) == 0.1


def test_points_must_move_forward_in_time() -> None:
    with pytest.raises(ValueError, match="increasing time order"):
        extrapolated_rate([(5, 1), (5, 2)], 0, 10, True, True)


# --- bucket_quantile ------------------------------------------------------------------------

Buckets = list[tuple[float, float]]
B = [(1.0, 10.0), (2.0, 20.0), (4.0, 40.0), (INF, 40.0)]
SLIGHTLY = 10.000000000001

QUANTILE_CASES: list[tuple[str, float, Buckets, float]] = [
    ("inside second bucket", 0.5, B, 2.0),
    ("top of lowest bucket", 0.25, B, 1.0),
    ("middle of a bucket", 0.75, B, 3.0),
    ("lowest bucket starts at 0", 0.1, B, 0.4),
    ("q=1", 1.0, B, 4.0),
    ("q=0", 0.0, B, 0.0),
    ("unsorted input", 0.75, list(reversed(B)), 3.0),
    ("rank in +Inf: highest finite bound", 0.9, [(1.0, 10.0), (2.0, 20.0), (INF, 40.0)], 2.0),
    ("same bounds merged", 0.25, [(1.0, 5.0), (1.0, 5.0), (2.0, 20.0), (INF, 20.0)], 0.5),
    # le=2 counts 8 < 10: raised to 10, so rank 10 is reached in the lowest bucket.
    ("monotonicity fix", 0.5, [(1.0, 10.0), (2.0, 8.0), (4.0, 20.0), (INF, 20.0)], 1.0),
    # 1e-12 over 10 is float rounding (relative 5e-14 < 1e-12): taken as 10, so every count
    # is 10 and q=1 is reached at the top of the lowest bucket. (2.x: 2, in the second.)
    ("rounding-size excess ignored", 1.0, [(1.0, 10.0), (2.0, SLIGHTLY), (INF, SLIGHTLY)], 1.0),
    ("excess over the tolerance kept", 1.0, [(1.0, 10.0), (2.0, 10.0001), (INF, 10.0001)], 2.0),
    ("negative lowest bound returned", 0.2, [(-1.0, 5.0), (0.0, 10.0), (INF, 10.0)], -1.0),
    ("above a negative bound", 0.75, [(-1.0, 5.0), (0.0, 10.0), (INF, 10.0)], -0.5),
    ("lowest bound 0 returned", 0.25, [(0.0, 4.0), (1.0, 8.0), (INF, 8.0)], 0.0),
    ("above a 0 bound", 0.75, [(0.0, 4.0), (1.0, 8.0), (INF, 8.0)], 0.5),
    ("q<0", -0.1, B, -INF),
    ("q>1", 1.1, B, INF),
    ("q<0 without buckets", -0.1, [], -INF),
    ("q>1 without buckets", 1.1, [], INF),
]

NAN_QUANTILE_CASES: list[tuple[str, float, Buckets]] = [
    ("q NaN", math.nan, B),
    ("no buckets", 0.5, []),
    ("only +Inf", 0.5, [(INF, 5.0)]),
    ("no observations", 0.5, [(1.0, 0.0), (INF, 0.0)]),
    ("no +Inf bucket", 0.5, [(1.0, 5.0), (2.0, 10.0)]),
    ("q=0 with an empty lowest bucket: 0/0", 0.0, [(1.0, 0.0), (2.0, 5.0), (INF, 5.0)]),
]


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in QUANTILE_CASES],
)
def test_bucket_quantile(q: float, buckets: Buckets, expected: float) -> None:
    assert bucket_quantile(q, buckets) == expected


@pytest.mark.parametrize(
    ("q", "buckets"), [pytest.param(*case[1:], id=case[0]) for case in NAN_QUANTILE_CASES]
)
def test_bucket_quantile_nan(q: float, buckets: Buckets) -> None:
    assert math.isnan(bucket_quantile(q, buckets))


# --- SampleRing on a real registry ----------------------------------------------------------


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_and_increase_of_a_counter() -> None:
    registry = CollectorRegistry()
    counter = Counter("jobs", "Jobs.", ["route"], registry=registry)
    clock = FakeClock(1000.0)
    ring = SampleRing(registry, 100, clock)
    for _ in range(33):  # 1000 s .. 1032 s
        counter.labels("a").inc(2)
        counter.labels("b").inc(1)
        ring.sample()
        clock.now += 1
    assert ring.rate("jobs_total", 32, by=("route",)) == {("a",): 2.0, ("b",): 1.0}
    assert ring.increase("jobs_total", 32, by=("route",)) == {("a",): 64.0, ("b",): 32.0}
    assert ring.rate("jobs_total", 32) == {(): 3.0}
    assert ring.rate("jobs_total", 32, {"route": "b"}) == {(): 1.0}
    assert scalar(ring.increase("jobs_total", 16, {"route": "a"})) == 32.0
    # A window ending earlier, and one reaching 8 s before the first snapshot: over 1.1
    # intervals, so half an interval is added, 16 * 8.5/8 (Prometheus 3 compares the gap with
    # the threshold first; 2.x cut it to the zero point at 999 s first and added 1 s: 18).
    assert ring.increase("jobs_total", 8, {"route": "a"}, at=1016) == {(): 16.0}
    assert ring.increase("jobs_total", 16, {"route": "a"}, at=1008) == {(): 17.0}
    assert ring.rate("jobs_total", 32, {"route": "c"}) == {}
    assert ring.rate("unknown_total", 32) == {}


def test_range_is_left_open() -> None:
    """Prometheus 3 selects ``(at - window, at]``: a sample at exactly ``at - window`` is not
    in the range (2.x counted it), one a millisecond later is."""
    registry = CollectorRegistry()
    counter = Counter("jobs", "Jobs.", registry=registry)
    clock = FakeClock(10.0)
    ring = SampleRing(registry, 10, clock)
    for amount in (1, 1, 1, 8):  # 1 at 10 s, 2 at 11 s, 3 at 12 s, 11 at 13 s
        counter.inc(amount)
        ring.sample()
        clock.now += 1
    # Without 11 s: 11 - 3 over 1 s, extrapolated back to the zero point at 11.625 s: 11.
    # (2.x, with 11 s: 11 - 2 over the whole 2 s window, 9.)
    assert ring.increase("jobs_total", 2, at=13) == {(): 11.0}
    # A millisecond more takes 11 s in: 9 over 2 s, plus the 1 ms gap at the start.
    assert ring.increase("jobs_total", 2.001, at=13) == {(): 9 * ((2.0 + 0.001) / 2.0)}


def _exposed(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """Sample name and ``le`` label to value, from one collection."""
    return {
        (sample.name, sample.labels.get("le", "")): sample.value
        for family in registry.collect()
        for sample in family.samples
    }


def test_ring_equals_direct_computation() -> None:
    registry = CollectorRegistry()
    counter = Counter("work", "Work.", registry=registry)
    histogram = Histogram("took_seconds", "Took.", buckets=LATENCY_BUCKETS, registry=registry)
    rng = random.Random(7)
    now_ms = 5_000_000
    clock = FakeClock(now_ms / 1000)
    ring = SampleRing(registry, 200, clock)
    history: list[tuple[int, dict[tuple[str, str], float]]] = []
    for _ in range(120):
        counter.inc(rng.random() * 10)
        for _ in range(rng.randint(0, 20)):
            histogram.observe(rng.lognormvariate(math.log(0.05), 1.2))
        now_ms += rng.choice((900, 1000, 1100, 1250))  # irregular intervals
        clock.now = now_ms / 1000
        ring.sample()
        history.append((now_ms, _exposed(registry)))

    end_ms = now_ms
    for window in (10, 30, 60):
        inside = [(t / 1000, values) for t, values in history if end_ms - window * 1000 < t]
        start, end = end_ms / 1000 - window, end_ms / 1000

        rates = {
            key: extrapolated_rate([(t, v[key]) for t, v in inside], start, end, True, True)
            for key in inside[0][1]
        }
        assert ring.rate("work_total", window) == {(): rates["work_total", ""]}
        buckets = []
        for bound in BOUNDS:
            rate = rates["took_seconds_bucket", le_label(bound)]
            assert rate is not None
            buckets.append((bound, rate))
        for q in (0.5, 0.95, 0.99):
            expected = bucket_quantile(q, buckets)
            assert ring.histogram_quantile(q, "took_seconds", window) == {(): expected}
            assert 0.0 < expected < LATENCY_BUCKETS[-1]


def test_capacity_and_out_of_order_snapshots() -> None:
    registry = CollectorRegistry()
    counter = Counter("jobs", "Jobs.", registry=registry)
    clock = FakeClock(0.0)
    ring = SampleRing(registry, 5, clock)
    for _ in range(8):  # 0 s .. 7 s, values 1 .. 8
        counter.inc()
        assert ring.sample()
        clock.now += 1
    assert len(ring) == 5
    assert ring.capacity == 5
    assert ring.newest == 7.0
    # Only 3 s .. 7 s are kept: a 7 s window sees 4 s of data, values 4 .. 8, the zero point
    # (at -1 s) too far to matter: 4 s plus half an interval at the start.
    assert ring.increase("jobs_total", 7) == {(): 4.5}
    clock.now = 7.0004  # the same millisecond as the newest snapshot
    assert not ring.sample()
    clock.now = 6.5
    assert not ring.sample()
    assert len(ring) == 5
    assert ring.newest == 7.0


def test_removed_series_goes_stale_and_returns_as_a_reset() -> None:
    registry = CollectorRegistry()
    counter = Counter("jobs", "Jobs.", ["route"], registry=registry)
    gauge = Gauge("depth", "Depth.", ["route"], registry=registry)
    clock = FakeClock(100.0)
    ring = SampleRing(registry, 50, clock)

    def step() -> None:
        ring.sample()
        clock.now += 1

    for _ in range(4):  # a: 10, 20, 30, 40 at 100..103 s
        counter.labels("a").inc(10)
        gauge.labels("a").set(3)
        gauge.labels("b").set(4)
        step()
    counter.remove("a")
    gauge.remove("a")
    step()  # 104 s: neither present
    assert ring.latest("depth", by=("route",)) == {("b",): 4.0}
    assert ring.latest("jobs_total") == {}
    # The range still has the four samples before the series vanished.
    assert ring.increase("jobs_total", 4) == {(): 40.0}
    counter.labels("a").inc(5)  # 105 s: back, from 0
    step()
    counter.labels("a").inc(5)  # 106 s
    step()
    # (100 s, 106 s] holds 20 30 40 (gone) 5 10: 10 - 20, plus 40 at the reset, 30 over 5 s;
    # the 1 s gap back to the range start is extrapolated over: 30 * 6/5.
    assert ring.increase("jobs_total", 6) == {(): 36.0}
    assert ring.latest("jobs_total") == {(): 10.0}
    assert ring.latest("depth", at=103.5) == {(): 7.0}
    assert ring.latest("depth", at=99) == {}
    assert ring.latest("depth", at=106 + 301) == {}


def test_matchers_and_grouping() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("temp", "Temp.", ["site", "room"], registry=registry)
    plain = Gauge("temp2", "Temp without labels.", registry=registry)
    ring = SampleRing(registry, 3, FakeClock())
    gauge.labels("x", "1").set(1)
    gauge.labels("x", "2").set(2)
    gauge.labels("y", "1").set(4)
    gauge.labels("y", "").set(8)
    plain.set(16)
    ring.sample()
    assert ring.latest("temp", by=("site",)) == {("x",): 3.0, ("y",): 12.0}
    assert ring.latest("temp", {"room": "1"}, by=("site", "room")) == {
        ("x", "1"): 1.0,
        ("y", "1"): 4.0,
    }
    assert ring.latest("temp", {"room": ""}) == {(): 8.0}
    assert ring.latest("temp2", {"site": ""}) == {(): 16.0}
    assert ring.latest("temp2", by=("site",)) == {("",): 16.0}
    assert ring.latest("temp_created") == {}
    assert scalar(ring.latest("temp", {"site": "y"})) == 12.0
    assert scalar(ring.latest("temp", {"site": "z"})) is None
    with pytest.raises(ValueError, match="at most one series"):
        scalar(ring.latest("temp", by=("site",)))


def test_created_series_are_not_kept() -> None:
    registry = CollectorRegistry()
    Counter("jobs", "Jobs.", registry=registry).inc()
    Histogram("took_seconds", "Took.", buckets=(1.0,), registry=registry).observe(0.5)
    ring = SampleRing(registry, 3, FakeClock())
    ring.sample()
    # jobs_total; took_seconds_bucket x 2, _count, _sum.
    assert ring.series_count == 5
    assert ring.latest("jobs_created") == {}
    assert ring.latest("took_seconds_count") == {(): 1.0}


async def test_run_samples_on_whole_intervals_until_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On the real clock: the loop sleeps to the next whole interval from wherever a slow
    sample left it, so samples stay on the grid; a failing collector is logged, not fatal."""
    interval, slow, late = 1.0, 0.3, 0.25
    registry = CollectorRegistry()
    Counter("jobs", "Jobs.", registry=registry).inc()
    collected: list[float] = []
    three_kept = asyncio.Event()  # the failed collection and three good ones

    class SlowFailsOnce:
        def collect(self) -> Iterator[Metric]:
            collected.append(time.time())
            time.sleep(slow)  # a slow collection holds the loop, as a real one would
            if len(collected) == 1:
                raise RuntimeError("collector broke")
            if len(collected) == 4:
                three_kept.set()
            return iter(())

    registry.register(SlowFailsOnce())
    ring = SampleRing(registry, 10)
    # Start half-way through an interval: only a loop that aims at whole intervals gets back
    # on the grid, and only one that aims after the slow sample stays there.
    await asyncio.sleep(interval * 1.5 - time.time() % interval)
    with caplog.at_level(logging.ERROR, logger="exporter.sampling"):
        task = asyncio.create_task(ring.run(interval))
        await asyncio.wait_for(three_kept.wait(), timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert task.cancelled()
    assert "sampling the metrics registry failed" in caplog.text
    first, *kept = collected
    assert len(kept) == len(ring) == 3
    ticks = [math.floor(at / interval) for at in kept]
    assert ticks == [ticks[0], ticks[0] + 1, ticks[0] + 2]
    assert ticks[0] == math.floor(first / interval) + 1
    for at, tick in zip(kept, ticks, strict=True):
        assert 0 <= at - tick * interval < late
    assert ring.newest == pytest.approx(kept[-1], abs=0.01)


def test_cost_of_one_sample_on_a_project_sized_registry() -> None:
    """Prints the time of one ``sample()`` on about 2,000 series; asserts only the count."""
    registry = CollectorRegistry()
    requests = Counter("req", "Requests.", ["endpoint", "method", "status"], registry=registry)
    duration = Histogram(
        "req_seconds",
        "Duration.",
        ["endpoint", "method"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    rng = random.Random(3)
    for endpoint in range(8):
        for method in ("GET", "POST"):
            for _ in range(50):
                duration.labels(f"/e{endpoint}", method).observe(rng.lognormvariate(-3.0, 1.0))
            for status in ("200", "404", "429", "500", "503"):
                requests.labels(f"/e{endpoint}", method, status).inc(rng.randint(1, 9))
    filler = Gauge("filler", "Padding to about 2,000 series.", ["i"], registry=registry)
    for i in range(100):
        filler.labels(str(i)).set(i)
    clock = FakeClock(0.0)
    ring = SampleRing(registry, 60, clock)
    timings = []
    for _ in range(60):
        clock.now += 1
        started = time.perf_counter()
        ring.sample()
        timings.append(time.perf_counter() - started)
    assert ring.series_count == 16 * (len(LATENCY_BUCKETS) + 1 + 2) + 80 + 100
    first, steady = timings[0], timings[1:]
    print(
        f"\nsample() on {ring.series_count} series: first {first * 1e3:.2f} ms (new columns), "
        f"then median {statistics.median(steady) * 1e3:.2f} ms, max {max(steady) * 1e3:.2f} ms"
    )


# --- exactness against promtool -------------------------------------------------------------

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
STEPS = 100
"""Samples at 0 s .. 99 s, one a second, as promtool lays out ``interval: 1s`` series."""


@dataclass
class Family:
    name: str
    kind: str
    series: dict[SeriesKey, list[float | None]] = field(default_factory=dict)


@dataclass(eq=False)
class Replay:
    """A collector exposing, at ``step``, the generated value of every present series."""

    families: list[Family]
    step: int = 0

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            metric = Metric(family.name, "Generated.", family.kind)
            for (name, labels), values in family.series.items():
                value = values[self.step]
                if value is not None:
                    metric.add_sample(name, dict(labels), value)
            yield metric


def _counter(rng: random.Random, start: int, stop: int) -> list[float | None]:
    values: list[float | None] = [None] * STEPS
    value = float(rng.randint(0, 50))
    for step in range(start, stop):
        if rng.random() < 0.04:
            value = float(rng.randint(0, 3))
        else:
            value += rng.choice((0, 1, 2, 3, 5, 8, 13))
            if rng.random() < 0.2:
                value += rng.random() * 2
        if rng.random() >= 0.08:  # else missing from this snapshot
            values[step] = value
    return values


def _histogram(
    rng: random.Random, name: str, route: str, observe_until: int, bucket_gaps: float
) -> dict[SeriesKey, list[float | None]]:
    """Cumulative bucket counts of a histogram observing up to 12 values a step until
    ``observe_until``, reset now and then, missing as a whole or bucket by bucket."""
    counts = [0.0] * len(BOUNDS)
    per_bucket: list[list[float | None]] = [[None] * STEPS for _ in BOUNDS]
    for step in range(STEPS):
        if rng.random() < 0.02:
            counts = [0.0] * len(BOUNDS)
        for _ in range(rng.randint(0, 12) if step < observe_until else 0):
            observed = rng.lognormvariate(math.log(0.05), 1.5)
            for i, bound in enumerate(BOUNDS):
                if observed <= bound:
                    counts[i] += 1
        if rng.random() < 0.05:
            continue  # the whole histogram missing from this snapshot
        for i, count in enumerate(counts):
            if rng.random() >= bucket_gaps:
                per_bucket[i][step] = count
    return {
        (f"{name}_bucket", (("le", le_label(bound)), ("route", route))): values
        for bound, values in zip(BOUNDS, per_bucket, strict=True)
    }


def generate(seed: int) -> list[Family]:
    rng = random.Random(seed)
    requests = Family("lab_requests", "counter")
    spans = {  # b/500 appears at 25 s, a/500 is gone from 80 s
        ("a", "200"): (0, STEPS),
        ("a", "500"): (0, 80),
        ("b", "200"): (0, STEPS),
        ("b", "500"): (25, STEPS),
    }
    for (route, code), (start, stop) in spans.items():
        key = ("lab_requests_total", (("code", code), ("route", route)))
        requests.series[key] = _counter(rng, start, stop)
    durations = Family("lab_duration_seconds", "histogram")
    for route, gaps in (("a", 0.0), ("b", 0.01)):
        durations.series.update(_histogram(rng, durations.name, route, STEPS, gaps))
    idle = Family("lab_idle_seconds", "histogram")
    idle.series.update(_histogram(rng, idle.name, "a", 3, 0.0))
    return [requests, durations, idle]


Query = Callable[[SampleRing, float], Result]
H = "lab_duration_seconds"
R = "lab_requests_total"
BOTH = ("route", "code")


def ask(method: str, *args: Any, **kwargs: Any) -> Query:
    """A ring query with everything but its end time fixed."""

    def query(ring: SampleRing, at: float) -> Result:
        answer: Result = getattr(ring, method)(*args, at=at, **kwargs)
        return answer

    return query


# No sum here adds more than two series: promtool creates the input series in random order
# (a Go map). Prometheus 3 sums with compensation, which makes the order matter far less, but
# with three or more terms it can still show in the last bit. test_promql_edges.py checks a
# sum of three on values whose compensated sum is the same in every order.
EXPRESSIONS: list[tuple[str, tuple[str, ...], Query]] = [
    (f"rate({R}[30s])", BOTH, ask("rate", R, 30, by=BOTH)),
    (f"rate({R}[1500ms])", BOTH, ask("rate", R, 1.5, by=BOTH)),
    (f"increase({R}[45s])", BOTH, ask("increase", R, 45, by=BOTH)),
    (f"sum by (route) (rate({R}[1m]))", ("route",), ask("rate", R, 60, by=("route",))),
    (f'sum(increase({R}{{route="a"}}[20s]))', (), ask("increase", R, 20, {"route": "a"})),
    (
        f'sum by (code) (rate({R}{{route="b"}}[15s]))',
        ("code",),
        ask("rate", R, 15, {"route": "b"}, ("code",)),
    ),
    (f"sum by (route) ({R})", ("route",), ask("latest", R, by=("route",))),
    (f'sum({R}{{code="500"}})', (), ask("latest", R, {"code": "500"})),
    (
        f'histogram_quantile(0.95, sum by (le) (rate({H}_bucket{{route="a"}}[30s])))',
        (),
        ask("histogram_quantile", 0.95, H, 30, {"route": "a"}),
    ),
    (
        f"histogram_quantile(0.99, sum by (le, route) (rate({H}_bucket[10s])))",
        ("route",),
        ask("histogram_quantile", 0.99, H, 10, by=("route",)),
    ),
    (
        f"histogram_quantile(0.5, sum by (le) (rate({H}_bucket[30s])))",
        (),
        ask("histogram_quantile", 0.5, H, 30),
    ),
    (
        f'histogram_quantile(0, sum by (le) (rate({H}_bucket{{route="b"}}[30s])))',
        (),
        ask("histogram_quantile", 0, H, 30, {"route": "b"}),
    ),
    (
        f"histogram_quantile(1, sum by (le) (rate({H}_bucket[5s])))",
        (),
        ask("histogram_quantile", 1, H, 5),
    ),
    (
        f"histogram_quantile(1.5, sum by (le) (rate({H}_bucket[30s])))",
        (),
        ask("histogram_quantile", 1.5, H, 30),
    ),
    (
        f"histogram_quantile(-0.5, sum by (le) (rate({H}_bucket[30s])))",
        (),
        ask("histogram_quantile", -0.5, H, 30),
    ),
    (
        "histogram_quantile(0.9, sum by (le) (rate(lab_idle_seconds_bucket[30s])))",
        (),
        ask("histogram_quantile", 0.9, "lab_idle_seconds", 30),
    ),
    (
        f'increase({H}_bucket{{route="a",le="+Inf"}}[30s])',
        ("route", "le"),
        ask("increase", f"{H}_bucket", 30, {"route": "a", "le": "+Inf"}, ("route", "le")),
    ),
    (
        f'sum by (le) (rate({H}_bucket{{route="b"}}[10s]))',
        ("le",),
        ask("rate", f"{H}_bucket", 10, {"route": "b"}, ("le",)),
    ),
]
EVAL_TIMES_MS = (
    *(500, 10_000, 26_000, 30_000, 30_500, 45_000, 47_123, 60_000, 72_999),
    *(80_000, 85_500, 99_000, 105_000, 110_000),
)
"""Single point, windows reaching before the first sample, aligned and unaligned ends,
a series that stopped, and ends after the last sample."""


def _values_text(values: Sequence[float | None]) -> str:
    seen = False
    words = []
    for value in values:
        if value is not None:
            seen = True
            words.append(repr(value))
        else:
            words.append("stale" if seen else "_")  # a series gone from a scrape is stale
    return " ".join(words)


def _series_text(key: SeriesKey) -> str:
    name, labels = key
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"


def _samples(result: Result, labels: Sequence[str]) -> list[dict[str, Any]]:
    samples = []
    for key, value in result.items():
        pairs = ",".join(f'{k}="{v}"' for k, v in zip(labels, key, strict=True) if v)
        samples.append({"labels": "{" + pairs + "}", "value": value})
    return samples


def expression_tests(ring: SampleRing) -> list[dict[str, Any]]:
    """promtool test cases whose expected samples are the ring's answers."""
    tests = []
    for expr, labels, query in EXPRESSIONS:
        for at_ms in EVAL_TIMES_MS:
            result = query(ring, at_ms / 1000)
            eval_time = f"{at_ms}ms"
            nans = [key for key, value in result.items() if math.isnan(value)]
            if not nans:
                expected = _samples(result, labels)
                tests.append({"expr": expr, "eval_time": eval_time, "exp_samples": expected})
                continue
            numbers = {key: value for key, value in result.items() if not math.isnan(value)}
            count = [{"labels": "{}", "value": len(nans)}]
            tests.append(
                {
                    "expr": f"count(({expr}) != ({expr}))",
                    "eval_time": eval_time,
                    "exp_samples": count,
                }
            )
            tests.append(
                {
                    "expr": f"({expr}) == ({expr})",
                    "eval_time": eval_time,
                    "exp_samples": _samples(numbers, labels),
                }
            )
    return tests


def unit_test_file(families: Sequence[Family], tests: list[dict[str, Any]]) -> dict[str, Any]:
    input_series = [
        {"series": _series_text(key), "values": _values_text(values)}
        for family in families
        for key, values in family.series.items()
    ]
    return {
        "rule_files": [],
        # promtool loads input samples only up to the evaluation step at or before the
        # largest eval_time: 1s steps load them all.
        "evaluation_interval": "1s",
        "tests": [{"interval": "1s", "input_series": input_series, "promql_expr_test": tests}],
    }


def replayed_ring(families: list[Family]) -> SampleRing:
    replay = Replay(families)
    registry = CollectorRegistry()
    registry.register(replay)
    ring = SampleRing(registry, STEPS, lambda: float(replay.step))
    for step in range(STEPS):
        replay.step = step
        assert ring.sample()
    return ring


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ring_matches_promtool_exactly(seed: int, tmp_path: Path) -> None:
    families = generate(seed)
    ring = replayed_ring(families)
    tests = expression_tests(ring)
    checked = sum(len(test["exp_samples"]) for test in tests)
    assert checked > 1000  # the windows are not all empty
    outcome = run_promtool(tmp_path / "exact.yml", unit_test_file(families, tests))
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    assert "SUCCESS" in outcome.stdout


def test_promtool_fails_on_a_value_one_ulp_off(tmp_path: Path) -> None:
    families = generate(1)
    ring = replayed_ring(families)
    expr, labels, query = next(e for e in EXPRESSIONS if e[0].startswith("histogram_quantile(0.95"))
    [(key, value)] = query(ring, 60.0).items()
    good = {"expr": expr, "eval_time": "60s", "exp_samples": _samples({key: value}, labels)}
    wrong = math.nextafter(value, INF)
    bad = {"expr": expr, "eval_time": "60s", "exp_samples": _samples({key: wrong}, labels)}
    assert run_promtool(tmp_path / "good.yml", unit_test_file(families, [good])).returncode == 0
    outcome = run_promtool(tmp_path / "bad.yml", unit_test_file(families, [bad]))
    assert outcome.returncode != 0
    assert "FAILED" in outcome.stdout + outcome.stderr
    assert "histogram_quantile(0.95" in outcome.stdout + outcome.stderr
