"""The live feed's ``topology`` message on the real embedded app, with real WebSocket clients.

What it promises: the same graph ``GET /v1/topology`` answers for the feed's window at the
message's instant; computed once per interval for every client together (the backend does not
feel how many watch); sent only when it changed; and a client that connects gets the latest at
once.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import pytest

from tests.integration.test_live_feed import PAYLOAD, Live, live_server, reader, until
from tests.support.configs import config_with

pytestmark = pytest.mark.timeout(60)

INTERVAL = 1.5
WINDOW = 5.0


def messages_made(live: Live) -> float:
    return live.feed_sample("failure_lab_exporter_websocket_messages_total", type="topology")


async def endpoint_at(live: Live, topology: dict[str, Any]) -> dict[str, Any]:
    at = datetime.fromisoformat(topology["timestamp"]).timestamp()
    params = {"window": f"{topology['window_seconds']:g}", "at": f"{at:.3f}"}
    answer = await live.http.get("/v1/topology", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_topology_messages_match_the_endpoint_and_cost_one_query_per_interval() -> None:
    settings = {"ws_topology_interval_seconds": INTERVAL, "metrics_window_seconds": WINDOW}
    async with live_server(**settings) as live:
        failing = config_with(failure_injection_enabled=True, failure_rate=0.3)
        assert (await live.http.put("/v1/config/failure", json=failing.model_dump())).is_success
        traffic = {"mode": "sustained", "rps": 30, "duration": 6, "payload": PAYLOAD}
        started_job = await live.http.post("/v1/traffic/generate", json=traffic)
        assert started_job.status_code == 202, started_job.text
        clients = [await reader(live, n) for n in range(5)]
        started = time.monotonic()
        await until(lambda: all(len(c.of("topology")) >= 3 for c in clients), 10, "3 graphs")
        elapsed = time.monotonic() - started
        made = messages_made(live)

        # One graph an interval at most, made once for all five clients.
        assert made <= elapsed / INTERVAL + 2
        assert all(c.of("topology")[:3] == clients[0].of("topology")[:3] for c in clients)
        for topology in clients[0].of("topology")[:3]:
            assert topology["window_seconds"] == WINDOW
            assert await endpoint_at(live, topology) == topology
        database = next(n for n in clients[0].of("topology")[-1]["nodes"] if n["id"] == "database")
        assert "failure_injection" in database["faults"]

        # Once the traffic has left the window, the graph stops changing, and so do messages.
        await live.app.state.runtime.jobs.wait(started_job.json()["job_id"], 15)
        await asyncio.sleep(WINDOW + 2 * INTERVAL)
        settled = len(clients[0].of("topology"))
        await asyncio.sleep(3 * INTERVAL)
        assert len(clients[0].of("topology")) == settled
        last = clients[0].of("topology")[-1]
        assert all(node["request_rate"] == 0 for node in last["nodes"])

        # A newcomer is told the current graph at once, not an interval later.
        late = await reader(live, 5)
        await until(lambda: bool(late.of("topology")), INTERVAL / 2, "the latest graph")
        assert late.of("topology") == [last]
        for client in (*clients, late):
            await client.aclose()
