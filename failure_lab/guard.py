"""The control plane's guards, as ASGI middleware both apps install the same way.

A lab bound to 127.0.0.1 is still reachable from a browser tab (DNS rebinding, cross-site
requests) and from every process on the machine, and one careless call must not be able to
exhaust it. So, outermost first:

- every response carries security headers, and API JSON is never cached;
- a request whose ``Host`` is not served gets 400 (defeats DNS rebinding to loopback);
- CORS is Starlette's, with an allowlist that is empty by default;
- with ``api_token`` set, state-changing control calls (and, with ``api_token_for_reads``,
  the read API and ``/ws``) need ``Authorization: Bearer``, compared in constant time;
- control calls are rate limited per client (the ``limits`` library, a moving window);
- a body over ``max_body_bytes`` gets 413 before anything parses it, and a client that
  disconnects cancels its request's work.

Refusals are JSON ``{"detail": ...}`` like every other error. The simulated user API is the
lab's workload, not its control plane: it needs no token and keeps only its own limiter.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from fastapi import FastAPI
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from failure_lab.settings import Settings

CONTROL_PREFIXES: Final = ("/v1/traffic", "/v1/config", "/v1/disruptions")
"""Paths of the control API: generating traffic, changing faults."""
READ_PREFIXES: Final = ("/v1/", "/metrics/json", "/ws")
"""Paths of the read API (and the control API's reads) that ``api_token_for_reads`` covers;
``/metrics``, ``/health/*`` and the documentation stay open for scrapers and probes."""
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
SECURITY_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)


def is_control(path: str) -> bool:
    return path.startswith(CONTROL_PREFIXES)


def needs_token(method: str, path: str, reads_too: bool) -> bool:
    if is_control(path) and method not in SAFE_METHODS:
        return True
    return reads_too and path.startswith(READ_PREFIXES)


async def refuse(
    send: Send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def refuse_websocket(send: Send, detail: str) -> None:
    """Refuse a WebSocket handshake with a 403 answer (browsers see a failed connection)."""
    await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})


class SecurityHeaders:
    """Headers every response gets; ``Cache-Control: no-store`` on JSON that sets none."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                names = {name.lower() for name, _ in headers}
                headers += [pair for pair in SECURITY_HEADERS if pair[0] not in names]
                json_body = any(
                    name.lower() == b"content-type" and value.startswith(b"application/json")
                    for name, value in headers
                )
                if json_body and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class HostGuard:
    """Answers only for the Host names served; ``*`` serves any."""

    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        self.app = app
        self._any = "*" in hosts
        self._hosts = frozenset(host.lower().strip("[]") for host in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _host(scope)
        if host in self._hosts:
            await self.app(scope, receive, send)
            return
        detail = (
            f"host {host!r} is not served here; allowed: {', '.join(sorted(self._hosts))} "
            "(FAILURE_LAB_ALLOWED_HOSTS)"
        )
        if scope["type"] == "websocket":
            await refuse_websocket(send, detail)
        else:
            await refuse(send, 400, detail)


def _host(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            text: str = value.decode("latin-1").lower()
            if text.startswith("["):  # [::1]:8000
                return text[1 : text.find("]")] if "]" in text else text
            return text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    return ""


class TokenGuard:
    """``Authorization: Bearer <token>`` on the calls that need it (``access_token`` query
    parameter accepted on ``/ws``, which browsers cannot send headers to)."""

    def __init__(self, app: ASGIApp, token: str, reads_too: bool) -> None:
        self.app = app
        self._token = token.encode()
        self._reads_too = reads_too

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        if not needs_token(method, scope["path"], self._reads_too):
            await self.app(scope, receive, send)
            return
        presented = _bearer(scope)
        if presented is not None and hmac.compare_digest(presented, self._token):
            await self.app(scope, receive, send)
            return
        error = "missing" if presented is None else "wrong"
        detail = f"{error} bearer token: send Authorization: Bearer <FAILURE_LAB_API_TOKEN>"
        if kind == "websocket":
            await refuse_websocket(send, detail)
            return
        challenge = b'Bearer realm="failure-lab"'
        if presented is not None:
            challenge += b', error="invalid_token"'
        await refuse(send, 401, detail, [(b"www-authenticate", challenge)])


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            header: bytes = value
            scheme, _, credentials = header.partition(b" ")
            return credentials.strip() if scheme.lower() == b"bearer" else b""
    if scope["type"] == "websocket":
        query: bytes = scope.get("query_string", b"")
        for part in query.split(b"&"):
            key, _, token = part.partition(b"=")
            if key == b"access_token":
                return token
    return None


class ControlRateLimit:
    """Control calls per client (by address), in a moving window of the library ``limits``."""

    def __init__(self, app: ASGIApp, items: list[RateLimitItem]) -> None:
        self.app = app
        self._items = items
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_control(scope["path"]):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = client[0] if client else "unknown"
        for item in self._items:
            if not await self._limiter.hit(item, key):
                stats = await self._limiter.get_window_stats(item, key)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                await refuse(
                    send,
                    429,
                    f"too many control calls from {key}: the limit is {item} "
                    "(FAILURE_LAB_CONTROL_RATE_LIMIT)",
                    [(b"retry-after", str(wait).encode())],
                )
                return
        await self.app(scope, receive, send)


class BodyGuard:
    """Bounds the body, reads it, runs the app, and cancels it if the client leaves.

    A declared ``Content-Length`` over ``max_body_bytes`` is refused before a byte is read,
    a chunked body as soon as it passes the bound: 413, JSON, naming the setting. (FastAPI's
    own ``max_body_size`` answers in plain text once a middleware has read the body, so it
    is not used.) The app then reads the body from memory and, when it asks again (a
    streaming response listening for the client), learns of the disconnect, which also
    cancels the request's task: its simulated work stops with it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await self._read(scope, receive, send)
        if body is None:
            return
        task = asyncio.current_task()
        assert task is not None
        gone = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(_watch(receive, gone, task))
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        try:
            await self.app(scope, replay, send)
        except asyncio.CancelledError:
            if not gone.is_set():
                raise
            task.uncancel()  # the client left: its work is stopped, nothing to answer
        finally:
            watcher.cancel()

    async def _read(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None when it was refused (413) or the client left."""
        too_large = f"request body over the limit of {self._max} bytes (FAILURE_LAB_MAX_BODY_BYTES)"
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self._max:
                await refuse(send, 413, too_large)
                return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self._max:
                await refuse(send, 413, too_large)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def _watch(receive: Receive, gone: asyncio.Event, task: asyncio.Task[object]) -> None:
    with contextlib.suppress(OSError):
        while (await receive())["type"] != "http.disconnect":
            pass
    gone.set()
    task.cancel()


@dataclass(frozen=True, slots=True)
class GuardAnswer:
    """One refusal a guard can answer instead of the app, for the OpenAPI document."""

    description: str
    headers: Mapping[str, str] = field(default_factory=dict)


def guard_answers(method: str, path: str, settings: Settings) -> dict[int, GuardAnswer]:
    """What the guards installed with ``settings`` can answer ``method path`` instead of
    the route (CORS preflights aside), by status."""
    answers = {413: GuardAnswer("request body over FAILURE_LAB_MAX_BODY_BYTES")}
    if "*" not in settings.served_hosts():
        answers[400] = GuardAnswer("Host not served (FAILURE_LAB_ALLOWED_HOSTS)")
    if settings.api_token is not None and needs_token(method, path, settings.api_token_for_reads):
        answers[401] = GuardAnswer(
            "missing or wrong bearer token (FAILURE_LAB_API_TOKEN)",
            {"www-authenticate": "Bearer challenge"},
        )
    if control_rate_items(settings.control_rate_limit) and is_control(path):
        answers[429] = GuardAnswer(
            "too many control calls from this client (FAILURE_LAB_CONTROL_RATE_LIMIT)",
            {"retry-after": "seconds until a call is allowed again"},
        )
    return dict(sorted(answers.items()))


def control_rate_items(setting: str) -> list[RateLimitItem]:
    """The limits of ``FAILURE_LAB_CONTROL_RATE_LIMIT``; none for ``0``, ``off`` or empty."""
    if setting.strip().lower() in ("", "0", "off"):
        return []
    return list(parse_many(setting))


def install_guards(app: FastAPI, settings: Settings, workload: Sequence[Middleware] = ()) -> None:
    """Add the guards to ``app``, outermost last (as ``add_middleware`` stacks them).

    ``workload`` are the app's own guards of its workload, outermost first (the simulator's
    load shedding):
    outside the body's reading and the app, inside the Host check and the security headers,
    so what they refuse is neither read nor traced and still answered like every refusal.
    """
    app.add_middleware(BodyGuard, max_bytes=settings.max_body_bytes)
    for middleware in reversed(workload):
        app.add_middleware(middleware.cls, *middleware.args, **middleware.kwargs)
    items = control_rate_items(settings.control_rate_limit)
    if items:
        app.add_middleware(ControlRateLimit, items=items)
    if settings.api_token is not None:
        app.add_middleware(
            TokenGuard,
            token=settings.api_token.get_secret_value(),
            reads_too=settings.api_token_for_reads,
        )
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["authorization", "content-type"],
        )
    app.add_middleware(HostGuard, hosts=settings.served_hosts())
    app.add_middleware(SecurityHeaders)
