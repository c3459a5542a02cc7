"""Does ``failure-lab serve`` hold its memory flat under hours of traffic?

Every store the service keeps per request or per client has a bound from settings (created
users, in-process limits, traces, shared metric answers, run samples); this runs the real
process long enough for every one of them to fill and checks that its resident memory stops
growing once they have.

``failure-lab serve`` runs as a subprocess on a free loopback port (pinned to one core when
``taskset`` exists); this process sends it an open-model load (request *i* is due at
``i / rps``, whatever earlier ones are doing) with a mix meant to grow every store:

- 50% ``GET /api/v1/users/{id}``, 10% ``GET /api/v1/users``, 20% ``POST /api/v1/users``
  (a new user each time), 20% ``PATCH /api/v1/users/{id}``;
- 30% of them carry ``x-failure-lab-options`` with a rate limit the client picks at random
  (one new in-process limit per request: the limiter's bound is what holds it);
- once a second, ``GET /metrics/json`` with a window and ``at`` never asked before.

Every ``--interval`` seconds it records the server's RSS (``/proc/PID/status``) and, from its
``/metrics``, the created users, limits and traces held. At the end it prints the curve and
a verdict: the least-squares slope of RSS after the warm-up must stay under
``--max-slope`` MB per 10 minutes. The embedded metric sample ring keeps
``FAILURE_LAB_MAX_METRICS_WINDOW_SECONDS`` of one-second snapshots (~56 MB after an hour at
the default 3600 s, filling linearly meanwhile); it is set to 300 s here so it is full
within the warm-up, like every other store.

    .venv/bin/python bench/soak.py [--minutes 30] [--rps 300] [--interval 10] [--warmup 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import LOAD_CORE, SERVER_CORE, free_port, pin_process, wait_port
from simulator.options import HEADER

ALGORITHMS = ("token_bucket", "leaky_bucket", "fixed_window", "sliding_window")
MAX_IN_FLIGHT = 256
GAUGES = {
    "created": "failure_lab_db_created_users",
    "limits": "failure_lab_ratelimit_limits",
    "traces": "failure_lab_exporter_trace_store_traces",
}


@dataclass(frozen=True, slots=True)
class Point:
    minute: float
    rss_mb: float
    sent: int
    gauges: dict[str, float]


@dataclass(slots=True)
class Tally:
    sent: int = 0
    dropped: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def count(self, status: str) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else float("nan")


def request_for(
    rng: random.Random, serial: int
) -> tuple[str, str, dict[str, str] | None, dict[str, str]]:
    """(method, path, body, headers) of the next request of the mix."""
    headers: dict[str, str] = {}
    if rng.random() < 0.3:
        # Admitted, new nearly every time, and within FAILURE_LAB_MAX_RATE_LIMIT's default.
        rate = rng.randint(1000, 1_000_000) / 10
        headers[HEADER] = f"rl={rate:g};algo={rng.choice(ALGORITHMS)}"
    roll = rng.random()
    if roll < 0.5:
        return "GET", f"/api/v1/users/{rng.randint(1, 100)}", None, headers
    if roll < 0.6:
        return "GET", "/api/v1/users", None, headers
    if roll < 0.8:
        body = {"name": f"soak {serial}", "email": f"soak{serial}@example.test"}
        return "POST", "/api/v1/users", body, headers
    body = {"name": f"renamed {serial}"}
    return "PATCH", f"/api/v1/users/{rng.randint(1, 100)}", body, headers


async def send(
    session: aiohttp.ClientSession,
    request: tuple[str, str, dict[str, str] | None, dict[str, str]],
    tally: Tally,
) -> None:
    method, path, body, headers = request
    try:
        async with session.request(method, path, json=body, headers=headers) as answer:
            await answer.read()
            tally.count(str(answer.status))
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.count(type(exc).__name__)


async def load(base: str, rps: float, seconds: float, tally: Tally) -> None:
    """The open-model load; a request due while MAX_IN_FLIGHT are out is dropped."""
    rng = random.Random(1)
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
    timeout = aiohttp.ClientTimeout(total=30)
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as session:
        start = loop.time()
        planned = int(rps * seconds)
        for i in range(planned):
            delay = start + i / rps - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(tasks) >= MAX_IN_FLIGHT:
                tally.dropped += 1
                continue
            task = asyncio.create_task(send(session, request_for(rng, i), tally))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            tally.sent += 1
            if i % max(1, int(rps)) == 0:  # once a second: a metrics window never asked
                window = f"{rng.randint(2, 230)}s"
                at = f"{time.time() - rng.uniform(0, 60):.3f}"
                reader = asyncio.create_task(
                    send(
                        session, ("GET", f"/metrics/json?window={window}&at={at}", None, {}), tally
                    )
                )
                tasks.add(reader)
                reader.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(set(tasks))


async def gauges(base: str) -> dict[str, float]:
    async with aiohttp.ClientSession(base) as session, session.get("/metrics") as answer:
        text = await answer.text()
    values = {}
    for name, metric in GAUGES.items():
        match = re.search(rf"^{metric} ([0-9.e+]+)$", text, re.MULTILINE)
        values[name] = float(match.group(1)) if match else float("nan")
    return values


async def record(base: str, pid: int, interval: float, seconds: float, tally: Tally) -> list[Point]:
    points: list[Point] = []
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        point = Point(elapsed / 60, rss_mb(pid), tally.sent, await gauges(base))
        points.append(point)
        print(row(point), flush=True)
        if elapsed >= seconds:
            return points
        await asyncio.sleep(min(interval, seconds - elapsed + 0.01))


def row(point: Point) -> str:
    shown = "  ".join(f"{name} {value:>7.0f}" for name, value in point.gauges.items())
    return f"{point.minute:7.2f} min  RSS {point.rss_mb:8.1f} MB  sent {point.sent:>9}  {shown}"


def slope_mb_per_10min(points: list[Point]) -> float:
    """Least-squares slope of RSS against time."""
    n = len(points)
    mean_t = sum(p.minute for p in points) / n
    mean_r = sum(p.rss_mb for p in points) / n
    cov = sum((p.minute - mean_t) * (p.rss_mb - mean_r) for p in points)
    var = sum((p.minute - mean_t) ** 2 for p in points)
    return 10 * cov / var if var else 0.0


def start_server(port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FAILURE_LAB_PORT": str(port),
        "FAILURE_LAB_MAX_METRICS_WINDOW_SECONDS": "300",
        "FAILURE_LAB_CONTROL_RATE_LIMIT": "0",
    }
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    server = Path(sys.executable).with_name("failure-lab")
    process = subprocess.Popen([str(server), "serve"], env=env, stderr=subprocess.DEVNULL)
    wait_port(port, process)
    pin_process(process.pid, SERVER_CORE)
    pin_process(os.getpid(), LOAD_CORE)
    return process


def verdict(points: list[Point], warmup_minutes: float, max_slope: float) -> bool:
    rss = [p.rss_mb for p in points]
    after = [p for p in points if p.minute >= warmup_minutes]
    print(f"\nRSS over the run: min {min(rss):.1f} MB, max {max(rss):.1f} MB")
    if len(after) < 3:
        print(f"too few samples after the {warmup_minutes:g} min warm-up for a verdict")
        return False
    slope = slope_mb_per_10min(after)
    kept = [p.rss_mb for p in after]
    print(
        f"after the {warmup_minutes:g} min warm-up ({len(after)} samples): min {min(kept):.1f} "
        f"MB, max {max(kept):.1f} MB, slope {slope:+.2f} MB per 10 min"
    )
    flat = slope < max_slope
    print(f"verdict: {'FLAT' if flat else 'GROWING'} (threshold {max_slope:g} MB per 10 min)")
    return flat


async def soak(args: argparse.Namespace) -> bool:
    port = free_port()
    process = start_server(port)
    base = f"http://127.0.0.1:{port}"
    seconds = args.minutes * 60
    tally = Tally()
    try:
        loader = asyncio.create_task(load(base, args.rps, seconds, tally))
        points = await record(base, process.pid, args.interval, seconds, tally)
        await loader
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    print(f"\n{tally.sent} sent, {tally.dropped} dropped at the in-flight bound; answers:")
    print(json.dumps(dict(sorted(tally.statuses.items()))))
    return verdict(points, args.warmup, args.max_slope)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rps", type=float, default=300.0)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=10.0, help="minutes left out of the slope")
    parser.add_argument("--max-slope", type=float, default=2.0, help="MB per 10 min")
    args = parser.parse_args()
    print(f"failure-lab serve under {args.rps:g} req/s for {args.minutes:g} min", flush=True)
    raise SystemExit(0 if asyncio.run(soak(args)) else 1)


if __name__ == "__main__":
    main()
