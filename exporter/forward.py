"""Stack mode: the control half of the contract is forwarded to the simulator.

Only the documented control routes are forwarded, each declared here with the contract's
own models (``failure_lab.control``), so the shim's OpenAPI document shows every one with
its real request and response schemas and validates a body the way the simulator would.
What reaches the simulator is the request as it came (method, raw path, query, body, content
type, authorization); its status code and body come back unchanged, so clients see one
contract in both modes. A path with dot-segments, encoded slashes or control characters is
refused with 400 (or is no route at all: 404) and never reaches another route. A simulator
that is down or slow is a 503 naming it, within ``forward_timeout_seconds``: the call runs
inside :func:`exporter.boundary.backend_call` like every other backend call.

An event stream (a job's ``/stream``) is passed on as it arrives rather than buffered: the
upstream stream is opened first (so its status, a 404 say, comes back as is) and closed when
it ends, when the client goes away, or when no chunk came for ``forward_timeout_seconds``.
"""

import asyncio
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from copy import deepcopy
from dataclasses import dataclass
from typing import Any, Final

import httpx
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.background import BackgroundTask

from exporter.boundary import backend_call
from exporter.errors import SourceUnavailable
from failure_lab.control import (
    CircuitBreakerConfig,
    CircuitBreakerStatus,
    Disruption,
    DisruptionList,
    DisruptionRequest,
    DisruptionsCleared,
    FailureConfig,
    Job,
    ScenarioJobRequest,
    TrafficRequest,
    TrafficResult,
    TrafficStatistics,
    TrafficStatus,
)

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
_UNSAFE_RAW: Final = re.compile(rb"%(?:2f|5c)|\\", re.IGNORECASE)
_UNSAFE_SEGMENT: Final = re.compile(r"(?:^|/)\.{1,2}(?:/|$)|[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Forwarded:
    """One control route of the simulator, as the shim documents and forwards it."""

    method: str
    path: str
    name: str
    """The simulator's handler name, so both documents give the operation one id."""
    summary: str
    answer: Any
    body: type[BaseModel] | None = None
    status: int = 200
    stream: bool = False
    more: tuple[tuple[int, Any, str], ...] = ()
    """Other successful answers: (status, model, description)."""


FORWARDED: Final[tuple[Forwarded, ...]] = (
    Forwarded(
        "POST",
        "/v1/traffic/generate",
        "generate",
        "Generate traffic: single (one result), burst (a list), sustained (202, a job)",
        TrafficResult | list[TrafficResult] | Job,
        TrafficRequest,
        more=((202, Job, "sustained: the job started"),),
    ),
    Forwarded(
        "GET",
        "/v1/traffic/status",
        "traffic_status",
        "Whether a generation runs, and its request count",
        TrafficStatus,
    ),
    Forwarded(
        "GET",
        "/v1/traffic/statistics",
        "traffic_statistics",
        "Everything the traffic generator sent since start: totals, per endpoint, per status, "
        "errors by kind, retries, breaker trips, bytes",
        TrafficStatistics,
    ),
    Forwarded(
        "GET",
        "/v1/traffic/jobs",
        "list_jobs",
        "Jobs, running and finished (kept for a while), newest first",
        list[Job],
    ),
    Forwarded(
        "POST",
        "/v1/traffic/jobs",
        "start_scenario_job",
        "Start a scenario job: normal, peak, error_injection, latency_degradation, stress",
        Job,
        ScenarioJobRequest,
        status=201,
    ),
    Forwarded(
        "GET",
        "/v1/traffic/jobs/{job_id}",
        "get_job",
        "One job: status, live stats, and its summary once completed",
        Job,
    ),
    Forwarded(
        "POST",
        "/v1/traffic/jobs/{job_id}/stop",
        "stop_job",
        "Stop a running job (a finished one is returned as is)",
        Job,
    ),
    Forwarded(
        "GET",
        "/v1/traffic/jobs/{job_id}/stream",
        "stream_job",
        "Server-Sent Events: 'status' while the job runs, then one 'done'",
        Job,
        stream=True,
    ),
    Forwarded(
        "GET",
        "/v1/config/failure",
        "get_failure_config",
        "The failure config applied to every request",
        FailureConfig,
    ),
    Forwarded(
        "PUT",
        "/v1/config/failure",
        "put_failure_config",
        "Replace the whole failure config",
        FailureConfig,
        FailureConfig,
    ),
    Forwarded(
        "GET",
        "/v1/config/circuit-breaker",
        "get_circuit_breaker",
        "The database circuit breaker and its state",
        CircuitBreakerStatus,
    ),
    Forwarded(
        "PUT",
        "/v1/config/circuit-breaker",
        "put_circuit_breaker",
        "Replace the circuit breaker config; turning it off resets it to closed",
        CircuitBreakerStatus,
        CircuitBreakerConfig,
    ),
    Forwarded(
        "GET",
        "/v1/disruptions",
        "list_disruptions",
        "The active disruptions, with time remaining and requests affected",
        DisruptionList,
    ),
    Forwarded(
        "POST",
        "/v1/disruptions",
        "create_disruption",
        "Start a disruption; it reverts by itself",
        Disruption,
        DisruptionRequest,
        status=201,
    ),
    Forwarded(
        "POST",
        "/v1/disruptions/clear-all",
        "clear_disruptions",
        "Cancel every active disruption",
        DisruptionsCleared,
    ),
    Forwarded(
        "GET",
        "/v1/disruptions/{disruption_id}",
        "get_disruption",
        "One disruption, active or recently ended",
        Disruption,
    ),
    Forwarded(
        "DELETE",
        "/v1/disruptions/{disruption_id}",
        "cancel_disruption",
        "Cancel an active disruption",
        Disruption,
    ),
)


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
            raise HTTPException(400, f"path {request.url.path!r} not forwarded: {refused}")
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
        async with backend_call(self.name, self._base, self._check_timeout):
            answer = await self._client.get("/v1/traffic/status")
        if answer.status_code != 200:
            raise SourceUnavailable(self.name, f"status {answer.status_code}")

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


def _endpoint(route: Forwarded) -> Callable[..., Awaitable[Response]]:
    """A handler whose signature declares the route's path parameters and body, so FastAPI
    documents and validates them; it forwards the request as it came."""

    async def forward(request: Request, **_: Any) -> Response:
        forwarder: Forwarder = request.app.state.forwarder
        return await forwarder.forward(request)

    parameters = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)
    ]
    parameters += [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=str)
        for name in re.findall(r"{(\w+)}", route.path)
    ]
    if route.body is not None:
        parameters.append(
            inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=route.body)
        )
    forward.__signature__ = inspect.Signature(parameters, return_annotation=Response)  # type: ignore[attr-defined]
    forward.__name__ = route.name
    return forward


def document_streams(openapi: dict[str, Any]) -> dict[str, Any]:
    """The relayed event streams documented as the simulator documents them: FastAPI can
    tell an event stream only from a generator endpoint, and a relay answers a Response."""
    for route in FORWARDED:
        if route.stream:
            answer = openapi["paths"][route.path][route.method.lower()]["responses"]["200"]
            answer["content"] = {"text/event-stream": {"itemSchema": deepcopy(SSE_EVENT)}}
    return openapi


def forwarding_router() -> APIRouter:
    router = APIRouter(tags=["control (forwarded to the simulator)"])
    for route in FORWARDED:
        responses: dict[int | str, dict[str, Any]] = {
            status: {"model": model, "description": why} for status, model, why in route.more
        }
        if not route.stream:  # a stream is documented by document_streams
            responses[route.status] = {"model": route.answer}
        router.add_api_route(
            route.path,
            _endpoint(route),
            methods=[route.method],
            name=route.name,
            summary=route.summary,
            status_code=route.status,
            response_model=None,
            responses=responses,
        )
    return router
