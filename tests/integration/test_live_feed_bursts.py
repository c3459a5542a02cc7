"""Bursts on the live feed: a client that keeps up gets everything, however busy the server.

Three back-to-back bursts of 1,000 requests make the feed send thousands of messages a tick
while the same event loop serves the requests. A reading client's socket never fills, so
it must never be judged slow, even while its sender waits for its turn on a busy loop; a
client that never reads fills its socket and is the only one closed.
"""

from __future__ import annotations

import asyncio
import re
import socket
from contextlib import suppress
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from exporter.feed import CLOSE_TIMEOUT_SECONDS
from tests.support.configs import config_with
from tests.support.feeds import Live, live_server, reader, until

pytestmark = pytest.mark.timeout(120)

PAYLOAD: dict[str, Any] = {
    "rate_of_requests": 20,
    "number_of_requests": 1000,
    "retries_enabled": True,
    "rate_limiting": 0,
    "rate_limiting_algo": "token_bucket",
    "cache_enabled": True,
    "cache_ttl": 30,
    "db_latency": 0,
}
CLIENTS = "failure_lab_exporter_websocket_clients"
DISCONNECTS = "failure_lab_exporter_websocket_disconnects_total"


async def never_reading(live: Live) -> ClientConnection:
    """A client with a 4 KiB receive buffer that reads nothing after the handshake, and
    asks for no compression, so its socket is full after a few thousand messages."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", live.port))
    return await connect(live.ws_url, sock=sock, max_queue=1, open_timeout=10, compression=None)


async def test_three_bursts_reach_the_reader_and_only_the_stuck_client_is_cut() -> None:
    # Small kernel send buffers on the server's side (the reading client's too): the stuck
    # client's socket is full after about a thousand messages rather than a few megabytes.
    async with live_server(send_buffer=4096) as live:
        quick = config_with(db_latency_min_ms=0, db_latency_max_ms=0)
        assert (await live.http.put("/v1/config/failure", json=quick.model_dump())).is_success
        fast = await reader(live, 0)
        stuck = await never_reading(live)
        await until(lambda: live.feed_sample(CLIENTS) == 2, 5, "two clients")
        await until(lambda: bool(fast.of("metrics")), 5, "a first tick")

        sent: set[str] = set()
        for _ in range(3):
            answer = await live.http.post(
                "/v1/traffic/generate", json={"mode": "burst", "count": 1000, "payload": PAYLOAD}
            )
            assert answer.status_code == 200
            sent.update(result["request_id"] for result in answer.json())
        assert len(sent) == 3000

        def has_everything() -> bool:
            return len(fast.of("request_update")) >= 3000 and len(fast.of("trace_update")) >= 3000

        await until(has_everything, 30, "every update at the reading client")
        await until(lambda: live.feed_sample(DISCONNECTS, reason="slow") == 1, 10, "stuck cut")
        await asyncio.sleep(1.2)  # one more tick: nothing is repeated
        assert fast.task is not None
        assert not fast.task.done()  # never closed

        # The stuck client reads what was buffered for it, then the close frame.
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS + 5):
            with suppress(ConnectionClosed):
                async for _ in stuck:
                    pass
        assert stuck.close_code == 1008
        assert re.fullmatch(r"too slow: \d+ messages behind", stuck.close_reason or "")
        await until(lambda: live.feed_sample(CLIENTS) == 1, 3, "the stuck client gone")
        assert not fast.task.done()
        await fast.aclose()

    requests = [u["request_id"] for u in fast.of("request_update")]
    traces = [u["request_id"] for u in fast.of("trace_update")]
    assert sorted(requests) == sorted(sent)
    assert sorted(traces) == sorted(sent)
    assert live.feed_sample(DISCONNECTS, reason="slow") == 1
