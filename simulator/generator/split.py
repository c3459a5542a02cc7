"""A job split over worker processes, run and merged so it reads as one.

One core sends about 4,000 requests a second through aiohttp and its instrumentation
(docs/benchmarks.md); past that, a job's arrivals are split over worker processes, each
sending its segment of the schedule (``segments.py``): worker i of N takes every N-th
arrival from the i-th, so the union is the one-process schedule. Workers are started per
job, as ``python -m simulator.generator.worker`` children with pipes (``wire.py``), and the
schedule starts at one instant once all are ready, so starting them (most of a second)
shifts the whole job, never part of it. Where the OS runs them is left to the OS.

While they run, each worker's running totals (every ``PROGRESS_INTERVAL_S``) are added to
this process's books as they change: the job's live counts (its ``stats`` and event stream),
the generator's tally (``/v1/traffic/statistics``), its Prometheus series (counters, the
histograms bucket by bucket, in flight, target rate) and, when spans are kept here, the
workers' client spans (``simulator/telemetry/relay.py``). At the end each worker hands back
its samples, bounded by its share of the planned count, and the summary is computed from
all of them: exact percentiles of every request, the slowest and most recent failed
requests of the whole job.

Stopping the job (stop, cancel, this process shutting down) tells every worker to stop and
waits for their last totals within the shutdown grace, then kills whatever is left; a worker
that exits or fails before it finished stops the others and ends the job in error, saying
which worker and why. A worker whose job's process disappears stops when its stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from failure_lab.control import JobSummary
from failure_lab.settings import Settings
from simulator.generator.arrivals import schedule
from simulator.generator.engine import TrafficEngine
from simulator.generator.job_spec import JobSpec
from simulator.generator.metrics import GeneratorMetrics
from simulator.generator.segments import Segment
from simulator.generator.stats import LiveStats, RunSamples
from simulator.generator.wire import (
    Failed,
    Finished,
    Progress,
    Ready,
    Start,
    Stop,
    WorkerTask,
    frame,
    read_message,
)
from simulator.telemetry.relay import deliver, local_processors

WORKER_MODULE: Final = "simulator.generator.worker"
READY_TIMEOUT_S: Final = 60.0
START_MARGIN_S: Final = 0.05
PIPE_LIMIT: Final = 1 << 20


class WorkerFailed(Exception):
    """A worker process exited, or failed, before it finished its segment."""


@dataclass(frozen=True, slots=True)
class SplitResult:
    summary: JobSummary
    cpu_seconds: tuple[float, ...]
    """CPU time each worker process used while it ran its segment."""


class _Process:
    """One worker process and its pipes."""

    def __init__(self, process: asyncio.subprocess.Process, label: str) -> None:
        self.process = process
        self.label = label

    @classmethod
    async def spawn(cls, label: str) -> _Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            WORKER_MODULE,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=PIPE_LIMIT,
        )
        return cls(process, label)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def send(self, message: object) -> None:
        stdin = self.process.stdin
        if stdin is None or stdin.is_closing():
            return
        with contextlib.suppress(ConnectionError, OSError):
            stdin.write(frame(message))
            await stdin.drain()

    async def receive(self) -> object:
        stdout = self.process.stdout
        if stdout is None:
            raise EOFError("no pipe")
        return await read_message(stdout)

    async def died(self) -> WorkerFailed:
        """Why the pipe closed: the exit status, once the process is gone."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), timeout=2.0)
        code = self.process.returncode
        how = "is still running" if code is None else f"exited with status {code}"
        return WorkerFailed(f"{self.label} (pid {self.pid}) {how} before it finished")

    async def reap(self, deadline: float) -> None:
        """Wait for it to exit until ``deadline`` (``time.monotonic``), then kill it."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), max(0.0, deadline - time.monotonic()))
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


class _Books:
    """Where the workers' totals land in this process, as they change."""

    def __init__(
        self,
        live: LiveStats,
        engine: TrafficEngine,
        metrics: GeneratorMetrics,
        provider: TracerProvider,
        relay_to: tuple[SpanProcessor, ...],
    ) -> None:
        self._live = live
        self._engine = engine
        self._metrics = metrics
        self._provider = provider
        self._relay_to = relay_to
        self._last: dict[int, Progress] = {}
        self._key = object()
        self.finished: dict[int, Finished] = {}

    def progress(self, index: int, now: Progress) -> None:
        before = self._last.get(index)
        self._last[index] = now
        self._live.add(now.live.minus(before.live) if before else now.live)
        self._live.outside_rps = sum(p.current_rps for p in self._last.values())
        tally = now.tally.minus(before.tally) if before else now.tally
        self._engine.tally.absorb(tally)
        metrics = self._metrics
        for counter, added in (
            (metrics.sent, tally.sent),
            (metrics.dropped, tally.dropped),
            (metrics.succeeded, tally.succeeded),
            (metrics.failed, tally.failed),
            (metrics.late_sends, tally.late_sends),
        ):
            if added:
                counter.inc(added)
        metrics.absorb(now.metrics, before.metrics if before else None)
        metrics.in_flight.inc(now.in_flight - (before.in_flight if before else 0))
        self._engine.hold_target(self._key, sum(p.target_rps for p in self._last.values()))
        deliver(now.spans, self._provider, self._relay_to)

    def close(self) -> None:
        """Take back what the workers still held: in flight, target rate, send rate."""
        self._metrics.in_flight.dec(sum(p.in_flight for p in self._last.values()))
        self._engine.release_target(self._key)
        self._live.outside_rps = 0.0

    @property
    def live(self) -> LiveStats:
        return self._live

    @property
    def last_send(self) -> float | None:
        sends = [p.tally.last_send for p in self._last.values() if p.tally.last_send is not None]
        return max(sends) if sends else None


class SplitRunner:
    """Runs jobs over worker processes for the engine of this process."""

    def __init__(
        self,
        settings: Settings,
        *,
        base_url: str,
        engine: TrafficEngine,
        metrics: GeneratorMetrics,
        tracer_provider: TracerProvider,
    ) -> None:
        self._settings = settings.model_copy(update={"api_token": None})
        self._base_url = base_url
        self._engine = engine
        self._metrics = metrics
        self._provider = tracer_provider

    @property
    def users(self) -> int:
        return self._settings.simulated_users

    async def run(
        self,
        spec: JobSpec,
        workers: int,
        *,
        job_id: str | None,
        live: LiveStats,
        on_start: Callable[[float], None] = lambda _at: None,
    ) -> SplitResult:
        """Run ``spec`` over ``workers`` processes; ``on_start`` hears the common start."""
        if workers < 1:
            raise ValueError("workers must be >= 1")
        plan = spec.plan()
        planned = schedule(plan.rate, plan.duration).planned
        relay_to = local_processors(self._provider)
        books = _Books(live, self._engine, self._metrics, self._provider, relay_to)
        processes: list[_Process] = []
        grace = self._settings.shutdown_grace_seconds
        try:
            for segment in Segment.all(workers):
                process = await _Process.spawn(f"worker {segment.index + 1} of {workers}")
                processes.append(process)
                task = WorkerTask(
                    self._settings, self._base_url, spec, segment, job_id, bool(relay_to)
                )
                await process.send(task)
            await _ready(processes)
            at = time.perf_counter() + START_MARGIN_S
            on_start(at)
            for process in processes:
                await process.send(Start(at))
            await _follow_all(processes, books, grace)
            return _result(planned, self._settings.run_samples_max, spec.duration, books, at)
        finally:  # finished: they exit once their spans are flushed; else, already stopped
            await _reap(processes, time.monotonic() + grace)
            books.close()


async def _ready(processes: list[_Process]) -> None:
    async def one(process: _Process) -> None:
        try:
            message = await process.receive()
        except EOFError:
            raise await process.died() from None
        if isinstance(message, Failed):
            raise WorkerFailed(f"{process.label}: {message.message}")
        if not isinstance(message, Ready):
            raise WorkerFailed(f"{process.label} said {type(message).__name__} first")

    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await asyncio.gather(*(one(process) for process in processes))
    except TimeoutError:
        raise WorkerFailed(f"workers not ready within {READY_TIMEOUT_S:g} s") from None


async def _follow(index: int, process: _Process, books: _Books) -> None:
    while True:
        try:
            message = await process.receive()
        except EOFError:
            raise await process.died() from None
        if isinstance(message, Progress):
            books.progress(index, message)
        elif isinstance(message, Finished):
            books.finished[index] = message
            return
        elif isinstance(message, Failed):
            raise WorkerFailed(f"{process.label}: {message.message}")


async def _follow_all(processes: list[_Process], books: _Books, grace: float) -> None:
    """Until every worker finished. Stopped (or one failing), every worker is told to stop,
    their last totals are awaited and they are reaped, all within ``grace`` seconds."""
    followers = [
        asyncio.create_task(_follow(index, process, books))
        for index, process in enumerate(processes)
    ]
    try:
        done, _pending = await asyncio.wait(followers, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    except BaseException:
        deadline = time.monotonic() + grace
        for process in processes:
            await process.send(Stop())
        running = [task for task in followers if not task.done()]
        if running:
            await asyncio.wait(running, timeout=max(0.0, deadline - time.monotonic()))
        for task in followers:
            task.cancel()
        await asyncio.wait(followers)
        await _reap(processes, deadline)
        raise


async def _reap(processes: list[_Process], deadline: float) -> None:
    await asyncio.gather(*(process.reap(deadline) for process in processes))


def _result(
    planned: int, max_samples: int, duration: float, books: _Books, at: float
) -> SplitResult:
    samples = RunSamples(min(planned, max_samples))
    finished = [books.finished[index] for index in sorted(books.finished)]
    for report in finished:
        if report.samples is not None:
            samples.absorb(report.samples)
    ended = max((report.ended for report in finished), default=time.perf_counter())
    last_send = books.last_send
    window = max(duration, (last_send if last_send is not None else at) - at)
    summary = samples.summarise(books.live, planned=planned, elapsed=ended - at, send_window=window)
    return SplitResult(summary, tuple(report.cpu_seconds for report in finished))
