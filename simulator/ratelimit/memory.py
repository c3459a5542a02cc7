"""The in-process rate limiter: one replica's limits, kept in a bounded dict.

Each simulator process limits on its own, so N replicas admit N times the rate; use
``RedisRateLimiter`` to share a limit. ``acquire`` never awaits, so on one event loop every
decision is atomic without a lock.

A limit is keyed by (algorithm, rate), and the rate comes from the client's options header,
so a client that varies it would add a limit per request. At most ``max_keys`` limits are
kept: the least recently used one is forgotten first and ``on_evict`` is told. A forgotten
limit that was idle past its horizon (``algorithms.idle_horizon``) decides exactly as if it
were kept; one still in use starts afresh (a full bucket, an empty window).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from failure_lab.control import RateLimitAlgorithm
from simulator.ratelimit.algorithms import DEFAULT_MAX_QUEUE_DELAY, Limit, limit_key, new_limit
from simulator.ratelimit.base import Decision


def _nothing() -> None:
    return None


class MemoryRateLimiter:
    """``RateLimiter`` over the algorithms of ``simulator.ratelimit.algorithms``.

    ``clock`` gives the time in seconds; ``max_queue_delay`` bounds the leaky bucket's wait;
    ``max_keys`` bounds the limits kept (least recently used forgotten first).
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        max_queue_delay: float = DEFAULT_MAX_QUEUE_DELAY,
        *,
        max_keys: int = 10_000,
        on_evict: Callable[[], None] = _nothing,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self._clock = clock
        self._max_queue_delay = max_queue_delay
        self._max_keys = max_keys
        self._on_evict = on_evict
        self._limits: OrderedDict[str, Limit] = OrderedDict()

    def __len__(self) -> int:
        """Limits kept now."""
        return len(self._limits)

    async def acquire(self, algorithm: RateLimitAlgorithm, rate: float) -> Decision:
        key = limit_key(algorithm, rate)
        limits = self._limits
        limit = limits.get(key)
        if limit is None:
            limit = new_limit(algorithm, rate, self._max_queue_delay)
            limits[key] = limit
            if len(limits) > self._max_keys:
                limits.popitem(last=False)
                self._on_evict()
        else:
            limits.move_to_end(key)
        return limit.acquire(self._clock())

    async def aclose(self) -> None:
        self._limits.clear()
