"""Stack mode: the control half of the contract is forwarded to the simulator.

Only the documented control routes are forwarded, each declared as the simulator declares
it (``failure_lab.control_routes``), so the shim's OpenAPI document shows every one with its
real request and response schemas and errors, and validates a body the way the simulator
would. What reaches the simulator is the request as it came (method, raw path, query, body,
content type, authorization); its status code and body come back unchanged, so clients see
one contract in both modes. A path with dot-segments, encoded slashes or control characters
is no route here (404, as for a path no route matches) and never reaches another route. A
simulator that is down or slow is a 503 naming it, within ``forward_timeout_seconds``: the
call runs inside :func:`exporter.boundary.backend_call` like every other backend call.

An event stream (a job's ``/stream``) is passed on as it arrives rather than buffered: the
upstream stream is opened first (so its status, a 404 say, comes back as is) and closed when
it ends, when the client goes away, or when no chunk came for ``forward_timeout_seconds``.
"""

import asyncio
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from copy import deepcopy
from typing import Any, Final

import httpx
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from exporter.boundary import backend_call
from exporter.errors import SourceUnavailable
from failure_lab.control_routes import CONTROL, ControlRoute
from failure_lab.openapi import errors

FORWARDED_HEADERS: Final = ("content-type", "accept", "authorization")
RETURNED_HEADERS: Final = ("content-type", "retry-after", "location", "www-authenticate")
SSE_EVENT: Final = {
    "type": "object",
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
"""One Server-Sent Event, as FastAPI documents an event stream."""
SIMULATOR_DOWN: Final = (503, "the simulator (or a backend it needs) did not answer")
_UNSAFE_RAW: Final = re.compile(rb"%(?:2f|5c)|\\", re.IGNORECASE)
_UNSAFE_SEGMENT: Final = re.compile(r"(?:^|/)\.{1,2}(?:/|$)|[\x00-\x1f\x7f]")


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
        raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
        refused = unsafe_path(raw_path, request.url.path)
        if refused is not None:
            raise HTTPException(404, f"no route {request.url.path!r} here: {refused}")
        query: bytes = request.scope.get("query_string", b"")
        url = httpx.URL(self._base).copy_with(raw_path=raw_path + (b"?" + query if query else b""))
        headers = {k: v for k in FORWARDED_HEADERS if (v := request.headers.get(k))}
        upstream = self._client.build_request(
            request.method, url, content=await request.body(), headers=headers
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


def unsafe_path(raw_path: bytes, path: str) -> str | None:
    """Why a path must not be forwarded, or None: an encoded slash or backslash could reach
    another route upstream, and so could a dot-segment once a client normalises it."""
    if _UNSAFE_RAW.search(raw_path):
        return "encoded slashes and backslashes are not accepted"
    if _UNSAFE_SEGMENT.search(path):
        return "dot-segments and control characters are not accepted"
    return None


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


def _endpoint(name: str, route: ControlRoute) -> Callable[..., Awaitable[Response]]:
    """A handler whose signature declares the route's path parameters and body, so FastAPI
    documents and validates them; it forwards the request as it came."""

    async def forward(request: Request, **_: Any) -> Response:
        forwarder: Forwarder = request.app.state.forwarder
        return await forwarder.forward(request)

    parameters = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)
    ]
    parameters += [
        inspect.Parameter(param, inspect.Parameter.KEYWORD_ONLY, annotation=annotation)
        for param, annotation in route.params.items()
    ]
    if route.body is not None:
        parameters.append(
            inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=route.body)
        )
    forward.__signature__ = inspect.Signature(parameters, return_annotation=Response)  # type: ignore[attr-defined]
    forward.__name__ = name
    return forward


def document_streams(openapi: dict[str, Any]) -> None:
    """The relayed event streams documented as the simulator documents them: FastAPI can
    tell an event stream only from a generator endpoint, and a relay answers a Response."""
    for route in CONTROL.values():
        if route.stream:
            path = re.sub(r"{(\w+):\w+}", r"{\1}", route.path)
            answer = openapi["paths"][path][route.method.lower()]["responses"]["200"]
            answer["content"] = {"text/event-stream": {"itemSchema": deepcopy(SSE_EVENT)}}


def forwarding_router() -> APIRouter:
    """Every control route, declared as the simulator declares it, forwarding."""
    router = APIRouter(tags=["control (forwarded to the simulator)"])
    for name, route in CONTROL.items():
        declared = route.route()
        declared.pop("response_class", None)  # a relay answers a Response, not a generator
        declared["responses"] = {**errors(SIMULATOR_DOWN), **declared["responses"]}
        router.api_route(**declared, name=name)(_endpoint(name, route))
    return router
