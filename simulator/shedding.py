"""Load shedding: a bound on the simulated user API's requests in flight.

Outside load is not the lab's generator: nothing stops ten thousand connections from asking
at once, and without a bound every one of them is admitted, its body parsed, a span opened,
the limiter and the cache asked; the requests queue on the event loop, latency grows with the
queue, memory with the requests held, and the control plane (the probes, ``/metrics/json``)
waits behind them all. So a request of the user API is admitted only while fewer than
``max_concurrent_requests`` are in flight; the next one is answered 503 at once, with
``Retry-After`` and the JSON ``{"detail": ...}`` of every other error, before its body is read,
before any span, limiter, cache or Redis call. It is still counted: as an answer of its route
(``failure_lab_http_requests_total{status="503", outcome="shed"}``), so request and error
rates show what clients saw.

Only the user API's routes are bounded, found from the path by string tests alone
(:func:`simulator.routes.route_of`): control calls, probes, ``/metrics`` and paths that are no
route are never shed; they are cheap, and they are how an operator sees the overload.

uvicorn's ``--limit-concurrency`` is not this bound: it counts every connection and task of
every route, answers a plain-text 503 without ``Retry-After`` and refuses the probes and
``/metrics`` with the rest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from failure_lab.openapi import SCHEMAS
from simulator.routes import ANSWERS, route_of


@dataclass(slots=True)
class InFlight:
    """The user API's requests in flight now, and the bound on them (0: no bound)."""

    limit: int
    count: int = 0

    def full(self) -> bool:
        return 0 < self.limit <= self.count


class ShedOverload:
    """ASGI middleware: admits a user API request while :class:`InFlight` has room, answers
    503 at once otherwise; ``on_shed(route, method)`` counts each refusal."""

    def __init__(
        self,
        app: ASGIApp,
        in_flight: InFlight,
        on_shed: Callable[[str, str], None],
        retry_after_seconds: int,
    ) -> None:
        self.app = app
        self._in_flight = in_flight
        self._on_shed = on_shed
        detail = (
            f"overloaded: {in_flight.limit} requests of the user API are in flight, its bound "
            f"(FAILURE_LAB_MAX_CONCURRENT_REQUESTS); retry after {retry_after_seconds} s"
        )
        self._body = json.dumps({"detail": detail}).encode()
        self._headers = (
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._body)).encode()),
            (b"retry-after", str(retry_after_seconds).encode()),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        in_flight = self._in_flight
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_of(scope["method"], scope["path"])
        if route is None:
            await self.app(scope, receive, send)
            return
        if in_flight.full():
            self._on_shed(*route)
            # A new message each time: the middleware outside may change what it is sent.
            await send(
                {"type": "http.response.start", "status": 503, "headers": list(self._headers)}
            )
            await send({"type": "http.response.body", "body": self._body})
            return
        in_flight.count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            in_flight.count -= 1


SHED_ANSWER = "or the user API had FAILURE_LAB_MAX_CONCURRENT_REQUESTS requests in flight (shed)"


def document_shedding(limit: int) -> Callable[[dict[str, Any]], None]:
    """A correction of the OpenAPI document (:func:`failure_lab.openapi.install_openapi`):
    every user API operation may answer the shed 503, with ``Retry-After``, while there is a
    bound."""

    def correct(document: dict[str, Any]) -> None:
        if limit == 0:
            return
        paths = document.get("paths", {})
        for route, method in ANSWERS:
            operation = paths.get(route, {}).get(method.lower())
            if operation is None:
                continue
            answer = operation["responses"].setdefault("503", {"description": "Unavailable"})
            answer["description"] += f"; {SHED_ANSWER}"
            answer.setdefault(
                "content", {"application/json": {"schema": {"$ref": SCHEMAS + "ErrorAnswer"}}}
            )
            answer.setdefault("headers", {})["retry-after"] = {
                "description": "seconds to wait before asking again; sent with a shed 503",
                "required": False,
                "schema": {"type": "string"},
            }

    return correct
