"""Retry backoff bounds and the simulated database's latency, timeout and failure rate."""

from __future__ import annotations

import math
import random

import pytest

from simulator.backoff import Backoff
from simulator.database import DatabaseError, DatabaseTimeout, Query, SimulatedDatabase
from tests.support.configs import config_with


def test_backoff_ceiling_doubles_then_caps() -> None:
    backoff = Backoff(0.02, 0.1, random.Random(1))
    assert [backoff.ceiling(n) for n in range(5)] == [0.02, 0.04, 0.08, 0.1, 0.1]
    assert backoff.ceiling(10_000) == 0.1


def test_backoff_delays_stay_within_full_jitter_bounds_and_spread() -> None:
    backoff = Backoff(0.02, 1.0, random.Random(7))
    for attempt in range(6):
        delays = [backoff.delay(attempt) for _ in range(2000)]
        ceiling = backoff.ceiling(attempt)
        assert min(delays) >= 0.0
        assert max(delays) <= ceiling
        # Full jitter: uniform over [0, ceiling], so the mean is half the ceiling.
        assert sum(delays) / len(delays) == pytest.approx(ceiling / 2, rel=0.06)


class Clock:
    """Records simulated sleeps instead of waiting."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


async def test_failure_rate_is_applied_within_statistical_tolerance() -> None:
    clock = Clock()
    db = SimulatedDatabase(100, random.Random(42), clock.sleep)
    config = config_with(
        failure_injection_enabled=True, failure_rate=0.3, db_latency_min_ms=0, db_latency_max_ms=0
    )
    n = 20_000
    failures = 0
    for i in range(n):
        try:
            await db.execute(Query("get", 1 + i % 100), config, 0)
        except DatabaseError:
            failures += 1
    # Binomial standard deviation sqrt(n p (1-p)) ~ 65; allow 4 sigma.
    sigma = math.sqrt(n * 0.3 * 0.7)
    assert abs(failures - 0.3 * n) < 4 * sigma


async def test_failures_are_off_unless_injection_is_enabled() -> None:
    db = SimulatedDatabase(10, random.Random(1), Clock().sleep)
    config = config_with(failure_injection_enabled=False, failure_rate=1.0)
    for _ in range(200):
        assert (await db.execute(Query("get", 3), config, 0))["id"] == 3


async def test_latency_is_uniform_in_range_plus_request_latency() -> None:
    clock = Clock()
    db = SimulatedDatabase(10, random.Random(3), clock.sleep)
    config = config_with(db_latency_min_ms=10, db_latency_max_ms=30, db_timeout_seconds=5)
    for _ in range(2000):
        await db.execute(Query("get", 1), config, 50)
    assert min(clock.slept) >= 0.060
    assert max(clock.slept) <= 0.080
    assert sum(clock.slept) / len(clock.slept) == pytest.approx(0.070, rel=0.02)


async def test_slow_query_is_abandoned_at_the_timeout() -> None:
    clock = Clock()
    db = SimulatedDatabase(10, random.Random(3), clock.sleep)
    config = config_with(db_latency_min_ms=300, db_latency_max_ms=300, db_timeout_seconds=0.2)
    with pytest.raises(DatabaseTimeout):
        await db.execute(Query("get", 1), config, 0)
    assert clock.slept == [0.2]


async def test_writes_are_visible_to_later_reads_and_unknown_ids_are_none() -> None:
    db = SimulatedDatabase(5, random.Random(0), Clock().sleep)
    config = config_with(db_latency_min_ms=0, db_latency_max_ms=0)
    created = await db.execute(Query("create", body={"name": "a", "email": "a@b.c"}), config, 0)
    assert created["id"] == 6
    assert await db.execute(Query("get", 6), config, 0) == created
    updated = await db.execute(Query("update", 2, {"name": "zed"}), config, 0)
    assert updated == {"id": 2, "name": "zed", "email": "user2@example.test"}
    assert await db.execute(Query("get", 99), config, 0) is None
    assert await db.execute(Query("update", 99, {"name": "x"}), config, 0) is None
