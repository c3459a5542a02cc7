"""Every in-process store that grows with requests or clients stays within its bound."""

from __future__ import annotations

import asyncio
import random
import statistics

import pytest

from exporter.coalesce import Coalescer
from simulator.database import Query, SimulatedDatabase
from simulator.generator.stats import RunSamples
from simulator.ratelimit.memory import MemoryRateLimiter
from tests.support.configs import config_with

INSTANT = config_with(db_latency_min_ms=0, db_latency_max_ms=0)


async def test_the_oldest_created_users_are_forgotten_beyond_the_bound() -> None:
    evicted: list[None] = []
    db = SimulatedDatabase(
        5, random.Random(0), max_created=3, on_evict=lambda: evicted.append(None)
    )
    created = [
        await db.execute(Query("create", body={"name": f"n{i}", "email": f"{i}@x.y"}), INSTANT, 0)
        for i in range(10)
    ]
    assert [row["id"] for row in created] == list(range(6, 16))  # ids keep counting up
    assert db.created_users == 3
    assert len(evicted) == 7
    for old in range(6, 13):
        assert await db.execute(Query("get", old), INSTANT, 0) is None
        assert await db.execute(Query("update", old, {"name": "x"}), INSTANT, 0) is None
    for kept in created[-3:]:
        assert await db.execute(Query("get", kept["id"]), INSTANT, 0) == kept
    # Changing a created user does not make it younger; the initial users are never evicted.
    await db.execute(Query("update", 13, {"name": "changed"}), INSTANT, 0)
    await db.execute(Query("create", body={"name": "a", "email": "a@x.y"}), INSTANT, 0)
    assert await db.execute(Query("get", 13), INSTANT, 0) is None
    assert (await db.execute(Query("update", 1, {"name": "one"}), INSTANT, 0))["name"] == "one"
    assert (await db.execute(Query("get", 1), INSTANT, 0))["name"] == "one"
    assert (await db.execute(Query("get", 5), INSTANT, 0))["id"] == 5


async def test_the_limiter_forgets_the_least_recently_used_limit_beyond_the_bound() -> None:
    now = [1000.0]
    evicted: list[None] = []
    limiter = MemoryRateLimiter(lambda: now[0], max_keys=3, on_evict=lambda: evicted.append(None))
    for rate in (1, 2, 3):
        assert (await limiter.acquire("token_bucket", rate)).allowed
    assert not (await limiter.acquire("token_bucket", 1)).allowed  # rate 1: bucket empty now
    for rate in range(4, 1004):  # a client varying its limit
        await limiter.acquire("fixed_window", rate)
    assert len(limiter) == 3
    assert len(evicted) == 1000
    # rate 1 was forgotten with the others: it starts afresh, a full bucket.
    assert (await limiter.acquire("token_bucket", 1)).allowed


async def test_a_recently_used_limit_survives_a_flood_of_new_ones() -> None:
    now = [1000.0]
    limiter = MemoryRateLimiter(lambda: now[0], max_keys=2)
    assert (await limiter.acquire("token_bucket", 1)).allowed
    for rate in range(2, 50):
        assert not (await limiter.acquire("token_bucket", 1)).allowed  # used: kept, empty
        await limiter.acquire("fixed_window", rate)
    assert len(limiter) == 2


def test_run_samples_are_exact_up_to_capacity_then_a_uniform_sample() -> None:
    exact = RunSamples(100)
    for i in range(100):
        exact.add_latency(float(i), float(i) / 2)
        exact.add_send_lag(float(i))
    assert list(exact.latency_ms) == [float(i) for i in range(100)]

    bounded = RunSamples(1000, random.Random(7))
    for i in range(100_000):
        bounded.add_latency(float(i), float(i) / 2)
        bounded.add_send_lag(float(i))
    assert len(bounded.latency_ms) == len(bounded.service_latency_ms) == 1000
    assert len(bounded.send_lag_ms) == 1000
    # Pairs stay pairs, and the sample covers the whole run, not its beginning.
    assert all(
        s == v / 2 for v, s in zip(bounded.latency_ms, bounded.service_latency_ms, strict=True)
    )
    assert statistics.median(bounded.latency_ms) == pytest.approx(50_000, rel=0.1)
    assert max(bounded.latency_ms) > 95_000
    assert statistics.median(bounded.send_lag_ms) == pytest.approx(50_000, rel=0.1)


async def test_the_coalescer_keeps_at_most_its_bound_of_answers() -> None:
    shared = Coalescer(60.0, max_entries=8)

    async def answer(value: int) -> int:
        return value

    for at in range(500):  # a client asking for a new window end every time
        assert await shared.get(("red", 60.0, float(at)), lambda at=at: answer(at)) == at
    assert len(shared) <= 8
    # A query dropped while still running still answers the asker waiting on it.
    gate = asyncio.Event()

    async def slow() -> str:
        await gate.wait()
        return "late"

    waiting = asyncio.create_task(shared.get("slow", slow))
    await asyncio.sleep(0)
    for at in range(20):
        await shared.get(("red", 1.0, float(at)), lambda at=at: answer(at))
    gate.set()
    assert await waiting == "late"
    assert len(shared) <= 8
