"""The embedded app with its live feed under uvicorn, and WebSocket clients that read it.

Served in the test's own event loop over loopback TCP, so a test can shrink the kernel
buffers of the server's sockets and see what a client that stops reading does to the feed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from exporter.feed import LiveFeed
from exporter.feed import router as feed_router
from exporter.metrics import ExporterMetrics
from failure_lab.settings import Settings
from simulator.app import create_app
from simulator.server import server_for

QUERIES = "failure_lab_exporter_backend_queries_total"


@dataclass
class Live:
    app: FastAPI
    http: httpx.AsyncClient
    ws_url: str
    port: int
    feed: LiveFeed
    feed_registry: CollectorRegistry

    def queries(self) -> float:
        registry: CollectorRegistry = self.app.state.registry
        return sum(
            sample.value
            for family in registry.collect()
            for sample in family.samples
            if sample.name == QUERIES
        )

    def feed_sample(self, name: str, **labels: str) -> float:
        return self.feed_registry.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def live_server(
    send_buffer: int | None = None,
    app_for: Callable[[int], FastAPI] | None = None,
    **overrides: Any,
) -> AsyncIterator[Live]:
    """The embedded app (or ``app_for(port)``, e.g. the stack's shim) under uvicorn with
    the live feed wired in.

    The app's own wiring is used when it provides it (``app.state.feed`` after start-up,
    and the ``/ws`` route); otherwise the feed and its route are added here.
    ``send_buffer`` shrinks the kernel send buffer of every accepted connection, so a
    client that stops reading fills its socket after a few hundred messages.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if send_buffer is not None:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    listener.bind(("127.0.0.1", 0))
    port: int = listener.getsockname()[1]
    app = app_for(port) if app_for is not None else create_app(Settings(port=port, **overrides))
    server = server_for(app, "127.0.0.1", port, grace=5, log_level="warning")
    serving = asyncio.create_task(server.serve(sockets=[listener]), name="test-server")
    async with asyncio.timeout(10):
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.01)
    feed = getattr(app.state, "feed", None)
    owned = feed is None
    if feed is None:
        app.include_router(feed_router)
        feed_registry = CollectorRegistry()
        feed = LiveFeed(app.state.exporter, ExporterMetrics(feed_registry))
        app.state.feed = feed
        feed.start()
    else:
        feed_registry = app.state.registry
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            yield Live(app, http, f"ws://127.0.0.1:{port}/ws", port, feed, feed_registry)
    finally:
        if owned:
            await feed.aclose()
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=20)
        listener.close()


@dataclass
class Reader:
    """A client that reads every message as it arrives, noting when (ms since epoch)."""

    ws: ClientConnection
    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m["data"] for _, m in self.messages if m["type"] == kind]

    def timed(self, kind: str) -> list[tuple[float, dict[str, Any]]]:
        return [(at, m["data"]) for at, m in self.messages if m["type"] == kind]

    async def _read(self) -> None:
        with suppress(ConnectionClosed):
            async for raw in self.ws:
                message = json.loads(raw)
                assert set(message) == {"type", "data"}
                self.messages.append((time.time() * 1000, message))

    async def aclose(self) -> None:
        await self.ws.close()
        if self.task is not None:
            await self.task


async def reader(live: Live, number: int) -> Reader:
    client = Reader(await connect(live.ws_url, open_timeout=10))
    client.task = asyncio.create_task(client._read(), name=f"test-reader-{number}")
    return client


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        await asyncio.sleep(0.02)
