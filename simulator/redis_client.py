"""The one way failure-lab connects to Redis, and the one way its health is asked.

The pool is bounded and waits: a process with more requests in flight than connections
waits (within a bound) for one to come free instead of failing the call with "Too many
connections", which under load used to turn nearly every limiter decision into a fail-open
and every cache read into an error (docs/benchmarks.md, "Saturation").

It waits on a semaphore rather than redis-py's ``BlockingConnectionPool``, whose waiters
take a lock in turn: on a busy event loop they came through one per turn of the loop, so
300 calls over 100 connections on a loop turning every 0.2 s waited more than 5 s for a
connection. Released connections wake as many waiters, all in the next turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

from failure_lab.errors import BackendFailure
from failure_lab.health import Probe

DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_POOL_TIMEOUT = 5.0


class RedisUnavailable(BackendFailure):
    def __init__(self, message: str) -> None:
        super().__init__("redis", message)


class PoolExhausted(RedisConnectionError):
    """No connection came free within the pool's timeout."""


class WaitingConnectionPool(ConnectionPool):
    """At most ``max_connections`` connections; ``get_connection`` waits up to ``timeout``
    seconds for one to come free (then ``PoolExhausted``) instead of failing at once."""

    def __init__(self, *, timeout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout = timeout
        self._slots = asyncio.Semaphore(self.max_connections)
        self._holding: set[AbstractConnection] = set()
        """Connections handed out, each holding a slot until released. redis-py releases a
        connection it failed to connect itself, before this pool sees it: only a connection
        in here gives its slot back, so a slot is never given back twice."""

    def can_get_connection(self) -> bool:
        """True when a connection can be had without waiting."""
        return not self._slots.locked()

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        await self.take_slot()
        return await self.connect_slot()

    async def take_slot(self) -> None:
        """Wait (up to ``timeout``) until a connection may be had: this process's own
        queueing. ``connect_slot`` must follow, with no await in between."""
        try:
            async with asyncio.timeout(self.timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise PoolExhausted(
                f"no connection came free within {self.timeout:g} s "
                f"(all {self.max_connections} busy)"
            ) from None

    async def connect_slot(self) -> AbstractConnection:
        """The connection of a slot taken: an open one, or a new one (talking to Redis).
        If that fails the slot is given back."""
        try:
            connection: AbstractConnection = await super().get_connection()  # type: ignore[no-untyped-call]
        except BaseException:
            self._slots.release()
            raise
        self._holding.add(connection)
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        try:
            await super().release(connection)
        finally:
            if connection in self._holding:
                self._holding.discard(connection)
                self._slots.release()


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
    pool = WaitingConnectionPool.from_url(
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
