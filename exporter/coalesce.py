"""One backend query per figure per interval, however many clients ask.

Concurrent requests for the same figures (``/metrics/json`` with the same window, the live
feed's tick) await one shared query, and its answer is reused for ``ttl`` seconds, half a
scrape or sample interval by default, so the live feed's one-second tick always finds a
fresh answer. Without this, 50 clients polling ``/metrics/json`` put 250 concurrent PromQL
queries on Prometheus, past its default query concurrency, and every client waited for the
backend timeout. Failures are not kept: the next ask tries the backend again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class Coalescer:
    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: dict[Hashable, tuple[float, asyncio.Future[Any]]] = {}

    async def get(self, key: Hashable, query: Callable[[], Awaitable[T]]) -> T:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is None or (entry[1].done() and entry[0] <= now):
            future: asyncio.Future[Any] = asyncio.ensure_future(query())
            self._entries[key] = (now + self._ttl, future)
            future.add_done_callback(lambda done: self._forget_failure(key, done))
            entry = self._entries[key]
        result: T = await asyncio.shield(entry[1])
        return result

    def _forget_failure(self, key: Hashable, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            current = self._entries.get(key)
            if current is not None and current[1] is future:
                del self._entries[key]
        if len(self._entries) > 64:  # windows are few; drop answers past their time
            now = self._clock()
            for stale in [
                k for k, (expires, f) in self._entries.items() if f.done() and expires <= now
            ]:
                del self._entries[stale]
