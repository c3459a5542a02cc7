"""One Redis command whose timeout measures Redis, not this process's own queueing.

Under saturation the event loop is the slowest part of a Redis call: a reply that arrived
in a fraction of a millisecond waits behind hundreds of ready tasks before its caller runs,
and a connection may first have to come free. An ``asyncio.timeout`` around the whole call
counted all of that against Redis, so a busy process timed out its own limiter and cache
and failed open exactly when it was overloaded (docs/benchmarks.md, "Saturation").

So a call has two phases, bounded together by ``bound`` from its start:

1. a connection from the pool, when all are busy (``redis_client``'s pool waits for one
   rather than failing);
2. the round trip, from writing the command to reading its reply, within ``timeout``.
   When the timer that would end it runs late because the loop was busy, the time it ran
   late was this process's, not Redis's: the deadline moves back by as much, never past
   ``bound``. On a loop that is not busy the timer runs on time and the call ends there.

Redis refusing connections is still an answer at once, and a Redis that does not answer
still fails at ``timeout`` on an idle loop. Errors come out as ``RedisCallError`` with a
``reason`` (``timeout``, ``pool_exhausted``, ``unavailable``), which is what the limiter's
fail-open counter and the cache's error events are labelled with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

import redis.asyncio as aioredis
from opentelemetry.trace import SpanKind, Tracer
from redis.asyncio.connection import ConnectionPool
from redis.exceptions import MaxConnectionsError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from simulator.redis_client import PoolExhausted, WaitingConnectionPool

Argument = str | bytes | int | float
LazyArgument = Argument | Callable[[], Argument]
FailureReason = Literal["timeout", "pool_exhausted", "unavailable"]
FAILURE_REASONS: tuple[FailureReason, ...] = ("timeout", "pool_exhausted", "unavailable")

LATE_TOLERANCE = 0.001
"""A timer running later than this was held up by the loop; on an idle loop timers run
well within it."""


class RedisCallError(Exception):
    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason: FailureReason = reason


class _RoundTrip:
    """Cancels ``task`` once ``timeout`` of Redis's own time has passed (see the module)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, give_up: float) -> None:
        self._loop = loop
        self._give_up = give_up
        task = asyncio.current_task()
        assert task is not None, "a Redis call runs in a task"
        self._task = task
        self._expired = False
        self._stopped = False
        due = min(loop.time() + timeout, give_up)
        self._handle = loop.call_at(due, self._check, due)

    def _check(self, due: float) -> None:
        now = self._loop.time()
        late = now - due
        if late > LATE_TOLERANCE and now < self._give_up:
            again = min(now + late, self._give_up)
            self._handle = self._loop.call_at(again, self._check, again)
            return
        self._expired = True
        self._task.cancel()

    def stop(self) -> bool:
        """Stops the timer; True when it had expired (its cancellation is then undone)."""
        if self._stopped:
            return False
        self._stopped = True
        self._handle.cancel()
        return self._expired and self._task.uncancel() == 0


async def redis_call(
    client: aioredis.Redis,
    timeout: float,
    bound: float,
    *command: LazyArgument,
    tracer: Tracer | None = None,
) -> Any:
    """Run ``command`` (name and arguments) and return Redis's raw reply.

    An argument may be a function: it is called as the command is written, for a value
    that must be as fresh as Redis's execution of it (a limiter's "now": taken before a
    wait for a connection, it would reach Redis after decisions that took theirs later).

    ``timeout`` bounds the round trip; ``bound`` (at least ``timeout``) the whole call,
    the wait for a connection and the loop's lateness included. An error reply raises
    ``redis.exceptions.ResponseError`` (``NoScriptError`` for an unknown script) as is;
    everything else that goes wrong raises ``RedisCallError``.
    """
    if tracer is None:
        return await _call(client, timeout, bound, command)
    name = str(command[0])
    attributes = {"db.system": "redis", "db.statement": name + " ?" * (len(command) - 1)}
    with tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes):
        return await _call(client, timeout, bound, command)


async def _call(
    client: aioredis.Redis,
    timeout: float,
    bound: float,
    command: tuple[LazyArgument, ...],
) -> Any:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + max(timeout, bound)
    pool = client.connection_pool
    connection = None
    waiting = pool if isinstance(pool, WaitingConnectionPool) else None
    if waiting is not None:
        await _wait_for_slot(waiting, give_up, bound)
    elif not pool.can_get_connection():
        connection = await _wait_for_connection(pool, give_up, bound)
    # From here on the time is Redis's: connecting (when the pool has none open), the
    # command, the reply.
    round_trip = _RoundTrip(loop, timeout, give_up)
    try:
        if waiting is not None:
            connection = await waiting.connect_slot()
        elif connection is None:
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        await connection.send_command(*(a() if callable(a) else a for a in command))
        return await connection.read_response()
    except asyncio.CancelledError:
        if round_trip.stop():
            raise RedisCallError("timeout", f"redis did not answer within {timeout:g} s") from None
        raise
    except ResponseError:
        raise
    except RedisTimeoutError as exc:
        raise RedisCallError("timeout", f"redis: {exc}") from exc
    except (RedisError, OSError) as exc:
        if isinstance(exc, (PoolExhausted, MaxConnectionsError)):
            raise RedisCallError("pool_exhausted", _exhausted(bound)) from exc
        raise RedisCallError("unavailable", f"redis: {exc}") from exc
    finally:
        round_trip.stop()
        if connection is not None:
            await pool.release(connection)


async def _wait_for_slot(pool: WaitingConnectionPool, give_up: float, bound: float) -> None:
    """Wait for a connection to come free, only when all are busy: this process's own
    queueing, bounded by the call's bound and not by its timeout."""
    if pool.can_get_connection():
        await pool.take_slot()  # at once
        return
    try:
        async with asyncio.timeout_at(give_up):
            await pool.take_slot()
    except (TimeoutError, PoolExhausted):
        raise RedisCallError("pool_exhausted", _exhausted(bound)) from None


async def _wait_for_connection(pool: ConnectionPool, give_up: float, bound: float) -> Any:
    """Every connection is busy: wait for one to come free (this process's own queueing)."""
    try:
        async with asyncio.timeout_at(give_up):
            return await pool.get_connection()  # type: ignore[no-untyped-call]
    except TimeoutError:
        raise RedisCallError("pool_exhausted", _exhausted(bound)) from None
    except (RedisError, OSError) as exc:
        if isinstance(exc, (PoolExhausted, MaxConnectionsError)):
            raise RedisCallError("pool_exhausted", _exhausted(bound)) from exc
        raise RedisCallError("unavailable", f"redis: {exc}") from exc


def _exhausted(bound: float) -> str:
    return f"no redis connection came free within {bound:g} s"
