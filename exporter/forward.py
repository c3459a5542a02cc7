"""Stack mode: the control half of the contract is forwarded to the simulator.

``/v1/traffic/*``, ``/v1/config/*`` and ``/v1/disruptions*`` arrive at the shim on port 8000
and are passed to the simulator unchanged (method, query, body, content type); its status
code and body come back unchanged, so clients see one contract in both modes. A simulator
that is down or slow is a 503 naming it, within ``forward_timeout_seconds``: the call runs
inside :func:`exporter.boundary.backend_call` like every other backend call.

An event stream (a job's ``/stream``) is passed on as it arrives rather than buffered: the
upstream stream is opened first (so its status, a 404 say, comes back as is) and closed when
it ends, when the client goes away, or when no chunk came for ``forward_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from exporter.boundary import backend_call
from exporter.errors import SourceUnavailable

FORWARDED_HEADERS = ("content-type", "accept")
RETURNED_HEADERS = ("content-type", "retry-after", "location")


class Forwarder:
    name = "simulator"

    def __init__(
        self,
        base_url: str,
        timeout: float,
        check_timeout: float,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        """``timeout`` bounds a forwarded call (a burst takes time); ``check_timeout`` the
        health probe, which must answer as fast as any other backend's."""
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._check_timeout = check_timeout
        self._client = client or httpx.AsyncClient(base_url=base_url, timeout=None)
        self._owns = client is None

    async def forward(self, request: Request) -> Response:
        headers = {k: v for k in FORWARDED_HEADERS if (v := request.headers.get(k))}
        upstream = self._client.build_request(
            request.method,
            request.url.path,
            params=str(request.query_params),
            content=await request.body(),
            headers=headers,
        )
        async with backend_call(self.name, self._base, self._timeout):
            answer = await self._client.send(upstream, stream=True)
            kept = {k: v for k in RETURNED_HEADERS if (v := answer.headers.get(k))}
            if answer.headers.get("content-type", "").startswith("text/event-stream"):
                kept["cache-control"] = "no-cache"
                return StreamingResponse(
                    _relay(answer, self._timeout),
                    answer.status_code,
                    headers=kept,
                    background=BackgroundTask(answer.aclose),  # also if the relay never ran
                )
            try:
                body = await answer.aread()
            finally:
                await answer.aclose()
        return Response(body, answer.status_code, headers=kept)

    async def check(self) -> None:
        """The simulator's own readiness: it answers, and so do its dependencies (Redis)."""
        async with backend_call(self.name, self._base, self._check_timeout):
            answer = await self._client.get("/health/ready")
        if answer.status_code != 200:
            raise SourceUnavailable(self.name, f"status {answer.status_code}: {_detail(answer)}")

    async def aclose(self) -> None:
        if self._owns:
            await self._client.aclose()


async def _relay(answer: httpx.Response, idle_timeout: float) -> AsyncIterator[bytes]:
    """The upstream stream's bytes as they come; ends when it ends, breaks, or stays silent
    for ``idle_timeout`` seconds, and is closed however the relay ends."""
    chunks = answer.aiter_raw()
    try:
        while True:
            try:
                async with asyncio.timeout(idle_timeout):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            yield chunk
    except (httpx.HTTPError, TimeoutError):
        return  # the simulator went away or fell silent mid-stream: end ours too
    finally:
        await answer.aclose()


def _detail(answer: httpx.Response) -> str:
    """The ``detail`` of a JSON error answer, else the start of its body."""
    try:
        detail = answer.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else answer.text[:200]


def forwarding_router() -> APIRouter:
    router = APIRouter(tags=["control (forwarded)"])
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    @router.api_route("/v1/traffic/{rest:path}", methods=methods, summary="Forwarded")
    @router.api_route("/v1/config/{rest:path}", methods=methods, summary="Forwarded")
    @router.api_route("/v1/disruptions", methods=methods, summary="Forwarded")
    @router.api_route("/v1/disruptions/{rest:path}", methods=methods, summary="Forwarded")
    async def forward(request: Request, rest: str = "") -> Response:
        forwarder: Forwarder = request.app.state.forwarder
        return await forwarder.forward(request)

    return router
