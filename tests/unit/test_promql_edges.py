"""The edges where Prometheus 3 computes differently from 2.x, one test each.

Each edge is asserted twice: against a value derived by hand in the test (with the value 2.x
gave beside it, so the test shows what changed), and against promtool 3.13.1 evaluating the
same samples, which accepts only the exact float. The embedded engine is driven through a
``SampleRing`` on a real registry with a scripted clock whose snapshots fall where promtool
puts its input samples (0 s, then one per interval).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from exporter.promql import bucket_quantile, sum_by
from exporter.sampling import SampleRing, scalar
from tests.support.promtool import assert_promtool_agrees


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def counter_ring(values: Sequence[float | None], interval: float = 1.0) -> SampleRing:
    """A ring that sampled counter ``jobs_total`` at 0 s, ``interval``, ... holding ``values``
    (None: the counter did not exist yet)."""
    registry = CollectorRegistry()
    counter = Counter("jobs", "Jobs.", registry=registry)
    clock = Clock()
    ring = SampleRing(registry, len(values) + 1, clock)
    previous = 0.0
    for step, value in enumerate(values):
        clock.now = step * interval
        if value is None:
            continue
        counter.inc(value - previous)
        previous = value
        assert ring.sample()
    return ring


def promtool_values(values: Sequence[float | None]) -> str:
    return " ".join("_" if value is None else repr(value) for value in values)


def test_a_sample_exactly_at_the_window_start_is_left_out(tmp_path: Path) -> None:
    """``(t - W, t]``: 2 at 1 s is not in a 2 s window ending at 3 s, but is in a 2.001 s one."""
    values = [1.0, 2.0, 3.0, 11.0]
    ring = counter_ring(values)
    # 11 - 3 over 1 s, extrapolated back 1 s but only to the zero point 0.375 s before 2 s:
    # 8 * 1.375. (2.x took 1 s in: 11 - 2 over the whole window, 9.)
    assert scalar(ring.increase("jobs_total", 2, at=3)) == 11.0
    # 1 s to 3 s: 9 over 2 s, plus the 1 ms from the range start to the sample at 1 s.
    wider = 9 * ((2.0 + 0.001) / 2.0)
    assert scalar(ring.increase("jobs_total", 2.001, at=3)) == wider
    assert_promtool_agrees(
        tmp_path / "start.yml",
        {"jobs_total": promtool_values(values)},
        [("increase(jobs_total[2s])", 3000, 11.0), ("increase(jobs_total[2001ms])", 3000, wider)],
    )


def test_a_burst_that_ended_inside_the_window(tmp_path: Path) -> None:
    """2 requests a second for 8 s, then none; ``rate(...[12s])`` 4 s after the burst.

    The window (0 s, 12 s] leaves out the sample at 0 s: it sees 2 -> 16, 14 over 11 s, and
    extrapolates over the 1 s gap at the start (under 1.1 intervals; the zero point, 1.57 s
    back, is farther): 14 * 12/11 over 12 s, 1.273 req/s. Prometheus 2 took the sample at 0 s
    in: 16 over the whole 12 s, 1.333.
    """
    values = [float(min(2 * second, 16)) for second in range(13)]
    ring = counter_ring(values)
    expected = 14 * ((11.0 + 1.0 + 0.0) / 11.0 / 12.0)
    rate = scalar(ring.rate("jobs_total", 12, at=12))
    assert rate == expected
    assert round(rate, 3) == 1.273
    assert math.isclose(rate, 14 / 11, rel_tol=1e-15)
    assert_promtool_agrees(
        tmp_path / "burst.yml",
        {"jobs_total": promtool_values(values)},
        [("rate(jobs_total[12s])", 12_000, expected)],
    )


def test_a_long_start_gap_takes_half_an_interval_before_the_zero_point(tmp_path: Path) -> None:
    """A counter first seen at 16 s (6), then at 24 s (14), sampled every 8 s.

    Over a 24 s window the 16 s gap at the start is over 1.1 intervals (8.8 s), so half an
    interval (4 s) is added; the zero point, 6 s back, is not shorter: 8 * 12/8. Prometheus 2
    cut the gap to the zero point first and then found 6 s under 8.8 s: 8 * 14/8 = 14. A gap
    of 8.5 s is under the threshold, and there the zero point still cuts it: 14 in both.
    """
    values = [None, None, 6.0, 14.0]
    ring = counter_ring(values, interval=8.0)
    assert scalar(ring.increase("jobs_total", 24, at=24)) == 12.0
    assert scalar(ring.increase("jobs_total", 16.5, at=24)) == 14.0
    assert_promtool_agrees(
        tmp_path / "gap.yml",
        {"jobs_total": promtool_values(values)},
        [
            ("increase(jobs_total[24s])", 24_000, 12.0),
            ("increase(jobs_total[16500ms])", 24_000, 14.0),
        ],
        interval="8s",
    )


def test_bucket_counts_within_float_rounding_are_taken_as_equal(tmp_path: Path) -> None:
    """``histogram_quantile`` takes adjacent counts within a relative 1e-12 as equal.

    10.000000000001 against 10 is a relative 5e-14: every count is taken as 10, and q=1 is
    reached at the top of the lowest bucket (1). Prometheus 2 kept the excess and answered
    the second bucket's bound (2). An excess of 1e-4 is real and moves the answer to 2.
    """
    rounding = 10.000000000001
    real = 10.0001
    assert bucket_quantile(1.0, [(1.0, 10.0), (2.0, rounding), (math.inf, rounding)]) == 1.0
    assert bucket_quantile(1.0, [(1.0, 10.0), (2.0, real), (math.inf, real)]) == 2.0
    series = {}
    for name, count in (("rounding", rounding), ("real", real)):
        series[f'{name}_bucket{{le="1"}}'] = "10"
        series[f'{name}_bucket{{le="2"}}'] = repr(count)
        series[f'{name}_bucket{{le="+Inf"}}'] = repr(count)
    assert_promtool_agrees(
        tmp_path / "quantile.yml",
        series,
        [
            ("histogram_quantile(1, rounding_bucket)", 0, 1.0),
            ("histogram_quantile(1, real_bucket)", 0, 2.0),
        ],
    )


def test_sum_is_compensated(tmp_path: Path) -> None:
    """``sum`` adds with Kahan-Neumaier compensation: 0.1 + 0.2 + 0.3 is 0.6 in every order.
    Prometheus 2 added plainly, so its answer depended on the order: 0.6000000000000001 in
    this one."""
    registry = CollectorRegistry()
    gauge = Gauge("share", "Share.", ["part"], registry=registry)
    for part, value in (("a", 0.1), ("b", 0.2), ("c", 0.3)):
        gauge.labels(part).set(value)
    ring = SampleRing(registry, 2, Clock())
    assert ring.sample()
    assert 0.1 + 0.2 + 0.3 == 0.6000000000000001
    assert ring.latest("share") == {(): 0.6}
    orders = [(0.1, 0.2, 0.3), (0.3, 0.2, 0.1), (0.2, 0.1, 0.3), (0.1, 0.3, 0.2)]
    assert {sum_by(("", value) for value in order)[""] for order in orders} == {0.6}
    assert_promtool_agrees(
        tmp_path / "sum.yml",
        {'share{part="a"}': "0.1", 'share{part="b"}': "0.2", 'share{part="c"}': "0.3"},
        [("sum(share)", 0, 0.6)],
    )


def test_the_lookback_of_an_instant_selector_is_left_open(tmp_path: Path) -> None:
    """A gauge sampled once at 0 s is seen for five minutes after, not at exactly 300 s."""
    registry = CollectorRegistry()
    Gauge("depth", "Depth.", registry=registry).set(7)
    ring = SampleRing(registry, 2, Clock())
    assert ring.sample()
    assert ring.latest("depth", at=299.999) == {(): 7.0}
    assert ring.latest("depth", at=300) == {}
    assert_promtool_agrees(
        tmp_path / "lookback.yml",
        {"depth": "7"},
        [("sum(depth)", 299_999, 7.0), ("sum(depth)", 300_000, None)],
    )
