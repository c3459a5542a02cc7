"""Stack mode: the control half of the contract is forwarded to the simulator.

``/v1/traffic/*``, ``/v1/config/*`` and ``/v1/disruptions*`` arrive at the shim on port 8000
and are passed to the simulator unchanged (method, query, body, content type); its status
code and body come back unchanged, so clients see one contract in both modes. A simulator
that is down or slow is a 503 naming it, within ``forward_timeout_seconds``.

An event stream (a job's ``/stream``) is passed on as it arrives rather than buffered: the
upstream stream is opened first (so its status, a 404 say, comes back as is) and closed when
it ends or when the client goes away.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from exporter.errors import SourceTimeout, SourceUnavailable

FORWARDED_HEADERS = ("content-type", "accept")
RETURNED_HEADERS = ("content-type", "retry-after", "location")


class Forwarder:
    name = "simulator"

    def __init__(self, base_url: str, timeout: float, client: httpx.AsyncClient | None = None):
        self._client = client or httpx.AsyncClient(base_url=base_url, timeout=timeout)
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
        try:
            answer = await self._client.send(upstream, stream=True)
        except httpx.TimeoutException as exc:
            raise SourceTimeout(self.name, f"no answer: {exc!r}") from None
        except httpx.HTTPError as exc:
            raise SourceUnavailable(self.name, f"{exc!r}") from None
        kept = {k: v for k in RETURNED_HEADERS if (v := answer.headers.get(k))}
        if answer.headers.get("content-type", "").startswith("text/event-stream"):
            kept["cache-control"] = "no-cache"
            return StreamingResponse(
                _relay(answer),
                answer.status_code,
                headers=kept,
                background=BackgroundTask(answer.aclose),  # also if the relay never ran
            )
        try:
            body = await answer.aread()
        except httpx.TimeoutException as exc:
            raise SourceTimeout(self.name, f"no answer: {exc!r}") from None
        except httpx.HTTPError as exc:
            raise SourceUnavailable(self.name, f"{exc!r}") from None
        finally:
            await answer.aclose()
        return Response(body, answer.status_code, headers=kept)

    async def check(self) -> None:
        try:
            answer = await self._client.get("/v1/traffic/status")
        except httpx.TimeoutException as exc:
            raise SourceTimeout(self.name, f"no answer: {exc!r}") from None
        except httpx.HTTPError as exc:
            raise SourceUnavailable(self.name, f"{exc!r}") from None
        if answer.status_code != 200:
            raise SourceUnavailable(self.name, f"status {answer.status_code}")

    async def aclose(self) -> None:
        if self._owns:
            await self._client.aclose()


async def _relay(answer: httpx.Response) -> AsyncIterator[bytes]:
    """The upstream stream's bytes as they come; closed however the relay ends."""
    try:
        async for chunk in answer.aiter_raw():
            yield chunk
    except httpx.HTTPError:
        return  # the simulator went away mid-stream: end ours too
    finally:
        await answer.aclose()


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
