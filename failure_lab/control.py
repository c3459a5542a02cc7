"""The control contract of docs/api.md as pydantic models.

The simulator serves these, the stack-mode shim forwards them (and documents each forwarded
route with them), and ``failure-lab run`` parses them: one definition for all three, kept
on neither side.

Field names and types are the contract's; validation bounds are the ones docs/api.md states.
Requests are strict (``StrictRequest``: unknown fields and wrong types are refused with 422,
so a typo never silently falls back to a default) and every number is finite. A bound that
depends on settings (a cap) is declared on its field as ``SettingBound`` and checked at the
API edge by :func:`failure_lab.bounds.check_bounds`, which names the setting that raises it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, model_validator

from failure_lab.bounds import SettingBound
from failure_lab.strict import StrictRequest

RateLimitAlgorithm = Literal["token_bucket", "leaky_bucket", "fixed_window", "sliding_window"]
TrafficMode = Literal["single", "burst", "sustained"]
JobMode = Literal["sustained", "scenario"]
GenerationMode = Literal["single", "burst", "sustained", "scenario"]
ScenarioName = Literal["normal", "peak", "error_injection", "latency_degradation", "stress"]
# Route keys of the simulated user API the generator can send to ("METHOD template").
EndpointKey = Literal[
    "GET /api/v1/users/{id}",
    "GET /api/v1/users",
    "POST /api/v1/users",
    "PATCH /api/v1/users/{id}",
    "GET /api/v1/users/error",
]


WORKERS_DESCRIPTION = (
    "Worker processes the job's arrivals are split over (worker i of N sends every N-th "
    "request, from the i-th); their results are merged into one job."
)


class RequestPayload(StrictRequest):
    """How the simulated pipeline treats the generated requests."""

    rate_of_requests: Annotated[float, SettingBound("max_rps")] = Field(
        ge=0, description="Default rps for sustained mode."
    )
    number_of_requests: Annotated[int, SettingBound("max_burst_count")] = Field(
        ge=1, description="Default count for burst mode."
    )
    retries_enabled: bool
    rate_limiting: Annotated[float, SettingBound("max_rate_limit")] = Field(
        ge=0, description="Allowed req/s; 0 turns the limiter off."
    )
    rate_limiting_algo: RateLimitAlgorithm
    cache_enabled: bool
    cache_ttl: Annotated[float, SettingBound("max_cache_ttl_seconds")] = Field(
        ge=0, description="Seconds a cached read stays fresh."
    )
    db_latency: Annotated[float, SettingBound("max_db_latency_ms")] = Field(
        ge=0, description="Database latency in ms added to every query."
    )


class TrafficRequest(StrictRequest):
    mode: TrafficMode
    count: Annotated[int | None, SettingBound("max_burst_count")] = Field(default=None, ge=1)
    rps: Annotated[float | None, SettingBound("max_rps")] = Field(default=None, gt=0)
    duration: Annotated[float | None, SettingBound("max_duration_seconds")] = Field(
        default=None, gt=0
    )
    payload: RequestPayload
    workers: Annotated[int, SettingBound("max_workers")] = Field(
        default=1, ge=1, description=WORKERS_DESCRIPTION + " Sustained mode only."
    )

    @model_validator(mode="after")
    def _sustained_needs_a_rate(self) -> Self:
        if self.mode == "sustained" and self.rps is None and self.payload.rate_of_requests <= 0:
            raise ValueError("sustained mode needs rps > 0 (or payload.rate_of_requests > 0)")
        if self.mode == "sustained" and self.duration is None:
            raise ValueError("sustained mode needs duration (seconds)")
        if self.mode != "sustained" and self.workers != 1:
            raise ValueError("workers applies to sustained mode only")
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
    mode: GenerationMode | None = None
    succeeded: int = 0
    failed: int = 0
    dropped: int = 0
    late_sends: int = 0
    target_rps: float | None = None
    achieved_rps: float | None = None


class FailureConfig(StrictRequest):
    """Faults applied to every request. A PUT replaces it whole, so every field is required."""

    failure_injection_enabled: bool
    failure_rate: float = Field(ge=0, le=1)
    db_latency_min_ms: Annotated[float, SettingBound("max_db_latency_ms")] = Field(ge=0)
    db_latency_max_ms: Annotated[float, SettingBound("max_db_latency_ms")] = Field(ge=0)
    db_timeout_seconds: Annotated[float, SettingBound("max_db_timeout_seconds")] = Field(gt=0)
    redis_timeout_seconds: Annotated[float, SettingBound("max_redis_timeout_seconds")] = Field(gt=0)
    max_retries: Annotated[int, SettingBound("max_retries_cap")] = Field(ge=0)

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
    target_rps: float = Field(
        default=0.0, description="The rate asked for now; once finished, the job's (peak) rate."
    )
    achieved_rps: float = 0.0


class Percentiles(BaseModel):
    p50: float | None
    p95: float | None
    p99: float | None


class SlowRequest(BaseModel):
    request_id: str
    latency_ms: float


class JobSummary(BaseModel):
    """A finished job's exact figures, from every request it sent (not from histograms)."""

    planned: int = Field(description="Requests the rate shape asked for.")
    sent: int
    dropped: int
    succeeded: int
    failed: int
    late_sends: int
    elapsed_seconds: float
    achieved_rps: float = Field(description="Sent over the sending window.")
    latency_ms: Percentiles = Field(
        description="From the intended send time: corrected for coordinated omission."
    )
    service_latency_ms: Percentiles = Field(
        description="From the actual send time: what a closed-loop client would report."
    )
    send_lag_ms: Percentiles
    slowest: list[SlowRequest] = Field(description="The slowest requests, slowest first.")
    failed_request_ids: list[str] = Field(description="The most recent failed requests.")


class Job(BaseModel):
    job_id: str
    mode: JobMode
    status: JobStatus
    rps: float = Field(description="Constant rate, or a scenario's peak rate.")
    duration: float
    started_at: datetime
    ended_at: datetime | None = None
    error: str | None = Field(default=None, description="Why it ended in error.")
    scenario: ScenarioName | None = None
    name: str | None = None
    phase: str | None = Field(
        default=None, description="The scenario's current phase (peak: ramp_up, hold, ramp_down)."
    )
    endpoints: list[str] = Field(default_factory=list)
    workers: int = Field(default=1, description="Processes sending its requests.")
    stats: JobStats
    summary: JobSummary | None = Field(default=None, description="Once the job has completed.")


class ScenarioJobRequest(StrictRequest):
    """A scenario job: a named load shape over the user API.

    ``normal`` holds ``max_rps``; ``peak`` ramps 0 to ``max_rps`` over the first quarter,
    holds, and ramps back down over the last; ``error_injection`` sends 30 % of its requests
    to the error endpoint (errorRate 0.5); ``latency_degradation`` adds database latency
    growing linearly over the run; ``stress`` goes straight to ``max_rps``, by default the
    server's cap.
    """

    scenario: ScenarioName
    duration: Annotated[float, SettingBound("max_duration_seconds")] = Field(
        gt=0, description="Seconds."
    )
    max_rps: Annotated[float | None, SettingBound("max_rps")] = Field(
        default=None, gt=0, description="Peak rate; default 20 (stress: the server's cap)."
    )
    endpoints: (
        Literal["all"]
        | Annotated[
            list[EndpointKey], Field(json_schema_extra={"minItems": 1, "uniqueItems": True})
        ]
    ) = Field(
        default="all", description='"all" (the read-heavy rotation) or route keys to rotate over.'
    )
    payload: RequestPayload | None = Field(
        default=None,
        description="Pipeline options for the generated requests; its rate and count are unused.",
    )
    name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="A label to find the job by (a scenario file's phase name).",
    )
    workers: Annotated[int, SettingBound("max_workers")] = Field(
        default=1, ge=1, description=WORKERS_DESCRIPTION
    )

    @model_validator(mode="after")
    def _distinct_endpoints(self) -> Self:
        if isinstance(self.endpoints, list):
            if not self.endpoints:
                raise ValueError('endpoints must not be empty (use "all")')
            if len(set(self.endpoints)) != len(self.endpoints):
                raise ValueError("endpoints must not repeat")
        return self


class CircuitBreakerConfig(StrictRequest):
    """The database circuit breaker's settings (with Redis, every replica's); a PUT replaces
    them whole."""

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

    def config(self) -> CircuitBreakerConfig:
        """The settable part of this status: what a PUT takes to put it back."""
        return CircuitBreakerConfig(
            enabled=self.enabled,
            failure_threshold=self.failure_threshold,
            open_seconds=self.open_seconds,
        )


DisruptionType = Literal[
    "db_outage", "db_latency_spike", "cache_outage", "error_burst", "rate_limit_squeeze"
]
DisruptionStatus = Literal["active", "expired", "cancelled"]
# Route templates of the simulated user API, the endpoints a disruption can target.
UserRoute = Literal["/api/v1/users", "/api/v1/users/{id}", "/api/v1/users/error"]


class DisruptionRequest(StrictRequest):
    """A time-boxed disruption; ``endpoints`` are route templates, default all of them.

    The duration's cap is a setting, checked at the API edge with the other bounds.
    """

    type: DisruptionType
    severity: float = Field(ge=0, le=1)
    duration_seconds: Annotated[float, SettingBound("max_disruption_seconds")] = Field(gt=0)
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


class TrafficTotals(BaseModel):
    sent: int = Field(description="Requests sent, those still in flight included.")
    succeeded: int = Field(description="Finished with HTTP 2xx.")
    failed: int = Field(description="Finished otherwise: another status, or no response.")
    in_flight: int = Field(description="Sent and not finished yet.")
    dropped: int = Field(description="Due while the in-flight bound was reached; never sent.")
    late_sends: int = Field(
        description="Sent more than FAILURE_LAB_LATE_SEND_THRESHOLD_MS after their intended time."
    )
    elapsed_seconds: float = Field(description="Since the first send; 0 before it.")
    mean_send_rps: float = Field(description="sent / elapsed_seconds; 0 before the first send.")


class EndpointCounts(BaseModel):
    sent: int = Field(description="Finished requests to this endpoint (succeeded + failed).")
    succeeded: int
    failed: int


class TrafficErrorCounts(BaseModel):
    """Failed requests by kind; every kind is always present."""

    http_5xx: int = Field(default=0, description="Answered 5xx.")
    rate_limited: int = Field(default=0, description="Answered 429.")
    http_4xx: int = Field(default=0, description="Answered another 4xx.")
    timeout: int = Field(default=0, description="No response within the request timeout.")
    connection: int = Field(default=0, description="Connection refused, reset or closed.")
    cancelled: int = Field(default=0, description="Cancelled in flight (a job stopped).")
    other: int = Field(default=0, description="Anything else, e.g. a malformed response.")


class TrafficStatistics(BaseModel):
    """Everything this process's traffic generator sent since it started."""

    totals: TrafficTotals
    endpoint_counts: dict[str, EndpointCounts] = Field(
        description='By route key, e.g. "GET /api/v1/users/{id}"; finished requests only.'
    )
    status_counts: dict[str, int] = Field(
        description='By HTTP status, e.g. "200"; requests with no response are not here.'
    )
    error_counts: TrafficErrorCounts
    retries: int = Field(description="Sum of the retry counts the service reported.")
    circuit_breaker_trips: int = Field(
        description="Times this process's circuit breaker opened (whoever's traffic tripped it)."
    )
    bytes_sent: int = Field(
        description="Bytes of the request bodies of finished requests: the JSON of POST and "
        "PATCH as encoded on the wire (no request lines, no headers)."
    )
    first_send_time: datetime | None = Field(description="UTC; null before the first send.")
    last_send_time: datetime | None = Field(description="UTC; null before the first send.")
