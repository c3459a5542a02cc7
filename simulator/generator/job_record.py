"""What the job manager keeps of each generation and job, and how a job reads as a ``Job``.

Kept apart from the manager so the manager is about running jobs (admission, tasks,
forgetting) and this about describing them: live counts while a job runs, the scenario's
current phase and target, and the exact summary of a completed run, which the engine
returns already in the contract's shape and is served as it is.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime

from failure_lab.control import (
    GenerationMode,
    Job,
    JobMode,
    JobStats,
    JobStatus,
    JobSummary,
)
from simulator.generator.scenarios import ScenarioPlan
from simulator.generator.stats import LiveStats


@dataclass(slots=True, eq=False)
class Generation:
    mode: GenerationMode
    job_id: str | None = None
    target_rps: float | None = None
    queued: int = 0
    """Requests a single run or a burst asked for, held against the queue bound while it
    runs (a job's requests are bounded by its rate instead)."""
    live: LiveStats = field(default_factory=LiveStats)
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None
    result: JobSummary | None = None

    def elapsed(self) -> float:
        return (self.ended if self.ended is not None else time.perf_counter()) - self.started

    def achieved_rps(self) -> float:
        if self.result is not None:
            return self.result.achieved_rps
        elapsed = self.elapsed()
        return self.live.sent / elapsed if elapsed > 0 else 0.0


@dataclass(slots=True)
class JobRecord:
    generation: Generation
    mode: JobMode
    rps: float
    duration: float
    started_at: datetime
    plan: ScenarioPlan | None = None
    name: str | None = None
    workers: int = 1
    task: asyncio.Task[JobSummary] | None = None
    status: JobStatus = "running"
    error: str | None = None
    ended_at: datetime | None = None
    ended_clock: float | None = None

    def to_model(self) -> Job:
        live = self.generation.live
        running = self.status == "running"
        elapsed = self.generation.elapsed()
        plan = self.plan
        target = self.rps
        if plan is not None and running:
            target = plan.rate_at(elapsed)
        return Job(
            job_id=self.generation.job_id or "",
            mode=self.mode,
            status=self.status,
            rps=self.rps,
            duration=self.duration,
            started_at=self.started_at,
            ended_at=self.ended_at,
            error=self.error,
            scenario=plan.scenario if plan is not None else None,
            name=self.name,
            phase=plan.stage_at(elapsed).name if plan is not None and running else None,
            endpoints=list(plan.endpoints) if plan is not None else [],
            workers=self.workers,
            stats=JobStats(
                total=live.sent,
                succeeded=live.succeeded,
                failed=live.failed,
                dropped=live.dropped,
                late_sends=live.late_sends,
                avg_latency_ms=live.avg_latency_ms,
                current_rps=live.current_rps() if running else 0.0,
                target_rps=target,
                achieved_rps=self.generation.achieved_rps(),
            ),
            summary=self.generation.result,
        )
