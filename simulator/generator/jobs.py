"""Generations of traffic as the control API sees them: single, burst and sustained jobs.

A sustained job is an asyncio task running the engine's open-model loop; the manager bounds how
many run at once and how many finished ones it remembers, and can stop any of them. Every
generation (also a single request or a burst) is tracked so ``status()`` can say whether
anything is running and how many requests the running (or most recent) generation issued.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from simulator.generator.engine import TrafficEngine
from simulator.generator.stats import LiveStats, RunStats
from simulator.models import Job, JobStats, JobStatus, TrafficMode, TrafficResult, TrafficStatus
from simulator.options import PipelineOptions

CLOSE_TIMEOUT_S = 10.0


class TooManyJobs(Exception):
    """``max_active_jobs`` sustained jobs are already running."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"{limit} sustained job(s) already running (the limit, setting "
            "FAILURE_LAB_MAX_ACTIVE_JOBS); stop one first"
        )
        self.limit = limit


class JobNotFound(LookupError):
    """No job with that id (never existed, or forgotten among old finished jobs)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r} (unknown, or finished long enough ago to be dropped)")
        self.job_id = job_id


@dataclass(slots=True, eq=False)
class _Generation:
    mode: TrafficMode
    job_id: str | None = None
    target_rps: float | None = None
    live: LiveStats = field(default_factory=LiveStats)
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None
    result: RunStats | None = None

    def elapsed(self) -> float:
        return (self.ended if self.ended is not None else time.perf_counter()) - self.started

    def achieved_rps(self) -> float:
        if self.result is not None:
            return self.result.achieved_rps
        elapsed = self.elapsed()
        return self.live.sent / elapsed if elapsed > 0 else 0.0


@dataclass(slots=True)
class _JobRecord:
    generation: _Generation
    rps: float
    duration: float
    started_at: datetime
    task: asyncio.Task[RunStats] | None = None
    status: JobStatus = "running"
    ended_at: datetime | None = None

    def to_model(self) -> Job:
        live = self.generation.live
        return Job(
            job_id=self.generation.job_id or "",
            mode="sustained",
            status=self.status,
            rps=self.rps,
            duration=self.duration,
            started_at=self.started_at,
            ended_at=self.ended_at,
            stats=JobStats(
                total=live.sent,
                succeeded=live.succeeded,
                failed=live.failed,
                dropped=live.dropped,
                late_sends=live.late_sends,
                avg_latency_ms=live.avg_latency_ms,
                current_rps=live.current_rps() if self.status == "running" else 0.0,
                target_rps=self.rps,
                achieved_rps=self.generation.achieved_rps(),
            ),
        )


class JobManager:
    """Runs generations on one engine; owns the tasks of sustained jobs."""

    def __init__(
        self, engine: TrafficEngine, *, max_active_jobs: int, finished_jobs_kept: int
    ) -> None:
        if max_active_jobs < 1 or finished_jobs_kept < 1:
            raise ValueError("max_active_jobs and finished_jobs_kept must be >= 1")
        self._engine = engine
        self._max_active = max_active_jobs
        self._kept = finished_jobs_kept
        self._running: dict[str, _JobRecord] = {}
        self._finished: OrderedDict[str, _JobRecord] = OrderedDict()
        self._active: list[_Generation] = []
        self._latest: _Generation | None = None

    async def single(self, options: PipelineOptions) -> TrafficResult:
        generation = self._begin("single")
        try:
            return await self._engine.send(options, live=generation.live)
        finally:
            self._end(generation)

    async def burst(self, options: PipelineOptions, count: int) -> list[TrafficResult]:
        generation = self._begin("burst")
        try:
            return await self._engine.burst(options, count, live=generation.live)
        finally:
            self._end(generation)

    def start_sustained(self, options: PipelineOptions, rps: float, duration: float) -> Job:
        """Start a sustained job in the background; raises ``TooManyJobs`` at the limit."""
        if not (rps > 0 and math.isfinite(rps) and duration > 0 and math.isfinite(duration)):
            raise ValueError("rps and duration must be finite numbers > 0")
        if len(self._running) >= self._max_active:
            raise TooManyJobs(self._max_active)
        job_id = str(uuid.uuid4())
        record = _JobRecord(
            generation=self._begin("sustained", job_id=job_id, target_rps=rps),
            rps=rps,
            duration=duration,
            started_at=datetime.now(UTC),
        )
        self._running[job_id] = record
        try:
            task = asyncio.create_task(
                self._engine.run(
                    options,
                    rate=rps,
                    duration=duration,
                    job_id=job_id,
                    live=record.generation.live,
                ),
                name=f"failure-lab-job-{job_id}",
            )
        except BaseException:
            self._running.pop(job_id)
            self._end(record.generation)
            raise
        record.task = task
        task.add_done_callback(lambda done: self._finish(record, done))
        return record.to_model()

    def get(self, job_id: str) -> Job:
        record = self._running.get(job_id) or self._finished.get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record.to_model()

    def list(self) -> list[Job]:
        """Every known job, newest first."""
        records = [*self._running.values(), *self._finished.values()]
        records.sort(key=lambda record: record.generation.started, reverse=True)
        return [record.to_model() for record in records]

    async def stop(self, job_id: str) -> Job:
        """Cancel a running job and wait for it; a finished job is returned unchanged."""
        record = self._running.get(job_id)
        if record is None:
            return self.get(job_id)
        if record.task is not None:
            record.task.cancel()
            await asyncio.wait({record.task})
        return record.to_model()

    def status(self) -> TrafficStatus:
        generation = self._active[-1] if self._active else self._latest
        if generation is None:
            return TrafficStatus(active=False, count=0)
        live = generation.live
        return TrafficStatus(
            active=bool(self._active),
            count=live.sent,
            job_id=generation.job_id,
            mode=generation.mode,
            succeeded=live.succeeded,
            failed=live.failed,
            dropped=live.dropped,
            late_sends=live.late_sends,
            target_rps=generation.target_rps,
            achieved_rps=None if generation.mode == "single" else generation.achieved_rps(),
        )

    async def aclose(self) -> None:
        """Cancel every running job and wait (bounded) until their tasks are done."""
        tasks = [record.task for record in self._running.values() if record.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
        for record in list(self._running.values()):  # only if a task outlived the timeout
            record.status = "cancelled"
            record.ended_at = datetime.now(UTC)

    # -- internals ---------------------------------------------------------------------------

    def _begin(
        self, mode: TrafficMode, *, job_id: str | None = None, target_rps: float | None = None
    ) -> _Generation:
        generation = _Generation(mode, job_id=job_id, target_rps=target_rps)
        self._active.append(generation)
        self._latest = generation
        return generation

    def _end(self, generation: _Generation) -> None:
        generation.ended = time.perf_counter()
        if generation in self._active:
            self._active.remove(generation)

    def _finish(self, record: _JobRecord, task: asyncio.Task[RunStats]) -> None:
        if task.cancelled():
            record.status = "cancelled"
        elif task.exception() is not None:
            record.status = "error"
        else:
            record.status = "completed"
            record.generation.result = task.result()
        record.ended_at = datetime.now(UTC)
        self._end(record.generation)
        job_id = record.generation.job_id or ""
        self._running.pop(job_id, None)
        self._finished[job_id] = record
        while len(self._finished) > self._kept:
            self._finished.popitem(last=False)
