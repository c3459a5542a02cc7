"""How many requests per second can one simulator process sustain, and what does it pay for?

A simulated request is only worth generating if the service can answer it; the ceiling of
one process, and the share of it taken by tracing and by the pipeline, decide how much
traffic a demo can drive. The figures are ratios to a bare FastAPI endpoint under the same
uvicorn configuration and the same load tool, because absolute rates depend on the machine.

Variants (each server in its own process, see ``bench/_servers.py``):

- bare: one FastAPI endpoint answering a small JSON body from bytes;
- instrumentation only: the same app with the OpenTelemetry FastAPI instrumentation, spans
  batched to an exporter that discards them;
- pipeline, telemetry off: the simulator as the stack runs it (no embedded shim) with
  ``telemetry_enabled=False``. "Off" means spans are not sampled (none is recorded or
  exported) but the FastAPI instrumentation is still attached, trace ids are still drawn
  and Prometheus metrics are still recorded;
- pipeline, fully traced: the same with every span batched (queue sized from settings) to
  an exporter that counts and discards them, batch thread included;
- failure-lab serve, fully traced: ``create_app`` with its defaults (the embedded shim keeps
  recent traces in the process) plus the same batch processor.

The stack-mode pipeline variants are loaded twice: GET on a few user ids with default
options (the in-process cache answers almost all of them) and with
``x-failure-lab-options: cache=0`` after the failure config is set to zero database
latency, so every request goes through ``db.query`` and the figure is the service's own
overhead rather than simulated sleep.

wrk runs with one thread pinned to core 0 and the servers are pinned to core 1 (when
``taskset`` exists); variants are interleaved across repeats and medians are reported.
Each server gets a 2 s warm-up before its first measured run (it stays up, warm, between
its runs). Servers start on any core and are pinned once they listen, which halves start-up.
All traffic goes to 127.0.0.1.

    .venv/bin/python bench/throughput.py [--seconds 10] [--connections 64] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    LOAD_CORE,
    SERVER_CORE,
    ZERO_LATENCY_CONFIG,
    WrkResult,
    can_pin,
    cpu_seconds,
    free_port,
    pin_process,
    wait_port,
)
from bench.common import wrk as run_wrk

WARMUP_SECONDS = 2.0
USER_IDS = (1, 2, 3, 4, 5, 6, 7, 8)
OPTIONS_HEADER = "x-failure-lab-options"
TARGET_RATIO = 0.25


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    server: str  # variant name in bench/_servers.py
    cache_off: bool = False  # send cache=0 and zero the DB latency first


VARIANTS = (
    Variant("bare", "bare FastAPI endpoint", "bare"),
    Variant("instr", "instrumentation only", "instrumented"),
    Variant("off-hit", "pipeline, telemetry off, cache hits", "pipeline-off"),
    Variant("traced-hit", "pipeline, fully traced, cache hits", "pipeline-traced"),
    Variant("off-miss", "pipeline, telemetry off, cache=0", "pipeline-off", cache_off=True),
    Variant("traced-miss", "pipeline, fully traced, cache=0", "pipeline-traced", cache_off=True),
    Variant("serve-hit", "failure-lab serve, fully traced, hits", "serve-traced"),
)


@dataclass(frozen=True)
class Run:
    wrk: WrkResult
    server_cpu_s: float  # server process CPU seconds (all threads) during the measured run
    wall_s: float


@dataclass
class Server:
    variant: Variant
    port: int
    process: subprocess.Popen[bytes]
    stats_path: Path
    script: Path
    requests_sent: int = 0  # completed by wrk, warm-ups included
    runs: list[Run] = field(default_factory=list)
    spans: int | None = None
    served: float | None = None  # requests the server counted (its own counter or server spans)
    dropped: float | None = None


# -- wrk -----------------------------------------------------------------------------------------


def lua_script(cache_off: bool) -> str:
    header = f'["{OPTIONS_HEADER}"] = "cache=0"' if cache_off else ""
    ids = ", ".join(str(i) for i in USER_IDS)
    return f"""
local ids = {{{ids}}}
local requests = {{}}
local n = 0
init = function(args)
  for k, id in ipairs(ids) do
    requests[k] = wrk.format("GET", "/api/v1/users/" .. id, {{{header}}})
  end
end
request = function()
  n = n % #requests + 1
  return requests[n]
end
"""


def wrk(server: Server, seconds: float, connections: int) -> WrkResult:
    result = run_wrk(f"http://127.0.0.1:{server.port}", seconds, connections, server.script)
    server.requests_sent += result.requests
    return result


# -- servers -------------------------------------------------------------------------------------


def start(variant: Variant, workdir: Path) -> Server:
    port = free_port()
    stats_path = workdir / f"{variant.key}.json"
    script = workdir / f"{variant.key}.lua"
    script.write_text(lua_script(variant.cache_off))
    helper = Path(__file__).with_name("_servers.py")
    command = [sys.executable, str(helper), variant.server, str(port), str(stats_path)]
    # The servers read no OTEL_* or FAILURE_LAB_* variable: spans go nowhere but the counter.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FAILURE_LAB_"))}
    process = subprocess.Popen(command, env=env)
    return Server(variant, port, process, stats_path, script)


def zero_db_latency(server: Server) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/v1/config/failure",
        data=json.dumps(ZERO_LATENCY_CONFIG).encode(),
        headers={"content-type": "application/json"},
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        if response.status != 200:
            raise SystemExit(f"PUT /v1/config/failure answered {response.status}")


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    if server.stats_path.exists():
        stats = json.loads(server.stats_path.read_text())
        server.spans, server.dropped = stats["spans"], stats["dropped"]
        server.served = stats["requests"] or stats["server_spans"] or None


def measure(server: Server, seconds: float, warmup: float, connections: int) -> Run:
    if not server.runs:
        wrk(server, warmup, connections)
    cpu = cpu_seconds(server.process.pid)
    wall = time.perf_counter()
    result = wrk(server, seconds, connections)
    wall = time.perf_counter() - wall
    run = Run(result, cpu_seconds(server.process.pid) - cpu, wall)
    server.runs.append(run)
    return run


# -- report --------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cpu_per_request(run: Run) -> float:
    return run.server_cpu_s / max(1, run.wrk.requests) * 1e6


def report(servers: list[Server], connections: int, seconds: float, repeats: int) -> bool:
    bare = median([run.wrk.rps for run in servers[0].runs])
    bare_cpu = median([cpu_per_request(run) for run in servers[0].runs])
    pinning = (
        f"servers pinned to core {SERVER_CORE}, wrk to core {LOAD_CORE}"
        if can_pin()
        else "not pinned (no taskset or one core)"
    )
    print(f"\nwrk -t1 -c{connections} -d{seconds:g}s, {repeats} repeat(s), medians; {pinning}")
    header = (
        f"{'variant':<38} {'req/s':>7} {'ratio':>5} {'p50 ms':>6} {'p99 ms':>7} "
        f"{'CPU us/req':>10} {'CPU ratio':>9} {'srv CPU':>7} {'spans/req':>9} {'dropped':>7} "
        f"{'non-2xx':>7}"
    )
    print(header)
    print("-" * len(header))
    ratios: dict[str, float] = {}
    for server in servers:
        runs = server.runs
        rps = median([run.wrk.rps for run in runs])
        ratios[server.variant.key] = rps / bare
        cpu = median([cpu_per_request(run) for run in runs])
        utilisation = median([run.server_cpu_s / run.wall_s for run in runs])
        spans = "-"
        if server.spans is not None and (server.served or server.requests_sent):
            spans = f"{server.spans / (server.served or server.requests_sent):.2f}"
        dropped = "-" if server.dropped is None else f"{server.dropped:.0f}"
        errors = sum(run.wrk.non_2xx + run.wrk.socket_errors for run in runs)
        print(
            f"{server.variant.label:<38} {rps:>7.0f} {rps / bare:>5.2f} "
            f"{median([r.wrk.p50_ms for r in runs]):>6.2f} "
            f"{median([r.wrk.p99_ms for r in runs]):>7.2f} {cpu:>10.0f} {bare_cpu / cpu:>9.2f} "
            f"{utilisation:>7.0%} {spans:>9} {dropped:>7} {errors:>7}"
        )
    print(
        "\nCPU us/req: server CPU (all threads) per request served; CPU ratio: bare's CPU/req "
        "over the variant's, the throughput ratio a saturated, unshared core would give."
    )
    print(
        "spans/req: spans exported / requests served (the simulator's request counter; server "
        "spans for the instrumented app), warm-ups included; non-2xx: wrk's non-2xx responses "
        "plus socket errors."
    )
    starved = sum(
        1 for server in servers for run in server.runs if run.server_cpu_s < 0.9 * run.wall_s
    )
    if starved:
        print(
            f"note: in {starved} run(s) the server had under 90% of its core (other load on "
            "the machine): the CPU ratio is the steadier figure."
        )
    hit, miss, serve = ratios["traced-hit"], ratios["traced-miss"], ratios["serve-hit"]
    met = hit >= TARGET_RATIO and miss >= TARGET_RATIO
    print(
        f"target: pipeline fully traced >= {TARGET_RATIO:g} of bare: "
        f"{'MET' if met else 'NOT MET'} (cache hits {hit:.2f}, cache=0 {miss:.2f})"
    )
    print(
        f"same target for failure-lab serve (embedded span store): "
        f"{'MET' if serve >= TARGET_RATIO else 'NOT MET'} ({serve:.2f})"
    )
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="3 s runs, 1 repeat, 1 s warm-up")
    args = parser.parse_args()
    seconds, repeats, warmup = args.seconds, args.repeats, WARMUP_SECONDS
    if args.quick:
        seconds, repeats, warmup = 3.0, 1, 1.0
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")

    with tempfile.TemporaryDirectory(prefix="failure-lab-bench-") as workdir:
        servers = [start(variant, Path(workdir)) for variant in VARIANTS]
        try:
            for server in servers:
                wait_port(server.port, server.process)
                pin_process(server.process.pid, SERVER_CORE)
                if server.variant.cache_off:
                    zero_db_latency(server)
            for repeat in range(repeats):
                # Rotate the order so no variant always runs first or last.
                shift = repeat % len(servers)
                for server in servers[shift:] + servers[:shift]:
                    run = measure(server, seconds, warmup, args.connections)
                    print(
                        f"repeat {repeat + 1}/{repeats} {server.variant.key:<12} "
                        f"{run.wrk.rps:8.0f} req/s  p99 {run.wrk.p99_ms:6.2f} ms",
                        flush=True,
                    )
        finally:
            for server in servers:
                stop(server)
        report(servers, args.connections, seconds, repeats)


if __name__ == "__main__":
    main()
