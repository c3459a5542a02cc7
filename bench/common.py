"""What every benchmark here needs: free loopback ports, core pinning, wrk, process CPU, and
the pinned backends ``make backends`` builds.

The machine has two cores: a server under test is pinned to one and its load to the other,
so the figures compare variants rather than the scheduler's mood.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from simulator.server import free_port as free_port  # re-exported for the benchmarks

SERVER_CORE = 1
LOAD_CORE = 0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BACKENDS_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "backends.sh"
ZERO_LATENCY_CONFIG = {
    "failure_injection_enabled": False,
    "failure_rate": 0.0,
    "db_latency_min_ms": 0.0,
    "db_latency_max_ms": 0.0,
    "db_timeout_seconds": 1.0,
    "redis_timeout_seconds": 0.05,
    "max_retries": 3,
}
"""The failure config under which a server is bound by its own CPU, not its database."""
CLI = str(Path(sys.executable).with_name("failure-lab"))
"""The console script of the venv running the benchmark."""
PAYLOAD = {
    "rate_of_requests": 100,
    "number_of_requests": 1,
    "retries_enabled": True,
    "rate_limiting": 0,
    "rate_limiting_algo": "token_bucket",
    "cache_enabled": True,
    "cache_ttl": 2,
    "db_latency": 0,
}
"""Request options of a generated job: retries and the cache on (2 s TTL), no rate limit."""


def backend(name: str) -> str:
    """The program ``name`` (``prometheus``, ``promtool``, ``jaeger``, ``vegeta``) at the
    version of ``.env``, as ``make backends`` builds it."""
    done = subprocess.run(
        ["bash", str(BACKENDS_SCRIPT), "path", name], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{done.stderr.strip() or name + ' is not built'} (run `make backends`)")
    return done.stdout.strip()


def can_pin() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) > 1


def pinned(command: list[str], core: int) -> list[str]:
    return ["taskset", "-c", str(core), *command] if can_pin() else command


def pin_process(pid: int, core: int) -> None:
    """Pins every thread of a running process (a span batch thread included)."""
    if can_pin():
        subprocess.run(
            ["taskset", "-a", "-p", "-c", str(core), str(pid)], check=True, capture_output=True
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server on {port} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server on {port} did not start within {timeout:g} s")


@dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    def number(pattern: str, default: str | None = None) -> str:
        match = re.search(pattern, output)
        if match is None:
            if default is None:
                raise ValueError(f"wrk output without {pattern!r}:\n{output}")
            return default
        return match.group(1)

    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        requests=int(number(r"(\d+) requests in")),
        rps=float(number(r"Requests/sec:\s+([\d.]+)")),
        p50_ms=_duration_ms(number(r"\s50%\s+(\S+)", "0us")),
        p99_ms=_duration_ms(number(r"\s99%\s+(\S+)", "0us")),
        non_2xx=int(number(r"Non-2xx or 3xx responses:\s+(\d+)", "0")),
        socket_errors=sum(int(g) for g in socket_errors.groups()) if socket_errors else 0,
    )


def wrk(url: str, seconds: float, connections: int, script: Path | None = None) -> WrkResult:
    """One wrk run (one thread, pinned to the load core) against ``url``."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    done = subprocess.run(
        pinned([*command, url], LOAD_CORE), capture_output=True, text=True, timeout=seconds + 30
    )
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)
