"""Does ``failure-lab serve`` stay usable under more outside load than it can serve?

Outside clients are not the lab's generator: nothing bounds how many connect. This puts one
``failure-lab serve`` process (no Redis) under wrk's closed-loop load on the user API
(``GET /api/v1/users/{id}``, ids rotating over 1..100) at several connection counts, once per
value of ``FAILURE_LAB_MAX_CONCURRENT_REQUESTS`` (0 turns the bound off), each in a fresh
process, all in one run. Meanwhile a probe asks ``/metrics/json``, ``/v1/status`` and
``/health/ready`` every ``--probe-interval`` seconds (each on its own connection, one request
at a time), the way an operator and an orchestrator would while the service is overloaded.

Per bound and level it prints: the user API's throughput (every answer, shed ones included)
and how much of it was admitted, the share of the answers that were shed (from the server's own
``failure_lab_http_requests_total{outcome="shed"}``), wrk's p50/p99 latency of every answer,
the probes' p50/p99 (and any that failed or timed out), the server's resident memory
before the level, right after it, and after ``--rest`` seconds of quiet (is it returned?).

The server is pinned to core 1, wrk and the probe to core 0 (when ``taskset`` exists), wrk
at ``nice 10`` so that the probe's latency is the server's and not its own wait for the core
wrk keeps busy. Each probe keeps one connection alive, made before the load starts (a probe
that connects anew also waits for the accept queue wrk's connections fill). wrk
needs a file descriptor per connection: the soft ``RLIMIT_NOFILE`` is raised to the hard
limit for it and the server.

    .venv/bin/python bench/overload.py [--seconds 10] [--levels 64,1000,4000]
                                       [--bounds 0,512,64] [--rest 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    LOAD_CORE,
    SERVER_CORE,
    WrkResult,
    can_pin,
    free_port,
    parse_wrk,
    pin_process,
    pinned,
    wait_port,
)

PROBES = ("/metrics/json", "/v1/status", "/health/ready")
WRK_SCRIPT = """
local i = 0
request = function()
  i = i % 100 + 1
  return wrk.format("GET", "/api/v1/users/" .. i)
end
"""
PROBE_TIMEOUT_SECONDS = 15.0


@dataclass
class Probe:
    latencies_ms: list[float] = field(default_factory=list)
    failed: int = 0
    slowest: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since the probe began recording, latency ms) of the slow answers."""
    began: float = 0.0


@dataclass(frozen=True)
class Level:
    bound: int
    connections: int
    wrk: WrkResult
    answered: float
    shed: float
    probes: dict[str, Probe]
    rss_before_mb: float
    rss_after_mb: float
    rss_rested_mb: float


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by children


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else float("nan")


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def answered_and_shed(session: aiohttp.ClientSession, base: str) -> tuple[float, float]:
    """The user API's answers so far, and the shed ones among them, by the server's count."""
    async with session.get(f"{base}/metrics") as response:
        text = await response.text()
    answered = shed = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "failure_lab_http_requests":
            continue
        for sample in family.samples:
            if sample.name == "failure_lab_http_requests_total":
                answered += sample.value
                if sample.labels.get("outcome") == "shed":
                    shed += sample.value
    return answered, shed


async def probe(
    base: str,
    path: str,
    interval: float,
    recording: asyncio.Event,
    stop: asyncio.Event,
    into: Probe,
) -> None:
    """Asks ``path`` every ``interval`` on one kept-alive connection (made before the load
    starts); records the answers asked while ``recording`` is set."""
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_SECONDS)
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                async with session.get(base + path) as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            elapsed = time.perf_counter() - started
            if not recording.is_set():
                pass
            elif ok:
                into.latencies_ms.append(elapsed * 1000)
                if elapsed > 0.1:
                    into.slowest.append((round(started - into.began, 2), round(elapsed * 1000)))
            else:
                into.failed += 1
            await asyncio.sleep(max(0.0, interval - elapsed))


def run_wrk(base: str, seconds: float, connections: int, script: Path) -> WrkResult:
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        base,
    ]
    # Below the probe's priority on the core they share: what the probe measures is the
    # server, not its own wait for the CPU wrk keeps busy.
    done = subprocess.run(
        pinned(["nice", "-n", "10", *command], LOAD_CORE),
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


async def one_level(
    base: str, pid: int, bound: int, connections: int, args: argparse.Namespace, script: Path
) -> Level:
    async with aiohttp.ClientSession() as session:
        before = await answered_and_shed(session, base)
        rss_before = rss_mb(pid)
        recording, stop = asyncio.Event(), asyncio.Event()
        probes = {path: Probe() for path in PROBES}
        tasks = [
            asyncio.create_task(
                probe(base, path, args.probe_interval, recording, stop, probes[path])
            )
            for path in PROBES
        ]
        await asyncio.sleep(0.5)  # each probe's connection made and kept alive
        for each in probes.values():
            each.began = time.perf_counter()
        recording.set()
        result = await asyncio.to_thread(run_wrk, base, args.seconds, connections, script)
        stop.set()
        await asyncio.gather(*tasks)
        rss_after = rss_mb(pid)
        after = await answered_and_shed(session, base)
        await asyncio.sleep(args.rest)
        rss_rested = rss_mb(pid)
    return Level(
        bound=bound,
        connections=connections,
        wrk=result,
        answered=after[0] - before[0],
        shed=after[1] - before[1],
        probes=probes,
        rss_before_mb=rss_before,
        rss_after_mb=rss_after,
        rss_rested_mb=rss_rested,
    )


def start_server(bound: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "FAILURE_LAB_PORT": str(port),
        "FAILURE_LAB_MAX_CONCURRENT_REQUESTS": str(bound),
    }
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "failure-lab"), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, server)
    except BaseException:
        stop_server(server)
        raise
    pin_process(server.pid, SERVER_CORE)
    return server, f"http://127.0.0.1:{port}"


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


async def one_bound(bound: int, args: argparse.Namespace, script: Path) -> list[Level]:
    server, base = start_server(bound)
    try:
        await asyncio.sleep(2)  # the embedded shim's first samples
        levels = []
        for connections in args.levels:
            levels.append(await one_level(base, server.pid, bound, connections, args, script))
            print_level(levels[-1], args.seconds)
            if args.verbose:
                for path, each in levels[-1].probes.items():
                    print(f"  {path} over 100 ms at (s, ms): {each.slowest[:20]}")
        return levels
    finally:
        stop_server(server)


def print_level(level: Level, seconds: float) -> None:
    shed_share = level.shed / level.answered if level.answered else 0.0
    probes = "  ".join(
        f"{path} {statistics.median(p.latencies_ms) if p.latencies_ms else float('nan'):.1f}/"
        f"{quantile(p.latencies_ms, 0.99):.1f}" + (f" ({p.failed} failed)" if p.failed else "")
        for path, p in level.probes.items()
    )
    bound = str(level.bound) if level.bound else "off"
    print(
        f"bound {bound:>5}  c={level.connections:<5} "
        f"{level.wrk.rps:8.0f} answers/s  {(level.answered - level.shed) / seconds:7.0f} "
        f"admitted/s  shed {shed_share:6.1%}  user p50/p99 {level.wrk.p50_ms:.1f}/"
        f"{level.wrk.p99_ms:.1f} ms  wrk errors {level.wrk.socket_errors}  "
        f"probes p50/p99 ms: {probes}  RSS {level.rss_before_mb:.0f} -> "
        f"{level.rss_after_mb:.0f} -> {level.rss_rested_mb:.0f} MB after {seconds:g}+rest",
        flush=True,
    )


def table(levels: list[Level], seconds: float) -> str:
    lines = [
        "| bound | connections | answers/s | admitted/s | shed | user p50 / p99 ms | "
        + " | ".join(f"`{path}` p50 / p99 ms" for path in PROBES)
        + " | RSS before -> after -> rested, MB |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(PROBES) + "---|",
    ]
    for level in levels:
        shed_share = level.shed / level.answered if level.answered else 0.0
        cells = []
        for path in PROBES:
            p = level.probes[path]
            median = statistics.median(p.latencies_ms) if p.latencies_ms else float("nan")
            cell = f"{median:.1f} / {quantile(p.latencies_ms, 0.99):.1f}"
            cells.append(cell + (f" ({p.failed} failed)" if p.failed else ""))
        lines.append(
            f"| {level.bound or 'off'} | {level.connections} | {level.wrk.rps:.0f} | "
            f"{(level.answered - level.shed) / seconds:.0f} | {shed_share:.1%} | "
            f"{level.wrk.p50_ms:.1f} / {level.wrk.p99_ms:.1f} | "
            + " | ".join(cells)
            + f" | {level.rss_before_mb:.0f} -> {level.rss_after_mb:.0f} -> "
            f"{level.rss_rested_mb:.0f} |"
        )
    return "\n".join(lines)


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--levels", type=numbers, default=[64, 1000, 4000])
    parser.add_argument("--bounds", type=numbers, default=[0, 512, 64])
    parser.add_argument("--rest", type=float, default=5.0)
    parser.add_argument("--probe-interval", type=float, default=0.05)
    parser.add_argument("--verbose", action="store_true", help="when the slow probes were")
    args = parser.parse_args()
    if args.seconds > 60 or any(c > 10_000 for c in args.levels):
        raise SystemExit("at most 60 s a level and 10,000 connections")
    raise_fd_limit()
    if can_pin():
        os.sched_setaffinity(0, {LOAD_CORE})  # the probe beside wrk, off the server's core
    levels: list[Level] = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "users.lua"
        script.write_text(WRK_SCRIPT)
        for bound in args.bounds:
            levels += await one_bound(bound, args, script)
    print()
    print(table(levels, args.seconds))


if __name__ == "__main__":
    asyncio.run(main())
