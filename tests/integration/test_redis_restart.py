"""A Redis restart (empty: no persistence) does not end an experiment: the failure config, the
breaker's config and the disruptions two replicas held are written back, and carry on."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from tests.support.configs import config_with
from tests.support.labs import running_lab, sample
from tests.support.servers import RedisProcess

FAILING = config_with(
    failure_injection_enabled=True, failure_rate=0.3, max_retries=2, db_latency_max_ms=7
).model_dump()
BREAKER = {"enabled": True, "failure_threshold": 3, "open_seconds": 9}
DISRUPTION = {"type": "db_latency_spike", "severity": 0.5, "duration_seconds": 120}


async def eventually(http: httpx.AsyncClient, path: str, expected: object) -> object:
    deadline = time.monotonic() + 5
    while True:
        answer = await http.get(path)
        if (answer.status_code == 200 and answer.json() == expected) or (
            time.monotonic() > deadline
        ):
            return answer.json() if answer.status_code == 200 else answer.status_code
        await asyncio.sleep(0.1)


async def written_back(url: str) -> bytes:
    """The stored config, once a replica has written it back (within 5 s)."""
    raw = Redis.from_url(url)
    try:
        deadline = time.monotonic() + 5
        while (stored := await raw.get("failure-lab:config:failure")) is None:
            assert time.monotonic() < deadline, "nothing was written back"
            await asyncio.sleep(0.05)
        return stored
    finally:
        await raw.aclose()


async def test_the_failure_config_survives_a_redis_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis = RedisProcess(tmp_path)
    redis.start()
    settings = {"redis_url": redis.url, "redis_restore_interval_seconds": 0.2}
    caplog.set_level(logging.WARNING, logger="simulator.shared_state")
    try:
        async with AsyncExitStack() as stack:
            app_a, a, _ = await stack.enter_async_context(running_lab(**settings))
            app_b, b, _ = await stack.enter_async_context(
                running_lab(embedded_shim=False, **settings)
            )
            assert (await a.put("/v1/config/failure", json=FAILING)).status_code == 200
            assert (await b.get("/v1/config/failure")).json() == FAILING
            disruption = (await a.post("/v1/disruptions", json=DISRUPTION)).json()
            assert (await a.put("/v1/config/circuit-breaker", json=BREAKER)).status_code == 200

            redis.kill()
            assert (await a.get("/v1/config/failure")).status_code == 503
            redis.start()  # empty

            assert json.loads(await written_back(redis.url)) == FAILING
            for replica in (a, b):
                assert await eventually(replica, "/v1/config/failure", FAILING) == FAILING
                assert (await replica.get("/health/ready")).status_code == 200
            # A replica started after the restart reads what was written back.
            _, c, _ = await stack.enter_async_context(running_lab(**settings))
            assert (await c.get("/v1/config/failure")).json() == FAILING
            restores = [
                sample(app, "failure_lab_redis_state_restored_total", state="failure_config")
                for app in (app_a, app_b)
            ]
            # Whoever found it missing wrote it back: usually one replica, both if they
            # looked within the same few milliseconds. Each write-back is counted and logged.
            assert sum(restores) in (1.0, 2.0)
            assert caplog.text.count("redis had lost the failure_config") == sum(restores)

            # The shared disruptions and breaker config came back too, for every replica.
            shared = ("disruptions", "circuit_breaker_config")

            def restored(state: str) -> float:
                return sum(
                    sample(app, "failure_lab_redis_state_restored_total", state=state)
                    for app in (app_a, app_b)
                )

            deadline = time.monotonic() + 5
            while not all(restored(state) for state in shared):
                assert time.monotonic() < deadline, "not all shared state was written back"
                await asyncio.sleep(0.05)
            for replica in (a, b, c):
                active = (await replica.get("/v1/disruptions")).json()["disruptions"]
                assert [d["disruption_id"] for d in active] == [disruption["disruption_id"]]
                assert active[0]["active_until"] == disruption["active_until"]
                breaker = (await replica.get("/v1/config/circuit-breaker")).json()
                assert {k: breaker[k] for k in BREAKER} == BREAKER
            assert [restored(state) in (1.0, 2.0) for state in shared] == [True, True]
    finally:
        redis.kill()
