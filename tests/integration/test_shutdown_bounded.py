"""SIGTERM ends ``failure-lab serve`` within its grace (+1 s) whatever the OTLP collector does:
refuse connections, accept them and never answer, or answer slowly. Spans still pending are
dropped at the deadline, counted, and the shutdown log line gives the numbers.

The process is the real command, started as a subprocess on a free loopback port; every span
it makes is accounted for: exported, failed to export, or dropped.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from simulator.options import HEADER, PipelineOptions
from tests.support.configs import config_with
from tests.support.servers import free_port
from tests.support.sockets import SilentServer, SlowCollector

GRACE = 3.0
EXPORT_TIMEOUT = 2.0
BATCH = 50
REQUESTS = 150
SPANS = 2 * REQUESTS  # a server span and a db.query span for each (cache off, no retry)
REPORT = re.compile(
    r"spans at shutdown: (?P<exported>\d+) exported, (?P<lost>\d+) not exported "
    r"\((?P<shutdown>\d+) dropped at the shutdown deadline, (?P<failed>\d+) failed to "
    r"export, (?P<queue_full>\d+) dropped at a full queue\)"
)


@dataclass(frozen=True)
class Stopped:
    seconds: float
    exported: int
    lost: int
    shutdown: int
    failed: int
    queue_full: int


@contextmanager
def serve(endpoint: str, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = {
        **os.environ,
        "FAILURE_LAB_PORT": str(port),
        "FAILURE_LAB_SHUTDOWN_GRACE_SECONDS": str(GRACE),
        "FAILURE_LAB_SPAN_EXPORT_TIMEOUT_SECONDS": str(EXPORT_TIMEOUT),
        "FAILURE_LAB_SPAN_BATCH_SIZE": str(BATCH),
        "FAILURE_LAB_CONTROL_RATE_LIMIT": "0",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
    }
    env.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
    command = [str(Path(sys.executable).with_name("failure-lab")), "serve"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "failure-lab serve did not start"
            time.sleep(0.1)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def traffic_then_sigterm(process: subprocess.Popen[bytes], url: str, log: Path) -> Stopped:
    fast = config_with(db_latency_min_ms=0, db_latency_max_ms=0).model_dump()
    headers = {HEADER: PipelineOptions(cache_enabled=False).encode()}
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.put("/v1/config/failure", json=fast).status_code == 200
        for user in range(REQUESTS):
            assert http.get(f"/api/v1/users/{1 + user % 100}", headers=headers).is_success
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=GRACE + 10)
    seconds = time.monotonic() - started
    text = log.read_text()
    found = REPORT.search(text)
    assert found is not None, text
    numbers = {name: int(value) for name, value in found.groupdict().items()}
    stopped = Stopped(seconds=seconds, **numbers)
    assert stopped.exported + stopped.lost == SPANS, text
    assert stopped.lost == stopped.shutdown + stopped.failed + stopped.queue_full
    assert stopped.queue_full == 0
    print(f"exit {seconds:.2f} s after SIGTERM: {found.group(0)}")
    return stopped


def test_a_collector_refusing_connections_does_not_hold_shutdown(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "serve.log"
    with serve(closed, log) as (process, url):
        stopped = traffic_then_sigterm(process, url, log)
    assert stopped.seconds <= GRACE + 1
    assert stopped.exported == 0
    assert stopped.failed > 0  # batches given up on while it ran
    assert stopped.shutdown > 0  # what the flush had no time for


def test_a_collector_that_never_answers_does_not_hold_shutdown(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with SilentServer() as silent, serve(silent.url, log) as (process, url):
        stopped = traffic_then_sigterm(process, url, log)
        assert silent.connections >= 1
    assert stopped.seconds <= GRACE + 1
    assert stopped.exported == 0
    assert stopped.shutdown > 0
    assert "dropped at the shutdown deadline" in log.read_text()


def test_a_slow_collector_gets_what_fits_in_the_grace(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with SlowCollector(delay=1.5) as collector, serve(collector.url, log) as (process, url):
        stopped = traffic_then_sigterm(process, url, log)
        answered = collector.answered
    assert stopped.seconds <= GRACE + 1
    assert 0 < stopped.exported <= answered  # exported: answered, and the answer read
    assert stopped.failed == 0
    assert stopped.shutdown > 0  # six batches at 1.5 s each do not fit in 3 s
