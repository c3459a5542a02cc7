"""``/metrics/json`` under load: embedded mode, and Prometheus mode against Prometheus itself.

Targets: p99 under 20 ms in embedded mode with 50 concurrent clients, and in Prometheus
mode no more than Prometheus's own query time plus 5 ms. Both modes serve a simulator
under 100 req/s of its own traffic while they are measured, so the figures include a
realistic registry and a realistic Prometheus head block.

The shim's own overhead in Prometheus mode is measured single-client: each iteration asks
Prometheus the same five queries the shim asks, concurrently, as the shim does, and the
same iteration count asks the shim; the difference of the medians and p99s is its cost.

    .venv/bin/python bench/shim.py [--seconds 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    CLI,
    PAYLOAD,
    SERVER_CORE,
    WrkResult,
    backend,
    free_port,
    pinned,
    wait_port,
    wrk,
)
from exporter.figures import RED, render

CONFIG = {
    "failure_injection_enabled": True,
    "failure_rate": 0.05,
    "db_latency_min_ms": 2,
    "db_latency_max_ms": 20,
    "db_timeout_seconds": 1,
    "redis_timeout_seconds": 0.05,
    "max_retries": 2,
}
WINDOW_SECONDS = 60.0


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FAILURE_LAB_"))}


@contextlib.contextmanager
def process(command: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        command, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_traffic(base: str, seconds: float) -> None:
    with httpx.Client(base_url=base, timeout=10) as http:
        http.put("/v1/config/failure", json=CONFIG).raise_for_status()
        http.post(
            "/v1/traffic/generate",
            json={
                "mode": "sustained",
                "rps": 100,
                "duration": seconds,
                "payload": PAYLOAD,
            },
        ).raise_for_status()


def sequential_ms(url: str, count: int) -> list[float]:
    times = []
    with httpx.Client(timeout=10) as http:
        for _ in range(count):
            started = time.perf_counter()
            http.get(url).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return times


async def prometheus_ms(base: str, count: int) -> list[float]:
    """The shim's five RED queries, concurrently, ``count`` times."""
    queries = [render(figure.expr, WINDOW_SECONDS) for figure in RED]
    times = []
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        for _ in range(count):
            started = time.perf_counter()
            at = str(time.time())
            answers = await asyncio.gather(
                *(http.get("/api/v1/query", params={"query": q, "time": at}) for q in queries)
            )
            for answer in answers:
                answer.raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return times


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def best_of(url: str, seconds: float, repeats: int) -> WrkResult:
    runs = [wrk(url, seconds, 50) for _ in range(repeats)]
    return sorted(runs, key=lambda r: r.p99_ms)[len(runs) // 2]  # the median run by p99


def prometheus_config(workdir: Path, simulator_port: int) -> Path:
    path = workdir / "prometheus.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "simulator",
                        "static_configs": [{"targets": [f"127.0.0.1:{simulator_port}"]}],
                    }
                ],
            }
        )
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    traffic_seconds = 40 + args.repeats * (args.seconds + 2) * 2

    port = free_port()
    with process(pinned([CLI, "serve", "--port", str(port)], SERVER_CORE), port):
        base = f"http://127.0.0.1:{port}"
        start_traffic(base, traffic_seconds)
        time.sleep(8)
        embedded = best_of(f"{base}/metrics/json", args.seconds, args.repeats)
        single = sequential_ms(f"{base}/metrics/json", args.samples)
    rows.append(
        (
            "embedded, 50 clients",
            f"{embedded.rps:8.0f} req/s  p50 {embedded.p50_ms:6.2f} ms"
            f"  p99 {embedded.p99_ms:6.2f} ms  non-2xx {embedded.non_2xx}",
        )
    )
    rows.append(
        ("embedded, 1 client", f"p50 {p(single, 0.5):6.2f} ms  p99 {p(single, 0.99):6.2f} ms")
    )

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sim_port, prom_port, shim_port = free_port(), free_port(), free_port()
        prometheus = [
            backend("prometheus"),
            f"--config.file={prometheus_config(workdir, sim_port)}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ]
        with (
            process([CLI, "simulator", "--port", str(sim_port)], sim_port),
            process(prometheus, prom_port),
            process(
                pinned(
                    [
                        CLI,
                        "exporter",
                        "--port",
                        str(shim_port),
                        "--prometheus-url",
                        f"http://127.0.0.1:{prom_port}",
                        "--jaeger-url",
                        f"http://127.0.0.1:{free_port()}",
                        "--simulator-url",
                        f"http://127.0.0.1:{sim_port}",
                    ],
                    SERVER_CORE,
                ),
                shim_port,
            ),
        ):
            shim = f"http://127.0.0.1:{shim_port}"
            start_traffic(shim, traffic_seconds)
            time.sleep(15)
            loaded = best_of(f"{shim}/metrics/json", args.seconds, args.repeats)
            direct = asyncio.run(prometheus_ms(f"http://127.0.0.1:{prom_port}", args.samples))
            via_shim = sequential_ms(f"{shim}/metrics/json", args.samples)
    rows.append(
        (
            "prometheus mode, 50 clients",
            f"{loaded.rps:8.0f} req/s  p50 {loaded.p50_ms:6.2f}"
            f" ms  p99 {loaded.p99_ms:6.2f} ms  non-2xx {loaded.non_2xx}",
        )
    )
    rows.append(
        (
            "prometheus itself, 1 client",
            f"p50 {p(direct, 0.5):6.2f} ms  p99 {p(direct, 0.99):6.2f} ms  (5 queries at once)",
        )
    )
    rows.append(
        (
            "prometheus mode, 1 client",
            f"p50 {p(via_shim, 0.5):6.2f} ms  p99 {p(via_shim, 0.99):6.2f} ms",
        )
    )
    overhead50 = statistics.median(via_shim) - statistics.median(direct)
    overhead99 = p(via_shim, 0.99) - p(direct, 0.99)
    rows.append(
        ("shim overhead over prometheus", f"p50 {overhead50:+6.2f} ms  p99 {overhead99:+6.2f} ms")
    )

    width = max(len(name) for name, _ in rows)
    print(
        f"/metrics/json, window {WINDOW_SECONDS:g}s, wrk -t1 -c50 {args.seconds:g}s "
        f"(median of {args.repeats} runs by p99); single-client {args.samples} requests"
    )
    for name, figures in rows:
        print(f"  {name:<{width}}  {figures}")
    print(f"target embedded p99 < 20 ms: {'MET' if embedded.p99_ms < 20 else 'NOT MET'}")
    print(
        f"target shim <= prometheus + 5 ms (p99, 1 client): "
        f"{'MET' if overhead99 <= 5 else 'NOT MET'}"
    )


if __name__ == "__main__":
    main()
