"""What does the live feed cost with 200 clients, and how late are its messages?

A dashboard wall or a classroom can open ``/ws`` hundreds of times while the service runs
real traffic; the feed must stay cheap for the process that also serves that traffic, keep
its messages timely, and never turn clients into backend load. This runs the embedded
server (``failure-lab serve``'s app) in a subprocess pinned to one core (when ``taskset``
exists), drives a sustained generation at ``--rps`` through its control API, connects one
client and then ``--clients`` clients from this process (aiohttp, on another core), and
prints a table of both phases:

- delivery lag, p50/p99/max: receive time minus the message's ``timestamp`` for
  ``metrics``; receive time minus the request's end (``timestamp`` + ``latency_ms``) for
  ``request_update``, which includes the wait for the next poll (up to one interval);
- server CPU (user + system from ``/proc/<pid>/stat``, all threads) as % of one core, and
  this process's CPU, which says whether the clients themselves kept up;
- backend queries per second, read from the server's ``/metrics``;
- messages per second per client, and clients the server disconnected.

All traffic goes to 127.0.0.1; the whole run is bounded (about 50 s by default).

    .venv/bin/python bench/fanout.py [--clients 200] [--rps 100] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import cpu_seconds, free_port, pinned

SERVER_CORE = 1
CLIENT_CORE = 0
QUERIES = "failure_lab_exporter_backend_queries"
PAYLOAD = {
    "rate_of_requests": 100,
    "number_of_requests": 1,
    "retries_enabled": True,
    "rate_limiting": 0,
    "rate_limiting_algo": "token_bucket",
    "cache_enabled": True,
    "cache_ttl": 30,
    "db_latency": 0,
}


# The server (a subprocess of its own)


def serve(port: int) -> None:
    """The embedded app with its live feed, until SIGINT."""
    from fastapi import FastAPI
    from prometheus_client import CollectorRegistry

    from exporter.feed import LiveFeed
    from exporter.feed import router as feed_router
    from exporter.metrics import ExporterMetrics
    from failure_lab.settings import Settings
    from simulator.app import create_app
    from simulator.server import server_for

    app = create_app(Settings(port=port))
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with inner(app):
            if getattr(app.state, "feed", None) is not None:
                yield
                return
            app.include_router(feed_router)
            feed = LiveFeed(app.state.exporter, ExporterMetrics(CollectorRegistry()))
            async with feed.running():
                app.state.feed = feed
                yield

    app.router.lifespan_context = lifespan
    # uvicorn re-raises the SIGINT it handled, once the graceful shutdown is over.
    with contextlib.suppress(KeyboardInterrupt):
        server_for(app, "127.0.0.1", port, grace=2.0, log_level="warning").run()


# The clients (this process)


@dataclass
class Tally:
    measuring: bool = False
    connected: int = 0
    expected: int = 1
    all_connected: asyncio.Event = field(default_factory=asyncio.Event)
    metrics_lag: list[float] = field(default_factory=list)
    request_lag: list[float] = field(default_factory=list)
    received: Counter[str] = field(default_factory=Counter)
    closed: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        self.metrics_lag.clear()
        self.request_lag.clear()
        self.received.clear()


async def client(session: aiohttp.ClientSession, url: str, tally: Tally) -> None:
    async with session.ws_connect(url, max_msg_size=0, heartbeat=None) as ws:
        tally.connected += 1
        if tally.connected >= tally.expected:
            tally.all_connected.set()
        while True:
            message = await ws.receive()
            now = time.time() * 1000
            if message.type is not aiohttp.WSMsgType.TEXT:
                if message.type is aiohttp.WSMsgType.CLOSE:
                    tally.closed[f"{message.data} {message.extra or ''}".strip()] += 1
                return
            if not tally.measuring:
                continue
            text: str = message.data
            kind = text[9 : text.index('"', 9)]
            tally.received[kind] += 1
            if kind == "metrics":
                tally.metrics_lag.append(now - json.loads(text)["data"]["timestamp"])
            elif kind == "request_update":
                data = json.loads(text)["data"]
                start = datetime.fromisoformat(data["timestamp"]).timestamp() * 1000
                tally.request_lag.append(now - start - data["latency_ms"])


async def backend_queries(http: aiohttp.ClientSession, base: str) -> float:
    async with http.get(f"{base}/metrics") as response:
        text = await response.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == QUERIES
        for sample in family.samples
        if sample.name.endswith("_total")
    )


@dataclass
class Phase:
    clients: int
    seconds: float
    server_cpu: float
    bench_cpu: float
    queries: float
    queries_per_tick: float
    requests_per_tick: float
    metrics_lag: list[float]
    request_lag: list[float]
    per_client: dict[str, float]


async def measure(
    http: aiohttp.ClientSession, base: str, pid: int, tally: Tally, clients: int, seconds: float
) -> Phase:
    tally.reset()
    queries = await backend_queries(http, base)
    server, bench, wall = cpu_seconds(pid), time.process_time(), time.monotonic()
    tally.measuring = True
    await asyncio.sleep(seconds)
    tally.measuring = False
    wall = time.monotonic() - wall
    server, bench = cpu_seconds(pid) - server, time.process_time() - bench
    queries = await backend_queries(http, base) - queries
    # Per tick rather than per second of the window: a window cuts batches (one a tick) in
    # two, and each client gets exactly one ``metrics`` message a tick.
    ticks = max(tally.received["metrics"], 1) / clients
    per_client = {kind: n / clients / ticks for kind, n in tally.received.items()}
    return Phase(
        clients=clients,
        seconds=wall,
        server_cpu=100 * server / wall,
        bench_cpu=100 * bench / wall,
        queries=queries / wall,
        queries_per_tick=queries / ticks,
        requests_per_tick=per_client.get("request_update", 0.0),
        metrics_lag=list(tally.metrics_lag),
        request_lag=list(tally.request_lag),
        per_client=per_client,
    )


def percentiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return f"{cuts[49]:.0f} / {cuts[98]:.0f} / {max(values):.0f}"


def report(phases: list[Phase], disconnected: Counter[str], achieved_rps: float | None) -> None:
    rows: list[tuple[str, Callable[[Phase], str]]] = [
        ("clients", lambda p: f"{p.clients}"),
        ("measured (s)", lambda p: f"{p.seconds:.1f}"),
        ("requests finished / tick", lambda p: f"{p.requests_per_tick:.1f}"),
        ("metrics lag ms p50/p99/max", lambda p: percentiles(p.metrics_lag)),
        ("request_update lag ms p50/p99/max", lambda p: percentiles(p.request_lag)),
        ("messages / tick per client", lambda p: f"{sum(p.per_client.values()):.1f}"),
        ("server CPU (% of a core)", lambda p: f"{p.server_cpu:.0f}"),
        ("bench (clients) CPU (% of a core)", lambda p: f"{p.bench_cpu:.0f}"),
        ("backend queries /s", lambda p: f"{p.queries:.2f}"),
        ("backend queries / tick", lambda p: f"{p.queries_per_tick:.2f}"),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, cell in rows:
        print(f"{name:<{width}}  " + "  ".join(f"{cell(p):>18}" for p in phases))
    if achieved_rps is not None:
        print(f"\ngenerator achieved rate: {achieved_rps:.1f} req/s")
    closes = ", ".join(f"{reason}: {n}" for reason, n in disconnected.items()) or "none"
    print(f"clients disconnected by the server: {closes}")


# Orchestration


async def wait_ready(
    http: aiohttp.ClientSession, base: str, process: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{base}/v1/status") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.2)
    raise SystemExit("the server did not start within 30 s")


async def run(args: argparse.Namespace, base: str, process: subprocess.Popen[bytes]) -> None:
    url = base.replace("http", "ws", 1) + "/ws"
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        await wait_ready(http, base, process)
        duration = args.seconds + 30
        job_request = {"mode": "sustained", "rps": args.rps, "duration": duration}
        async with http.post(
            f"{base}/v1/traffic/generate", json=job_request | {"payload": PAYLOAD}
        ) as response:
            if response.status != 202:
                raise SystemExit(f"sustained generation refused: {await response.text()}")
            job_id = (await response.json())["job_id"]
        tasks = [asyncio.create_task(client(http, url, tally))]
        await asyncio.sleep(2)
        one = await measure(http, base, process.pid, tally, 1, min(args.seconds, 10))

        tally.expected = args.clients
        tally.all_connected.clear()
        tasks += [asyncio.create_task(client(http, url, tally)) for _ in range(args.clients - 1)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tally.all_connected.wait(), 15)
        if tally.connected < args.clients:
            print(f"only {tally.connected} of {args.clients} clients connected", file=sys.stderr)
        await asyncio.sleep(2)
        many = await measure(http, base, process.pid, tally, tally.connected, args.seconds)

        async with http.post(f"{base}/v1/traffic/jobs/{job_id}/stop") as response:
            job = await response.json()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    report([one, many], tally.closed, job.get("stats", {}).get("achieved_rps"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return

    import uvloop

    port = free_port()
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(port)]
    process = subprocess.Popen(pinned(command, SERVER_CORE))
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {CLIENT_CORE})
    try:
        uvloop.run(
            asyncio.wait_for(run(args, f"http://127.0.0.1:{port}", process), args.seconds + 60)
        )
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    print(
        f"\nserver pinned to core {SERVER_CORE}, clients to core {CLIENT_CORE}"
        if shutil.which("taskset") and (os.cpu_count() or 1) > 1
        else "\nnot pinned (no taskset or one core)"
    )


if __name__ == "__main__":
    main()
