"""Does every request reach the live feed in stack mode, whatever the rate?

The stack's path, with real parts on loopback: a real Jaeger (the version ``.env`` pins,
``jaeger/config.yaml``), the simulator (``failure-lab simulator``) exporting its spans to it
over OTLP/HTTP, and the shim (``failure-lab exporter``) reading Jaeger's api_v3. One
WebSocket client reads ``/ws`` throughout. At each rate the simulator's own generator sends
a sustained job (``--source generator``); once it has ended and the feed has had
``--settle`` seconds to catch up, the figures are the distinct ``request_update`` (and
``trace_update``) request ids the client got, over the requests the generator sent. Spans
the simulator dropped before they left it (its queue full) are counted apart: the feed
cannot report what never reached Jaeger. Target: at least 99.9 % delivered at every rate
up to ``FAILURE_LAB_MAX_RPS``.

On a machine where the generator cannot reach a rate (it shares two cores with the
service, Jaeger and the shim), ``--source otlp`` sends the traces itself instead: each
request is the simulator's shape (the generator's client span as root, the service's
server span, its rate-limit, cache and database spans) made by the OpenTelemetry SDK in
this process and exported over OTLP/HTTP to Jaeger by a batch processor sized like the
simulator's, paced in 10 ms steps.

Bounded: each rate runs ``--seconds`` of traffic (at most 60) and the whole run stops after
``--timeout`` seconds. All traffic stays on 127.0.0.1; Prometheus is not started (the
feed's metrics messages then say it is down, which does not touch the trace side).

    .venv/bin/python bench/feed_completeness.py [--rates 100,500,1000] [--seconds 10]
        [--source generator|otlp]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Tracer
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CLI, PAYLOAD, free_port
from tests.support.jaeger import JaegerProcess

CONFIG = {
    "failure_injection_enabled": True,
    "failure_rate": 0.05,
    "db_latency_min_ms": 1,
    "db_latency_max_ms": 5,
    "db_timeout_seconds": 1,
    "redis_timeout_seconds": 0.05,
    "max_retries": 2,
}
DROPPED = "failure_lab_tracing_spans_dropped_total"
SERVICE = "failure-lab-simulator"
STEP_SECONDS = 0.01


@dataclass
class Feed:
    """What one WebSocket client of the shim got."""

    requests: set[str] = field(default_factory=set)
    traces: set[str] = field(default_factory=set)
    duplicates: int = 0
    closed: str | None = None

    async def read(self, url: str) -> None:
        try:
            async with connect(url, open_timeout=10, max_size=None) as ws:
                async for raw in ws:
                    message = json.loads(raw)
                    kind = message["type"]
                    if kind in ("request_update", "trace_update"):
                        ids = self.requests if kind == "request_update" else self.traces
                        request_id = message["data"]["request_id"]
                        self.duplicates += request_id in ids
                        ids.add(request_id)
        except ConnectionClosed as exc:
            self.closed = (
                f"{exc.rcvd.code if exc.rcvd else '?'} {exc.rcvd.reason if exc.rcvd else ''}"
            )


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FAILURE_LAB_"))}
    env.update(extra)
    return env


def spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextlib.asynccontextmanager
async def process(command: list[str], env: dict[str, str], port: int) -> AsyncIterator[None]:
    proc = spawn(command, env)
    try:
        async with httpx.AsyncClient(timeout=1) as http:
            for _ in range(200):
                if proc.poll() is not None:
                    raise SystemExit(f"{command[1]} exited with {proc.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    await http.get(f"http://127.0.0.1:{port}/health")
                    break
                await asyncio.sleep(0.1)
            else:
                raise SystemExit(f"{command[1]} did not start on {port}")
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def dropped_spans(http: httpx.AsyncClient) -> float:
    text = (await http.get("/metrics")).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(DROPPED))


@dataclass
class Sent:
    requests: int
    achieved_rps: float
    spans_dropped: float | None
    """Spans the simulator dropped before export (not known for ``--source otlp``)."""


async def by_generator(simulator: httpx.AsyncClient, rate: float, seconds: float) -> Sent:
    dropped_before = await dropped_spans(simulator)
    started = await simulator.post(
        "/v1/traffic/generate",
        json={"mode": "sustained", "rps": rate, "duration": seconds, "payload": PAYLOAD},
    )
    started.raise_for_status()
    job_id = started.json()["job_id"]
    while True:
        job = (await simulator.get(f"/v1/traffic/jobs/{job_id}")).json()
        if job["status"] == "running":
            await asyncio.sleep(0.5)
            continue
        stats = job["stats"]
        dropped = await dropped_spans(simulator) - dropped_before
        return Sent(stats["succeeded"] + stats["failed"], stats["achieved_rps"], dropped)


def one_request(tracer: Tracer, number: int) -> None:
    """The spans of one simulated request, as the simulator's generator and service make
    them (names, kinds, nesting and the attributes the shim reads)."""
    route = "/api/v1/users/{user_id}"
    with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT):
        attributes = {"http.request.method": "GET", "http.route": route}
        with tracer.start_as_current_span(f"GET {route}", kind=SpanKind.SERVER) as server:
            with tracer.start_as_current_span("rate_limit"):
                pass
            with tracer.start_as_current_span("cache.get"):
                pass
            with tracer.start_as_current_span("db.query"):
                pass
            server.set_attributes(attributes)
            server.set_attribute("http.response.status_code", 200)
            server.set_attribute("failure_lab.retry_count", number % 2)


async def by_otlp(jaeger: JaegerProcess, rate: float, seconds: float) -> Sent:
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    processor = BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"{jaeger.otlp_url}/v1/traces"),
        max_queue_size=8192,
        max_export_batch_size=512,
        schedule_delay_millis=1000,
    )
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bench")
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    while (elapsed := loop.time() - started) < seconds:
        due = min(round(elapsed * rate), round(seconds * rate))
        while sent < due:
            one_request(tracer, sent)
            sent += 1
        await asyncio.sleep(STEP_SECONDS)
    achieved = sent / (loop.time() - started)
    await asyncio.to_thread(provider.shutdown)
    return Sent(sent, achieved, None)


async def one_rate(
    source: str,
    simulator: httpx.AsyncClient,
    jaeger: JaegerProcess,
    ws_url: str,
    rate: float,
    seconds: float,
    settle: float,
) -> dict[str, Any]:
    feed = Feed()
    reader = asyncio.create_task(feed.read(ws_url))
    await asyncio.sleep(2.5)  # the feed's first poll only sets its cursor
    if source == "otlp":
        sent = await by_otlp(jaeger, rate, seconds)
    else:
        sent = await by_generator(simulator, rate, seconds)
    goal = sent.requests
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        if min(len(feed.requests), len(feed.traces)) >= goal:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.5)  # one more poll: anything beyond would be a repeat
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    return {
        "rate": rate,
        "achieved_rps": sent.achieved_rps,
        "sent": sent.requests,
        "spans_dropped": sent.spans_dropped,
        "request_updates": len(feed.requests),
        "trace_updates": len(feed.traces),
        "duplicates": feed.duplicates,
        "closed": feed.closed,
    }


async def run(
    source: str, rates: list[float], seconds: float, settle: float
) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="feed-bench-") as tmp:
        jaeger = JaegerProcess(Path(tmp))
        await jaeger.start()
        try:
            sim_port, shim_port = free_port(), free_port()
            sim_env = environment(OTEL_EXPORTER_OTLP_ENDPOINT=jaeger.otlp_url)
            shim_env = environment(
                FAILURE_LAB_JAEGER_URL=jaeger.query_url,
                FAILURE_LAB_SIMULATOR_URL=f"http://127.0.0.1:{sim_port}",
                FAILURE_LAB_PROMETHEUS_URL=f"http://127.0.0.1:{free_port()}",
            )
            simulator = [CLI, "simulator", "--port", str(sim_port)]
            shim = [CLI, "exporter", "--port", str(shim_port)]
            async with (
                process(simulator, sim_env, sim_port),
                process(shim, shim_env, shim_port),
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{sim_port}", timeout=30) as http,
            ):
                (await http.put("/v1/config/failure", json=CONFIG)).raise_for_status()
                ws_url = f"ws://127.0.0.1:{shim_port}/ws"
                return [
                    await one_rate(source, http, jaeger, ws_url, rate, seconds, settle)
                    for rate in rates
                ]
        finally:
            jaeger.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="100,500,1000", help="req/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="traffic per rate (<= 60)")
    parser.add_argument("--settle", type=float, default=20.0, help="wait for the feed (s)")
    parser.add_argument("--source", choices=("generator", "otlp"), default="generator")
    parser.add_argument("--timeout", type=float, default=600.0, help="bound on the whole run")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r]
    seconds = min(max(args.seconds, 1.0), 60.0)
    results = asyncio.run(
        asyncio.wait_for(run(args.source, rates, seconds, args.settle), args.timeout)
    )
    print(f"requests sent by: {args.source}")
    print(
        f"{'rate':>6} {'achieved':>9} {'sent':>7} {'requests':>9} {'delivered':>10} "
        f"{'traces':>7} {'spans dropped':>14} {'dups':>5}"
    )
    for r in results:
        share = r["request_updates"] / r["sent"] if r["sent"] else 0.0
        print(
            f"{r['rate']:>6.0f} {r['achieved_rps']:>9.1f} {r['sent']:>7} "
            f"{r['request_updates']:>9} {share:>10.4%} {r['trace_updates']:>7} "
            f"{_count(r['spans_dropped']):>14} {r['duplicates']:>5}"
            + (f"  closed: {r['closed']}" if r["closed"] else "")
        )


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    main()
