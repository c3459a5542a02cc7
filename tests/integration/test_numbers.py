"""Numbers that are not finite, or past their bound, in every kind of place a request holds one.

NaN, Infinity, -Infinity and 1e999 (which JSON parsers read as infinity) in a body float, a
body integer, a nested payload field, a query parameter and the options header of the user
API: each answers 4xx in the one shape, names the field, and changes nothing. A finite number
past its setting's bound is refused the same way, naming the bound and the setting.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.labs import running_lab

NOT_FINITE = ["NaN", "Infinity", "-Infinity", "1e999"]
CONFIG = (
    '{"failure_injection_enabled": false, "failure_rate": 0.1, "db_latency_min_ms": 1, '
    '"db_latency_max_ms": 2, "db_timeout_seconds": %s, "redis_timeout_seconds": 0.05, '
    '"max_retries": %s}'
)
TRAFFIC = (
    '{"mode": "burst", "count": 2, "payload": {"rate_of_requests": 1, "number_of_requests": 1, '
    '"retries_enabled": true, "rate_limiting": 0, "rate_limiting_algo": "token_bucket", '
    '"cache_enabled": true, "cache_ttl": 1, "db_latency": %s}}'
)
JSON = {"content-type": "application/json"}


def refused(answer: httpx.Response, status: int = 422) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert isinstance(body["detail"], str)
    if status == 422:
        assert set(body) == {"detail", "errors"}
        assert all(set(error) == {"loc", "msg", "type"} for error in body["errors"])
    else:
        assert set(body) == {"detail"}
    return body


async def unchanged(http: httpx.AsyncClient, before: dict[str, Any]) -> None:
    assert (await http.get("/v1/config/failure")).json() == before
    assert (await http.get("/v1/traffic/statistics")).json()["totals"]["sent"] == 0


@pytest.mark.parametrize("number", NOT_FINITE)
async def test_a_body_float_must_be_finite(number: str) -> None:
    async with running_lab() as lab:
        before = (await lab.http.get("/v1/config/failure")).json()
        answer = await lab.http.put(
            "/v1/config/failure", content=CONFIG % (number, 1), headers=JSON
        )
        body = refused(answer)
        assert [e["loc"] for e in body["errors"]] == [["body", "db_timeout_seconds"]]
        assert "body.db_timeout_seconds" in body["detail"]
        await unchanged(lab.http, before)


@pytest.mark.parametrize("number", NOT_FINITE)
async def test_a_body_integer_must_be_finite(number: str) -> None:
    async with running_lab() as lab:
        before = (await lab.http.get("/v1/config/failure")).json()
        answer = await lab.http.put(
            "/v1/config/failure", content=CONFIG % (1, number), headers=JSON
        )
        body = refused(answer)
        assert [e["loc"] for e in body["errors"]] == [["body", "max_retries"]]
        await unchanged(lab.http, before)


@pytest.mark.parametrize("number", NOT_FINITE)
async def test_a_nested_payload_number_must_be_finite(number: str) -> None:
    async with running_lab() as lab:
        before = (await lab.http.get("/v1/config/failure")).json()
        answer = await lab.http.post("/v1/traffic/generate", content=TRAFFIC % number, headers=JSON)
        body = refused(answer)
        assert [e["loc"] for e in body["errors"]] == [["body", "payload", "db_latency"]]
        await unchanged(lab.http, before)


@pytest.mark.parametrize("number", [*NOT_FINITE, "inf", "nan"])
async def test_query_numbers_must_be_finite(number: str) -> None:
    async with running_lab() as lab:
        before = (await lab.http.get("/v1/config/failure")).json()
        for path, name in (("/metrics/json", "at"), ("/api/v1/users/error", "errorRate")):
            body = refused(await lab.http.get(path, params={name: number}))
            assert [e["loc"] for e in body["errors"]] == [["query", name]]
            assert f"query.{name}" in body["detail"]
        await unchanged(lab.http, before)


@pytest.mark.parametrize("number", [*NOT_FINITE, "inf", "nan"])
async def test_options_header_numbers_must_be_finite(number: str) -> None:
    async with running_lab() as lab:
        for key in ("rl", "ttl", "dbl"):
            answer = await lab.http.get(
                "/api/v1/users/1", headers={"x-failure-lab-options": f"{key}={number}"}
            )
            detail = refused(answer, 400)["detail"]
            assert f"{key}={number!r}" in detail
            assert "finite" in detail


async def test_numbers_past_their_bounds_name_the_bound_and_the_setting() -> None:
    async with running_lab(max_db_timeout_seconds=5, max_db_latency_ms=1000) as lab:
        before = (await lab.http.get("/v1/config/failure")).json()
        body = refused(
            await lab.http.put("/v1/config/failure", content=CONFIG % ("1e308", 1), headers=JSON)
        )
        assert body["errors"] == [
            {
                "loc": ["body", "db_timeout_seconds"],
                "msg": "db_timeout_seconds 1e+308 exceeds the cap of 5; "
                "raise it with FAILURE_LAB_MAX_DB_TIMEOUT_SECONDS",
                "type": "cap_exceeded",
            }
        ]
        body = refused(
            await lab.http.post("/v1/traffic/generate", content=TRAFFIC % "1e12", headers=JSON)
        )
        assert body["errors"][0]["loc"] == ["body", "payload", "db_latency"]
        assert "cap of 1000; raise it with FAILURE_LAB_MAX_DB_LATENCY_MS" in body["detail"]
        await unchanged(lab.http, before)

        answer = await lab.http.get(
            "/api/v1/users/1", headers={"x-failure-lab-options": "dbl=1e12"}
        )
        assert refused(answer, 400)["detail"] == (
            "x-failure-lab-options: dbl='1e12': 1e+12 exceeds the cap of 1000; "
            "raise it with FAILURE_LAB_MAX_DB_LATENCY_MS"
        )
        at_the_bound = await lab.http.get(
            "/api/v1/users/1", headers={"x-failure-lab-options": "dbl=0;ttl=86400;rl=100000"}
        )
        assert at_the_bound.status_code == 200
