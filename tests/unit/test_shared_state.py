"""The failure config Redis lost is written back by the replicas that held it, on a real
redis-server emptied under them (FLUSHDB is what a restart without persistence leaves)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from failure_lab.control import FailureConfig
from simulator.faults import RedisConfigStore
from simulator.redis_client import redis_client
from simulator.shared_state import StateKeeper
from tests.support.configs import config_with
from tests.support.servers import RedisProcess

KEY = "t:config"
FIRST = config_with(failure_injection_enabled=True, failure_rate=0.25, max_retries=1)
SECOND = config_with(failure_injection_enabled=True, failure_rate=0.5, max_retries=2)


@pytest.fixture
async def other(redis_url: str) -> AsyncIterator[Redis]:
    client = redis_client(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_replica_keeps_the_config_redis_lost_and_writes_it_back(
    redis_client: Redis, other: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    writer = RedisConfigStore(redis_client, key=KEY)
    reader = RedisConfigStore(other, key=KEY)
    await writer.put(FIRST)
    assert await reader.get() == FIRST
    await redis_client.flushdb()
    # Both keep applying what they saw rather than falling back to the defaults.
    assert await writer.current() == FIRST
    assert await reader.get() == FIRST
    restored: list[str] = []
    keepers = [StateKeeper([s], 1.0, restored.append) for s in (reader, writer)]
    with caplog.at_level(logging.WARNING, logger="simulator.shared_state"):
        assert await keepers[0].check() == ["failure_config"]
    assert await keepers[1].check() == []  # already back: nothing lost any more
    assert restored == ["failure_config"]
    assert await redis_client.get(KEY) == FIRST.model_dump_json().encode()
    assert await RedisConfigStore(redis_client, key=KEY).get() == FIRST
    assert "redis had lost the failure_config: wrote back this replica's copy" in caplog.text
    assert FIRST.model_dump_json() in caplog.text


async def test_a_replica_that_never_saw_a_config_restores_nothing(redis_client: Redis) -> None:
    fresh = RedisConfigStore(redis_client, key=KEY)
    assert await fresh.get() == FailureConfig.defaults()
    assert not await fresh.lost()
    assert await StateKeeper([fresh], 1.0).check() == []
    assert await redis_client.get(KEY) is None


async def test_a_write_back_never_undoes_a_put_made_since(
    redis_client: Redis, other: Redis
) -> None:
    holder = RedisConfigStore(redis_client, key=KEY)
    await holder.put(FIRST)
    await redis_client.flushdb()
    assert await holder.lost()
    await RedisConfigStore(other, key=KEY).put(SECOND)  # between noticing and writing back
    assert not await holder.write_back()
    assert await holder.get() == SECOND


async def test_replicas_that_disagree_end_with_the_last_write_back(
    redis_client: Redis, other: Redis
) -> None:
    first = RedisConfigStore(redis_client, key=KEY)
    second = RedisConfigStore(other, key=KEY)
    await first.put(FIRST)
    assert await second.get() == FIRST
    await first.put(SECOND)  # the second replica has not read since
    await redis_client.flushdb()
    assert await first.lost()
    assert await second.lost()
    assert await first.write_back()
    assert await second.write_back()  # a write-back may replace a write-back
    assert await first.get() == FIRST
    assert await second.get() == FIRST


async def test_the_keeper_waits_quietly_while_redis_is_down(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path)
    server.start()
    client = redis_client(server.url)
    try:
        store = RedisConfigStore(client, key=KEY)
        keeper = StateKeeper([store], 1.0)
        await store.put(FIRST)
        server.kill()
        assert await keeper.check() == []
        assert await store.current() == FIRST
        server.start()  # empty: no persistence
        assert await keeper.check() == ["failure_config"]
        assert await store.get() == FIRST
    finally:
        server.kill()
        await client.aclose()
