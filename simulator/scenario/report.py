"""What ``failure-lab run`` writes: the JSON report of one scenario run.

Two kinds of figures sit side by side in each phase, and the report says which is which.
``generator``: the phase's job summary exactly as the job API serves it (``JobSummary``, the
type the engine builds), exact over every request it sent: achieved rate, latency percentiles
corrected and uncorrected for coordinated omission, the slowest and the failed request ids,
whose traces ``/v1/trace/{request_id}`` shows. ``service``: read from the metrics source
(``/metrics/json`` over each phase's window), which the checks are evaluated on, so a
verdict says the same as the dashboards. Figures derived from the summary are computed here,
from it, rather than copied next to it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, computed_field

from failure_lab.control import DisruptionType, JobStatus, JobSummary, ScenarioName
from simulator.scenario.verdict import CheckResult


class ServiceFigures(BaseModel):
    """The service's figures over a window, as ``/metrics/json?window=&at=`` gives them."""

    window_seconds: float
    window_end: datetime
    request_rate: float = Field(description="req/s")
    error_rate: float | None = Field(description="5xx and 429 over all; None without requests")
    retry_count: float
    retry_amplification: float | None = Field(
        description="(requests + retries) / requests; None without requests"
    )
    p95_ms: float | None
    p99_ms: float | None


class DisruptionRecord(BaseModel):
    disruption_id: str
    type: DisruptionType
    severity: float
    at_seconds: float = Field(description="Seconds into the phase.")
    duration_seconds: float
    started_at: datetime


class PhaseReport(BaseModel):
    name: str
    scenario: ScenarioName
    job_id: str
    status: JobStatus
    started_at: datetime
    ended_at: datetime
    duration_seconds: float
    rps: float = Field(description="The job's rate: the phase's (peak) rate.")
    generator: JobSummary = Field(description="The job's summary, as the job API serves it.")
    service: ServiceFigures
    disruptions: list[DisruptionRecord]

    @computed_field(description="sent / planned; None when nothing was planned")  # type: ignore[prop-decorator]
    @property
    def achieved_rate_ratio(self) -> float | None:
        planned = self.generator.planned
        return self.generator.sent / planned if planned else None

    @computed_field(description="failed / finished, as sent; None when none finished")  # type: ignore[prop-decorator]
    @property
    def generator_error_rate(self) -> float | None:
        finished = self.generator.succeeded + self.generator.failed
        return self.generator.failed / finished if finished else None


class WholeRun(BaseModel):
    achieved_rate_ratio: float | None
    service: ServiceFigures


class RunReport(BaseModel):
    scenario: str
    description: str | None
    file: str
    target: str
    started_at: datetime
    ended_at: datetime
    verdict: Literal["pass", "fail"]
    checks: list[CheckResult]
    phases: list[PhaseReport]
    whole_run: WholeRun
