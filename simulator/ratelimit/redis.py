"""The shared rate limiter: limits kept in Redis so every simulator replica enforces one limit.

Each algorithm is one Lua script run with EVALSHA, so a decision (read state, decide, write
state) is atomic however many processes share the limit. The scripts perform the float
operations of ``simulator.ratelimit.algorithms`` in the same order, so both backends decide
identically. ``now`` comes from the caller's clock as an argument rather than from Redis
``TIME``: tests drive both backends with one scripted clock, and processes on one machine
share one clock anyway.

Floats cross the boundary as text that round-trips exactly: Python sends ``repr``, Lua
stores and returns ``%.17g`` (Lua's own ``tostring`` keeps only 14 digits, and a number
returned from Lua would be truncated to an integer). Each write sets a PEXPIRE of the
algorithm's idle horizon plus a margin, so idle limits vanish and a fresh one decides alike.

Redis failing or answering slower than ``timeout`` raises ``RateLimiterUnavailable`` with
the reason; the caller decides whether to fail open. The timeout measures Redis's answer,
not this process's own queueing (:mod:`simulator.redis_call`), so a busy process does not
fail its own decisions open.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import Tracer
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from failure_lab.control import RateLimitAlgorithm
from simulator.ratelimit.algorithms import (
    ALGORITHMS,
    DEFAULT_MAX_QUEUE_DELAY,
    EPSILON,
    idle_horizon,
    limit_key,
)
from simulator.ratelimit.base import Decision, RateLimiterUnavailable
from simulator.redis_call import LazyArgument, RedisCallError, redis_call

EXPIRY_MARGIN_MS = 1000
"""Kept beyond the idle horizon, for clocks of processes and Redis that disagree slightly."""

# Every script: KEYS[1] = the limit's hash; ARGV = rate, now, epsilon, ttl_ms, max_queue_delay.
# Each returns {allowed (0 or 1), delay as %.17g text}.
_PRELUDE = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local eps = tonumber(ARGV[3])
local ttl_ms = tonumber(ARGV[4])
local max_queue_delay = tonumber(ARGV[5])
local function fmt(x)
  return string.format('%.17g', x)
end
"""

_TOKEN_BUCKET = """
local capacity = math.max(rate, 1.0)
local state = redis.call('HMGET', key, 'tokens', 'updated')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  tokens = capacity
  updated = now
end
local elapsed = math.max(0.0, now - updated)
tokens = math.min(capacity, tokens + elapsed * rate)
updated = math.max(updated, now)
local allowed = 0
if tokens >= 1.0 - eps then
  tokens = tokens - 1.0
  allowed = 1
end
redis.call('HSET', key, 'tokens', fmt(tokens), 'updated', fmt(updated))
redis.call('PEXPIRE', key, ttl_ms)
return {allowed, '0'}
"""

_LEAKY_BUCKET = """
local slot = now
local next_free = tonumber(redis.call('HGET', key, 'next_free'))
if next_free ~= nil then
  slot = math.max(now, next_free)
end
local delay = slot - now
if delay > max_queue_delay + eps then
  return {0, '0'}
end
redis.call('HSET', key, 'next_free', fmt(slot + 1.0 / rate))
redis.call('PEXPIRE', key, ttl_ms)
return {1, fmt(delay)}
"""

_FIXED_WINDOW = """
local window = math.floor(now)
local state = redis.call('HMGET', key, 'window', 'count')
local stored = tonumber(state[1])
local count = tonumber(state[2])
if stored == nil or count == nil or window > stored then
  count = 0
else
  window = stored
end
if count < rate then
  redis.call('HSET', key, 'window', fmt(window), 'count', fmt(count + 1))
  redis.call('PEXPIRE', key, ttl_ms)
  return {1, '0'}
end
return {0, '0'}
"""

_SLIDING_WINDOW = """
local window = math.floor(now)
local state = redis.call('HMGET', key, 'start', 'prev', 'curr')
local start = tonumber(state[1])
local prev = tonumber(state[2])
local curr = tonumber(state[3])
if start == nil or prev == nil or curr == nil or window > start + 1.0 then
  start, prev, curr = window, 0, 0
elseif window == start + 1.0 then
  start, prev, curr = window, curr, 0
end
local elapsed = math.max(0.0, now - start)
local estimate = prev * (1.0 - elapsed) + curr
local allowed = 0
if estimate < rate - eps then
  curr = curr + 1
  allowed = 1
end
redis.call('HSET', key, 'start', fmt(start), 'prev', fmt(prev), 'curr', fmt(curr))
redis.call('PEXPIRE', key, ttl_ms)
return {allowed, '0'}
"""

_SCRIPTS: dict[RateLimitAlgorithm, str] = {
    "token_bucket": _TOKEN_BUCKET,
    "leaky_bucket": _LEAKY_BUCKET,
    "fixed_window": _FIXED_WINDOW,
    "sliding_window": _SLIDING_WINDOW,
}


class RedisRateLimiter:
    """``RateLimiter`` whose limits live in Redis under ``key_prefix``.

    ``client`` is owned by the caller (``aclose`` leaves it open). ``timeout`` bounds
    Redis's answer to one decision, measured from when it is sent; ``bound`` the whole
    decision, the wait for a connection and a busy event loop included
    (:mod:`simulator.redis_call`).
    """

    def __init__(
        self,
        client: Redis,
        clock: Callable[[], float] = time.time,
        max_queue_delay: float = DEFAULT_MAX_QUEUE_DELAY,
        key_prefix: str = "failure-lab:ratelimit:",
        timeout: float = 0.05,
        bound: float = 5.0,
        tracer: Tracer | None = None,
    ) -> None:
        self._client = client
        self._clock = clock
        self._max_queue_delay = max_queue_delay
        self._key_prefix = key_prefix
        self._timeout = timeout
        self._bound = bound
        self._tracer = tracer
        self._shas: dict[RateLimitAlgorithm, str] = {
            algorithm: hashlib.sha1(
                (_PRELUDE + _SCRIPTS[algorithm]).encode(), usedforsecurity=False
            ).hexdigest()
            for algorithm in ALGORITHMS
        }

    def key(self, algorithm: RateLimitAlgorithm, rate: float) -> str:
        """The Redis key holding the limit of ``algorithm`` at ``rate``."""
        return self._key_prefix + limit_key(algorithm, rate)

    async def acquire(self, algorithm: RateLimitAlgorithm, rate: float) -> Decision:
        key = self.key(algorithm, rate)
        horizon = idle_horizon(algorithm, rate, self._max_queue_delay)
        ttl_ms = math.ceil(horizon * 1000.0) + EXPIRY_MARGIN_MS
        # "now" is read as the command is written: read before a wait for a connection on a
        # busy replica, it would reach Redis after decisions that read theirs later, and a
        # window that has moved on would be decided as the one before.
        args = (
            repr(float(rate)),
            lambda: repr(float(self._clock())),
            repr(EPSILON),
            str(ttl_ms),
            repr(float(self._max_queue_delay)),
        )
        try:
            try:
                reply = await self._call("EVALSHA", self._shas[algorithm], key, args)
            except NoScriptError:
                # Redis restarted, or never saw the script: EVAL runs it and caches it there.
                reply = await self._call("EVAL", _PRELUDE + _SCRIPTS[algorithm], key, args)
        except RedisCallError as exc:
            raise RateLimiterUnavailable(exc.reason, f"redis rate limiter: {exc}") from exc
        except RedisError as exc:
            message = f"redis rate limiter failed: {exc}"
            raise RateLimiterUnavailable("unavailable", message) from exc
        allowed, delay = reply
        return Decision(allowed=int(allowed) == 1, delay=float(delay))

    async def _call(self, name: str, script: str, key: str, args: tuple[LazyArgument, ...]) -> Any:
        return await redis_call(
            self._client, self._timeout, self._bound, name, script, 1, key, *args,
            tracer=self._tracer,
        )  # fmt: skip

    async def aclose(self) -> None:
        """Nothing to release: the Redis client belongs to the caller."""
