"""The control plane's guards on a served app: headers, Host, token, CORS, rate limit, body
size, and a client that leaves. Each refusal is a JSON ``detail`` and changes nothing."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from failure_lab.control import FailureConfig
from tests.support.labs import running_lab, sample

TOKEN = "s3cret-token"
BROKEN = {
    "failure_injection_enabled": True,
    "failure_rate": 0.5,
    "db_latency_min_ms": 1,
    "db_latency_max_ms": 2,
    "db_timeout_seconds": 1,
    "redis_timeout_seconds": 0.05,
    "max_retries": 1,
}
DEFAULTS = FailureConfig.defaults().model_dump()


async def failure_config(http: httpx.AsyncClient, **headers: str) -> dict[str, Any]:
    answer = await http.get("/v1/config/failure", headers=headers)
    assert answer.status_code == 200, answer.text
    config: dict[str, Any] = answer.json()
    return config


async def test_every_response_carries_the_security_headers() -> None:
    async with running_lab() as lab:
        answers = [
            await lab.http.get("/api/v1/users/1"),
            await lab.http.get("/v1/config/failure"),
            await lab.http.get("/no/such/path"),
            await lab.http.put("/v1/config/failure", json={"failure_rate": 2}),
            await lab.http.get("/metrics"),
        ]
    assert [a.status_code for a in answers] == [200, 200, 404, 422, 200]
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["content-security-policy"] == "frame-ancestors 'none'"
    for answer in answers[:4]:  # API JSON
        assert answer.headers["cache-control"] == "no-store"


async def test_a_host_not_served_is_refused_and_changes_nothing() -> None:
    async with running_lab() as lab:
        refused = await lab.http.put(
            "/v1/config/failure", json=BROKEN, headers={"host": "rebind.attacker.example"}
        )
        assert refused.status_code == 400
        assert "rebind.attacker.example" in refused.json()["detail"]
        assert "FAILURE_LAB_ALLOWED_HOSTS" in refused.json()["detail"]
        assert await failure_config(lab.http) == DEFAULTS
        for host in ("localhost:1234", "127.0.0.1", "[::1]:80"):
            answer = await lab.http.get("/v1/config/failure", headers={"host": host})
            assert answer.status_code == 200, host


async def test_allowed_hosts_can_be_set() -> None:
    async with running_lab(allowed_hosts="lab.internal") as lab:
        assert (await lab.http.get("/v1/traffic/status")).status_code == 400  # 127.0.0.1
        answer = await lab.http.get("/v1/traffic/status", headers={"host": "lab.internal:8000"})
        assert answer.status_code == 200


async def test_without_a_token_nothing_asks_for_one() -> None:
    async with running_lab() as lab:
        assert (await lab.http.put("/v1/config/failure", json=BROKEN)).status_code == 200


async def test_with_a_token_state_changing_calls_need_it() -> None:
    async with running_lab(api_token=TOKEN) as lab:
        missing = await lab.http.put("/v1/config/failure", json=BROKEN)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="failure-lab"'
        assert "missing bearer token" in missing.json()["detail"]
        wrong = await lab.http.put(
            "/v1/config/failure", json=BROKEN, headers={"authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401
        assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
        generate = await lab.http.post("/v1/traffic/generate", json={"mode": "single"})
        assert generate.status_code == 401
        assert await failure_config(lab.http) == DEFAULTS  # reads stay open
        assert (await lab.http.get("/metrics/json")).status_code == 200
        assert (await lab.http.get("/api/v1/users/1")).status_code == 200  # the workload

        right = await lab.http.put(
            "/v1/config/failure", json=BROKEN, headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert right.status_code == 200
        assert await failure_config(lab.http) == BROKEN


async def test_the_token_can_cover_reads_and_the_live_feed() -> None:
    async with running_lab(api_token=TOKEN, api_token_for_reads=True) as lab:
        assert (await lab.http.get("/v1/config/failure")).status_code == 401
        assert (await lab.http.get("/metrics/json")).status_code == 401
        assert await failure_config(lab.http, authorization=f"Bearer {TOKEN}") == DEFAULTS
        assert (await lab.http.get("/health")).status_code in (200, 503)  # probes stay open
        assert (await lab.http.get("/metrics")).status_code == 200  # and scrapes
        ws_url = str(lab.http.base_url).replace("http", "ws", 1) + "/ws"
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(ws_url):
                pass
        assert refused.value.response.status_code == 403
        async with websockets.connect(f"{ws_url}?access_token={TOKEN}") as ws:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert message["type"] in ("metrics", "status", "heartbeat")


async def test_cors_answers_allowed_origins_only() -> None:
    allowed = "https://grafana.example"
    async with running_lab(cors_allow_origins=f"{allowed}, https://other.example") as lab:
        preflight = {"access-control-request-method": "PUT"}
        ok = await lab.http.options("/v1/config/failure", headers={"origin": allowed, **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == allowed
        refused = await lab.http.options(
            "/v1/config/failure", headers={"origin": "https://evil.example", **preflight}
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        simple = await lab.http.get("/v1/traffic/status", headers={"origin": allowed})
        assert simple.headers["access-control-allow-origin"] == allowed
    async with running_lab() as lab:  # the default allowlist is empty
        answer = await lab.http.get("/v1/traffic/status", headers={"origin": allowed})
        assert "access-control-allow-origin" not in answer.headers


async def test_control_calls_are_rate_limited_per_client_and_the_workload_is_not() -> None:
    async with running_lab(control_rate_limit="5/minute") as lab:
        answers = [await lab.http.get("/v1/traffic/status") for _ in range(5)]
        assert [a.status_code for a in answers] == [200] * 5
        refused = await lab.http.put("/v1/config/failure", json=BROKEN)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert "5 per 1 minute" in refused.json()["detail"]
        assert "FAILURE_LAB_CONTROL_RATE_LIMIT" in refused.json()["detail"]
        users = [await lab.http.get("/api/v1/users/1") for _ in range(20)]
        assert {a.status_code for a in users} == {200}
        assert (await lab.http.get("/metrics/json")).status_code == 200  # not a control route
    async with running_lab(control_rate_limit="5/minute") as lab:  # the change never applied
        assert await failure_config(lab.http) == DEFAULTS
    async with running_lab(control_rate_limit="0") as lab:
        answers = [await lab.http.get("/v1/traffic/status") for _ in range(30)]
        assert {a.status_code for a in answers} == {200}


async def test_a_body_over_the_limit_is_refused_before_it_is_read() -> None:
    async with running_lab() as lab:
        big = b'{"failure_rate": 0.5, "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
        answer = await lab.http.put(
            "/v1/config/failure", content=big, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 413
        assert answer.json() == {
            "detail": "request body over the limit of 1048576 bytes (FAILURE_LAB_MAX_BODY_BYTES)"
        }

        async def chunks() -> Any:  # no Content-Length: refused once past the bound
            for _ in range(40):
                yield b" " * 65536

        streamed = await lab.http.put(
            "/v1/config/failure", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        assert await failure_config(lab.http) == DEFAULTS
    async with running_lab(max_body_bytes=100) as lab:
        answer = await lab.http.put("/v1/config/failure", json=BROKEN)
        assert answer.status_code == 413


async def test_a_client_that_leaves_cancels_its_requests_work() -> None:
    async with running_lab() as lab:
        # 3 s in the database; the client gives up after 0.3 s.
        options = {"x-failure-lab-options": "cache=0;dbl=3000"}
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await lab.http.get("/api/v1/users/7", headers=options, timeout=0.3)
        await asyncio.sleep(0.5)
        spans = {span.name: span for span in lab.spans.get_finished_spans()}
        query = spans["db.query"]
        assert query.end_time is not None
        assert query.start_time is not None
        assert (query.end_time - query.start_time) / 1e9 < 1.0  # cut short, not 3 s
        assert time.monotonic() - started < 2.0
        assert (
            sample(
                lab.app,
                "failure_lab_http_requests_total",
                endpoint="/api/v1/users/{id}",
                method="GET",
                status="499",
                outcome="client_closed",
            )
            == 1
        )


async def test_single_runs_and_bursts_share_one_bound_on_queued_requests() -> None:
    payload = {
        "rate_of_requests": 10,
        "number_of_requests": 50,
        "retries_enabled": False,
        "rate_limiting": 0,
        "rate_limiting_algo": "token_bucket",
        "cache_enabled": False,
        "cache_ttl": 1,
        "db_latency": 400,  # each burst holds its requests for a while
    }
    burst = {"mode": "burst", "count": 50, "payload": payload}
    single = {"mode": "single", "payload": payload}
    async with running_lab(max_burst_count=50, max_queued_requests=100, max_in_flight=200) as lab:
        first = asyncio.create_task(lab.http.post("/v1/traffic/generate", json=burst))
        second = asyncio.create_task(lab.http.post("/v1/traffic/generate", json=burst))
        await asyncio.sleep(0.2)  # both are running
        refused = await lab.http.post("/v1/traffic/generate", json=burst)
        refused_single = await lab.http.post("/v1/traffic/generate", json=single)
        done = [await first, await second]
        assert [a.status_code for a in done] == [200, 200]
        assert refused.status_code == refused_single.status_code == 409
        assert "FAILURE_LAB_MAX_QUEUED_REQUESTS" in refused.json()["detail"]
        assert "next to the 100" in refused.json()["detail"]
        totals = (await lab.http.get("/v1/traffic/statistics")).json()["totals"]
        assert totals["sent"] == 100  # the refused ones sent nothing
        again = await lab.http.post("/v1/traffic/generate", json=burst)  # room again
        assert again.status_code == 200
