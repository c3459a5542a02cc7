"""The one way failure-lab connects to Redis, and the one way its health is asked.

The pool is bounded and blocking: a process with more requests in flight than connections
waits (within a bound) for one to come free instead of failing the call with "Too many
connections", which under load used to turn nearly every limiter decision into a fail-open
and every cache read into an error (docs/benchmarks.md, "Saturation").
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from failure_lab.errors import BackendFailure
from failure_lab.health import Probe

DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_POOL_TIMEOUT = 5.0


class RedisUnavailable(BackendFailure):
    def __init__(self, message: str) -> None:
        super().__init__("redis", message)


def redis_client(
    url: str,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    pool_timeout: float = DEFAULT_POOL_TIMEOUT,
) -> aioredis.Redis:
    """A client that fails fast: every call is bounded by its caller, and Redis being down
    is an answer (a cache error, a 503), never a wait.

    At most ``max_connections`` connections are open at once; a call finding them all busy
    waits up to ``pool_timeout`` seconds for one (then ``ConnectionError``).
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        socket_connect_timeout=0.5,
        socket_timeout=2.0,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
    return aioredis.Redis.from_pool(pool)


def redis_probe(client: aioredis.Redis) -> Probe:
    """PING: returns when Redis answers, raises ``RedisUnavailable`` when it does not.
    Unbounded here; the health probes bound it (:func:`failure_lab.health.bounded`)."""

    async def ping() -> None:
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc

    return ping
