"""Disruptions in a real Redis, seen by two registries (two replicas' copies): wall-clock
deadlines, the active bound over both, ended ones kept to their bound, counts summed, and a
copy written back to a Redis that lost it."""

from __future__ import annotations

import random
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from failure_lab.control import DisruptionRequest
from failure_lab.errors import Conflict, NotFound
from failure_lab.settings import Settings
from simulator.database import DatabaseError
from simulator.disruption_scope import SharedRecord
from simulator.disruptions import DisruptionRegistry
from simulator.redis_client import redis_client
from simulator.redis_disruptions import DisruptionStoreUnavailable, RedisDisruptions
from simulator.telemetry.metrics import ServiceMetrics
from tests.conftest import free_port

WALL = 1_800_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def registry(mono: Clock, wall: Clock, **overrides: Any) -> DisruptionRegistry:
    settings = Settings.model_validate(overrides)
    metrics = ServiceMetrics(CollectorRegistry())
    return DisruptionRegistry(settings, metrics, random.Random(0), clock=mono, wall=wall)


def request(seconds: float = 10.0, kind: str = "db_outage") -> DisruptionRequest:
    return DisruptionRequest.model_validate(
        {"type": kind, "severity": 1.0, "duration_seconds": seconds}
    )


def fail_once(copy: DisruptionRegistry) -> None:
    """One request that the copy's db_outage fails (and counts)."""
    scope = copy.scope("/api/v1/users", TracerProvider().get_tracer("t").start_span("s"))
    assert scope is not None
    with pytest.raises(DatabaseError):
        scope.db_attempt(1)


def test_an_adopted_record_ends_at_its_wall_clock_deadline() -> None:
    mono, wall = Clock(50.0), Clock(WALL + 4)
    copy = registry(mono, wall)
    record = SharedRecord("d1", "db_outage", 1.0, ("/api/v1/users",), 10.0, WALL)
    copy.adopt([record], complete=True)
    (seen,) = copy.list_active()
    assert seen.time_remaining_seconds == 6
    assert seen.active_until.timestamp() == WALL + 10
    mono.now += 5.999
    assert copy.count_active("db_outage") == 1
    mono.now += 0.001
    assert copy.count_active("db_outage") == 0
    assert copy.get("d1").status == "expired"
    assert copy.get("d1").ended_at is not None
    assert copy.get("d1").ended_at.timestamp() == WALL + 10
    # Past its deadline when first seen: readable, never active here.
    late = SharedRecord("d2", "db_outage", 1.0, ("/api/v1/users",), 1.0, WALL)
    copy.adopt([late], complete=False)
    assert copy.get("d2").status == "expired"
    assert copy.count_active("db_outage") == 0


async def test_two_copies_share_creates_bounds_cancels_and_counts(
    redis_client: Redis, redis_url: str
) -> None:
    other = redis_client_for(redis_url)
    mono, wall = Clock(0.0), Clock(WALL)
    a = RedisDisruptions(redis_client, registry(mono, wall, max_active_disruptions=2))
    b = RedisDisruptions(other, registry(Clock(900.0), wall, max_active_disruptions=2))
    try:
        first = await a.create(request())
        await b.create(request(kind="error_burst"))
        with pytest.raises(Conflict, match="FAILURE_LAB_MAX_ACTIVE_DISRUPTIONS"):
            await a.create(request())
        assert [d.disruption_id for d in await b.list_active()] == [
            d.disruption_id for d in await a.list_active()
        ]

        fail_once(a.registry)
        await b.refresh()
        fail_once(b.registry)
        fail_once(b.registry)
        await b.refresh()
        await a.refresh()
        assert (await a.get(first.disruption_id)).requests_affected == 3
        assert (await b.get(first.disruption_id)).requests_affected == 3

        cancelled = await b.cancel(first.disruption_id)
        assert cancelled.status == "cancelled"
        await a.refresh()
        assert a.registry.count_active("db_outage") == 0
        with pytest.raises(Conflict, match="already cancelled"):
            await a.cancel(first.disruption_id)
        with pytest.raises(NotFound):
            await a.cancel("0" * 32)
        # One slot is free again, for either replica.
        await a.create(request(kind="cache_outage"))
    finally:
        await other.aclose()


async def test_ended_ones_are_kept_to_their_bound_and_active_ones_always(
    redis_client: Redis,
) -> None:
    wall = Clock(WALL)
    shared = RedisDisruptions(redis_client, registry(Clock(0.0), wall, finished_disruptions_kept=2))
    ended = []
    for _ in range(4):
        made = await shared.create(request())
        ended.append((await shared.cancel(made.disruption_id)).disruption_id)
        wall.now += 1
    active = await shared.create(request(seconds=60))
    stored = {key.decode() for key in await redis_client.hkeys("failure-lab:disruptions")}
    assert stored == {*ended[-2:], active.disruption_id}


async def test_a_copy_is_written_back_to_a_redis_that_lost_it(redis_client: Redis) -> None:
    wall = Clock(WALL)
    shared = RedisDisruptions(redis_client, registry(Clock(0.0), wall))
    kept = await shared.create(request(seconds=60))
    gone = await shared.create(request(seconds=60))
    await shared.cancel(gone.disruption_id)
    fail_once(shared.registry)
    await shared.refresh()
    assert not await shared.lost()

    await redis_client.flushdb()  # a restart without persistence
    assert await shared.lost()
    await shared.refresh()  # an empty Redis does not empty the copy
    assert [d.disruption_id for d in await shared.list_active()] == [kept.disruption_id]
    assert await shared.write_back()
    assert not await shared.lost()

    fresh = RedisDisruptions(redis_client, registry(Clock(0.0), wall))
    await fresh.refresh()
    assert [d.disruption_id for d in await fresh.list_active()] == [kept.disruption_id]
    assert (await fresh.get(kept.disruption_id)).requests_affected == 1
    assert (await fresh.get(gone.disruption_id)).status == "cancelled"

    # A write made after the loss is never undone by a write-back.
    await redis_client.flushdb()
    newer = await fresh.create(request(seconds=30))
    assert not await shared.write_back()
    assert [d.disruption_id for d in await fresh.list_active()] == [newer.disruption_id]


async def test_redis_down_refuses_writes_and_reads_the_copy() -> None:
    dead = redis_client_for(f"redis://127.0.0.1:{free_port()}/0")
    try:
        copy = registry(Clock(0.0), Clock(WALL))
        copy.adopt(
            [SharedRecord("d1", "db_outage", 1.0, ("/api/v1/users",), 10.0, WALL)],
            complete=True,
        )
        shared = RedisDisruptions(dead, copy)
        with pytest.raises(DisruptionStoreUnavailable):
            await shared.create(request())
        with pytest.raises(DisruptionStoreUnavailable):
            await shared.clear()
        fail_once(copy)
        with pytest.raises(DisruptionStoreUnavailable):
            await shared.refresh()
        # Reads answer the copy, its count kept to be handed over later.
        (seen,) = await shared.list_active()
        assert (seen.disruption_id, seen.requests_affected) == ("d1", 1)
        assert copy.take_unflushed() == {"d1": 1}
    finally:
        await dead.aclose()


def redis_client_for(url: str) -> Redis:
    return redis_client(url)
