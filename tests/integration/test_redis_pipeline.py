"""The pipeline on a real redis-server: shared limits and config, caching, Redis dying."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from simulator.options import HEADER, PipelineOptions
from tests.support.configs import config_with
from tests.support.labs import running_lab, sample
from tests.support.servers import RedisProcess


def fast() -> dict[str, object]:
    return config_with(db_latency_min_ms=0, db_latency_max_ms=1).model_dump()


async def test_two_instances_share_one_rate_limit(redis_client: object, redis_url: str) -> None:
    async with AsyncExitStack() as stack:
        app_a, a, _ = await stack.enter_async_context(running_lab(redis_url=redis_url))
        app_b, b, _ = await stack.enter_async_context(running_lab(redis_url=redis_url))
        await a.put("/v1/config/failure", json=fast())
        header = {
            HEADER: PipelineOptions(
                rate_limit=5, algorithm="token_bucket", cache_enabled=False
            ).encode()
        }
        statuses = []
        for i in range(20):
            client = a if i % 2 == 0 else b
            statuses.append((await client.get("/api/v1/users/1", headers=header)).status_code)
        admitted = statuses.count(200)
        # One bucket of 5 (plus refill during the run) for both; two buckets would admit >= 10.
        assert 5 <= admitted <= 8, statuses
        assert statuses.count(429) == 20 - admitted
        limited = sum(
            sample(
                app,
                "failure_lab_ratelimit_decisions_total",
                algorithm="token_bucket",
                decision="limited",
            )
            for app in (app_a, app_b)
        )
        assert limited == 20 - admitted


async def test_failure_config_set_on_one_instance_applies_on_the_other(
    redis_client: object, redis_url: str
) -> None:
    async with (
        running_lab(redis_url=redis_url) as (_, a, _),
        running_lab(redis_url=redis_url) as (app_b, b, _),
    ):
        failing = config_with(
            failure_injection_enabled=True,
            failure_rate=1.0,
            max_retries=0,
            db_latency_min_ms=0,
            db_latency_max_ms=0,
        ).model_dump()
        assert (await a.put("/v1/config/failure", json=failing)).status_code == 200
        assert (await b.get("/v1/config/failure")).json() == failing
        header = {HEADER: PipelineOptions(cache_enabled=False).encode()}
        response = await b.get("/api/v1/users/3", headers=header)
        assert response.status_code == 503
        assert sample(app_b, "failure_lab_failure_config", field="failure_rate") == 1.0


async def test_second_read_is_a_cache_hit_in_redis(redis_client: object, redis_url: str) -> None:
    async with running_lab(redis_url=redis_url) as (app, http, spans):
        await http.put("/v1/config/failure", json=fast())
        first = await http.get("/api/v1/users/42")
        second = await http.get("/api/v1/users/42")
        assert first.status_code == second.status_code == 200
        assert (
            first.json()
            == second.json()
            == {"id": 42, "name": "user-42", "email": "user42@example.test"}
        )
        assert sample(app, "failure_lab_cache_requests_total", operation="get", result="miss") == 1
        assert sample(app, "failure_lab_cache_requests_total", operation="get", result="hit") == 1
        names = [s.name for s in spans.get_finished_spans()]
        assert names.count("db.query") == 1
        # The Redis instrumentation traces the commands themselves under the cache spans.
        assert any(n in ("GET", "SET") or n.startswith("GET") for n in names), names


async def test_redis_killed_mid_run_gives_cache_errors_and_answers(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path)
    redis.start()
    try:
        async with running_lab(redis_url=redis.url) as (app, http, spans):
            await http.put("/v1/config/failure", json=fast())
            header = {HEADER: PipelineOptions(rate_limit=1000).encode()}
            for user in range(1, 6):
                assert (await http.get(f"/api/v1/users/{user}", headers=header)).status_code == 200
            redis.kill()
            statuses = [
                (await http.get(f"/api/v1/users/{user}", headers=header)).status_code
                for user in range(1, 11)
            ]
            assert statuses == [200] * 10
            assert (
                sample(app, "failure_lab_cache_requests_total", operation="get", result="error")
                == 10
            )
            assert sample(app, "failure_lab_ratelimit_errors_total") == 10
            events = [
                e for s in spans.get_finished_spans() for e in s.events if e.name == "cache.error"
            ]
            assert len(events) == 10
            assert all(
                e.attributes and e.attributes["kind"] in ("unavailable", "timeout") for e in events
            )
            # The control API names Redis as the backend that is down.
            response = await http.get("/v1/config/failure")
            assert response.status_code == 503
            assert "redis" in response.json()["detail"]
    finally:
        redis.kill()


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window", "leaky_bucket"])
async def test_every_algorithm_limits_through_http(
    redis_client: object, redis_url: str, algorithm: str
) -> None:
    async with running_lab(redis_url=redis_url) as (_, http, _):
        await http.put("/v1/config/failure", json=fast())
        header = {
            HEADER: PipelineOptions(
                rate_limit=3,
                algorithm=algorithm,  # type: ignore[arg-type]
                cache_enabled=False,
            ).encode()
        }
        responses = await asyncio.gather(
            *(http.get("/api/v1/users/1", headers=header) for _ in range(12))
        )
        statuses = [r.status_code for r in responses]
        # 12 at once against 3 req/s: a few admitted (leaky bucket: queued up to 1 s), most refused.
        assert 3 <= statuses.count(200) <= 7, statuses
        assert set(statuses) == {200, 429}
