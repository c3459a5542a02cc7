"""How far does the open-model ceiling move when a job is split over worker processes?

Runs the same climb three ways against ``bench/generator.py``'s bare endpoint (uvicorn,
uvloop, httptools; answers 200 ``{}``): the engine in this process (as a job with
``workers: 1`` runs), and the job split over 1 and over 2 worker processes (``SplitRunner``,
as ``workers: N`` runs: each step starts its workers, waits until they are ready and gives
them one start instant). Nothing is pinned: the endpoint, the workers and this process share
the machine's cores as the OS schedules them, and each step reports what each used. Spans
are recorded and not exported in all three ways (no OTLP endpoint, no processor), so they
compare with each other; ``bench/generator.py`` adds a batch processor that discards them.

A step holds when at least 99% of the target is achieved and nothing is dropped at the
in-flight bound (256, split over the workers). CPU per request is the senders' (this process,
or the workers while they ran) over the requests sent. All traffic goes to 127.0.0.1.

    .venv/bin/python bench/generator_workers.py [--seconds 5] [--workers 1,2] [--rates ...]
"""

from __future__ import annotations

import argparse
import gc
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import uvloop
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import cpu_seconds, free_port, wait_port
from bench.generator import host_speed_ms, parse_rates
from failure_lab.control import JobSummary
from failure_lab.settings import Settings
from simulator.generator.engine import TrafficEngine
from simulator.generator.job_spec import JobSpec
from simulator.generator.metrics import GeneratorMetrics
from simulator.generator.planner import RequestPlanner
from simulator.generator.split import SplitRunner
from simulator.generator.stats import LiveStats
from simulator.options import PipelineOptions

ENDPOINT = Path(__file__).resolve().parent / "generator.py"
MAX_IN_FLIGHT = 256
HOLD_RATIO = 0.99
SETTINGS = Settings(max_in_flight=MAX_IN_FLIGHT, late_send_threshold_ms=5.0)


@dataclass(frozen=True)
class Step:
    mode: str
    rate: float
    summary: JobSummary
    sender_cpu: float
    """CPU seconds of the senders while they sent (this process, or every worker)."""
    endpoint_cpu: float
    wall: float

    @property
    def ratio(self) -> float:
        return self.summary.achieved_rps / self.rate

    @property
    def held(self) -> bool:
        return self.ratio >= HOLD_RATIO and self.summary.dropped == 0

    @property
    def us_per_request(self) -> float:
        return self.sender_cpu / self.summary.sent * 1e6 if self.summary.sent else 0.0


def new_engine(url: str) -> TrafficEngine:
    return TrafficEngine(
        base_url=url,
        tracer_provider=TracerProvider(),
        metrics=GeneratorMetrics(CollectorRegistry()),
        planner=RequestPlanner(users=100, rng=random.Random(1)),
        max_in_flight=MAX_IN_FLIGHT,
        late_threshold_s=SETTINGS.late_send_threshold_ms / 1000,
    )


async def in_process(
    engine: TrafficEngine, rate: float, seconds: float
) -> tuple[JobSummary, float]:
    cpu = time.process_time()
    summary = await engine.run(PipelineOptions(), rate=rate, duration=seconds)
    return summary, time.process_time() - cpu


async def split(
    runner: SplitRunner, workers: int, rate: float, seconds: float
) -> tuple[JobSummary, float]:
    spec = JobSpec.sustained(PipelineOptions(), rate, seconds, users=100, seed=int(rate))
    result = await runner.run(spec, workers, job_id=None, live=LiveStats())
    return result.summary, sum(result.cpu_seconds)


async def climb(mode: str, url: str, endpoint: int, args: argparse.Namespace) -> list[Step]:
    steps: list[Step] = []
    engine = new_engine(url)
    runner = SplitRunner(
        SETTINGS,
        base_url=url,
        engine=engine,
        metrics=GeneratorMetrics(CollectorRegistry()),
        tracer_provider=TracerProvider(),
    )
    async with engine:
        await engine.run(PipelineOptions(), rate=200, duration=0.5)  # warm the pool
        gc.collect()
        gc.freeze()
        for rate in args.rates:
            served = cpu_seconds(endpoint)
            began = time.perf_counter()
            if mode == "in-process":
                summary, used = await in_process(engine, rate, args.seconds)
            else:
                summary, used = await split(runner, int(mode.split()[0]), rate, args.seconds)
            wall = summary.elapsed_seconds or (time.perf_counter() - began)
            step = Step(mode, rate, summary, used, cpu_seconds(endpoint) - served, wall)
            steps.append(step)
            print(row(step), flush=True)
            if not step.held:
                break
    return steps


HEADER = (
    f"{'mode':<11} {'target':>6} {'achieved':>9} {'ratio':>6} {'sent':>7} {'dropped':>7} "
    f"{'late':>6} {'lag p50':>8} {'lag p99':>8} {'lat p99':>8} {'us/req':>6} "
    f"{'senders':>8} {'endpoint':>8}"
)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def row(step: Step) -> str:
    s = step.summary
    return (
        f"{step.mode:<11} {step.rate:>6g} {s.achieved_rps:>9.1f} {step.ratio:>6.3f} "
        f"{s.sent:>7} {s.dropped:>7} {s.late_sends:>6} {_ms(s.send_lag_ms.p50):>8} "
        f"{_ms(s.send_lag_ms.p99):>8} {_ms(s.latency_ms.p99):>8} {step.us_per_request:>6.0f} "
        f"{step.sender_cpu / step.wall:>7.0%}c {step.endpoint_cpu / step.wall:>7.0%}c"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each step")
    parser.add_argument(
        "--rates",
        type=parse_rates,
        default=[2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 7000.0, 8000.0, 10000.0, 12000.0],
        help="the climb; it stops at the first rate not held",
    )
    parser.add_argument(
        "--workers",
        default="1,2",
        help="comma-separated worker counts to climb with, after the in-process climb",
    )
    parser.add_argument("--no-in-process", action="store_true", help="skip the in-process climb")
    return parser.parse_args(argv)


async def main(args: argparse.Namespace, port: int, endpoint: int) -> None:
    modes = [] if args.no_in_process else ["in-process"]
    modes += [f"{int(n)} worker{'s' if int(n) > 1 else ''}" for n in args.workers.split(",")]
    url = f"http://127.0.0.1:{port}"
    print(
        f"bare endpoint {url}, {args.seconds:g} s per step, nothing pinned, "
        f"host speed {host_speed_ms():.1f} ms"
    )
    print(HEADER)
    results = {mode: await climb(mode, url, endpoint, args) for mode in modes}
    print(
        f"\nsummary (ms; us/req = senders' CPU per request sent; senders, endpoint = cores "
        f"used on average; host speed now {host_speed_ms():.1f} ms)"
    )
    print(HEADER)
    for steps in results.values():
        for step in steps:
            print(row(step))
    print()
    for mode, steps in results.items():
        held = [step.rate for step in steps if step.held]
        broke = next((step for step in steps if not step.held), None)
        ceiling = f"{max(held):g} req/s" if held else "below the first rate"
        note = (
            f" (at {broke.rate:g}: achieved {broke.summary.achieved_rps:.0f}, "
            f"dropped {broke.summary.dropped})"
            if broke is not None
            else " (no tried rate broke it)"
        )
        print(f"{mode:<11} open-model ceiling: {ceiling}{note}")


def run(args: argparse.Namespace) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ENDPOINT), "--serve", str(port)])
    try:
        wait_port(port, server, timeout=10)
        uvloop.run(main(args, port, server.pid))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    run(parse_args(None))
