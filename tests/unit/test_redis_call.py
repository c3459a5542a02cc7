"""Redis calls against servers that misbehave on purpose: the pool's bound holds whatever
fails, and a silent Redis is a timeout on an idle loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from simulator.redis_call import RedisCallError, redis_call
from simulator.redis_client import redis_client


@asynccontextmanager
async def silent_server(peak: list[int]) -> AsyncIterator[int]:
    """A server that accepts and never answers; ``peak[0]`` is the most connections it held
    open at once."""
    open_now = 0

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now
        open_now += 1
        peak[0] = max(peak[0], open_now)
        try:
            await reader.read()
        finally:
            open_now -= 1
            writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_a_silent_redis_times_out_on_an_idle_loop() -> None:
    peak = [0]
    async with silent_server(peak) as port:
        client = redis_client(f"redis://127.0.0.1:{port}/0", max_connections=2)
        try:
            with pytest.raises(RedisCallError) as caught:
                await redis_call(client, 0.05, 5.0, "GET", "k")
        finally:
            await client.aclose()
    assert caught.value.reason == "timeout"


async def test_calls_failing_while_connecting_keep_the_pool_within_its_bound() -> None:
    """Each call times out while its connection is being set up; the pool gives its slot
    back once per call, so a later burst still opens no more than the bound."""
    peak = [0]
    async with silent_server(peak) as port:
        client = redis_client(f"redis://127.0.0.1:{port}/0", max_connections=2)
        try:
            for _ in range(6):
                with pytest.raises(RedisCallError):
                    await redis_call(client, 0.02, 0.02, "GET", "k")
            # Two at a time, each waiting its turn for a connection: all reach the server
            # and time out there, none is refused for want of a connection.
            outcomes = await asyncio.gather(
                *(redis_call(client, 0.05, 2.0, "GET", "k") for _ in range(8)),
                return_exceptions=True,
            )
        finally:
            await client.aclose()
    assert [o.reason if isinstance(o, RedisCallError) else o for o in outcomes] == ["timeout"] * 8
    assert peak[0] <= 2
