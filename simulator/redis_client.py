"""The one way failure-lab connects to Redis, and the one way its health is asked."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from failure_lab.errors import BackendFailure
from failure_lab.health import Probe


class RedisUnavailable(BackendFailure):
    def __init__(self, message: str) -> None:
        super().__init__("redis", message)


def redis_client(url: str) -> aioredis.Redis:
    """A client that fails fast: every call is bounded by its caller, and Redis being down
    is an answer (a cache error, a 503), never a wait."""
    return aioredis.from_url(
        url,
        socket_connect_timeout=0.5,
        socket_timeout=2.0,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


def redis_probe(client: aioredis.Redis) -> Probe:
    """PING: returns when Redis answers, raises ``RedisUnavailable`` when it does not.
    Unbounded here; the health probes bound it (:func:`failure_lab.health.bounded`)."""

    async def ping() -> None:
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(str(exc) or type(exc).__name__) from exc

    return ping
