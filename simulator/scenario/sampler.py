"""The run over time: a sample every few seconds for the live view and the HTML report.

A phase's final figures come after it ends; while it runs, and for the charts, the runner
needs figures as they go. Every ``interval`` seconds the sampler asks the target for the
service's figures over the last few seconds (``/metrics/json`` and ``/v1/metrics/latency``
over ``SERIES_WINDOW``) and over the phase so far, reads its ``/metrics`` for the client's
latency and the cache (absent from the stack's shim: then None), and the breaker's state when
a phase has one. Each tick is one ``Sample`` kept for the report and one ``Live`` handed to
the observer, so the terminal and the report show the same numbers. A failed read leaves a
gap; it never stops the run.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol

from failure_lab.control import Job
from simulator.scenario.client import ContractClient
from simulator.scenario.report import Sample
from simulator.scenario.scrape import Delta, Scrape, ratio
from simulator.scenario.spec import Phase

SERIES_WINDOW = "5s"
MIN_PHASE_WINDOW_S = 2.0


@dataclass(frozen=True, slots=True)
class Live:
    """The running phase so far, as the live view shows it."""

    elapsed: float
    target_rps: float
    sent_rps: float
    sent: int
    failed: int
    dropped: int
    late_sends: int
    error_rate: float | None
    retry_amplification: float | None
    service_p99_ms: float | None
    client_p99_ms: float | None


class LiveObserver(Protocol):
    def live(self, index: int, phase: Phase, figures: Live) -> None: ...


def amplification(data: dict[str, Any] | None, window_s: float) -> float | None:
    if not data:
        return None
    requests = float(data["request_rate"]) * window_s
    return (requests + float(data["retry_count"])) / requests if requests > 0 else None


class Sampler:
    def __init__(self, client: ContractClient, interval: float, breaker: bool) -> None:
        self.samples: list[Sample] = []
        self.interval = interval
        self._client = client
        self._breaker = breaker
        self.started_wall = time.time()
        self._phase: tuple[int, Phase] | None = None
        self._began = 0.0
        self._phase_scrape: Scrape | None = None
        self._last_scrape: Scrape | None = None
        self._job: Job | None = None

    def begin(self, index: int, phase: Phase, scrape: Scrape | None) -> None:
        self._phase, self._began, self._job = (index, phase), time.monotonic(), None
        self._phase_scrape = self._last_scrape = scrape

    def job(self, job: Job) -> None:
        self._job = job

    def end(self) -> None:
        self._phase = None

    async def run(self, observer: LiveObserver) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self._phase is not None:
                await self.tick(observer)

    async def tick(self, observer: LiveObserver) -> None:
        assert self._phase is not None
        index, phase = self._phase
        elapsed = time.monotonic() - self._began
        window = {"window": SERIES_WINDOW}
        recent = await self._client.json("/metrics/json", window)
        latency = await self._client.json("/v1/metrics/latency", window)
        so_far = None
        if elapsed >= MIN_PHASE_WINDOW_S:
            so_far = await self._client.json("/metrics/json", {"window": f"{elapsed:.3f}"})
        breaker = await self._client.json("/v1/config/circuit-breaker") if self._breaker else None
        scrape = await self._client.scrape()
        if self._phase is None or self._phase[0] != index:
            return  # the phase ended while we asked
        sample = self._sample(phase, recent, latency, breaker, scrape)
        self.samples.append(sample)
        observer.live(index, phase, self._live(elapsed, so_far, scrape))
        if scrape is not None:
            self._last_scrape = scrape

    def _sample(
        self,
        phase: Phase,
        recent: dict[str, Any] | None,
        latency: dict[str, Any] | None,
        breaker: dict[str, Any] | None,
        scrape: Scrape | None,
    ) -> Sample:
        stats = None if self._job is None else self._job.stats
        has_requests = bool(recent and recent["request_rate"] > 0)
        sample = Sample(
            t=round(time.time() - self.started_wall, 3),
            phase=phase.name,
            target_rps=None if stats is None else stats.target_rps,
            sent_rps=None if stats is None else stats.current_rps,
            request_rate=None if recent is None else recent["request_rate"],
            error_rate=recent["error_rate"] if recent and has_requests else None,
            retry_amplification=amplification(recent, 5.0),
            p50_ms=(latency or {}).get("request", {}).get("p50") if has_requests else None,
            p95_ms=recent["p95_latency"] if recent and has_requests else None,
            p99_ms=recent["p99_latency"] if recent and has_requests else None,
            breaker_state=None if breaker is None else breaker.get("state"),
        )
        if scrape is not None and self._last_scrape is not None:
            delta = Delta(self._last_scrape, scrape)
            hits, lookups = delta.cache_gets()
            sample.client_p99_ms = delta.client_p99_ms("intended")
            sample.client_p99_uncorrected_ms = delta.client_p99_ms("actual")
            sample.cache_hit_ratio = ratio(hits, lookups)
        return sample

    def _live(self, elapsed: float, so_far: dict[str, Any] | None, scrape: Scrape | None) -> Live:
        job = self._job
        stats = None if job is None else job.stats
        client_p99 = None
        if scrape is not None and self._phase_scrape is not None:
            client_p99 = Delta(self._phase_scrape, scrape).client_p99_ms("intended")
        has_requests = bool(so_far and so_far["request_rate"] > 0)
        return Live(
            elapsed=elapsed,
            # The target now (it moves with a peak's ramps), else the job's rate; the rate sent
            # so far rather than over the last second, which flickers.
            target_rps=0.0 if job is None else (job.stats.target_rps or job.rps),
            sent_rps=0.0 if stats is None else stats.achieved_rps,
            sent=0 if stats is None else stats.total,
            failed=0 if stats is None else stats.failed,
            dropped=0 if stats is None else stats.dropped,
            late_sends=0 if stats is None else stats.late_sends,
            error_rate=so_far["error_rate"] if so_far and has_requests else None,
            retry_amplification=amplification(so_far, elapsed),
            service_p99_ms=so_far["p99_latency"] if so_far and has_requests else None,
            client_p99_ms=client_p99,
        )

    def open_seconds(self, phase: str) -> float | None:
        """Seconds the breaker was seen open or half-open in ``phase``, by sample."""
        states = [s.breaker_state for s in self.samples if s.phase == phase and s.breaker_state]
        if not states:
            return None
        return sum(self.interval for state in states if state != "closed")
