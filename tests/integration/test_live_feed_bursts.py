"""Bursts on the live feed: a client that keeps up gets everything, however busy the server.

Three back-to-back bursts of 1,000 requests make the feed send thousands of messages a tick
while the same event loop serves the requests. A reading client's socket never fills, so
it must never be judged slow, even while its sender waits for its turn on a busy loop; a
client that never reads fills its socket and is the only one closed. In embedded mode, and
in stack mode: the simulator's spans go over OTLP to a real Jaeger, where the shim's feed
finds every one of them.
"""

from __future__ import annotations

import asyncio
import re
import socket
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from exporter.app import create_exporter_app
from exporter.feed import CLOSE_TIMEOUT_SECONDS
from failure_lab.settings import Settings
from simulator.app import create_app
from tests.support.configs import config_with
from tests.support.feeds import Live, live_server, reader, until
from tests.support.jaeger import JaegerProcess
from tests.support.servers import free_port, serve_app

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


async def three_bursts_with_a_reader_and_a_stuck_client(live: Live) -> None:
    """Bursts sent through ``live``'s control API while one client reads the feed and one
    never does: every update reaches the reader, the other alone is closed with 1008."""
    quick = config_with(db_latency_min_ms=0, db_latency_max_ms=0)
    assert (await live.http.put("/v1/config/failure", json=quick.model_dump())).is_success
    fast = await reader(live, 0)
    stuck = await never_reading(live)
    await until(lambda: live.feed_sample(CLIENTS) == 2, 5, "two clients")
    # A first tick: metrics, or in stack mode (no Prometheus) a status saying it is down.
    await until(lambda: bool(fast.messages), 5, "a first tick")

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

    assert sorted(u["request_id"] for u in fast.of("request_update")) == sorted(sent)
    assert sorted(u["request_id"] for u in fast.of("trace_update")) == sorted(sent)
    assert live.feed_sample(DISCONNECTS, reason="slow") == 1


# Small kernel send buffers on the server's side (the reading client's too): the stuck
# client's socket is full after about a thousand messages rather than a few megabytes.
SEND_BUFFER = 4096


async def test_embedded_three_bursts_reach_the_reader_and_only_the_stuck_client_is_cut() -> None:
    async with live_server(send_buffer=SEND_BUFFER) as live:
        await three_bursts_with_a_reader_and_a_stuck_client(live)


async def test_stack_three_bursts_reach_the_reader_and_only_the_stuck_client_is_cut(
    tmp_path: Path,
) -> None:
    sim_port = free_port()
    # Room for the bursts' spans in the simulator's export queue, exported every 100 ms.
    settings = Settings(port=sim_port, span_queue_size=65_536, span_schedule_delay_ms=100)
    simulator = create_app(settings, embedded_shim=False)
    async with JaegerProcess(tmp_path) as jaeger:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger.otlp_url)
            async with serve_app(simulator, sim_port) as simulator_url:

                def shim(port: int) -> FastAPI:
                    return create_exporter_app(
                        Settings(
                            port=port,
                            prometheus_url=f"http://127.0.0.1:{free_port()}",
                            simulator_url=simulator_url,
                            jaeger_url=jaeger.query_url,
                        )
                    )

                async with live_server(send_buffer=SEND_BUFFER, app_for=shim) as live:
                    await three_bursts_with_a_reader_and_a_stuck_client(live)
    dropped = simulator.state.registry.get_sample_value("failure_lab_tracing_spans_dropped_total")
    assert not dropped  # every span reached Jaeger: what the feed reported is all there was
