"""The one way failure-lab connects to Redis."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry


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
