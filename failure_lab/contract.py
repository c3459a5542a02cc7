"""The read side of the contract as its clients parse it: metrics figures, requests, traces.

These answers are written by the exporter (the shim, or its routes embedded in ``failure-lab
serve``) and read by ``failure-lab run``, which is a client of the contract like any other and
lives in ``simulator``. Kept here, on neither side, so the writer and the reader share one
definition of each answer and neither has to import the other.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class MetricsData(BaseModel):
    timestamp: int = Field(description="milliseconds since the epoch")
    request_rate: float = Field(description="req/s over the window")
    error_rate: float = Field(description="0..1: 5xx and 429 over all requests")
    retry_count: float = Field(description="retries in the window")
    p95_latency: float = Field(description="ms; 0 when no request finished in the window")
    p99_latency: float = Field(description="ms; 0 when no request finished in the window")


class RequestSummary(BaseModel):
    request_id: str
    status: int = Field(description="HTTP status code")
    latency_ms: float
    retry_count: int
    timestamp: str = Field(description="ISO 8601")
    endpoint: str
    method: str


class TraceEvent(BaseModel):
    event_id: str
    request_id: str
    timestamp_wall: str
    event_type: str
    metadata: dict[str, Any]


class RequestTrace(BaseModel):
    trace_id: str
    request_id: str
    start_time: str
    end_time: str | None = None
    total_latency_ms: float | None = None
    status_code: int | None = None
    events: list[TraceEvent]


class TraceResponse(BaseModel):
    trace: RequestTrace
    event_count: int
    failure_points: list[TraceEvent]
    retry_attempts: list[TraceEvent]


class ErrorAnswer(BaseModel):
    """Every error answer of both apps."""

    detail: str = Field(description="What went wrong, in words.")


class InputError(BaseModel):
    loc: list[str | int] = Field(description='Where: ["body", "payload", "db_latency"].')
    msg: str
    type: str = Field(description="pydantic's error type, or cap_exceeded, unprocessable.")


class ValidationProblem(ErrorAnswer):
    """Every 422: well-formed input that is not acceptable, each problem with its place."""

    errors: list[InputError]
