"""Do shared limits stay exact when the replicas sharing them are saturated?

Two ``failure-lab serve --redis-url`` processes share one real redis-server: one failure
config, one cache, one rate limit per algorithm and rate. wrk drives each replica with the
same number of connections (``--levels``, per replica), every request carrying a rate limit
in the options header (``rl=<limit>;algo=<algorithm>``, the same limit for both, so they
share it in Redis) over a few cached user ids. The failure config is set (``PUT
/v1/config/failure``) to zero database latency and no injected failures, so a replica is
bound by its own CPU: the point is the process saturating, not the simulated database.

For each algorithm and level, after ``--warmup`` seconds of load (a token bucket's first
full bucket is not a saturation figure), both replicas' ``/metrics`` are read, again
``--seconds`` later, and the differences are:

- admitted: decisions allowed plus requests admitted without a decision (fail open), over
  ``limit x seconds`` (the seconds between the two readings): at most 1.05 is the target;
  and over the algorithm's own bound (``own``: the same, but for a fixed window ``limit``
  per calendar second the window touches);
- fail-open: ``failure_lab_ratelimit_fail_open_total`` by reason (on a build without that
  counter, ``failure_lab_ratelimit_errors_total``);
- cache reads: hits, misses, errors;
- throughput: responses per second, both replicas together, from wrk over its whole run.

It ends with throughput at 256 connections over throughput at 16 (target >= 0.8) for each
algorithm. Everything listens on 127.0.0.1; each run is bounded by wrk's duration.

    .venv/bin/python bench/saturation.py [--algorithms token_bucket ...] [--levels 16 64 256 512]
        [--limit 400] [--seconds 10] [--warmup 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CLI, ZERO_LATENCY_CONFIG, cpu_seconds, free_port, parse_wrk, wait_port
from tests.support.servers import RedisProcess

ALGORITHMS = ("token_bucket", "leaky_bucket", "fixed_window", "sliding_window")
USER_IDS = 8
WRK_SCRIPT = """
local i = 0
wrk.headers["x-failure-lab-options"] = "rl=%(limit)g;algo=%(algorithm)s;cache=1;ttl=30"
request = function()
  i = i %% %(users)d + 1
  return wrk.format("GET", "/api/v1/users/" .. i)
end
"""


class Replica:
    """``failure-lab serve`` on a loopback port, sharing ``redis_url``."""

    def __init__(self, workdir: Path, redis_url: str) -> None:
        self.port = free_port()
        environment = {
            **os.environ,
            "FAILURE_LAB_REDIS_URL": redis_url,
            "FAILURE_LAB_CONTROL_RATE_LIMIT": "0",
        }
        self._log = (workdir / f"serve-{self.port}.log").open("ab")
        self._proc = subprocess.Popen(
            [CLI, "serve", "--port", str(self.port)],
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port, self._proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self._proc.pid

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()


def samples(url: str) -> tuple[float, dict[str, float]]:
    """Every sample of ``url``/metrics, and when it was read (the middle of the call, Unix
    time: the limiter's clock, whose calendar seconds a fixed window counts in)."""
    started = time.time()
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    at = (started + time.time()) / 2
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE failure_lab_"):
            found[line] = 0.0  # the family exists, with or without samples yet
        elif line.startswith("failure_lab_"):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return at, found


def read_all(urls: list[str]) -> list[tuple[float, dict[str, float]]]:
    """Both replicas' samples, read at once."""
    results: list[tuple[float, dict[str, float]] | None] = [None] * len(urls)

    def read(index: int) -> None:
        results[index] = samples(urls[index])

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in results if r is not None]


def total(found: dict[str, float], name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return sum(
        value
        for key, value in found.items()
        if key.split("{")[0] == name and all(w in key for w in wanted)
    )


REASONS = ("timeout", "pool_exhausted", "unavailable")


@dataclass
class Level:
    algorithm: str
    connections: int
    seconds: float
    started: float
    """Unix time of the first reading (the mean of both replicas')."""
    admitted: float
    limit: float
    fail_open: dict[str, float]
    hits: float
    misses: float
    errors: float
    throughput: float
    cpu_us: float
    """CPU of both replicas over the measured window, per response they gave in it."""
    p99_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def ratio(self) -> float:
        return self.admitted / (self.limit * self.seconds)

    @property
    def own_ratio(self) -> float:
        """Admitted over what the algorithm itself allows in the window: ``limit x seconds``,
        except a fixed window, whose quota renews at every calendar second: a 10 s window
        touches 11 of them, and a saturated one spends each quota as its second begins."""
        if self.algorithm != "fixed_window":
            return self.ratio
        seconds = math.floor(self.started + self.seconds) - math.floor(self.started) + 1
        return self.admitted / (self.limit * seconds)


def counters(found: dict[str, float], algorithm: str) -> dict[str, float]:
    fail_open = {
        reason: total(found, "failure_lab_ratelimit_fail_open_total", reason=reason)
        for reason in REASONS
    }
    if "# TYPE failure_lab_ratelimit_fail_open_total counter" not in found:
        fail_open = {"any": total(found, "failure_lab_ratelimit_errors_total")}
    allowed = total(
        found, "failure_lab_ratelimit_decisions_total", algorithm=algorithm, decision="allowed"
    )
    get = "failure_lab_cache_requests_total"
    return {
        "allowed": allowed,
        **{f"fail_open:{k}": v for k, v in fail_open.items()},
        "responses": total(found, "failure_lab_http_requests_total"),
        "hit": total(found, get, operation="get", result="hit"),
        "miss": total(found, get, operation="get", result="miss"),
        "error": total(found, get, operation="get", result="error"),
    }


def run_level(
    replicas: list[Replica],
    workdir: Path,
    algorithm: str,
    connections: int,
    args: argparse.Namespace,
) -> Level:
    urls = [replica.url for replica in replicas]
    script = workdir / f"{algorithm}.lua"
    script.write_text(WRK_SCRIPT % {"limit": args.limit, "algorithm": algorithm, "users": USER_IDS})
    duration = round(args.warmup + args.seconds + 2)
    # wrk's own 2 s timeout would close connections whose answer is merely queued, and a
    # closed connection cancels the request: the run would measure wasted work instead.
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s"]
    command += ["--latency", "-s", str(script)]
    loads = [
        subprocess.Popen([*command, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for url in urls
    ]
    time.sleep(args.warmup)
    cpu_before = sum(cpu_seconds(replica.pid) for replica in replicas)
    before = read_all(urls)
    time.sleep(args.seconds)
    after = read_all(urls)
    cpu = sum(cpu_seconds(replica.pid) for replica in replicas) - cpu_before
    outputs = [load.communicate(timeout=duration + 60)[0] for load in loads]
    results = [parse_wrk(output) for output in outputs]
    seconds = statistics.mean(a[0] - b[0] for a, b in zip(after, before, strict=True))
    started = statistics.mean(b[0] for b in before)
    delta: dict[str, float] = {}
    for (_, old), (_, new) in zip(before, after, strict=True):
        start, end = counters(old, algorithm), counters(new, algorithm)
        for key in end:
            delta[key] = delta.get(key, 0.0) + end[key] - start.get(key, 0.0)
    fail_open = {k.split(":", 1)[1]: v for k, v in delta.items() if k.startswith("fail_open:")}
    return Level(
        algorithm=algorithm,
        connections=connections,
        seconds=seconds,
        started=started,
        admitted=delta["allowed"] + sum(fail_open.values()),
        limit=args.limit,
        fail_open=fail_open,
        hits=delta["hit"],
        misses=delta["miss"],
        errors=delta["error"],
        throughput=sum(r.rps for r in results),
        cpu_us=1e6 * cpu / max(1.0, delta["responses"]),
        p99_ms=max(r.p99_ms for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        socket_errors=sum(r.socket_errors for r in results),
    )


def put_config(url: str) -> None:
    request = urllib.request.Request(
        f"{url}/v1/config/failure",
        data=json.dumps(ZERO_LATENCY_CONFIG).encode(),
        headers={"content-type": "application/json"},
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200, response.status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    parser.add_argument("--levels", nargs="+", type=int, default=[16, 64, 256, 512])
    parser.add_argument("--limit", type=float, default=400.0, help="req/s, both replicas")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument(
        "--repeats", type=int, default=1, help="rounds over all levels; medians reported"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed")
    if not 0 < args.seconds <= 60 or not 0 <= args.warmup <= 30:
        raise SystemExit("--seconds must be in (0, 60], --warmup in [0, 30]")
    if not 1 <= args.repeats <= 5:
        raise SystemExit("--repeats must be between 1 and 5")
    if any(not 1 <= level <= 1024 for level in args.levels):
        raise SystemExit("--levels must be between 1 and 1024 connections")

    with tempfile.TemporaryDirectory(prefix="saturation-") as tmp:
        workdir = Path(tmp)
        redis = RedisProcess(workdir)
        redis.start()
        replicas: list[Replica] = []
        try:
            replicas = [Replica(workdir, redis.url) for _ in range(2)]
            put_config(replicas[0].url)
            print(
                f"two replicas on one redis-server; limit {args.limit:g} req/s shared; "
                f"{args.seconds:g} s measured after {args.warmup:g} s of load; "
                f"connections per replica"
            )
            print(
                f"{'algorithm':<15} {'conns':>5} {'admitted':>8} {'limit x s':>9} "
                f"{'ratio':>6} {'own':>6} {'fail-open':>9} {'by reason':<34} {'hits':>6} "
                f"{'misses':>6} "
                f"{'errors':>6} {'req/s':>7} {'us/req':>7} {'p99 ms':>8} {'non-2xx':>8} "
                f"{'sock err':>8}"
            )
            results: list[Level] = []
            for algorithm in args.algorithms:
                for _, connections in itertools.product(range(args.repeats), args.levels):
                    level = run_level(replicas, workdir, algorithm, connections, args)
                    results.append(level)
                    reasons = ", ".join(f"{k} {v:.0f}" for k, v in level.fail_open.items())
                    print(
                        f"{algorithm:<15} {connections:>5} {level.admitted:>8.0f} "
                        f"{level.limit * level.seconds:>9.0f} {level.ratio:>6.3f} "
                        f"{level.own_ratio:>6.3f} "
                        f"{sum(level.fail_open.values()):>9.0f} {reasons:<34} "
                        f"{level.hits:>6.0f} {level.misses:>6.0f} {level.errors:>6.0f} "
                        f"{level.throughput:>7.0f} {level.cpu_us:>7.0f} {level.p99_ms:>8.1f} "
                        f"{level.non_2xx:>8} "
                        f"{level.socket_errors:>8}",
                        flush=True,
                    )
            summarize(results)
        finally:
            for replica in replicas:
                replica.stop()
            redis.kill()


def summarize(results: list[Level]) -> None:
    """Per algorithm: the worst admitted/limit of every run, median throughput and CPU per
    request at 16 and 256 connections, and their ratios."""
    print()
    for algorithm in dict.fromkeys(level.algorithm for level in results):
        mine = [level for level in results if level.algorithm == algorithm]
        worst = max(level.ratio for level in mine)
        own = max(level.own_ratio for level in mine)
        fail_open = sum(sum(level.fail_open.values()) for level in mine)
        line = (
            f"{algorithm:<15} worst admitted/(limit x s) {worst:.3f} (target <= 1.05), "
            f"to its own bound {own:.3f}, fail-open {fail_open:.0f}"
        )
        at = {
            c: [level for level in mine if level.connections == c]
            for c in (16, 256)
            if any(level.connections == c for level in mine)
        }
        if len(at) == 2:
            rps = {c: statistics.median(level.throughput for level in at[c]) for c in at}
            cpu = {c: statistics.median(level.cpu_us for level in at[c]) for c in at}
            line += (
                f"; median req/s {rps[16]:.0f} @16, {rps[256]:.0f} @256: "
                f"ratio {rps[256] / rps[16]:.2f} (target >= 0.8); "
                f"us/req {cpu[16]:.0f} @16, {cpu[256]:.0f} @256: ratio {cpu[256] / cpu[16]:.2f}"
            )
        print(line)


if __name__ == "__main__":
    main()
