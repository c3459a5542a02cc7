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

Where a request is counted matters more than how. A request waits on the event loop between
its arrival (the server parsed it and made its task) and the first step of its task, and
under overload that is where the queue is: with 1,000 connections and a bound of 128, a
middleware that counted requests from its own first step never saw 128 at once, while every
request waited 380 ms for its turn (docs/benchmarks.md). So the server counts them from their
arrival: ``simulator.server`` asks :meth:`Admission.arrive` as uvicorn is about to make each
request's task, and writes a shed request's answer (:meth:`Admission.refuse`'s) at once,
with no task and none of the app's middleware. :class:`ShedOverload` is the same bound as
ASGI middleware, for a server that does not ask (it lets through what the server already
admitted).

A client that ignores ``Retry-After`` and asks again at once (wrk does; so does a retry loop
without backoff) would keep the loop as busy shedding as it was serving: at 4,000 such
connections and a bound of 64, 99% of the answers were sheds and the probes waited up to 2 s.
So the server does not read a shed connection again for ``Retry-After`` seconds: its next
request waits in the socket until then, as the client was told to, and costs nothing
meanwhile. (A proxy that reuses one connection for many clients passes that wait on to the
next request it sends over the connection: ``shed_hold_connection`` turns the hold off.)

uvicorn's ``--limit-concurrency`` is not this bound: it counts every connection (idle
keep-alive ones too) and every task of every route, answers a plain-text 503 without
``Retry-After`` and refuses the probes and ``/metrics`` with the rest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final, Literal

from starlette.types import ASGIApp, Receive, Scope, Send

from failure_lab.guard import SECURITY_HEADERS
from failure_lab.openapi import SCHEMAS
from simulator.routes import ANSWERS, route_of

ADMITTED: Final = "failure_lab.admitted"
"""Scope key the server sets on a request it admitted (and counts until the app returns)."""
Verdict = Literal["other", "admitted", "shed"]


class Admission:
    """The user API's requests in flight, the bound on them (0: none), and the refusal."""

    def __init__(
        self,
        limit: int,
        on_shed: Callable[[str, str], None],
        retry_after_seconds: int,
        *,
        hold_connection: bool = True,
    ) -> None:
        self.limit = limit
        self.retry_after_seconds = retry_after_seconds
        self.hold_connection = hold_connection
        """Whether the server leaves a shed connection unread for ``retry_after_seconds``."""
        self.in_flight = 0
        self._on_shed = on_shed
        detail = (
            f"overloaded: {limit} requests of the user API are in flight, its bound "
            f"(FAILURE_LAB_MAX_CONCURRENT_REQUESTS); retry after {retry_after_seconds} s"
        )
        self.body = json.dumps({"detail": detail}).encode()
        # Answered without the app's middleware: its headers are those every answer carries.
        self.headers: tuple[tuple[bytes, bytes], ...] = (
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode()),
            (b"retry-after", str(retry_after_seconds).encode()),
            (b"cache-control", b"no-store"),
            *SECURITY_HEADERS,
        )

    def arrive(self, scope: Scope) -> Verdict:
        """What becomes of a request: ``other`` for anything but the user API; ``admitted``
        for a user API request while there is room (counted in flight until :meth:`leave`);
        ``shed`` for one past the bound (counted as shed)."""
        route = route_of(scope["method"], scope["path"])
        if route is None:
            return "other"
        if 0 < self.limit <= self.in_flight:
            self._on_shed(*route)
            return "shed"
        self.in_flight += 1
        return "admitted"

    def leave(self) -> None:
        self.in_flight -= 1

    async def refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The shed request's answer, as an ASGI app: 503, ``Retry-After``, JSON detail."""
        # A new message each time: a middleware may change what it is sent.
        await send({"type": "http.response.start", "status": 503, "headers": list(self.headers)})
        await send({"type": "http.response.body", "body": self.body})

    def counted(self, app: ASGIApp) -> ASGIApp:
        """``app`` for a request :meth:`arrive` admitted: marked so, and left when it returns."""

        async def admitted(scope: Scope, receive: Receive, send: Send) -> None:
            scope[ADMITTED] = True
            try:
                await app(scope, receive, send)
            finally:
                self.leave()

        return admitted


class ShedOverload:
    """The bound as ASGI middleware, for servers that do not ask :meth:`Admission.arrive`
    themselves: counted from the request's first step in the app."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self._admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get(ADMITTED):
            await self.app(scope, receive, send)
            return
        admission = self._admission
        verdict = admission.arrive(scope)
        if verdict == "other":
            await self.app(scope, receive, send)
        elif verdict == "shed":
            await admission.refuse(scope, receive, send)
        else:
            try:
                await self.app(scope, receive, send)
            finally:
                admission.leave()


SHED_ANSWER: Final = (
    "or the user API had FAILURE_LAB_MAX_CONCURRENT_REQUESTS requests in flight (shed)"
)


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
