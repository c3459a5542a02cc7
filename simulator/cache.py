"""The read cache in front of the simulated database: in-process TTL, or Redis.

Both implementations raise ``CacheError`` for anything that goes wrong (Redis down, slow,
refusing), so the pipeline has one thing to catch: a cache failure is counted and traced,
and the request carries on to the database. Timeouts are per call because
``redis_timeout_seconds`` is part of the live failure config.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import redis.asyncio as aioredis
from opentelemetry.trace import Tracer
from redis.exceptions import RedisError

from simulator.redis_call import RedisCallError, redis_call


class CacheError(Exception):
    """The cache could not answer; ``kind`` is ``timeout``, ``pool_exhausted`` (no Redis
    connection came free in time) or ``unavailable``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Cache(Protocol):
    remote: bool
    """True when calls leave the process; only then do they get spans of their own."""

    async def get(self, key: str, timeout: float) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float, timeout: float) -> None: ...

    async def delete(self, keys: list[str], timeout: float) -> None: ...

    async def aclose(self) -> None: ...


class MemoryCache:
    """A bounded TTL cache; least recently written entries go first when full."""

    remote = False

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    async def get(self, key: str, timeout: float) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self._clock():
            del self._entries[key]
            return None
        return value

    async def set(self, key: str, value: bytes, ttl: float, timeout: float) -> None:
        if ttl <= 0:
            return
        self._entries[key] = (self._clock() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def delete(self, keys: list[str], timeout: float) -> None:
        for key in keys:
            self._entries.pop(key, None)

    async def aclose(self) -> None:
        self._entries.clear()


class RedisCache:
    """Redis-backed cache; the client is owned by the caller.

    A call's ``timeout`` measures Redis's answer, not this process's own queueing; ``bound``
    caps the whole call, a wait for a free connection and a busy event loop included
    (:mod:`simulator.redis_call`).
    """

    remote = True

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = "failure-lab:cache:",
        bound: float = 5.0,
        tracer: Tracer | None = None,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._bound = bound
        self._tracer = tracer

    async def get(self, key: str, timeout: float) -> bytes | None:
        value = await self._call(timeout, "GET", self._prefix + key)
        if value is None or isinstance(value, bytes):
            return value
        return str(value).encode()

    async def set(self, key: str, value: bytes, ttl: float, timeout: float) -> None:
        if ttl <= 0:
            return
        await self._call(timeout, "SET", self._prefix + key, value, "PX", max(1, int(ttl * 1000)))

    async def delete(self, keys: list[str], timeout: float) -> None:
        if keys:
            await self._call(timeout, "DEL", *(self._prefix + k for k in keys))

    async def aclose(self) -> None:
        return None

    async def _call(self, timeout: float, *command: str | bytes | int) -> Any:
        try:
            return await redis_call(
                self._client, timeout, self._bound, *command, tracer=self._tracer
            )
        except RedisCallError as exc:
            raise CacheError(exc.reason, str(exc)) from exc
        except (RedisError, OSError) as exc:
            raise CacheError("unavailable", f"redis: {exc}") from exc
