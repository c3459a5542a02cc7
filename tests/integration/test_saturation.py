"""Limits and the cache on a real redis-server when this process is the slow part: far more
concurrent calls than connections, an event loop too busy to notice replies in time; and
fail-opens counted when Redis is really gone."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from failure_lab.control import RateLimitAlgorithm
from simulator.cache import RedisCache
from simulator.options import HEADER, PipelineOptions
from simulator.ratelimit.algorithms import ALGORITHMS
from simulator.ratelimit.memory import MemoryRateLimiter
from simulator.ratelimit.redis import RedisRateLimiter
from simulator.redis_client import redis_client
from tests.support.configs import config_with
from tests.support.labs import running_lab
from tests.support.servers import RedisProcess

T0 = 1000.0
CONCURRENT = 300
"""Three times redis-py's default pool limit (100), which used to fail calls past it."""
OLD_POOL_LIMIT = 100
POOL = 20


def fixed_clock() -> Callable[[], float]:
    return lambda: T0


TIMEOUT = 0.05
"""The limiter's default; Redis answers a decision or a read in a fraction of a millisecond."""


async def busy_loop(until: asyncio.Event, hogs: int = 20, block: float = 0.005) -> None:
    """Tasks that each hold the loop ``block`` seconds a turn: every turn of the loop then
    takes at least ``hogs x block`` (0.1 s), twice the calls' timeout."""

    async def hog() -> None:
        while not until.is_set():
            time.sleep(block)  # noqa: ASYNC251 - the point: a loop that is the bottleneck
            await asyncio.sleep(0)

    await asyncio.gather(*(hog() for _ in range(hogs)))


@pytest_asyncio.fixture
async def small_pool(redis_url: str) -> AsyncIterator[Redis]:
    client = redis_client(redis_url, max_connections=POOL)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def old_pool(redis_url: str) -> AsyncIterator[Redis]:
    """A pool as large as the one that used to raise "Too many connections" past it, its
    connections open (as they are after a replica's first moments of load)."""
    client = redis_client(redis_url, max_connections=OLD_POOL_LIMIT)
    await client.flushdb()
    await asyncio.gather(*(client.ping() for _ in range(OLD_POOL_LIMIT)))
    yield client
    await client.aclose()


async def clients_of(observer: Redis) -> int:
    """Connections Redis has open, the observer's own left out."""
    return len(await observer.client_list()) - 1


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_concurrent_decisions_on_a_busy_loop_are_all_decided_within_the_limit(
    old_pool: Redis, algorithm: RateLimitAlgorithm
) -> None:
    limiter = RedisRateLimiter(old_pool, fixed_clock(), timeout=TIMEOUT)
    await limiter.acquire(algorithm, 1)  # Redis has the script, as after a first request
    oracle = MemoryRateLimiter(clock=fixed_clock())
    done = asyncio.Event()
    hogs = asyncio.create_task(busy_loop(done))
    try:
        decisions = await asyncio.gather(
            *(limiter.acquire(algorithm, 100) for _ in range(CONCURRENT))
        )
    finally:
        done.set()
        await hogs
    expected = [await oracle.acquire(algorithm, 100) for _ in range(CONCURRENT)]
    # None raised (no fail-open), and exactly what the in-process limiter admits.
    assert sum(d.allowed for d in decisions) == sum(d.allowed for d in expected)
    assert sum(d.allowed for d in decisions) <= 101


async def test_cache_reads_on_a_busy_loop_answer(old_pool: Redis) -> None:
    cache = RedisCache(old_pool)
    await cache.set("k", b"v", ttl=30, timeout=1.0)
    done = asyncio.Event()
    hogs = asyncio.create_task(busy_loop(done))
    try:
        values = await asyncio.gather(*(cache.get("k", timeout=TIMEOUT) for _ in range(CONCURRENT)))
    finally:
        done.set()
        await hogs
    assert values == [b"v"] * CONCURRENT


@contextlib.asynccontextmanager
async def client_counts(observer: Redis) -> AsyncIterator[list[int]]:
    """Redis's connected clients, sampled every 2 ms while the block runs."""
    seen: list[int] = []
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set():
            seen.append(await clients_of(observer))
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    try:
        yield seen
    finally:
        done.set()
        await watcher


async def test_connections_stay_within_the_pool(small_pool: Redis, redis_url: str) -> None:
    observer = Redis.from_url(redis_url)
    limiter = RedisRateLimiter(small_pool, fixed_clock(), timeout=2.0)
    try:
        async with client_counts(observer) as seen:
            decisions = await asyncio.gather(
                *(limiter.acquire("fixed_window", 1000) for _ in range(CONCURRENT))
            )
    finally:
        await observer.aclose()
    assert all(d.allowed for d in decisions)
    assert seen
    assert max(seen) <= POOL


async def test_the_served_pool_follows_the_setting(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path)
    redis.start()
    observer = Redis.from_url(redis.url)
    try:
        async with running_lab(redis_url=redis.url, redis_max_connections=3) as (_, http, _):
            fast = config_with(db_latency_min_ms=0, db_latency_max_ms=0).model_dump()
            await http.put("/v1/config/failure", json=fast)
            header = {HEADER: PipelineOptions(rate_limit=10_000).encode()}
            async with client_counts(observer) as seen:
                responses = await asyncio.gather(
                    *(http.get(f"/api/v1/users/{i % 7 + 1}", headers=header) for i in range(60))
                )
            assert [r.status_code for r in responses] == [200] * 60
            assert seen
            assert max(seen) <= 3
            # Waiting for one of the 3 connections is not a failure: nothing failed open,
            # every cache read answered.
            metrics = (await http.get("/metrics")).text
            fail_open = exposed(metrics, "failure_lab_ratelimit_fail_open_total")
            assert len(fail_open) == 12  # every algorithm and reason, from the start
            assert set(fail_open.values()) == {0.0}
            reads = exposed(metrics, "failure_lab_cache_requests_total")
            assert reads.get((("operation", "get"), ("result", "error")), 0.0) == 0.0
            assert reads[(("operation", "get"), ("result", "hit"))] > 0
    finally:
        await observer.aclose()
        redis.kill()


def exposed(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of ``name`` in an exposition, by their labels."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


async def test_fail_open_is_counted_when_redis_is_down(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path)
    redis.start()
    try:
        async with running_lab(redis_url=redis.url) as (_, http, _):
            fast = config_with(db_latency_min_ms=0, db_latency_max_ms=0).model_dump()
            await http.put("/v1/config/failure", json=fast)
            bucket = {HEADER: PipelineOptions(rate_limit=1000).encode()}
            window = {HEADER: PipelineOptions(rate_limit=1000, algorithm="fixed_window").encode()}
            assert (await http.get("/api/v1/users/1", headers=bucket)).status_code == 200
            before = exposed(
                (await http.get("/metrics")).text, "failure_lab_ratelimit_fail_open_total"
            )
            assert set(before.values()) == {0.0}
            redis.kill()
            statuses = [
                (await http.get("/api/v1/users/1", headers=bucket)).status_code for _ in range(4)
            ]
            statuses += [
                (await http.get("/api/v1/users/2", headers=window)).status_code for _ in range(2)
            ]
            assert statuses == [200] * 6  # admitted: fail open
            after = exposed(
                (await http.get("/metrics")).text, "failure_lab_ratelimit_fail_open_total"
            )
            assert {labels: count for labels, count in after.items() if count} == {
                (("algorithm", "token_bucket"), ("reason", "unavailable")): 4.0,
                (("algorithm", "fixed_window"), ("reason", "unavailable")): 2.0,
            }
    finally:
        redis.kill()
