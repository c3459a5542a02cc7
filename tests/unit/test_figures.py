"""The figures' PromQL text, and their values on a sample ring against hand-computed numbers.

The ring is fed by the simulator's own ``ServiceMetrics`` (so a misspelt metric name would
show as a missing figure) under a scripted clock: one snapshot a second, the same traffic
every second, so every expected value follows from the script by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from exporter.errors import SourceUnavailable
from exporter.figures import (
    LATENCY,
    RED,
    REQUESTS,
    Matcher,
    Quantile,
    Selector,
    SumOf,
    evaluate,
    promql_duration,
    render,
)
from exporter.sampling import SampleRing
from exporter.sources.base import LatencySummary, RedFigures
from exporter.sources.embedded_metrics import EmbeddedMetricsSource
from simulator.telemetry.buckets import CACHE_BUCKETS, LATENCY_BUCKETS
from simulator.telemetry.metrics import ServiceMetrics

# --- PromQL text -------------------------------------------------------------------------------

D = "failure_lab_http_request_duration_seconds"
DB = "failure_lab_db_query_duration_seconds"
C = "failure_lab_cache_operation_duration_seconds"

RED_PROMQL = {
    "request_rate": "sum(rate(failure_lab_http_requests_total[60s]))",
    "error_rate": 'sum(rate(failure_lab_http_requests_total{status=~"5..|429"}[60s])) '
    "/ sum(rate(failure_lab_http_requests_total[60s]))",
    "retry_count": "sum(increase(failure_lab_retries_total[60s]))",
    "p95_latency_ms": f"1000 * histogram_quantile(0.95, sum by (le) (rate({D}_bucket[60s])))",
    "p99_latency_ms": f"1000 * histogram_quantile(0.99, sum by (le) (rate({D}_bucket[60s])))",
}


def _stage(histogram: str, matchers: str = "") -> dict[str, str]:
    selector = f"{{{matchers}}}" if matchers else ""
    return {
        "avg": f"1000 * (sum(rate({histogram}_sum{selector}[60s])) "
        f"/ sum(rate({histogram}_count{selector}[60s])))",
        **{
            name: f"1000 * histogram_quantile({q}, sum by (le) "
            f"(rate({histogram}_bucket{selector}[60s])))"
            for name, q in (("p50", "0.5"), ("p95", "0.95"), ("p99", "0.99"))
        },
        "samples": f"sum(increase({histogram}_count{selector}[60s]))",
    }


LATENCY_PROMQL = {
    f"{stage}.{field}": text
    for stage, texts in (
        ("request", _stage(D)),
        ("database", _stage(DB)),
        ("cache", _stage(C, 'operation="get"')),
    )
    for field, text in texts.items()
}


def test_every_red_figure_renders_as_promql() -> None:
    assert {figure.key: render(figure.expr, 60) for figure in RED} == RED_PROMQL


def test_every_latency_figure_renders_as_promql() -> None:
    assert {figure.key: render(figure.expr, 60) for figure in LATENCY} == LATENCY_PROMQL


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(60, "60s"), (1.5, "1500ms"), (0.25, "250ms"), (90, "90s"), (3600, "3600s"), (0.001, "1ms")],
)
def test_windows_are_whole_seconds_or_milliseconds(seconds: float, text: str) -> None:
    assert promql_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0, 0.0004, -1, math.nan, math.inf])
def test_windows_below_a_millisecond_or_not_finite_are_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match="window"):
        promql_duration(seconds)


def test_label_values_are_quoted_as_promql_strings() -> None:
    selector = Selector("m", (Matcher("a", "=", 'say "hi"\\'), Matcher("b", "!~", "x|y")))
    assert render(SumOf("rate", selector), 5) == r'sum(rate(m{a="say \"hi\"\\", b!~"x|y"}[5s]))'


@pytest.mark.parametrize(
    ("matcher", "value", "selected"),
    [
        (Matcher("status", "=~", "5..|429"), "503", True),
        (Matcher("status", "=~", "5..|429"), "429", True),
        (Matcher("status", "=~", "5..|429"), "4290", False),  # anchored at both ends
        (Matcher("status", "=~", "5..|429"), "1503", False),
        (Matcher("status", "=~", "5..|429"), "404", False),
        (Matcher("status", "!~", "5..|429"), "404", True),
        (Matcher("status", "!=", "200"), "", True),
        (Matcher("status", "=", ""), "", True),  # "" matches a series without the label
    ],
)
def test_matchers_select_as_promql(matcher: Matcher, value: str, selected: bool) -> None:
    assert matcher.matches(value) is selected


def test_a_quantile_takes_equality_matchers_only() -> None:
    with pytest.raises(ValueError, match="equality"):
        Quantile(0.5, D, (Matcher("endpoint", "=~", ".*"),))


# --- evaluation on a ring ----------------------------------------------------------------------


@dataclass
class FakeClock:
    now: float

    def __call__(self) -> float:
        return self.now


GET = ("/api/v1/users/{id}", "GET")
POST = ("/api/v1/users", "POST")


def one_second(metrics: ServiceMetrics) -> None:
    """20 requests: 14 x 200, 2 x 503, 2 x 429 and 2 x 404 (a client error, not the
    service's); 4 retries; 19 requests of 20 ms on one route and one of 200 ms on another;
    three 5 ms database queries and a failed one of 40 ms; two cache gets of 0.5 ms and a
    cache set of 1 s (not a get)."""
    metrics.requests.labels(*GET, "200", "success").inc(14)
    metrics.requests.labels(*GET, "503", "db_error").inc(2)
    metrics.requests.labels(*POST, "429", "rate_limited").inc(2)
    metrics.requests.labels(*GET, "404", "not_found").inc(2)
    metrics.retries.labels(GET[0], "error").inc(3)
    metrics.retries.labels(POST[0], "timeout").inc(1)
    for _ in range(19):
        metrics.request_duration.labels(*GET).observe(0.02)
    metrics.request_duration.labels(*POST).observe(0.2)
    for _ in range(3):
        metrics.db_duration.labels("ok").observe(0.005)
    metrics.db_duration.labels("error").observe(0.04)
    for _ in range(2):
        metrics.cache_duration.labels("get").observe(0.0005)
    metrics.cache_duration.labels("set").observe(1.0)


def scripted(seconds: int = 5) -> tuple[ServiceMetrics, SampleRing, FakeClock]:
    """A snapshot at 1000 s, 1001 s, ... each after one more second of traffic."""
    metrics = ServiceMetrics(CollectorRegistry())
    clock = FakeClock(1000.0)
    ring = SampleRing(metrics.registry, 60, clock)
    for second in range(seconds):
        clock.now = 1000.0 + second
        one_second(metrics)
        assert ring.sample()
    return metrics, ring, clock


def holding(seconds: float, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> tuple[float, float]:
    """The (lower, upper] bounds of the bucket an observation of ``seconds`` falls in."""
    index = next(i for i, bound in enumerate(bounds) if seconds <= bound)
    return (bounds[index - 1] if index else 0.0, bounds[index])


FAST = holding(0.020)
SLOW = holding(0.200)
DB_OK = holding(0.005)
DB_ERROR = holding(0.040)
CACHE = holding(0.0005, CACHE_BUCKETS)


def within(bucket: tuple[float, float], fraction: float) -> float:
    """Milliseconds at ``fraction`` of the way through ``bucket``: linear interpolation."""
    return 1000 * (bucket[0] + (bucket[1] - bucket[0]) * fraction)


# Per second: 20 requests, 19 fast and 1 slow. p95's rank 19 is the last fast one; p99's rank
# 19.8 is 0.8 of the way through the slow bucket; p50's rank 10 is 10/19 through the fast one.
EXPECTED_FIGURES = RedFigures(
    request_rate=20.0,
    error_rate=0.2,  # (2 x 503 + 2 x 429) / 20; the 404s are not counted
    retry_count=16.0,  # 4 a second over 4 s
    p95_latency_ms=within(FAST, 1.0),
    p99_latency_ms=within(SLOW, 0.8),
)
EXPECTED_LATENCY = {
    # (19 x 20 ms + 200 ms) / 20
    "request": LatencySummary(
        avg=29.0,
        p50=within(FAST, 10 / 19),
        p95=within(FAST, 1.0),
        p99=within(SLOW, 0.8),
        samples=80.0,
    ),
    # 4 queries a second, 3 of 5 ms and 1 of 40 ms: ranks 2, 3.8 and 3.96.
    "database": LatencySummary(
        avg=13.75,
        p50=within(DB_OK, 2 / 3),
        p95=within(DB_ERROR, 0.8),
        p99=within(DB_ERROR, 0.96),
        samples=16.0,
    ),
    # Gets only: both 0.5 ms, in one bucket, so each quantile is q of the way through it.
    "cache": LatencySummary(
        avg=0.5,
        p50=within(CACHE, 0.5),
        p95=within(CACHE, 0.95),
        p99=within(CACHE, 0.99),
        samples=8.0,
    ),
}


def assert_red(actual: RedFigures, expected: RedFigures) -> None:
    for field in RedFigures.__slots__:
        assert getattr(actual, field) == pytest.approx(getattr(expected, field), rel=1e-12), field


def assert_latency(actual: dict[str, LatencySummary], expected: dict[str, LatencySummary]) -> None:
    assert actual.keys() == expected.keys()
    for stage, summary in expected.items():
        for field in LatencySummary.__slots__:
            assert getattr(actual[stage], field) == pytest.approx(
                getattr(summary, field), rel=1e-12
            ), (stage, field)


async def test_figures_on_the_ring_at_a_snapshot() -> None:
    _, ring, clock = scripted()
    assert clock.now == 1004.0
    source = EmbeddedMetricsSource(ring, clock=clock)
    # Window [1000 s, 1004 s]: snapshots at both ends, four seconds of traffic between them.
    assert_red(await source.red(4), EXPECTED_FIGURES)
    assert_latency(await source.latency(4), EXPECTED_LATENCY)


async def test_figures_on_the_ring_between_snapshots() -> None:
    """Evaluated at "now", half a second after the newest snapshot, as Prometheus would:
    the rates of steady traffic are extrapolated to the window's ends and stay the same."""
    _, ring, clock = scripted()
    clock.now = 1004.5
    source = EmbeddedMetricsSource(ring, clock=clock)
    assert_red(await source.red(4), EXPECTED_FIGURES)
    assert_latency(await source.latency(4), EXPECTED_LATENCY)


def test_other_matchers_are_applied_to_the_ring_answer() -> None:
    _, ring, _ = scripted()
    not_ok = Selector(REQUESTS, (Matcher("status", "!~", "2.."),))
    assert evaluate(SumOf("rate", not_ok), ring, 4) == pytest.approx(6.0)
    post_429 = Selector(REQUESTS, (Matcher("method", "=", "POST"), Matcher("status", "=~", "4.*")))
    assert evaluate(SumOf("increase", post_429), ring, 4) == pytest.approx(8.0)
    nothing = Selector(REQUESTS, (Matcher("status", "=~", "1.."),))
    assert evaluate(SumOf("rate", nothing), ring, 4) is None


async def test_no_traffic_gives_zero_rates_and_no_latencies() -> None:
    metrics = ServiceMetrics(CollectorRegistry())
    clock = FakeClock(1000.0)
    ring = SampleRing(metrics.registry, 10, clock)
    for now in (1000.0, 1001.0, 1002.0):
        clock.now = now
        ring.sample()
    source = EmbeddedMetricsSource(ring, clock=clock)
    assert await source.red(60) == RedFigures(0.0, 0.0, 0.0, None, None)
    empty = LatencySummary(None, None, None, None, 0.0)
    assert await source.latency(60) == {"request": empty, "database": empty, "cache": empty}


async def test_an_idle_window_after_traffic_has_no_latencies_and_no_errors() -> None:
    """Series exist but did not move: rates 0, quantiles and averages NaN in PromQL -> None."""
    metrics, ring, clock = scripted(seconds=1)
    metrics.requests.labels(*GET, "200", "success").inc(0)
    for second in range(1, 6):
        clock.now = 1000.0 + second
        ring.sample()
    source = EmbeddedMetricsSource(ring, clock=clock)
    assert await source.red(4) == RedFigures(0.0, 0.0, 0.0, None, None)
    idle = await source.latency(4)
    assert idle["request"] == LatencySummary(None, None, None, None, 0.0)


async def test_requests_without_errors_have_an_error_rate_of_zero() -> None:
    metrics = ServiceMetrics(CollectorRegistry())
    clock = FakeClock(1000.0)
    ring = SampleRing(metrics.registry, 10, clock)
    for second in range(3):
        clock.now = 1000.0 + second
        metrics.requests.labels(*GET, "200", "success").inc(5)
        ring.sample()
    figures = await EmbeddedMetricsSource(ring, clock=clock).red(2)
    assert figures.request_rate == pytest.approx(5.0)
    assert figures.error_rate == 0.0


async def test_a_ring_not_sampled_for_three_intervals_is_unavailable() -> None:
    metrics = ServiceMetrics(CollectorRegistry())
    clock = FakeClock(1000.0)
    ring = SampleRing(metrics.registry, 10, clock)
    source = EmbeddedMetricsSource(ring, interval=1.0, clock=clock)
    with pytest.raises(SourceUnavailable, match="no metrics snapshot") as never:
        await source.check()
    assert never.value.backend == "embedded"

    ring.sample()
    clock.now = 1003.0  # three intervals: still fresh
    await source.check()
    await source.red(60)
    clock.now = 1003.1
    for call in (source.check, lambda: source.red(60), lambda: source.latency(60)):
        with pytest.raises(SourceUnavailable, match=r"3\.1 s old") as stale:
            await call()
        assert stale.value.backend == "embedded"
