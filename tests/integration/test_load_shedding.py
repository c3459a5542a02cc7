"""The user API's bound on requests in flight, on a served app: past it a request is answered
503 with Retry-After and a JSON detail before any work, counted, while the control plane, the
probes and the metrics keep answering; once the held requests finish, requests are admitted."""

from __future__ import annotations

import asyncio
import json

import httpx
from fastapi import FastAPI

from simulator.options import HEADER
from simulator.routes import LIST, ONE
from tests.support.labs import running_lab, sample

SLOW = {HEADER: "cache=0;dbl=3000"}
"""Held open for 3 s by the simulated database (its timeout raised to 10 s through the control
API): long enough to look at the app meanwhile."""


async def wait_for_in_flight(app: FastAPI, count: int) -> None:
    for _ in range(500):
        if sample(app, "failure_lab_http_requests_in_flight") == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never {count} requests in flight")


async def test_past_the_bound_the_user_api_sheds_and_the_rest_still_answers() -> None:
    async with running_lab(max_concurrent_requests=2, shed_retry_after_seconds=2) as lab:
        http = lab.http
        assert sample(lab.app, "failure_lab_http_max_concurrent_requests") == 2
        config = (await http.get("/v1/config/failure")).json()
        patient = await http.put("/v1/config/failure", json={**config, "db_timeout_seconds": 10})
        assert patient.status_code == 200, patient.text
        held = [asyncio.create_task(http.get(f"/api/v1/users/{i}", headers=SLOW)) for i in (1, 2)]
        await wait_for_in_flight(lab.app, 2)
        spans_before = len(lab.spans.get_finished_spans())

        # The outside client's connections are not read again for Retry-After seconds once
        # shed: its own, not the lab client's.
        async with httpx.AsyncClient(base_url=str(http.base_url), timeout=10) as outside:
            shed = await outside.get("/api/v1/users/3")
        async with httpx.AsyncClient(base_url=str(http.base_url), timeout=10) as outside:
            # A body that does not parse: shed before anything reads it, so 503 and not 422.
            shed_post = await outside.post(
                LIST, content=b"{not json", headers={"content-type": "application/json"}
            )
        meanwhile = {
            path: (await http.get(path)).status_code
            for path in ("/v1/config/failure", "/v1/status", "/health/ready", "/health/live")
        }
        meanwhile["/metrics"] = (await http.get("/metrics")).status_code
        meanwhile["/metrics/json"] = (await http.get("/metrics/json")).status_code
        new_spans = len(lab.spans.get_finished_spans()) - spans_before
        no_route = await http.get("/api/v1/users/not-a-number")  # never bounded
        assert not any(task.done() for task in held), "the held requests ended too early"
        shed_count = sample(
            lab.app,
            "failure_lab_http_requests_total",
            endpoint=ONE,
            method="GET",
            status="503",
            outcome="shed",
        )
        post_shed_count = sample(
            lab.app,
            "failure_lab_http_requests_total",
            endpoint=LIST,
            method="POST",
            status="503",
            outcome="shed",
        )

        finished = await asyncio.gather(*held)
        assert sample(lab.app, "failure_lab_http_requests_in_flight") == 0
        after = await http.get("/api/v1/users/3")

    for answer in (shed, shed_post):
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "2"
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["x-content-type-options"] == "nosniff"  # answered like the rest
        assert "x-request-id" not in answer.headers  # no span, no pipeline
        assert answer.json() == {
            "detail": "overloaded: 2 requests of the user API are in flight, its bound "
            "(FAILURE_LAB_MAX_CONCURRENT_REQUESTS); retry after 2 s"
        }
    assert (shed_count, post_shed_count) == (1, 1)
    assert new_spans == 0, "a shed request was traced"
    assert meanwhile == dict.fromkeys(meanwhile, 200)
    assert no_route.status_code == 404
    assert [answer.status_code for answer in finished] == [200, 200]
    assert after.status_code == 200
    assert "x-request-id" in after.headers


async def test_a_bound_of_zero_sheds_nothing_and_still_counts_what_is_in_flight() -> None:
    async with running_lab(max_concurrent_requests=0) as lab:
        held = [
            asyncio.create_task(lab.http.get(f"/api/v1/users/{i}", headers={HEADER: "dbl=300"}))
            for i in range(1, 9)
        ]
        await wait_for_in_flight(lab.app, 8)
        answers = await asyncio.gather(*held)
        assert sample(lab.app, "failure_lab_http_max_concurrent_requests") == 0
    assert [answer.status_code for answer in answers] == [200] * 8


async def test_the_shed_answer_is_in_the_openapi_document() -> None:
    async with running_lab(max_concurrent_requests=5) as lab:
        document = (await lab.http.get("/openapi.json")).json()
    for path, method in ((LIST, "get"), (LIST, "post"), (ONE, "get"), (ONE, "patch")):
        answer = document["paths"][path][method]["responses"]["503"]
        assert "FAILURE_LAB_MAX_CONCURRENT_REQUESTS" in answer["description"]
        assert answer["headers"]["retry-after"]["required"] is False
        assert answer["content"]["application/json"]["schema"]["$ref"].endswith("ErrorAnswer")
    for path in ("/v1/config/failure", "/metrics/json"):
        responses = document["paths"][path]["get"]["responses"]
        assert "FAILURE_LAB_MAX_CONCURRENT_REQUESTS" not in str(responses.get("503", ""))


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[bytes, bytes]:
    """Sends one raw request; returns the answer's head and the body its length says."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    body = b"" if request.startswith(b"HEAD") else await reader.readexactly(length)
    return head, body


async def test_a_shed_connection_is_answered_again_after_retry_after() -> None:
    async with running_lab(max_concurrent_requests=1, shed_retry_after_seconds=2) as lab:
        held = asyncio.create_task(
            lab.http.get("/api/v1/users/1", headers={HEADER: "cache=0;dbl=300"})
        )
        await wait_for_in_flight(lab.app, 1)
        port = lab.http.base_url.port
        assert port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            get = b"GET /api/v1/users/2 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
            first, first_body = await exchange(reader, writer, get)
            # Asked again at once, on the same connection: not read until the hold is over,
            # by when the held request has finished and freed the slot.
            second, second_body = await exchange(reader, writer, get)
            assert (await held).status_code == 200
        finally:
            writer.close()
        # HTTP/1.0 without keep-alive: the shed answer closes the connection; HEAD: no body.
        blocker = asyncio.create_task(
            lab.http.get("/api/v1/users/3", headers={HEADER: "cache=0;dbl=500"})
        )
        await wait_for_in_flight(lab.app, 1)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head_only, _ = await exchange(
            reader, writer, b"HEAD /api/v1/users HTTP/1.0\r\nhost: 127.0.0.1\r\n\r\n"
        )
        rest = await reader.read()  # EOF: closed
        writer.close()
        await blocker

    assert first.startswith(b"HTTP/1.1 503 ")
    assert b"\r\nretry-after: 2\r\n" in first
    assert b"\r\nx-content-type-options: nosniff\r\n" in first
    assert b"\r\ndate: " in first
    assert json.loads(first_body)["detail"].startswith("overloaded: 1 requests")
    # Read again only after the hold: by then the slot was free (without it, see below: 503).
    assert second.startswith(b"HTTP/1.1 200 ")
    assert json.loads(second_body)["id"] == 2
    assert head_only.startswith(b"HTTP/1.1 503 ")
    assert b"\r\nconnection: close\r\n" in head_only
    assert rest == b""


async def test_without_the_hold_a_shed_connection_is_read_again_at_once() -> None:
    async with running_lab(max_concurrent_requests=1, shed_hold_connection=False) as lab:
        config = (await lab.http.get("/v1/config/failure")).json()
        await lab.http.put("/v1/config/failure", json={**config, "db_timeout_seconds": 10})
        held = asyncio.create_task(lab.http.get("/api/v1/users/1", headers=SLOW))
        await wait_for_in_flight(lab.app, 1)
        port = lab.http.base_url.port
        assert port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        get = b"GET /api/v1/users/2 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
        try:
            answers = [(await exchange(reader, writer, get))[0] for _ in range(3)]
        finally:
            writer.close()
        # Each was read and shed while the one request admitted was still held.
        still_held = not held.done()
        assert (await held).status_code == 200

    assert still_held
    assert all(answer.startswith(b"HTTP/1.1 503 ") for answer in answers)
