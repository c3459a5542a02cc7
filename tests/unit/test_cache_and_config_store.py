"""Cache and failure-config store: both implementations, the Redis ones on a real server."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from failure_lab.control import FailureConfig
from simulator.cache import CacheError, MemoryCache, RedisCache
from simulator.faults import ConfigStoreUnavailable, MemoryConfigStore, RedisConfigStore
from simulator.redis_client import redis_client
from tests.conftest import free_port
from tests.support.configs import config_with


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_memory_cache_expires_entries_at_their_ttl() -> None:
    clock = FakeClock()
    cache = MemoryCache(10, clock)
    await cache.set("k", b"v", ttl=2.0, timeout=1)
    assert await cache.get("k", 1) == b"v"
    clock.now += 1.999
    assert await cache.get("k", 1) == b"v"
    clock.now += 0.001
    assert await cache.get("k", 1) is None


async def test_memory_cache_is_bounded_and_evicts_oldest_write() -> None:
    cache = MemoryCache(3, FakeClock())
    for key in "abcd":
        await cache.set(key, key.encode(), ttl=60, timeout=1)
    assert [await cache.get(k, 1) for k in "abcd"] == [None, b"b", b"c", b"d"]
    await cache.delete(["b", "zz"], 1)
    assert await cache.get("b", 1) is None


async def test_zero_ttl_caches_nothing() -> None:
    cache = MemoryCache(3, FakeClock())
    await cache.set("k", b"v", ttl=0, timeout=1)
    assert await cache.get("k", 1) is None


async def test_redis_cache_round_trip_ttl_and_delete(redis_client: Redis) -> None:
    cache = RedisCache(redis_client, prefix="t:")
    await cache.set("k", b"v", ttl=5, timeout=1)
    assert await cache.get("k", 1) == b"v"
    assert 0 < await redis_client.pttl("t:k") <= 5000
    await cache.delete(["k"], 1)
    assert await cache.get("k", 1) is None


async def test_redis_cache_unreachable_is_a_cache_error_not_a_crash() -> None:
    client = redis_client(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(CacheError) as error:
            await RedisCache(client).get("k", timeout=1.0)
        assert error.value.kind == "unavailable"
    finally:
        await client.aclose()


async def test_memory_store_reports_changes() -> None:
    seen: list[FailureConfig] = []
    store = MemoryConfigStore(on_change=seen.append)
    new = config_with(failure_rate=0.5)
    await store.put(new)
    assert await store.get() == new
    assert await store.current() == new
    assert seen == [new]


async def test_redis_store_is_shared_between_instances(redis_client: Redis, redis_url: str) -> None:
    other_client = redis_client_for(redis_url)
    seen_by_other: list[FailureConfig] = []
    try:
        writer = RedisConfigStore(redis_client, key="t:config")
        reader = RedisConfigStore(other_client, key="t:config", on_change=seen_by_other.append)
        assert await reader.get() == FailureConfig.defaults()
        assert seen_by_other == []
        changed = config_with(failure_injection_enabled=True, failure_rate=0.25, max_retries=1)
        await writer.put(changed)
        assert await reader.current() == changed
        assert seen_by_other == [changed]
    finally:
        await other_client.aclose()


def redis_client_for(url: str) -> Redis:
    return redis_client(url)


async def test_redis_store_down_raises_for_control_and_falls_back_for_requests() -> None:
    changed = config_with(failure_rate=0.75)
    dead = redis_client_for(f"redis://127.0.0.1:{free_port()}/0")
    try:
        down = RedisConfigStore(dead, key="t:config")
        with pytest.raises(ConfigStoreUnavailable):
            await down.get()
        with pytest.raises(ConfigStoreUnavailable):
            await down.put(changed)
        assert await down.current() == FailureConfig.defaults()
    finally:
        await dead.aclose()
