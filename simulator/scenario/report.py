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

from failure_lab.contract import TraceResponse
from failure_lab.control import DisruptionType, JobStatus, JobSummary, ScenarioName
from simulator.scenario.verdict import CheckResult

PredictedFigure = Literal[
    "retry_amplification",
    "error_rate",
    "rate_limited_fraction",
    "cache_hit_ratio",
    "breaker_open_seconds",
]
AGREEMENT_SIGMAS = 3.0


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


class Prediction(BaseModel):
    """A figure the model predicts (``predict.py``), beside its measurement."""

    figure: PredictedFigure
    predicted: float
    measured: float | None = Field(description="None when the target does not expose it")
    draws: float | None = Field(description="requests (or cache reads) the measurement is over")
    error_bar: float | None = Field(
        description="one standard error of the measurement under the model, from the draws; "
        "for breaker_open_seconds the sampling interval"
    )
    formula: str
    assumptions: str
    caveat: str | None = Field(
        default=None, description="an assumption this phase breaks, said before the run"
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def gap(self) -> float | None:
        return None if self.measured is None else self.measured - self.predicted

    @computed_field(description="|gap| within 3 error bars (None without a measurement)")  # type: ignore[prop-decorator]
    @property
    def agrees(self) -> bool | None:
        if self.gap is None or self.error_bar is None:
            return None
        return abs(self.gap) <= AGREEMENT_SIGMAS * self.error_bar + 1e-9


class Sample(BaseModel):
    """The run at one instant, sampled every few seconds; figures over the last few seconds
    (the service's from ``/metrics/json``, the client's and the cache's from ``/metrics``)."""

    t: float = Field(description="seconds since the run started")
    phase: str
    target_rps: float | None = None
    sent_rps: float | None = None
    request_rate: float | None = None
    error_rate: float | None = None
    retry_amplification: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    client_p99_ms: float | None = Field(default=None, description="corrected: intended send")
    client_p99_uncorrected_ms: float | None = Field(default=None, description="actual send")
    cache_hit_ratio: float | None = None
    breaker_state: str | None = None


class StoredTrace(BaseModel):
    """A request's trace as ``GET /v1/trace/{request_id}`` gave it during the run."""

    request_id: str
    trace_id: str = Field(description="the same id as Jaeger writes it: 32 hex digits")
    phase: str
    why: Literal["slowest", "failed"]
    trace: TraceResponse


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
    plan: list[str] = Field(default_factory=list, description="the phase in words, as planned")
    predictions: list[Prediction] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list, description="the generator's trouble")
    cache_hit_ratio: float | None = Field(
        default=None, description="hits over cache lookups in the phase (serve only)"
    )
    rate_limited_fraction: float | None = Field(
        default=None, description="429s over requests in the phase (serve only)"
    )
    traces: list[StoredTrace] = Field(
        default_factory=list, description="a few of its slowest and failed requests' traces"
    )

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
    verdict: Literal["pass", "fail", "interrupted"]
    checks: list[CheckResult]
    phases: list[PhaseReport]
    whole_run: WholeRun | None = Field(description="None when the run was interrupted")
    conclusion: list[str] = Field(default_factory=list, description="what the figures say")
    samples: list[Sample] = Field(default_factory=list, description="the run over time")
    interrupted: bool = False
