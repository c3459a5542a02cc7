"""Generations of traffic as the control API sees them: single, burst and background jobs.

A job (sustained at a constant rate, or a scenario's load shape) is an asyncio task running
the engine's open-model loop, or, asked for more than one worker, the same schedule split
over worker processes (``split.py``) and merged back; the manager bounds how many run at
once and their summed rate (the server's rate cap holds for all jobs together, not each),
forgets finished jobs after a while, and can stop any of them. Every generation (also a
single request or a burst) is tracked so ``status()`` can say whether anything is running
and how many requests the running (or most recent) generation issued.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from failure_lab.control import (
    GenerationMode,
    Job,
    JobMode,
    JobSummary,
    TrafficResult,
    TrafficStatus,
)
from simulator.generator.arrivals import sleep_until
from simulator.generator.engine import TrafficEngine
from simulator.generator.job_errors import JobNotFound, QueueFull, RateCapReached, TooManyJobs
from simulator.generator.job_record import Generation, JobRecord
from simulator.generator.job_spec import JobSpec
from simulator.generator.metrics import GeneratorMetrics
from simulator.generator.scenarios import ScenarioPlan
from simulator.generator.split import SplitRunner
from simulator.options import PipelineOptions

__all__ = ["JobManager", "JobNotFound", "QueueFull", "RateCapReached", "TooManyJobs"]

CLOSE_TIMEOUT_S = 10.0

logger = logging.getLogger(__name__)


class JobManager:
    """Runs generations on one engine; owns the tasks of background jobs.

    ``max_total_rps`` bounds the summed (peak) rate of the jobs running at once;
    finished jobs are forgotten ``finished_ttl_s`` after they ended, or sooner when more
    than ``finished_jobs_kept`` have finished since. Jobs asked for more than one worker
    run on ``split``; ``rng`` seeds their requests.
    """

    def __init__(
        self,
        engine: TrafficEngine,
        *,
        max_active_jobs: int,
        finished_jobs_kept: int,
        max_total_rps: float = math.inf,
        max_queued_requests: int = 2000,
        finished_ttl_s: float = 300.0,
        metrics: GeneratorMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        split: SplitRunner | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if max_active_jobs < 1 or finished_jobs_kept < 1:
            raise ValueError("max_active_jobs and finished_jobs_kept must be >= 1")
        if not (max_total_rps > 0 and finished_ttl_s > 0):
            raise ValueError("max_total_rps and finished_ttl_s must be > 0")
        self._engine = engine
        self._max_active = max_active_jobs
        self._kept = finished_jobs_kept
        self._max_total_rps = max_total_rps
        self._max_queued = max_queued_requests
        self._ttl = finished_ttl_s
        self._metrics = metrics
        self._clock = clock
        self._split = split
        self._rng = rng if rng is not None else random.Random()
        self._running: dict[str, JobRecord] = {}
        self._finished: OrderedDict[str, JobRecord] = OrderedDict()
        self._active: list[Generation] = []
        self._latest: Generation | None = None

    async def single(self, options: PipelineOptions) -> TrafficResult:
        generation = self._begin("single", queued=1)
        try:
            return await self._engine.send(options, live=generation.live)
        finally:
            self._end(generation)

    async def burst(self, options: PipelineOptions, count: int) -> list[TrafficResult]:
        """``count`` requests at once; ``QueueFull`` when the running single runs and bursts
        together would hold more than ``max_queued_requests``."""
        generation = self._begin("burst", queued=count)
        try:
            return await self._engine.burst(options, count, live=generation.live)
        finally:
            self._end(generation)

    def start_sustained(
        self, options: PipelineOptions, rps: float, duration: float, workers: int = 1
    ) -> Job:
        """Start a sustained job in the background, over ``workers`` processes.

        Raises ``TooManyJobs`` or ``RateCapReached`` when it cannot run next to the others.
        """
        if not (rps > 0 and math.isfinite(rps) and duration > 0 and math.isfinite(duration)):
            raise ValueError("rps and duration must be finite numbers > 0")
        split = self._splitter(workers)
        self._admit(rps)
        record = self._record("sustained", rps, duration, workers=workers)
        generation = record.generation
        if split is None:
            work = self._engine.run(
                options, rate=rps, duration=duration, job_id=generation.job_id, live=generation.live
            )
            return self._launch(record, work)
        seed = self._rng.getrandbits(64)
        spec = JobSpec.sustained(options, rps, duration, users=split.users, seed=seed)
        return self._launch(record, self._split_run(split, record, spec))

    def start_scenario(self, spec: JobSpec, name: str | None = None, workers: int = 1) -> Job:
        """Start a scenario job in the background, over ``workers`` processes; admitted at
        its peak rate. ``ValueError`` for a spec that cannot run."""
        plan = spec.plan()
        split = self._splitter(workers)
        self._admit(plan.peak_rps)
        record = self._record(
            "scenario", plan.peak_rps, plan.duration, plan=plan, name=name, workers=workers
        )
        generation = record.generation
        work: Awaitable[JobSummary]
        if split is None:
            work = self._engine.run(
                plan.options,
                rate=plan.rate,
                duration=plan.duration,
                job_id=generation.job_id,
                live=generation.live,
                requests=plan.requests,
            )
        else:
            work = self._split_run(split, record, spec)
        return self._launch(record, self._scenario(record, plan, work))

    def get(self, job_id: str) -> Job:
        self._prune()
        record = self._running.get(job_id) or self._finished.get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record.to_model()

    def list(self) -> list[Job]:
        """Every known job, newest first."""
        self._prune()
        records = [*self._running.values(), *self._finished.values()]
        records.sort(key=lambda record: record.generation.started, reverse=True)
        return [record.to_model() for record in records]

    async def wait(self, job_id: str, timeout: float) -> Job:
        """The job once it has finished, or after ``timeout`` seconds, whichever is first."""
        record = self._running.get(job_id)
        if record is not None and record.task is not None:
            await asyncio.wait({record.task}, timeout=timeout)
        return self.get(job_id)

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

    async def aclose(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Cancel every running job and wait up to ``timeout`` s until their tasks are done."""
        tasks = [record.task for record in self._running.values() if record.task is not None]
        for task in tasks:
            task.cancel()
        if tasks and timeout > 0:
            await asyncio.wait(tasks, timeout=timeout)
        for record in list(self._running.values()):  # only if a task outlived the timeout
            record.status = "cancelled"
            record.ended_at = datetime.now(UTC)

    # -- internals ---------------------------------------------------------------------------

    def _admit(self, rps: float) -> None:
        if len(self._running) >= self._max_active:
            raise TooManyJobs(self._max_active)
        running = {job_id: record.rps for job_id, record in self._running.items()}
        if sum(running.values()) + rps > self._max_total_rps * (1 + 1e-9):
            raise RateCapReached(rps, running, self._max_total_rps)

    def _record(
        self,
        mode: JobMode,
        rps: float,
        duration: float,
        *,
        plan: ScenarioPlan | None = None,
        name: str | None = None,
        workers: int = 1,
    ) -> JobRecord:
        job_id = str(uuid.uuid4())
        return JobRecord(
            generation=self._begin(mode, job_id=job_id, target_rps=rps),
            mode=mode,
            rps=rps,
            duration=duration,
            started_at=datetime.now(UTC),
            plan=plan,
            name=name,
            workers=workers,
        )

    def _launch(self, record: JobRecord, work: Coroutine[Any, Any, JobSummary]) -> Job:
        job_id = record.generation.job_id or ""
        self._running[job_id] = record
        try:
            task = asyncio.create_task(work, name=f"failure-lab-job-{job_id}")
        except BaseException:
            work.close()
            self._running.pop(job_id)
            self._end(record.generation)
            raise
        record.task = task
        task.add_done_callback(lambda done: self._finish(record, done))
        what = record.plan.scenario if record.plan is not None else record.mode
        label = f" ({record.name})" if record.name else ""
        over = f" over {record.workers} worker processes" if record.workers > 1 else ""
        logger.info(
            "job %s started: %s at %g req/s for %g s%s%s",
            job_id, what, record.rps, record.duration, over, label,
        )  # fmt: skip
        return record.to_model()

    def _splitter(self, workers: int) -> SplitRunner | None:
        """Where a job of ``workers`` processes runs: None for this process."""
        if workers < 1:
            raise ValueError("workers must be >= 1")
        if workers > 1 and self._split is None:
            raise ValueError("this job manager runs no worker processes")
        return self._split if workers > 1 else None

    async def _split_run(self, split: SplitRunner, record: JobRecord, spec: JobSpec) -> JobSummary:
        generation = record.generation

        def started(at: float) -> None:
            generation.started = at  # the schedule starts once every worker is ready

        result = await split.run(
            spec, record.workers, job_id=generation.job_id, live=generation.live, on_start=started
        )
        return result.summary

    async def _scenario(
        self, record: JobRecord, plan: ScenarioPlan, work: Awaitable[JobSummary]
    ) -> JobSummary:
        marker = asyncio.create_task(self._mark_stages(plan, record.generation))
        try:
            return await work
        finally:
            marker.cancel()
            await asyncio.wait({marker})

    async def _mark_stages(self, plan: ScenarioPlan, generation: Generation) -> None:
        """Holds the phase gauge at 1 for the stage the job is in, 0 once it has left it
        (from the job's start, which a split job moves once its workers are ready)."""
        if self._metrics is None:
            return
        for stage in plan.stages:
            child = self._metrics.scenario_phase.labels(plan.scenario, stage.name)
            child.inc()
            try:
                while (end := generation.started + stage.end) > time.perf_counter():
                    await sleep_until(end)
            finally:
                child.dec()

    def _begin(
        self,
        mode: GenerationMode,
        *,
        job_id: str | None = None,
        target_rps: float | None = None,
        queued: int = 0,
    ) -> Generation:
        if queued:
            held = sum(generation.queued for generation in self._active)
            if held + queued > self._max_queued:
                raise QueueFull(queued, held, self._max_queued)
        generation = Generation(mode, job_id=job_id, target_rps=target_rps, queued=queued)
        self._active.append(generation)
        self._latest = generation
        return generation

    def _end(self, generation: Generation) -> None:
        generation.ended = time.perf_counter()
        if generation in self._active:
            self._active.remove(generation)

    def _finish(self, record: JobRecord, task: asyncio.Task[JobSummary]) -> None:
        if task.cancelled():
            record.status = "cancelled"
            logger.info("job %s cancelled", record.generation.job_id)
        elif (error := task.exception()) is not None:
            record.status = "error"
            record.error = str(error) or type(error).__name__
            logger.error("job %s failed", record.generation.job_id, exc_info=error)
        else:
            record.status = "completed"
            record.generation.result = task.result()
            summary = record.generation.result
            logger.info(
                "job %s completed: %d sent, %d failed, %d dropped",
                record.generation.job_id, summary.sent, summary.failed, summary.dropped,
            )  # fmt: skip
        record.ended_at = datetime.now(UTC)
        record.ended_clock = self._clock()
        self._end(record.generation)
        job_id = record.generation.job_id or ""
        self._running.pop(job_id, None)
        self._finished[job_id] = record
        self._prune()

    def _prune(self) -> None:
        while len(self._finished) > self._kept:
            self._finished.popitem(last=False)
        horizon = self._clock() - self._ttl
        while self._finished:
            oldest = next(iter(self._finished.values()))
            if oldest.ended_clock is None or oldest.ended_clock > horizon:
                break
            self._finished.popitem(last=False)
