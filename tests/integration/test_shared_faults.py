"""Two replicas of the real app on one real Redis: a disruption set through either acts on
both, ends on both when either cancels or clears it, and expires on both at one instant; the
circuit breaker's settings are shared while each replica's breaker keeps its own state.

Requests to a replica's user API are made without any control call to it first, so what they
show is the copy its requests read, kept in step by its sync loop, not an API read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from simulator.options import HEADER, PipelineOptions
from tests.support.configs import config_with
from tests.support.labs import Lab, running_lab, sample
from tests.support.servers import RedisProcess

DIRECT = {HEADER: PipelineOptions(cache_enabled=False, retries_enabled=False).encode()}
HEALTHY = config_with(db_latency_min_ms=0, db_latency_max_ms=1, max_retries=2).model_dump()
FAILING = config_with(
    failure_injection_enabled=True,
    failure_rate=1.0,
    db_latency_min_ms=0,
    db_latency_max_ms=0,
    max_retries=2,
).model_dump()
OUTAGE = {"type": "db_outage", "severity": 1.0, "duration_seconds": 60}
SYNC_SECONDS = 0.2


@asynccontextmanager
async def two_replicas(redis_url: str, **overrides: Any) -> AsyncIterator[tuple[Lab, Lab]]:
    settings = {
        "redis_url": redis_url,
        "shared_sync_interval_seconds": SYNC_SECONDS,
        "redis_restore_interval_seconds": 0.2,
        **overrides,
    }
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(running_lab(embedded_shim=False, **settings))
        b = await stack.enter_async_context(running_lab(embedded_shim=False, **settings))
        assert (await a.http.put("/v1/config/failure", json=HEALTHY)).status_code == 200
        yield a, b


async def until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 5.0) -> None:
    """Wait for ``check`` to hold (the replicas sync every SYNC_SECONDS)."""
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.05)


async def outage_fails(http: httpx.AsyncClient) -> bool:
    """Whether a database read fails with the outage (severity 1.0: every time, or never)."""
    response = await http.get("/api/v1/users/1", headers=DIRECT)
    failed = response.status_code == 503 and "disruption: db_outage" in response.text
    assert failed or response.status_code == 200, response.text
    return failed


async def create(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post("/v1/disruptions", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def listed(http: httpx.AsyncClient) -> list[str]:
    answer = await http.get("/v1/disruptions")
    assert answer.status_code == 200, answer.text
    return [d["disruption_id"] for d in answer.json()["disruptions"]]


async def test_a_disruption_created_on_one_replica_acts_on_the_other(
    redis_client: Redis, redis_url: str
) -> None:
    async with two_replicas(redis_url) as (a, b):
        created = await create(a.http, OUTAGE)

        async def b_fails() -> bool:
            return await outage_fails(b.http)

        await until(b_fails, "replica B's requests fail with A's outage")
        assert sample(b.app, "failure_lab_disruptions_active", type="db_outage") == 1
        answer = (await b.http.get("/v1/disruptions")).json()
        assert answer["count"] == 1
        (seen,) = answer["disruptions"]
        same = ("disruption_id", "type", "severity", "endpoints", "created_at", "active_until")
        assert {k: seen[k] for k in same} == {k: created[k] for k in same}
        assert seen["status"] == "active"

        # Requests affected are summed over the replicas: 3 on A, 2 more on B.
        for _ in range(3):
            assert await outage_fails(a.http)
        assert await outage_fails(b.http)
        one = f"/v1/disruptions/{created['disruption_id']}"

        async def counted_on_both() -> bool:
            counts = [(await lab.http.get(one)).json()["requests_affected"] for lab in (a, b)]
            return counts == [5, 5]

        await until(counted_on_both, "requests_affected summed to 5 on both replicas")
        affected = "failure_lab_disruption_requests_affected_total"
        assert sample(a.app, affected, type="db_outage") == 3
        assert sample(b.app, affected, type="db_outage") == 2

        # A replica started now applies it from its first request.
        settings = {"redis_url": redis_url, "shared_sync_interval_seconds": SYNC_SECONDS}
        async with running_lab(embedded_shim=False, **settings) as c:
            assert await outage_fails(c.http)


async def test_cancel_on_one_replica_ends_it_on_the_other(
    redis_client: Redis, redis_url: str
) -> None:
    async with two_replicas(redis_url) as (a, b):
        created = await create(a.http, OUTAGE)
        assert await outage_fails(a.http)
        cancelled = await b.http.delete(f"/v1/disruptions/{created['disruption_id']}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"

        failed_on_a = 1

        async def a_recovered() -> bool:
            nonlocal failed_on_a
            if await outage_fails(a.http):
                failed_on_a += 1  # sent before A's next sync: the outage still acted here
                return False
            return True

        await until(a_recovered, "replica A's requests succeed once B cancelled the outage")
        ended = "failure_lab_disruptions_ended_total"
        assert sample(a.app, ended, type="db_outage", reason="cancelled") == 1
        assert sample(a.app, "failure_lab_disruptions_active", type="db_outage") == 0
        on_a = (await a.http.get(f"/v1/disruptions/{created['disruption_id']}")).json()
        assert on_a["status"] == "cancelled"
        assert on_a["ended_at"] == cancelled.json()["ended_at"]
        assert on_a["requests_affected"] == failed_on_a
        assert await listed(a.http) == []
        again = await a.http.delete(f"/v1/disruptions/{created['disruption_id']}")
        assert again.status_code == 409
        assert "already cancelled" in again.json()["detail"]


async def test_clear_all_on_one_replica_ends_every_one_on_the_other(
    redis_client: Redis, redis_url: str
) -> None:
    async with two_replicas(redis_url) as (a, b):
        outage = await create(a.http, OUTAGE)
        burst = await create(a.http, {"type": "error_burst", "severity": 1, "duration_seconds": 60})
        assert (await a.http.get("/api/v1/users/1", headers=DIRECT)).status_code == 500

        cleared = await b.http.post("/v1/disruptions/clear-all")
        assert cleared.status_code == 200, cleared.text
        assert cleared.json()["cleared"] == 2
        ids = [d["disruption_id"] for d in cleared.json()["disruptions"]]
        assert ids == [outage["disruption_id"], burst["disruption_id"]]  # oldest first

        async def a_clear() -> bool:
            response = await a.http.get("/api/v1/users/1", headers=DIRECT)
            return response.status_code == 200

        await until(a_clear, "replica A's requests succeed once B cleared everything")
        assert await listed(a.http) == []
        assert (await a.http.post("/v1/disruptions/clear-all")).json()["cleared"] == 0


async def test_expiry_is_the_same_instant_on_both(redis_client: Redis, redis_url: str) -> None:
    async with two_replicas(redis_url) as (a, b):
        created = await create(a.http, {**OUTAGE, "duration_seconds": 1.0})

        async def b_fails() -> bool:
            return await outage_fails(b.http)

        await until(b_fails, "replica B applies the outage")
        await asyncio.sleep(1.2)  # past the deadline; no call to either replica meanwhile
        for lab in (a, b):
            assert sample(lab.app, "failure_lab_disruptions_active", type="db_outage") == 0
            assert not await outage_fails(lab.http)
            assert await listed(lab.http) == []
        ended = [
            (await lab.http.get(f"/v1/disruptions/{created['disruption_id']}")).json()
            for lab in (a, b)
        ]
        assert [d["status"] for d in ended] == ["expired", "expired"]
        # Both end it at its planned end, the one wall-clock instant stored with it.
        assert [d["ended_at"] for d in ended] == [created["active_until"]] * 2
        reason = {"type": "db_outage", "reason": "expired"}
        assert [
            sample(lab.app, "failure_lab_disruptions_ended_total", **reason) for lab in (a, b)
        ] == [
            1,
            1,
        ]


async def test_too_many_active_counts_every_replica(redis_client: Redis, redis_url: str) -> None:
    async with two_replicas(redis_url, max_active_disruptions=2) as (a, b):
        await create(a.http, {**OUTAGE, "severity": 0})
        await create(b.http, {**OUTAGE, "severity": 0})
        refused = await a.http.post("/v1/disruptions", json=OUTAGE)
        assert refused.status_code == 409
        assert "FAILURE_LAB_MAX_ACTIVE_DISRUPTIONS" in refused.json()["detail"]
        assert len(await listed(a.http)) == len(await listed(b.http)) == 2


async def test_breaker_settings_are_shared_and_its_state_is_not(
    redis_client: Redis, redis_url: str
) -> None:
    async with two_replicas(redis_url) as (a, b):
        breaker = {"enabled": True, "failure_threshold": 2, "open_seconds": 60}
        put = await a.http.put("/v1/config/circuit-breaker", json=breaker)
        assert put.status_code == 200, put.text
        on_b = (await b.http.get("/v1/config/circuit-breaker")).json()
        assert {k: on_b[k] for k in breaker} == breaker

        async def b_enabled() -> bool:
            return sample(b.app, "failure_lab_circuit_breaker_enabled") == 1

        await until(b_enabled, "replica B's breaker is on")

        # Failures on A open A's breaker; B's, asked by none of them, stays closed.
        assert (await a.http.put("/v1/config/failure", json=FAILING)).status_code == 200
        outcomes = [
            (await a.http.get("/api/v1/users/1", headers=DIRECT)).json()["detail"] for _ in range(3)
        ]
        assert outcomes[2].startswith("circuit open")
        status_a = (await a.http.get("/v1/config/circuit-breaker")).json()
        status_b = (await b.http.get("/v1/config/circuit-breaker")).json()
        assert (status_a["state"], status_a["trips"]) == ("open", 1)
        assert (status_b["state"], status_b["trips"], status_b["consecutive_failures"]) == (
            "closed",
            0,
            0,
        )
        # B's own failures count on B's breaker, from zero.
        first = await b.http.get("/api/v1/users/1", headers=DIRECT)
        assert not first.json()["detail"].startswith("circuit open")
        status_b = (await b.http.get("/v1/config/circuit-breaker")).json()
        assert (status_b["state"], status_b["consecutive_failures"]) == ("closed", 1)
        assert sample(a.app, "failure_lab_circuit_breaker_state", state="open") == 1
        assert sample(b.app, "failure_lab_circuit_breaker_state", state="closed") == 1


async def test_with_redis_down_writes_are_503_and_replicas_act_on_what_they_knew(
    tmp_path: Path,
) -> None:
    redis = RedisProcess(tmp_path)
    redis.start()
    try:
        async with two_replicas(redis.url) as (a, b):
            created = await create(a.http, OUTAGE)
            short = await create(a.http, {**OUTAGE, "severity": 0, "duration_seconds": 1.5})

            async def b_fails() -> bool:
                return await outage_fails(b.http)

            await until(b_fails, "replica B applies the outage")
            assert len(await listed(b.http)) == 2
            redis.kill()

            writes = [
                await b.http.post("/v1/disruptions", json=OUTAGE),
                await b.http.delete(f"/v1/disruptions/{created['disruption_id']}"),
                await b.http.post("/v1/disruptions/clear-all"),
                await b.http.put(
                    "/v1/config/circuit-breaker",
                    json={"enabled": True, "failure_threshold": 3, "open_seconds": 5},
                ),
            ]
            for response in writes:
                assert response.status_code == 503, response.text
                assert "redis" in response.json()["detail"]
            for lab in (a, b):  # still acting on, and answering, what each knew
                assert await outage_fails(lab.http)
                assert await listed(lab.http) == [
                    created["disruption_id"],
                    short["disruption_id"],
                ]
            await asyncio.sleep(1.6)  # the short one expires on time without Redis
            for lab in (a, b):
                assert await listed(lab.http) == [created["disruption_id"]]
            breaker = (await b.http.get("/v1/config/circuit-breaker")).json()
            assert breaker["enabled"] is False
    finally:
        redis.kill()
