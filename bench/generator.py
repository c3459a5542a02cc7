"""How much open-model load can the traffic generator offer, and how punctually?

Starts a bare ASGI endpoint (uvicorn, uvloop, httptools; answers 200 ``{}`` to anything) in a
separate process pinned to one core, pins this process to another, and runs the generator's
scheduler at fixed rates, then raises the rate until the generator stops keeping up (achieved
below 99% of the target, or requests dropped at the in-flight bound). The real engine (aiohttp,
traced, spans to a batch processor whose exporter discards them) runs first; an httpx client
under the same scheduler follows for comparison, and vegeta, an open-model load tool written
in Go (``bench/vegeta.py``), runs the same rates against the same endpoint from the same core
as a peer. All traffic goes to 127.0.0.1.

As ``failure-lab serve`` does after start-up, the generator process moves what exists after the
warm-up out of the garbage collector's view (``gc.freeze()``); ``--no-gc-freeze`` measures
without it, ``--gc-threshold`` with other collection thresholds. The table gives the generator
process's CPU per request sent (``us/req``) and its longest collection pause (``gc max``).
On a shared host the CPU's speed drifts (a neighbour's load can halve it for minutes), so the
time a fixed pure-Python loop takes on the generator's core is printed before and after: only
runs with similar figures compare.

    .venv/bin/python bench/generator.py [--seconds 5] [--rates 100,500,1000] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvloop
from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Span
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import vegeta
from bench.common import LOAD_CORE as GENERATOR_CORE
from bench.common import SERVER_CORE, free_port, pinned, wait_port
from failure_lab.control import JobSummary
from simulator.generator.engine import TrafficEngine
from simulator.generator.metrics import GeneratorMetrics
from simulator.generator.planner import PlannedRequest, RequestPlanner
from simulator.generator.senders import (
    Reply,
    SenderConfig,
    SenderFactory,
    TransportError,
    aiohttp_sender,
    error_text,
    parse_retries,
)
from simulator.options import RETRIES_HEADER, PipelineOptions

MAX_IN_FLIGHT = 256
LATE_THRESHOLD_S = 0.005
HOLD_RATIO = 0.99


# -- the endpoint under load (runs in the child process) ----------------------------------------


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"{}"})


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(
        bare_app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


def start_server(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        pinned([sys.executable, __file__, "--serve", str(port)], SERVER_CORE)
    )
    try:
        wait_port(port, process, timeout=10)
    except SystemExit:
        process.kill()
        raise
    return process


# -- the senders compared ------------------------------------------------------------------------


class DiscardExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class HttpxSender:
    """httpx.AsyncClient with the httpx OpenTelemetry transport, for the record."""

    def __init__(self, config: SenderConfig) -> None:
        hook = config.span_hook

        async def request_hook(span: Span, _request: object) -> None:
            hook(span)

        limits = httpx.Limits(
            max_connections=config.max_in_flight, max_keepalive_connections=config.max_in_flight
        )
        transport = AsyncOpenTelemetryTransport(
            httpx.AsyncHTTPTransport(limits=limits),
            tracer_provider=config.tracer_provider,
            request_hook=request_hook,
        )
        self._timeout_s = config.request_timeout_s
        self._client = httpx.AsyncClient(
            base_url=config.base_url, transport=transport, timeout=config.request_timeout_s
        )

    async def request(self, planned: PlannedRequest, headers: Mapping[str, str]) -> Reply:
        try:
            response = await self._client.request(
                planned.method, planned.path, json=planned.json, headers=dict(headers)
            )
        except (httpx.HTTPError, OSError) as exc:
            raise TransportError(error_text(exc, self._timeout_s)) from exc
        return Reply(response.status_code, parse_retries(response.headers.get(RETRIES_HEADER)))

    async def aclose(self) -> None:
        await self._client.aclose()


SENDERS: dict[str, SenderFactory] = {"aiohttp": aiohttp_sender, "httpx": HttpxSender}


# -- measuring -----------------------------------------------------------------------------------


class GcPauses:
    """The longest garbage-collection pause since the last ``take()``, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self._started = 0.0
        self._longest = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, _info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._started = now
        else:
            self._longest = max(self._longest, now - self._started)

    def take(self) -> float:
        longest, self._longest = self._longest, 0.0
        return longest


GC_PAUSES = GcPauses()


@dataclass(frozen=True)
class Step:
    sender: str
    rate: float
    stats: JobSummary
    cpu: float  # generator process CPU seconds per wall second
    cpu_per_request_us: float
    gc_max_ms: float

    @property
    def ratio(self) -> float:
        return self.stats.achieved_rps / self.rate

    @property
    def held(self) -> bool:
        return self.ratio >= HOLD_RATIO and self.stats.dropped == 0


async def measure(engine: TrafficEngine, sender: str, rate: float, seconds: float) -> Step:
    GC_PAUSES.take()
    cpu = time.process_time()
    wall = time.perf_counter()
    stats = await engine.run(PipelineOptions(), rate=rate, duration=seconds)
    used = time.process_time() - cpu
    cpu_share = used / (time.perf_counter() - wall)
    per_request = used / stats.sent * 1e6 if stats.sent else 0.0
    return Step(sender, rate, stats, cpu_share, per_request, GC_PAUSES.take() * 1000)


def median_step(steps: list[Step]) -> Step:
    """The repeat with the median achieved rate (a real run, not a blend of several)."""
    ordered = sorted(steps, key=lambda step: step.stats.achieved_rps)
    return ordered[(len(ordered) - 1) // 2]


async def bench_sender(
    name: str,
    url: str,
    rates: list[float],
    ceiling: list[float],
    seconds: float,
    repeat: int,
    gc_freeze: bool,
) -> tuple[list[Step], list[Step], float | None]:
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(DiscardExporter(), max_queue_size=8192, max_export_batch_size=512)
    )
    engine = TrafficEngine(
        base_url=url,
        tracer_provider=provider,
        metrics=GeneratorMetrics(CollectorRegistry()),
        planner=RequestPlanner(users=100, rng=random.Random(1)),
        max_in_flight=MAX_IN_FLIGHT,
        late_threshold_s=LATE_THRESHOLD_S,
        sender_factory=SENDERS[name],
    )
    fixed: list[Step] = []
    climb: list[Step] = []
    highest: float | None = None
    try:
        async with engine:
            await engine.run(PipelineOptions(), rate=200, duration=0.5)  # warm the pool
            if gc_freeze:
                gc.collect()
                gc.freeze()
            for rate in rates:
                steps = [await measure(engine, name, rate, seconds) for _ in range(repeat)]
                fixed.append(median_step(steps))
                print_step(fixed[-1])
            for rate in ceiling:
                steps = [await measure(engine, name, rate, seconds) for _ in range(repeat)]
                climb.append(median_step(steps))
                print_step(climb[-1])
                if not climb[-1].held:
                    break
                highest = rate
    finally:
        provider.shutdown()
    return fixed, climb, highest


# -- reporting -----------------------------------------------------------------------------------

HEADER = (
    f"{'sender':<8} {'target':>7} {'achieved':>9} {'ratio':>6} {'sent':>7} {'dropped':>7} "
    f"{'late':>6} {'lag p50':>8} {'lag p99':>8} {'lat p50':>8} {'lat p99':>8} {'cpu':>5} "
    f"{'us/req':>6} {'gc max':>6}"
)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def row(step: Step) -> str:
    s = step.stats
    return (
        f"{step.sender:<8} {step.rate:>7g} {s.achieved_rps:>9.1f} {step.ratio:>6.3f} "
        f"{s.sent:>7} {s.dropped:>7} {s.late_sends:>6} {_ms(s.send_lag_ms.p50):>8} "
        f"{_ms(s.send_lag_ms.p99):>8} {_ms(s.latency_ms.p50):>8} {_ms(s.latency_ms.p99):>8} "
        f"{step.cpu:>5.0%} {step.cpu_per_request_us:>6.0f} {step.gc_max_ms:>6.1f}"
    )


def print_step(step: Step) -> None:
    print(row(step), flush=True)


def parse_rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        message = f"expected comma-separated numbers, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if not rates or any(rate <= 0 for rate in rates):
        raise argparse.ArgumentTypeError("rates must be > 0")
    return rates


def parse_thresholds(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 1 to 3 integers, got {text!r}") from None
    if not 1 <= len(values) <= 3 or any(value < 0 for value in values):
        raise argparse.ArgumentTypeError(f"expected 1 to 3 integers >= 0, got {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each step")
    parser.add_argument("--rates", type=parse_rates, default=[100.0, 500.0, 1000.0])
    parser.add_argument(
        "--ceiling-rates",
        type=parse_rates,
        default=[2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 7000.0, 8000.0, 10000.0],
    )
    parser.add_argument("--repeat", type=int, default=1, help="repeats per step (median kept)")
    parser.add_argument(
        "--senders",
        default="aiohttp,httpx,vegeta",
        help="comma-separated: aiohttp, httpx, vegeta (the peer)",
    )
    parser.add_argument("--quick", action="store_true", help="2 s steps, short ceiling climb")
    parser.add_argument(
        "--gc-freeze",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="gc.freeze() after the warm-up, as 'failure-lab serve' does after start-up "
        "(default: on)",
    )
    parser.add_argument(
        "--gc-threshold",
        type=parse_thresholds,
        help="gc.set_threshold() values, e.g. 10000 or 10000,10,10 (default: Python's)",
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = min(args.seconds, 2.0)
        args.ceiling_rates = [2000.0, 5000.0]
    return args


async def main(args: argparse.Namespace) -> None:
    senders = [name.strip() for name in args.senders.split(",") if name.strip()]
    unknown = [name for name in senders if name not in SENDERS and name != "vegeta"]
    if unknown:
        raise SystemExit(f"unknown sender(s) {unknown}; known: {', '.join(SENDERS)}")
    port = free_port()
    server = start_server(port)
    if args.gc_threshold is not None:
        gc.set_threshold(*args.gc_threshold)
    url = f"http://127.0.0.1:{port}"
    results: dict[str, tuple[list[Step], list[Step], float | None]] = {}
    peer: tuple[list[vegeta.VegetaStep], list[vegeta.VegetaStep], float | None] | None = None
    try:
        print(
            f"bare endpoint {url}, {args.seconds:g} s per step, repeat {args.repeat}, "
            f"gc.freeze {'on' if args.gc_freeze else 'off'}, "
            f"gc thresholds {','.join(map(str, gc.get_threshold()))}, "
            f"host speed {host_speed_ms():.1f} ms"
        )
        print(HEADER)
        with GC_PAUSES:
            for name in senders:
                if name == "vegeta":
                    planner = RequestPlanner(users=100, rng=random.Random(1))
                    peer = vegeta.climb(
                        url,
                        (planner.next() for _ in range(vegeta.TARGETS)),
                        args.rates,
                        args.ceiling_rates,
                        args.seconds,
                        MAX_IN_FLIGHT,
                        HOLD_RATIO,
                    )
                    continue
                results[name] = await bench_sender(
                    name,
                    url,
                    args.rates,
                    args.ceiling_rates,
                    args.seconds,
                    args.repeat,
                    args.gc_freeze,
                )
    finally:
        server.terminate()
        server.wait(10)

    print(
        "\nsummary (send lag, latency and gc max in ms; cpu = generator process share of one "
        f"core, us/req = its CPU per request sent; host speed now {host_speed_ms():.1f} ms)"
    )
    print(HEADER)
    for fixed, climb, _highest in results.values():
        for step in [*fixed, *climb]:
            print(row(step))
    if peer is not None:
        for peer_step in [*peer[0], *peer[1]]:
            print(vegeta.row(peer_step))
    print()
    for name, (_fixed, climb, highest) in results.items():
        held = f"{highest:g} req/s" if highest is not None else "below the first ceiling rate"
        broke = next((step for step in climb if not step.held), None)
        note = (
            f" (at {broke.rate:g}: achieved {broke.stats.achieved_rps:.0f}, "
            f"dropped {broke.stats.dropped})"
            if broke is not None
            else " (no tried rate broke it)"
        )
        lags = [step.stats.send_lag_ms.p99 or 0.0 for step in climb if step.held]
        lag_note = (
            f", median lag p99 while holding {statistics.median(lags):.2f} ms" if lags else ""
        )
        print(f"{name:<8} open-model ceiling: {held}{note}{lag_note}")
    if peer is not None:
        highest = peer[2]
        held = f"{highest:g} req/s" if highest is not None else "below the first ceiling rate"
        print(f"{'vegeta':<8} open-model ceiling: {held}")


def host_speed_ms() -> float:
    """Median CPU time of a fixed pure-Python loop on this core, in ms (lower is faster)."""
    times = []
    for _ in range(5):
        started = time.process_time()
        table: dict[int, int] = {}
        for i in range(200_000):
            table[i % 1000] = table.get(i % 1000, 0) + i
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times)


def pin_generator() -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {GENERATOR_CORE})


if __name__ == "__main__":
    arguments = parse_args(None)
    if arguments.serve is not None:
        serve(arguments.serve)
    else:
        pin_generator()
        uvloop.run(main(arguments))
