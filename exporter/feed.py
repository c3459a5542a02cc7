"""The live feed behind ``WS /ws``: one poller per process, one bounded queue per client.

The backends must not feel how many dashboards are open, and a client that stops reading
must not hold up the others. So one poller task asks each backend once per tick
(``ws_poll_interval_seconds``) through the runtime's watched sources, turns the answers into
messages, serializes each message once and offers the same batch to every client's bounded
queue with ``put_nowait``; each client has its own sender task writing at its own pace.

Every message is a JSON text frame ``{"type": ..., "data": ...}``:

- ``metrics``: the contract's ``MetricsData`` over ``metrics_window_seconds``, once a tick;
- ``request_update``: a ``RequestSummary`` for each request finished since the last tick;
- ``trace_update``: a ``TraceUpdate`` for each trace completed since the last tick;
- ``topology``: the graph of ``GET /v1/topology`` when it changed, asked at most every
  ``ws_topology_interval_seconds`` (:mod:`exporter.feed_topology`);
- ``status``: a backend stopped answering (``healthy: false`` and the error) or answers
  again (``healthy: true``); a client that connects while a backend is down gets its
  ``healthy: false`` at once;
- ``heartbeat``: nothing else was sent for ``ws_heartbeat_seconds``. Heartbeats are
  messages rather than WebSocket pings because browsers do not show pings to scripts;
  uvicorn's own pings (``ws_ping_interval``) still find dead peers.

Decisions:

- No client, no query: the poller sleeps until the first client arrives (and wakes at
  once for it), and forgets its trace cursor, so the feed starts from "now" instead of
  replaying what nobody watched. A backend failure never stops the poller: the next tick
  simply asks again.
- Slowness is the client's socket not accepting, never the server being busy. Messages a
  sender has not handed to its socket yet may be waiting only for the sender's turn: while
  the same event loop serves a burst of requests, a client that reads everything falls
  thousands of messages behind for seconds, through no fault of its own. So a client is
  judged by its socket: one more than ``ws_client_queue_size`` messages behind is closed
  with 1008 and "too slow: N messages behind" only once its sender has spent
  ``STALL_SECONDS`` waiting for the socket to accept (in all, since it last caught up).
  A never-reading client fills its socket and is cut two seconds later; a client that
  reads, but slower than the feed, after two seconds of such waits; a reading client
  whose sender is merely late is never cut. A tick's batch is queued whole; at most
  ``ws_client_queue_size`` batches (ticks) are queued for one client, a bound on memory
  whatever the reason. Closing waits for the socket to drain for at most
  ``CLOSE_TIMEOUT_SECONDS``, then the connection is left to uvicorn.
- Beyond ``ws_max_clients`` a client is accepted and closed at once with 1013; on
  shutdown every client is closed with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Final, TypeVar

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from exporter.errors import SourceError
from exporter.feed_messages import (
    BackendHealth,
    Role,
    envelope,
    trace_update,
    translated,
)
from exporter.feed_topology import TopologyTicker
from exporter.metrics import ExporterMetrics
from exporter.runtime import ExporterRuntime
from exporter.translate import metrics_data, summarize

logger = logging.getLogger(__name__)
T = TypeVar("T")

CLOSE_TIMEOUT_SECONDS: Final = 5.0
"""How long a close may wait for a full socket to drain (the whole of ``aclose`` waits
this plus one second)."""
GOING_AWAY: Final = 1001
INTERNAL_ERROR: Final = 1011
POLICY_VIOLATION: Final = 1008
TRY_AGAIN_LATER: Final = 1013
TASK_PREFIX: Final = "live-feed"
STALL_SECONDS: Final = 2.0
"""How long, in all since it last caught up, a sender more than its bound behind may wait
for its client's socket to accept before the client is closed as too slow."""
FAIR_SHARE: Final = 32
"""Messages a sender writes before letting the other senders run: without it, a sender
whose socket accepts everything writes its whole batch in one go, and the last client
of 200 would get a tick's ``metrics`` only after every other client got all of theirs."""

Batch = tuple[str, ...]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(eq=False, slots=True)
class _Client:
    """One connection: its queue, how far behind it is, how long its socket kept its
    sender waiting, and why it is being closed."""

    number: int
    websocket: WebSocket
    queue: asyncio.Queue[Batch]
    limit: int
    behind: int = 0
    sending_since: float | None = None
    waited: float = 0.0
    close_code: int | None = None
    close_reason: str = ""
    counted: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def offer(self, batch: Batch, now: float) -> bool:
        """Queue ``batch`` without waiting; False when the client is too slow for it: past
        its bound with a socket that kept it waiting ``STALL_SECONDS``, or its queue full."""
        if self.close_code is not None:
            return True
        past_bound = self.behind and self.behind + len(batch) > self.limit
        if past_bound and self.socket_wait(now) >= STALL_SECONDS:
            return False
        if not batch:  # a tick with nothing to send still judges the client
            return True
        try:
            self.queue.put_nowait(batch)
        except asyncio.QueueFull:
            return False
        self.behind += len(batch)
        return True

    def socket_wait(self, now: float) -> float:
        """Seconds the sender has waited for the socket to accept since it last caught up
        (loop time ``now``). A send to a socket with room returns without waiting."""
        current = 0.0 if self.sending_since is None else now - self.sending_since
        return self.waited + current

    def close_soon(self, code: int, reason: str) -> None:
        """Stop sending now; the connection's handler closes it with ``code``."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            for task in self.tasks:
                task.cancel()


class LiveFeed:
    """The feed of one process; ``start()`` it once the runtime exists, ``aclose()`` it
    before the server closes connections (a second ``aclose()`` does nothing)."""

    def __init__(self, runtime: ExporterRuntime, metrics: ExporterMetrics) -> None:
        settings = runtime.settings
        self._runtime = runtime
        self._metrics = metrics
        self._interval = settings.ws_poll_interval_seconds
        self._window = settings.metrics_window_seconds
        self._queue_size = settings.ws_client_queue_size
        self._heartbeat = settings.ws_heartbeat_seconds
        self._max_clients = settings.ws_max_clients
        self._clients: set[_Client] = set()
        self._numbers = itertools.count(1)
        self._cursor: object | None = None
        self._down: dict[Role, str] = {}
        self._wakeup = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._poller: asyncio.Task[None] | None = None
        self._closing = False
        topology_interval = settings.ws_topology_interval_seconds
        self._topology = TopologyTicker(runtime, topology_interval, self._window)

    # Life cycle

    def start(self) -> None:
        if self._poller is None and not self._closing:
            self._runtime.websocket_clients = self.client_count
            self._poller = asyncio.create_task(self._poll(), name=f"{TASK_PREFIX}-poller")

    async def aclose(self) -> None:
        """Stop polling, close every client with 1001 and wait for them, bounded."""
        self._closing = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for client in tuple(self._clients):
            self._count(client, "shutdown")
            client.close_soon(GOING_AWAY, "server shutting down")
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS + 1):
                await self._empty.wait()
        except TimeoutError:
            logger.warning("live feed: %d clients still closing at shutdown", len(self._clients))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LiveFeed]:
        self.start()
        try:
            yield self
        finally:
            await self.aclose()

    def client_count(self) -> int:
        return len(self._clients)

    # Connections

    async def serve(self, websocket: WebSocket) -> None:
        """Run one client's connection until it leaves or is closed."""
        await websocket.accept()
        if self._closing:
            await _close(websocket, GOING_AWAY, "server shutting down")
            return
        if len(self._clients) >= self._max_clients:
            self._metrics.ws_disconnects.labels("rejected").inc()
            reason = f"too many clients: the limit is {self._max_clients}"
            await _close(websocket, TRY_AGAIN_LATER, reason)
            return
        client = _Client(
            next(self._numbers), websocket, asyncio.Queue(self._queue_size), self._queue_size
        )
        self._add(client)
        try:
            await self._run_client(client)
        finally:
            self._remove(client)

    def _add(self, client: _Client) -> None:
        self._clients.add(client)
        self._empty.clear()
        self._metrics.ws_clients.inc()
        now = asyncio.get_running_loop().time()
        for role in self._down:
            client.offer((self._status_message(role),), now)
        if self._topology.latest is not None:
            client.offer((self._topology.latest,), now)
        self._wakeup.set()

    def _remove(self, client: _Client) -> None:
        self._clients.discard(client)
        self._metrics.ws_clients.dec()
        if not self._clients:
            self._empty.set()

    def _count(self, client: _Client, reason: str) -> None:
        if not client.counted:
            client.counted = True
            self._metrics.ws_disconnects.labels(reason).inc()

    async def _run_client(self, client: _Client) -> None:
        sender = asyncio.create_task(self._send(client), name=f"{TASK_PREFIX}-send-{client.number}")
        receiver = asyncio.create_task(
            _receive(client.websocket), name=f"{TASK_PREFIX}-receive-{client.number}"
        )
        client.tasks = [sender, receiver]
        try:
            await asyncio.wait(client.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in client.tasks:
                task.cancel()
            await asyncio.gather(*client.tasks, return_exceptions=True)
        failed = [t for t in client.tasks if not t.cancelled() and t.exception() is not None]
        for task in failed:
            logger.error("live feed: client %d failed", client.number, exc_info=task.exception())
        if client.close_code is None and failed:
            client.close_code, client.close_reason = INTERNAL_ERROR, "internal error"
        self._count(client, "error" if failed else "closed")
        if client.close_code is not None:
            await _close(client.websocket, client.close_code, client.close_reason)

    async def _send(self, client: _Client) -> None:
        websocket = client.websocket
        loop = asyncio.get_running_loop()
        try:
            while True:
                if client.queue.empty():
                    client.waited = 0.0  # caught up
                try:
                    async with asyncio.timeout(self._heartbeat):
                        batch = await client.queue.get()
                except TimeoutError:
                    await websocket.send_text(envelope("heartbeat", f'{{"timestamp":{_now_ms()}}}'))
                    continue
                for index, text in enumerate(batch, 1):
                    client.sending_since = started = loop.time()
                    await websocket.send_text(text)
                    client.waited += loop.time() - started
                    client.sending_since = None
                    client.behind -= 1
                    if index % FAIR_SHARE == 0:
                        await asyncio.sleep(0)
        except WebSocketDisconnect:
            return

    # Polling

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            if not self._clients:
                self._cursor = None
                self._topology.reset()
                self._wakeup.clear()
                await self._wakeup.wait()
                due = loop.time()
            try:
                await self._tick()
            except Exception:
                logger.exception("live feed: a poll failed; the next one runs as usual")
            due = max(due + self._interval, loop.time())
            await asyncio.sleep(due - loop.time())

    async def _tick(self) -> None:
        runtime = self._runtime
        statuses: list[str] = []
        updates, red, topology = await asyncio.gather(
            self._ask("traces", runtime.traces.updates(self._cursor), statuses),
            self._ask("metrics", runtime.red(self._window), statuses),
            self._topology.poll(),
        )
        batch: list[tuple[str, str]] = [("status", text) for text in statuses]
        if red is not None:
            batch.append(("metrics", envelope("metrics", metrics_data(red, _now_ms()))))
        if topology is not None:
            batch.append(("topology", topology))
        if updates is not None:
            self._cursor = updates.cursor
            batch.extend(translated("request_update", summarize, updates.requests))
            batch.extend(translated("trace_update", trace_update, updates.completed))
        for kind, count in Counter(kind for kind, _ in batch).items():
            self._metrics.ws_messages.labels(kind).inc(count)
        self._fan_out(tuple(text for _, text in batch))

    async def _ask(self, role: Role, query: Awaitable[T], statuses: list[str]) -> T | None:
        """One query (bounded and watched by the runtime's sources); a change of the
        backend's health becomes a status message."""
        try:
            result = await query
        except SourceError as exc:
            error = exc.message
        except Exception as exc:
            if role not in self._down:  # once, not every tick
                logger.exception("live feed: the %s query to %s failed", role, self._name(role))
            error = f"{type(exc).__name__}: {exc}"
        else:
            if self._down.pop(role, None) is not None:
                statuses.append(self._status_message(role))
            return result
        if role not in self._down:
            self._down[role] = error
            statuses.append(self._status_message(role))
        return None

    def _name(self, role: Role) -> str:
        runtime = self._runtime
        return runtime.metrics.name if role == "metrics" else runtime.traces.name

    def _status_message(self, role: Role) -> str:
        error = self._down.get(role)
        health = BackendHealth(
            backend=self._name(role), role=role, healthy=error is None, error=error
        )
        return envelope("status", health)

    def _fan_out(self, batch: Batch) -> None:
        now = asyncio.get_running_loop().time()
        for client in tuple(self._clients):
            if not client.offer(batch, now):
                behind = client.behind
                self._count(client, "slow")
                client.close_soon(POLICY_VIOLATION, f"too slow: {behind} messages behind")


async def _receive(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it disconnects."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    """Close unless the client is gone, waiting at most ``CLOSE_TIMEOUT_SECONDS``."""
    if websocket.client_state is not WebSocketState.CONNECTED:
        return
    if websocket.application_state is not WebSocketState.CONNECTED:
        return
    with contextlib.suppress(TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await websocket.close(code, reason)


router = APIRouter(tags=["live feed"])


@router.websocket("/ws")
async def live_feed(websocket: WebSocket) -> None:
    """The contract's WebSocket feed: metrics every tick, request and trace updates, status."""
    feed = getattr(websocket.app.state, "feed", None)
    if not isinstance(feed, LiveFeed):
        await websocket.accept()
        await _close(websocket, TRY_AGAIN_LATER, "the live feed is not running")
        return
    await feed.serve(websocket)
