"""What ``failure-lab run`` writes: the JSON report of one scenario run.

Two kinds of figures sit side by side, and the report says which is which. The generator's
own, exact over every request it sent (achieved rate, latency percentiles corrected and
uncorrected for coordinated omission, the slowest and the failed request ids, whose traces
``/v1/trace/{request_id}`` shows); and the service's, read from the metrics source
(``/metrics/json`` over each phase's window), which the checks are evaluated on, so a
verdict says the same as the dashboards.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from simulator.models import DisruptionType, Percentiles, ScenarioName, SlowRequest
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


class GeneratorLatency(BaseModel):
    corrected: Percentiles = Field(description="From the intended send time.")
    uncorrected: Percentiles = Field(description="From the actual send time.")


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
    status: str
    started_at: datetime
    ended_at: datetime
    duration_seconds: float
    target_rps: float = Field(description="The phase's (peak) rate.")
    planned: int = Field(description="Requests the load shape asked for.")
    sent: int
    dropped: int
    succeeded: int
    failed: int
    late_sends: int
    achieved_rps: float
    achieved_rate_ratio: float | None = Field(description="sent / planned")
    generator_error_rate: float | None = Field(description="failed / finished, as sent")
    latency_ms: GeneratorLatency
    send_lag_ms: Percentiles
    slowest: list[SlowRequest]
    failed_request_ids: list[str]
    service: ServiceFigures
    disruptions: list[DisruptionRecord]


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
