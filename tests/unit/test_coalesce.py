"""Concurrent asks share one backend query; answers live one interval; failures do not."""

from __future__ import annotations

import asyncio

import pytest

from exporter.coalesce import Coalescer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Backend:
    def __init__(self) -> None:
        self.calls = 0
        self.fail = False
        self.gate = asyncio.Event()

    async def query(self) -> int:
        self.calls += 1
        await self.gate.wait()
        if self.fail:
            raise RuntimeError("down")
        return self.calls


async def test_concurrent_asks_share_one_query_and_reuse_it_for_the_ttl() -> None:
    clock, backend = Clock(), Backend()
    shared = Coalescer(1.0, clock)
    asks = [asyncio.create_task(shared.get("red", backend.query)) for _ in range(50)]
    await asyncio.sleep(0)
    backend.gate.set()
    assert await asyncio.gather(*asks) == [1] * 50
    assert backend.calls == 1
    clock.now = 0.999
    assert await shared.get("red", backend.query) == 1
    assert await shared.get("other", backend.query) == 2
    clock.now = 1.0
    assert await shared.get("red", backend.query) == 3
    assert backend.calls == 3


async def test_a_failure_is_shared_by_the_waiting_asks_but_not_kept() -> None:
    clock, backend = Clock(), Backend()
    shared = Coalescer(10.0, clock)
    backend.fail = True
    asks = [asyncio.create_task(shared.get("red", backend.query)) for _ in range(3)]
    await asyncio.sleep(0)
    backend.gate.set()
    results = await asyncio.gather(*asks, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert backend.calls == 1
    backend.fail = False
    assert await shared.get("red", backend.query) == 2


async def test_a_cancelled_asker_does_not_cancel_the_shared_query() -> None:
    backend = Backend()
    shared = Coalescer(1.0, Clock())
    first = asyncio.create_task(shared.get("red", backend.query))
    second = asyncio.create_task(shared.get("red", backend.query))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    backend.gate.set()
    assert await second == 1
