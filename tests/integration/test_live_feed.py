"""``WS /ws`` on the real embedded app, with real WebSocket clients over loopback TCP.

What the feed promises: every client gets the same metrics tick once a second and every
finished request and completed trace exactly once; backend queries do not grow with
clients; a client that stops reading is cut off without delaying the others; a backend
that fails becomes a status message instead of a dead feed; and leaving clients leave no
task behind.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import time
import uuid
from contextlib import suppress
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from exporter.errors import SourceUnavailable
from exporter.feed import CLOSE_TIMEOUT_SECONDS
from exporter.sources.base import FigureGroups, LatencySummary, MetricsSource, RedFigures
from tests.support.configs import config_with
from tests.support.feeds import Live, Reader, live_server, reader, until

pytestmark = pytest.mark.timeout(40)

PAYLOAD: dict[str, Any] = {
    "rate_of_requests": 20,
    "number_of_requests": 20,
    "retries_enabled": True,
    "rate_limiting": 0,
    "rate_limiting_algo": "token_bucket",
    "cache_enabled": True,
    "cache_ttl": 30,
    "db_latency": 2,
}
SUMMARY_TYPES = {
    "request_id": str,
    "status": int,
    "latency_ms": float,
    "retry_count": int,
    "timestamp": str,
    "endpoint": str,
    "method": str,
}
METRICS_FIELDS = {"timestamp", "request_rate", "error_rate", "retry_count"} | {
    "p95_latency",
    "p99_latency",
}
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


async def queries_over(live: Live, client: Reader, ticks: int) -> float:
    """Backend queries made from one metrics tick to the ``ticks``-th after it."""
    seen = len(client.of("metrics"))
    await until(lambda: len(client.of("metrics")) > seen, 3, "a metrics tick")
    start = live.queries()
    await until(lambda: len(client.of("metrics")) > seen + ticks, ticks + 3, "metrics ticks")
    return live.queries() - start


def feed_tasks() -> list[str]:
    return sorted(
        t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("live-feed-")
    )


async def test_fifty_clients_get_each_tick_and_each_request_once_at_constant_query_load() -> None:
    # The topology is asked once, at the first tick; not again while this test counts.
    async with live_server(ws_topology_interval_seconds=3600) as live:
        failing = config_with(failure_injection_enabled=True, failure_rate=0.3)
        assert (await live.http.put("/v1/config/failure", json=failing.model_dump())).is_success

        first = await reader(live, 0)
        with_one = await queries_over(live, first, 3)
        others = await asyncio.gather(*(reader(live, n) for n in range(1, 50)))
        clients = [first, *others]
        await until(lambda: all(c.of("metrics") for c in clients), 5, "a tick for all 50")
        with_fifty = await queries_over(live, first, 3)
        # One traces query and one metrics query a tick, whatever the number of clients.
        assert with_one == with_fifty == 6

        answer = await live.http.post(
            "/v1/traffic/generate", json={"mode": "burst", "count": 20, "payload": PAYLOAD}
        )
        assert answer.status_code == 200
        results = {r["request_id"]: r for r in answer.json()}
        assert len(results) == 20

        def complete(c: Reader) -> bool:
            return len(c.of("request_update")) >= 20 and len(c.of("trace_update")) >= 20

        await until(lambda: all(complete(c) for c in clients), 10, "20 updates of each kind")
        await asyncio.sleep(1.2)  # one more tick: nothing beyond the 20 may arrive
        recent = (await live.http.get("/v1/requests/recent", params={"limit": 20})).json()
        by_id = {r["request_id"]: r for r in recent}
        traces = {rid: (await live.http.get(f"/v1/trace/{rid}")).json() for rid in sorted(results)}
        for client in clients:
            await client.aclose()

    reference = first.of("metrics")
    late_ticks = [m["timestamp"] for m in reference[-6:]]
    for client in clients:
        metrics = client.of("metrics")
        assert all(set(m) == METRICS_FIELDS for m in metrics)
        stamps = [m["timestamp"] for m in metrics]
        # The same ticks, in the same order, for every client (the same serialized message).
        assert stamps == sorted(set(stamps))
        assert set(late_ticks) <= set(stamps)
        gaps = [b - a for a, b in itertools.pairwise(late_ticks)]
        assert all(700 <= gap <= 1300 for gap in gaps), gaps

        updates = client.of("request_update")
        assert len(updates) == 20
        assert {u["request_id"] for u in updates} == set(results)
        for update in updates:
            assert {k: type(v) for k, v in update.items()} == SUMMARY_TYPES
            assert update == by_id[update["request_id"]]
            assert ISO.fullmatch(update["timestamp"])
            assert update["endpoint"].startswith("/api/v1/")  # a route template
            assert update["method"] in {"GET", "POST", "PUT", "PATCH", "DELETE"}
            success = results[update["request_id"]]["status"] == "success"
            assert (update["status"] < 400) is success
            assert 0 < update["latency_ms"] <= results[update["request_id"]]["latency_ms"]

        finished = client.of("trace_update")
        assert len(finished) == 20
        for update in finished:
            full = traces[update["request_id"]]
            assert update["trace_id"] == uuid.UUID(update["request_id"]).hex
            assert update["event_count"] == full["event_count"] > 0
            assert update["failure_points"] == len(full["failure_points"])
            assert update["retry_attempts"] == len(full["retry_attempts"])
            assert update["status_code"] == full["trace"]["status_code"]
            assert update["total_latency_ms"] == full["trace"]["total_latency_ms"]
            assert update["span_count"] >= 3
    # Injected failures at 30 % with retries: some traces carry failure points and retries.
    assert sum(u["failure_points"] for u in first.of("trace_update")) > 0
    assert sum(u["retry_attempts"] for u in first.of("trace_update")) > 0


async def test_a_client_that_never_reads_is_cut_off_and_never_delays_the_others() -> None:
    async with live_server(send_buffer=4096, ws_client_queue_size=8) as live:
        quick = config_with(db_latency_min_ms=0, db_latency_max_ms=0)
        assert (await live.http.put("/v1/config/failure", json=quick.model_dump())).is_success
        fast = [await reader(live, n) for n in range(2)]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", live.port))
        slow = await connect(live.ws_url, sock=sock, max_queue=1, open_timeout=10)
        clients = "failure_lab_exporter_websocket_clients"
        await until(lambda: live.feed_sample(clients) == 3, 5, "three clients")
        await until(lambda: all(c.of("metrics") for c in fast), 5, "a first tick")

        generated = 0
        started = time.time() * 1000
        for _ in range(12):
            answer = await live.http.post(
                "/v1/traffic/generate", json={"mode": "burst", "count": 200, "payload": PAYLOAD}
            )
            assert answer.status_code == 200
            generated += 200
            if live.feed_sample("failure_lab_exporter_websocket_disconnects_total", reason="slow"):
                break
            await asyncio.sleep(0.3)
        slow_total = "failure_lab_exporter_websocket_disconnects_total"
        await until(lambda: live.feed_sample(slow_total, reason="slow") == 1, 3, "slow cut off")

        # The slow client now reads what was buffered, then the close frame with its reason.
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS - 1):
            with suppress(ConnectionClosed):
                async for _ in slow:
                    pass
        assert slow.close_code == 1008
        assert re.fullmatch(r"too slow: \d+ messages behind", slow.close_reason or "")
        await until(lambda: live.feed_sample(clients) == 2, 3, "the slow client gone")

        await until(
            lambda: all(len(c.of("request_update")) == generated for c in fast),
            10,
            "every request update at the fast clients",
        )
        ended = time.time() * 1000
        await asyncio.sleep(1.1)
        for client in fast:
            await client.aclose()

    for client in fast:
        ticks = [(at, m) for at, m in client.timed("metrics") if started <= at <= ended]
        assert len(ticks) >= 2
        # On time: each tick arrives promptly after the feed made it, however far behind the
        # slow client was (when the feed makes its ticks is the host's scheduling, not this).
        assert all(at - m["timestamp"] < 500 for at, m in ticks)
        assert len({u["request_id"] for u in client.of("request_update")}) == generated


class SwitchableMetrics:
    """The runtime's metrics source, refusing every query while ``down``."""

    def __init__(self, inner: MetricsSource) -> None:
        self.inner = inner
        self.name = inner.name
        self.down = False

    async def red(self, window_seconds: float, at: float | None = None) -> RedFigures:
        if self.down:
            raise SourceUnavailable(self.name, "connection refused")
        return await self.inner.red(window_seconds, at)

    async def latency(
        self, window_seconds: float, at: float | None = None
    ) -> dict[str, LatencySummary]:
        return await self.inner.latency(window_seconds, at)

    async def topology(self, window_seconds: float, at: float | None = None) -> FigureGroups:
        if self.down:
            raise SourceUnavailable(self.name, "connection refused")
        return await self.inner.topology(window_seconds, at)

    async def check(self) -> None:
        if self.down:
            raise SourceUnavailable(self.name, "connection refused")

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_failing_backend_becomes_status_messages_and_the_feed_recovers() -> None:
    async with live_server(ws_heartbeat_seconds=0.4) as live:
        runtime = live.app.state.exporter
        source = SwitchableMetrics(runtime.metrics)
        runtime.metrics = source
        client = await reader(live, 0)
        await until(lambda: bool(client.of("metrics")), 3, "a first tick")
        assert client.of("heartbeat") == []  # ticks every second: never idle for 0.4 s

        source.down = True
        await until(lambda: bool(client.of("status")), 3, "a status message")
        assert client.of("status") == [
            {
                "backend": source.name,
                "role": "metrics",
                "healthy": False,
                "error": "connection refused",
            }
        ]
        late = await reader(live, 1)  # joins while the backend is down: told at once
        await until(lambda: bool(late.of("status")), 2, "the current status")
        assert late.of("status")[0]["healthy"] is False
        ticks_when_down = len(client.of("metrics"))
        await asyncio.sleep(2.2)
        assert len(client.of("metrics")) == ticks_when_down
        beats = [b["timestamp"] for b in client.of("heartbeat")]
        assert len(beats) >= 3
        assert beats == sorted(beats)
        assert len(client.of("status")) == 1  # said once, not every tick
        health = (await live.http.get("/v1/status")).json()
        assert health["websocket_clients"] == 2

        source.down = False
        await until(lambda: len(client.of("metrics")) >= ticks_when_down + 2, 4, "ticks again")
        assert client.of("status")[-1] == {
            "backend": source.name,
            "role": "metrics",
            "healthy": True,
            "error": None,
        }
        assert client.task is not None
        assert not client.task.done()  # the socket stayed open throughout
        for each in (client, late):
            await each.aclose()


async def test_leaving_clients_leave_no_task_and_shutdown_says_going_away() -> None:
    async with live_server(ws_max_clients=3) as live:
        before = live.queries()
        await asyncio.sleep(1.5)
        assert live.queries() == before  # nobody connected: no backend query at all
        assert feed_tasks() == ["live-feed-poller"]

        clients = [await reader(live, n) for n in range(3)]
        await until(lambda: all(c.of("metrics") for c in clients), 3, "a first tick")
        assert len(feed_tasks()) == 1 + 2 * 3

        async with connect(live.ws_url, open_timeout=10) as extra:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(extra.recv(), 3)
        assert extra.close_code == 1013
        assert extra.close_reason == "too many clients: the limit is 3"

        await clients[0].aclose()  # a clean close
        clients[1].ws.transport.abort()  # and a vanished peer
        assert clients[1].task is not None
        await clients[1].task
        disconnects = "failure_lab_exporter_websocket_disconnects_total"
        await until(lambda: live.feed_sample(disconnects, reason="closed") == 2, 3, "two gone")
        assert live.feed_sample("failure_lab_exporter_websocket_clients") == 1
        assert live.feed_sample(disconnects, reason="rejected") == 1
        await until(lambda: len(feed_tasks()) == 3, 2, "their tasks ended")

        last = clients[2]
        await live.feed.aclose()
        assert last.task is not None
        await asyncio.wait_for(last.task, 3)
        assert last.ws.close_code == 1001
        assert last.ws.close_reason == "server shutting down"
        assert live.feed_sample(disconnects, reason="shutdown") == 1
        assert live.feed_sample("failure_lab_exporter_websocket_clients") == 0
        assert feed_tasks() == []
