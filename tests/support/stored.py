"""A ``SampleRing`` holding exactly the samples a real Prometheus stored, and the check that
Prometheus's figures are the embedded arithmetic on them.

Comparing the embedded figures with Prometheus's on live traffic mixes two things: the
arithmetic, and where in time each side took its samples (the ring on whole seconds with the
event loop's delay, Prometheus at its own phase). The second moves every rate by the sampling
jitter over the window. Replaying Prometheus's own samples into a ring takes it away, so on
the replay the two must agree to the last bit, but for the order in which a sum meets its
series.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from exporter.figures import (
    CACHE_DURATION,
    DB_DURATION,
    LATENCY,
    RED,
    REQUEST_DURATION,
    REQUESTS,
    RETRIES,
    evaluate_all,
    latency_summaries,
    red_figures,
)
from exporter.sampling import SampleRing
from exporter.sources.prometheus import PrometheusSource

TOLERANCE = 1e-12
"""Relative, between Prometheus and the embedded arithmetic on the same stored samples. Equal
but for summation order: Prometheus adds a sum's series in its storage's order, the replay in
the order of its query answer, and a compensated sum of many terms can still differ in its
last bit."""

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
Stored = dict[SeriesKey, dict[int, float]]
"""Sample name and labels to the series' samples, timestamp (ms) to value."""

FIGURE_SERIES = "|".join(
    [REQUESTS, RETRIES]
    + [
        f"{histogram}_{suffix}"
        for histogram in (REQUEST_DURATION, DB_DURATION, CACHE_DURATION)
        for suffix in ("bucket", "sum", "count")
    ]
)
"""Every series the figures of ``/metrics/json`` and the latency summaries read."""


async def stored_samples(base_url: str, window_ms: int, at: float) -> Stored:
    """The samples of every figure series in the window ``(at - window, at]``: an instant
    query of a range selector answers the raw samples, as a range function would see them."""
    query = f'{{__name__=~"{FIGURE_SERIES}"}}[{window_ms}ms]'
    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await client.get(
            f"{base_url}/api/v1/query", params={"query": query, "time": f"{at:.3f}"}
        )
    body = response.json()
    if body.get("status") != "success" or body["data"]["resultType"] != "matrix":
        raise AssertionError(f"query {query!r} failed: {body}")
    stored: Stored = {}
    for series in body["data"]["result"]:
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        key = (name, tuple(sorted(labels.items())))
        stored[key] = {round(float(t) * 1000): float(v) for t, v in series["values"]}
    return stored


@dataclass(eq=False)
class _Replay:
    """A collector exposing every stored series that has a sample at ``moment``."""

    stored: Mapping[SeriesKey, Mapping[int, float]]
    names: Sequence[str]
    moment: int = 0

    def collect(self) -> Iterator[Metric]:
        for name in self.names:
            family = Metric(name, "Replayed.", "unknown")
            for (sample_name, labels), samples in self.stored.items():
                if sample_name == name and self.moment in samples:
                    family.add_sample(name, dict(labels), samples[self.moment])
            yield family


def replayed_ring(stored: Stored) -> SampleRing:
    """A ring that took one snapshot at each stored timestamp, showing the samples stored
    then; a series without a sample at a timestamp is missing from that snapshot."""
    moments = sorted({moment for samples in stored.values() for moment in samples})
    replay = _Replay(stored, sorted({name for name, _ in stored}))
    registry = CollectorRegistry()
    registry.register(replay)
    ring = SampleRing(registry, max(2, len(moments)), lambda: replay.moment / 1000)
    for moment in moments:
        replay.moment = moment
        if not ring.sample():
            raise AssertionError(f"snapshot at {moment} ms refused")
    return ring


def same(a: float | None, b: float | None) -> bool:
    """Equal within :data:`TOLERANCE`; None only with None."""
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=0.0)


async def assert_the_arithmetic_is_prometheus(url: str, window: int, at: float) -> None:
    """Prometheus's figures equal the embedded arithmetic on the samples Prometheus stored.

    Evaluated where the window starts exactly on a stored sample (which a left-open range
    leaves out), on a ring replaying the samples from a few seconds before the window on.
    """
    stored = await stored_samples(url, (window + 5) * 1000, at)
    moments = {moment for samples in stored.values() for moment in samples}
    start = max(moment for moment in moments if moment + window * 1000 <= round(at * 1000))
    edge = (start + window * 1000) / 1000
    source = PrometheusSource(url, timeout=5)
    try:
        theirs_red, theirs_latency = await asyncio.gather(
            source.red(window, edge), source.latency(window, edge)
        )
    finally:
        await source.aclose()
    replay = evaluate_all((*RED, *LATENCY), replayed_ring(stored), window, edge)
    ours_red, ours_latency = red_figures(replay), latency_summaries(replay)
    assert theirs_latency.keys() == ours_latency.keys()
    figures = [("red", theirs_red, ours_red)]
    figures += [(stage, theirs_latency[stage], ours_latency[stage]) for stage in ours_latency]
    pairs = [
        (f"{what}.{name}", value, getattr(ours, name))
        for what, theirs, ours in figures
        for name, value in asdict(theirs).items()
    ]
    for name, value, replayed in pairs:
        assert same(value, replayed), (name, value, replayed)
    exact = sum(value == replayed for _, value, replayed in pairs)
    print(
        f"replay at {edge:.3f}: {exact} of {len(pairs)} figures equal to the last bit", flush=True
    )
