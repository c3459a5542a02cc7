"""vegeta, an open-model load tool, as the traffic generator's peer in ``bench/generator.py``.

k6's constant-arrival-rate executor would be the natural peer, but k6 is AGPL-licensed and is
not built here; vegeta (MIT, Go) has the same model: requests are due at a constant rate
whatever the answers do, on a bounded pool of workers. It runs pinned to the generator's core
with ``GOMAXPROCS=1``, against the same endpoint, sending the same rotation of requests the
generator plans (methods, paths and JSON bodies), with at most as many requests in flight.
Its figures come from its own results: ``vegeta encode`` gives each request's sequence number
and actual send time, so start lag is the send time minus ``t0 + seq / rate`` (``t0`` the
earliest origin no send precedes), as the generator measures it; CPU is the process's own
(``wait4``).
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.common import LOAD_CORE, backend, pinned
from simulator.generator.planner import PlannedRequest

TARGETS = 10_000
"""Planned requests written as vegeta targets; vegeta cycles through them in order."""


@dataclass(frozen=True)
class VegetaStep:
    rate: float
    seconds: float
    sent: int
    planned: int
    achieved_rps: float
    lag_p50_ms: float
    lag_p99_ms: float
    latency_p50_ms: float
    latency_p99_ms: float
    cpu_per_request_us: float
    cpu_share: float
    errors: int

    @property
    def ratio(self) -> float:
        return self.achieved_rps / self.rate

    @property
    def dropped(self) -> int:
        """Due within the run but never sent (vegeta delays rather than drops: same thing
        for an open model, the request is not sent when it was due)."""
        return max(0, self.planned - self.sent)


def write_targets(url: str, requests: Iterable[PlannedRequest], path: Path) -> None:
    with path.open("w") as out:
        for planned in requests:
            target: dict[str, object] = {
                "method": planned.method,
                "url": url + planned.path,
                "header": {"Content-Type": ["application/json"]},
            }
            if planned.json is not None:
                target["body"] = base64.b64encode(json.dumps(planned.json).encode()).decode()
            out.write(json.dumps(target) + "\n")


def attack(targets: Path, rate: float, seconds: float, max_in_flight: int) -> VegetaStep:
    vegeta = backend("vegeta")
    with tempfile.TemporaryDirectory(prefix="vegeta-") as work:
        results = Path(work) / "results.bin"
        command = [
            vegeta,
            "attack",
            "-format=json",
            f"-targets={targets}",
            f"-rate={rate:g}/s",
            f"-duration={seconds:g}s",
            f"-max-workers={max_in_flight}",
            f"-max-connections={max_in_flight}",
            "-timeout=10s",
            f"-output={results}",
        ]
        process = subprocess.Popen(
            pinned(command, LOAD_CORE), env={**os.environ, "GOMAXPROCS": "1"}
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise SystemExit(f"vegeta attack exited with {process.returncode}")
        encoded = subprocess.run(
            [vegeta, "encode", "--to", "json", str(results)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    cpu = usage.ru_utime + usage.ru_stime
    return summarise(encoded.splitlines(), rate, seconds, cpu)


def summarise(lines: list[str], rate: float, seconds: float, cpu: float) -> VegetaStep:
    records = [json.loads(line) for line in lines if line.strip()]
    records.sort(key=lambda record: record["seq"])
    sent = len(records)
    if not sent:
        raise SystemExit("vegeta sent nothing")
    starts = [_seconds(record["timestamp"]) for record in records]
    # The schedule's origin: the earliest one consistent with every send (no send is early).
    t0 = min(start - record["seq"] / rate for start, record in zip(starts, records, strict=True))
    lags = sorted(
        (start - (t0 + record["seq"] / rate)) * 1000
        for start, record in zip(starts, records, strict=True)
    )
    latencies = sorted(record["latency"] / 1e6 for record in records)
    span = max(starts) - min(starts)
    return VegetaStep(
        rate=rate,
        seconds=seconds,
        sent=sent,
        planned=round(rate * seconds),
        achieved_rps=sent / seconds if span < seconds else sent / span,
        lag_p50_ms=_quantile(lags, 0.50),
        lag_p99_ms=_quantile(lags, 0.99),
        latency_p50_ms=_quantile(latencies, 0.50),
        latency_p99_ms=_quantile(latencies, 0.99),
        cpu_per_request_us=cpu / sent * 1e6,
        cpu_share=cpu / seconds,
        errors=sum(1 for record in records if not 200 <= record["code"] < 400),
    )


def _seconds(timestamp: str) -> float:
    """An RFC 3339 time with up to nine fraction digits, as Unix seconds."""
    head, _, rest = timestamp.partition(".")
    digits = "".join(ch for ch in rest if ch.isdigit())
    zone = rest[len(digits) :]
    whole = datetime.fromisoformat(head + (zone.replace("Z", "+00:00") or "+00:00"))
    return whole.timestamp() + (int(digits) / 10 ** len(digits) if digits else 0.0)


def _quantile(ordered: list[float], q: float) -> float:
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=1000, method="inclusive")[round(q * 1000) - 1]


def late_count(step: VegetaStep) -> str:
    return "-"  # vegeta does not say which sends were late; the lag percentiles do


def row(step: VegetaStep) -> str:
    """A line in the columns of ``bench/generator.py``'s table."""
    return (
        f"{'vegeta':<8} {step.rate:>7g} {step.achieved_rps:>9.1f} {step.ratio:>6.3f} "
        f"{step.sent:>7} {step.dropped:>7} {late_count(step):>6} {step.lag_p50_ms:>8.2f} "
        f"{step.lag_p99_ms:>8.2f} {step.latency_p50_ms:>8.2f} {step.latency_p99_ms:>8.2f} "
        f"{step.cpu_share:>5.0%} {step.cpu_per_request_us:>6.0f} {'-':>6}"
    )


def held(step: VegetaStep, hold_ratio: float) -> bool:
    return step.ratio >= hold_ratio and step.dropped <= step.planned * (1 - hold_ratio)


def climb(
    url: str,
    requests: Iterable[PlannedRequest],
    rates: list[float],
    ceiling: list[float],
    seconds: float,
    max_in_flight: int,
    hold_ratio: float,
) -> tuple[list[VegetaStep], list[VegetaStep], float | None]:
    """Fixed rates, then the ceiling climb until vegeta stops keeping up, as the generator's
    own steps run; each step is printed as it ends."""
    with tempfile.TemporaryDirectory(prefix="vegeta-targets-") as work:
        targets = Path(work) / "targets.json"
        write_targets(url, requests, targets)
        fixed = []
        for rate in rates:
            fixed.append(attack(targets, rate, seconds, max_in_flight))
            print(row(fixed[-1]), flush=True)
        climbed: list[VegetaStep] = []
        highest: float | None = None
        for rate in ceiling:
            climbed.append(attack(targets, rate, seconds, max_in_flight))
            print(row(climbed[-1]), flush=True)
            if not held(climbed[-1], hold_ratio):
                break
            highest = rate
    return fixed, climbed, highest
