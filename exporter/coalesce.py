"""One backend query per figure per interval, however many clients ask.

Concurrent requests for the same figures (``/metrics/json`` with the same window, the live
feed's tick) await one shared query, and its answer is reused for ``ttl`` seconds, half a
scrape or sample interval by default, so the live feed's one-second tick always finds a
fresh answer. Without this, 50 clients polling ``/metrics/json`` put 250 concurrent PromQL
queries on Prometheus, past its default query concurrency, and every client waited for the
backend timeout. Failures are not kept: the next ask tries the backend again.

Keys carry the client's window and ``at``, so a client varying them adds an entry per ask:
answers past their time are dropped once there are more than a few, and at most
``max_entries`` are kept whatever their age (the oldest go first; an asker already waiting
on a dropped query still gets its answer).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


PRUNE_AT = 64
"""Entries beyond which answers past their time are dropped (windows asked are few)."""


class Coalescer:
    def __init__(
        self,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 256,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self._ttl = ttl_seconds
        self._clock = clock
        self._max = max_entries
        self._entries: dict[Hashable, tuple[float, asyncio.Future[Any]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: Hashable, query: Callable[[], Awaitable[T]]) -> T:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is None or (entry[1].done() and entry[0] <= now):
            future: asyncio.Future[Any] = asyncio.ensure_future(query())
            self._entries.pop(key, None)  # to the end: the oldest entries go first
            self._entries[key] = (now + self._ttl, future)
            future.add_done_callback(lambda done: self._forget_failure(key, done))
            entry = self._entries[key]
            self._prune()
        result: T = await asyncio.shield(entry[1])
        return result

    def _forget_failure(self, key: Hashable, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            current = self._entries.get(key)
            if current is not None and current[1] is future:
                del self._entries[key]
        self._prune()

    def _prune(self) -> None:
        entries = self._entries
        if len(entries) <= min(PRUNE_AT, self._max):
            return
        now = self._clock()
        for stale in [k for k, (expires, f) in entries.items() if f.done() and expires <= now]:
            del entries[stale]
        while len(entries) > self._max:
            del entries[next(iter(entries))]
