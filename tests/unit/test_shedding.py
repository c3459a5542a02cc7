"""Which requests the bound covers, and the bound as ASGI middleware, driven directly."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from simulator.routes import ERROR, LIST, ONE, route_of
from simulator.shedding import ADMITTED, Admission, ShedOverload


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("GET", "/api/v1/users", (LIST, "GET")),
        ("POST", "/api/v1/users", (LIST, "POST")),
        ("HEAD", "/api/v1/users", (LIST, "GET")),
        ("GET", "/api/v1/users/42", (ONE, "GET")),
        ("PATCH", "/api/v1/users/42", (ONE, "PATCH")),
        ("GET", "/api/v1/users/error", (ERROR, "GET")),
        ("GET", "/api/v1/users/" + "9" * 18, (ONE, "GET")),
        ("GET", "/api/v1/users/" + "9" * 19, None),  # no route: the id convertor's bound
        ("GET", "/api/v1/users/abc", None),
        ("GET", "/api/v1/users/", None),
        ("GET", "/api/v1/users/١٢", None),  # Unicode digits are not the route's digits
        ("DELETE", "/api/v1/users/1", None),  # no such method: 405, never held
        ("GET", "/api/v1/usersx", None),
        ("GET", "/v1/config/failure", None),
        ("GET", "/health/ready", None),
        ("GET", "/metrics/json", None),
    ],
)
def test_only_the_user_apis_routes_are_bounded(
    method: str, path: str, route: tuple[str, str] | None
) -> None:
    assert route_of(method, path) == route


class Held:
    """An app that answers 200 once released; counts the requests it saw."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.seen = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.seen += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def http(path: str, method: str = "GET") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "headers": []}


async def call(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_the_middleware_admits_up_to_the_bound_and_answers_the_next_at_once() -> None:
    shed: list[tuple[str, str]] = []
    admission = Admission(2, lambda route, method: shed.append((route, method)), 3)
    held = Held()
    app = ShedOverload(held, admission)
    first = [asyncio.create_task(call(app, http(f"/api/v1/users/{i}"))) for i in (1, 2)]
    await asyncio.sleep(0)
    assert admission.in_flight == 2

    refused = await call(app, http("/api/v1/users", "POST"))
    other = asyncio.create_task(call(app, http("/v1/status")))  # not counted, not shed
    await asyncio.sleep(0)
    assert (admission.in_flight, held.seen) == (2, 3)

    start, body = refused
    assert start["status"] == 503
    headers = dict(start["headers"])
    assert headers[b"retry-after"] == b"3"
    assert headers[b"content-type"] == b"application/json"
    assert json.loads(body["body"])["detail"].startswith("overloaded: 2 requests")
    assert shed == [(LIST, "POST")]

    held.release.set()
    await asyncio.gather(*first, other)
    assert admission.in_flight == 0
    again = await call(app, http("/api/v1/users/1"))
    assert again[0]["status"] == 200
    assert admission.in_flight == 0


async def test_what_the_server_admitted_is_not_counted_twice() -> None:
    admission = Admission(1, lambda route, method: None, 1)
    held = Held()
    held.release.set()
    scope = http("/api/v1/users/1")
    assert admission.arrive(scope) == "admitted"
    answer = await call(admission.counted(ShedOverload(held, admission)), scope)
    assert scope[ADMITTED] is True
    assert answer[0]["status"] == 200
    assert admission.in_flight == 0


def test_a_bound_of_zero_counts_and_sheds_nothing() -> None:
    admission = Admission(0, lambda route, method: pytest.fail("shed"), 1)
    verdicts = [admission.arrive(http("/api/v1/users/1")) for _ in range(1000)]
    assert set(verdicts) == {"admitted"}
    assert admission.in_flight == 1000


def test_the_fuzz_takes_a_shed_answer_for_a_deliberate_one() -> None:
    from tests.support.fuzzing import DELIBERATE

    detail = json.loads(Admission(512, lambda route, method: None, 1).body)["detail"]
    assert DELIBERATE.match(detail)
