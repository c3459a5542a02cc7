"""The event-loop lag sampler: its percentile over the last minute, and a real blocked loop."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from failure_lab.loop_lag import LoopLag
from tests.unit.test_figures import FakeClock


def test_p99_and_max_over_the_last_minute_by_nearest_rank() -> None:
    registry = CollectorRegistry()
    clock = FakeClock(100.0)
    lag = LoopLag(registry, clock=clock)
    assert lag.summary().p99_ms is None
    for index in range(200):  # 1..200 ms, 0.1 s apart: 20 s of measurements
        clock.now = 100.0 + index / 10
        lag.record((index + 1) / 1000)
    summary = lag.summary()
    assert summary.samples == 200
    assert summary.p99_ms == pytest.approx(198.0)  # rank ceil(0.99 x 200) = 198
    assert summary.max_ms == pytest.approx(200.0)
    count = registry.get_sample_value("failure_lab_event_loop_lag_seconds_count")
    assert count == 200
    clock.now = 169.95  # the first 100 measurements are now more than a minute old
    assert lag.summary().samples == 100
    assert lag.summary().p99_ms == pytest.approx(199.0)  # rank 99 of 101..200 ms
    clock.now = 200.0
    assert lag.summary() == lag.summary().__class__(None, None, 0, 60.0, 0.1)


async def test_a_blocked_loop_shows_as_lag() -> None:
    lag = LoopLag(None, interval=0.05)
    async with lag.running():
        await asyncio.sleep(0.3)
        quiet = lag.summary()
        for _ in range(3):
            time.sleep(0.25)  # noqa: ASYNC251 - holds the loop on purpose: the sampler wakes late
            await asyncio.sleep(0.1)
    assert quiet.samples >= 3
    assert quiet.max_ms is not None
    assert quiet.max_ms < 200
    summary = lag.summary()
    assert summary.max_ms is not None
    assert summary.p99_ms is not None
    assert summary.max_ms >= 150
    assert summary.p99_ms >= 150  # 3 of some 14 measurements: the p99's rank is among them
