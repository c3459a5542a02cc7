"""The control contract of seed 000 as pydantic models.

Field names and types follow ``seeds/000`` exactly; validation bounds come from DESIGN.md
section 4. Requests are strict (unknown fields and wrong types are refused with 422) so a
typo never silently falls back to a default. Bounds that depend on settings (caps) are
checked by the service layer, which names the setting that raises them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

RateLimitAlgorithm = Literal["token_bucket", "leaky_bucket", "fixed_window", "sliding_window"]
TrafficMode = Literal["single", "burst", "sustained"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RequestPayload(_Request):
    """How the simulated pipeline treats the generated requests."""

    rate_of_requests: float = Field(ge=0, description="Default rps for sustained mode.")
    number_of_requests: int = Field(ge=1, description="Default count for burst mode.")
    retries_enabled: bool
    rate_limiting: float = Field(ge=0, description="Allowed req/s; 0 turns the limiter off.")
    rate_limiting_algo: RateLimitAlgorithm
    cache_enabled: bool
    cache_ttl: float = Field(ge=0, description="Seconds a cached read stays fresh.")
    db_latency: float = Field(ge=0, description="Base database latency in ms.")


class TrafficRequest(_Request):
    mode: TrafficMode
    count: int | None = Field(default=None, ge=1)
    rps: float | None = Field(default=None, gt=0)
    duration: float | None = Field(default=None, gt=0)
    payload: RequestPayload

    @model_validator(mode="after")
    def _sustained_needs_a_rate(self) -> Self:
        if self.mode == "sustained" and self.rps is None and self.payload.rate_of_requests <= 0:
            raise ValueError("sustained mode needs rps > 0 (or payload.rate_of_requests > 0)")
        if self.mode == "sustained" and self.duration is None:
            raise ValueError("sustained mode needs duration (seconds)")
        return self

    @property
    def effective_count(self) -> int:
        return self.count if self.count is not None else self.payload.number_of_requests

    @property
    def effective_rps(self) -> float:
        return self.rps if self.rps is not None else self.payload.rate_of_requests


class TrafficResult(BaseModel):
    """One generated request as the generator saw it."""

    request_id: str = Field(description="UUID form of the request's OpenTelemetry trace id.")
    status: Literal["success", "failure"]
    latency_ms: float = Field(description="From the intended send time (no coordinated omission).")
    timestamp: str = Field(description="Intended send time, ISO 8601 UTC.")
    http_status: int | None = Field(description="None when no response arrived.")
    endpoint: str
    method: str
    retry_count: int
    service_latency_ms: float = Field(description="From the actual send time.")
    send_lag_ms: float = Field(description="Actual minus intended send time.")
    error: str | None = None


class TrafficStatus(BaseModel):
    active: bool
    count: int = Field(description="Requests issued by the running (or most recent) generation.")
    job_id: str | None = None
    mode: TrafficMode | None = None
    succeeded: int = 0
    failed: int = 0
    dropped: int = 0
    late_sends: int = 0
    target_rps: float | None = None
    achieved_rps: float | None = None


class FailureConfig(_Request):
    """Faults applied to every request. A PUT replaces it whole, so every field is required."""

    failure_injection_enabled: bool
    failure_rate: float = Field(ge=0, le=1)
    db_latency_min_ms: float = Field(ge=0)
    db_latency_max_ms: float = Field(ge=0)
    db_timeout_seconds: float = Field(gt=0)
    redis_timeout_seconds: float = Field(gt=0)
    max_retries: int = Field(ge=0)

    @model_validator(mode="after")
    def _min_le_max(self) -> Self:
        if self.db_latency_min_ms > self.db_latency_max_ms:
            raise ValueError("db_latency_min_ms must not exceed db_latency_max_ms")
        return self

    @classmethod
    def defaults(cls) -> FailureConfig:
        """What a fresh simulator applies: a healthy database, failure injection off."""
        return cls(
            failure_injection_enabled=False,
            failure_rate=0.1,
            db_latency_min_ms=5.0,
            db_latency_max_ms=20.0,
            db_timeout_seconds=1.0,
            redis_timeout_seconds=0.05,
            max_retries=3,
        )


JobStatus = Literal["running", "completed", "cancelled", "error"]


class JobStats(BaseModel):
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    dropped: int = 0
    late_sends: int = 0
    avg_latency_ms: float | None = None
    current_rps: float = 0.0
    target_rps: float = 0.0
    achieved_rps: float = 0.0


class Job(BaseModel):
    job_id: str
    mode: TrafficMode
    status: JobStatus
    rps: float
    duration: float
    started_at: datetime
    ended_at: datetime | None = None
    stats: JobStats


class CircuitBreakerConfig(_Request):
    """The database circuit breaker of this process; a PUT replaces it whole."""

    enabled: bool
    failure_threshold: int = Field(
        ge=1, le=10_000, description="Consecutive failed database attempts that open it."
    )
    open_seconds: float = Field(
        gt=0, le=3600, description="Seconds it stays open before one probe is let through."
    )


class CircuitBreakerStatus(BaseModel):
    enabled: bool
    failure_threshold: int
    open_seconds: float
    state: Literal["closed", "open", "half_open"]
    consecutive_failures: int
    trips: int = Field(description="Times it opened since this process started.")


DisruptionType = Literal[
    "db_outage", "db_latency_spike", "cache_outage", "error_burst", "rate_limit_squeeze"
]
DisruptionStatus = Literal["active", "expired", "cancelled"]
# Route templates of the simulated user API, the endpoints a disruption can target.
UserRoute = Literal["/api/v1/users", "/api/v1/users/{id}", "/api/v1/users/error"]


class DisruptionRequest(_Request):
    """A time-boxed disruption; ``endpoints`` are route templates, default all of them.

    Whether the endpoints exist and the duration is under its cap is checked by the
    service layer, which knows the routes and the settings.
    """

    type: DisruptionType
    severity: float = Field(ge=0, le=1)
    duration_seconds: float = Field(gt=0)
    endpoints: list[UserRoute] | None = Field(default=None, min_length=1, max_length=20)


class Disruption(BaseModel):
    disruption_id: str
    type: DisruptionType
    severity: float
    endpoints: list[str]
    created_at: datetime
    active_until: datetime
    time_remaining_seconds: float
    requests_affected: int
    status: DisruptionStatus
    ended_at: datetime | None = None


class DisruptionList(BaseModel):
    disruptions: list[Disruption]
    count: int
    timestamp: datetime


class DisruptionsCleared(BaseModel):
    cleared: int
    message: str
    disruptions: list[Disruption]
