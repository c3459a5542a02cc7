"""Rate limiting for the simulated service: four algorithms, two backends.

``RateLimiter`` is the one interface; ``MemoryRateLimiter`` keeps state in the process and
``RedisRateLimiter`` keeps it in Redis so that every simulator replica shares one limit.
Both take the clock as a dependency so the algorithms can be checked exactly.
"""

from simulator.ratelimit.base import Decision, RateLimiter, RateLimiterUnavailable

__all__ = ["Decision", "RateLimiter", "RateLimiterUnavailable"]
