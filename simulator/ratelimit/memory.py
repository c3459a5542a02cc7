"""The in-process rate limiter: one replica's limits, kept in a dict.

Each simulator process limits on its own, so N replicas admit N times the rate; use
``RedisRateLimiter`` to share a limit. ``acquire`` never awaits, so on one event loop every
decision is atomic without a lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from failure_lab.control import RateLimitAlgorithm
from simulator.ratelimit.algorithms import DEFAULT_MAX_QUEUE_DELAY, Limit, limit_key, new_limit
from simulator.ratelimit.base import Decision


class MemoryRateLimiter:
    """``RateLimiter`` over the algorithms of ``simulator.ratelimit.algorithms``.

    ``clock`` gives the time in seconds; ``max_queue_delay`` bounds the leaky bucket's wait.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        max_queue_delay: float = DEFAULT_MAX_QUEUE_DELAY,
    ) -> None:
        self._clock = clock
        self._max_queue_delay = max_queue_delay
        self._limits: dict[str, Limit] = {}

    async def acquire(self, algorithm: RateLimitAlgorithm, rate: float) -> Decision:
        key = limit_key(algorithm, rate)
        limit = self._limits.get(key)
        if limit is None:
            limit = new_limit(algorithm, rate, self._max_queue_delay)
            self._limits[key] = limit
        return limit.acquire(self._clock())

    async def aclose(self) -> None:
        self._limits.clear()
