"""The control API's routes, declared once for the simulator that serves them and the shim that
forwards them.

Each entry is what a client sees of one operation: method, path, summary, body and answer
models, status, the errors and links it documents. The simulator's handlers take their
decorators from here (``@router.api_route(**CONTROL["generate"].route())``) and the
stack-mode shim builds its forwarding routes from the same entries, so the two OpenAPI
documents cannot drift apart (a test compares them operation by operation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Any, Final
from uuid import UUID

from fastapi import Path
from fastapi.sse import EventSourceResponse
from pydantic import BaseModel

from failure_lab.control import (
    CircuitBreakerConfig,
    CircuitBreakerStatus,
    Disruption,
    DisruptionList,
    DisruptionRequest,
    DisruptionsCleared,
    FailureConfig,
    Job,
    ScenarioJobRequest,
    TrafficRequest,
    TrafficResult,
    TrafficStatistics,
    TrafficStatus,
)
from failure_lab.openapi import errors

DisruptionId = Annotated[
    UUID,
    Path(description="32 hex digits (or the UUID with dashes); a path that is none is no route"),
]
"""Ids are UUIDs, and only a UUID is routed: ``/clear-all`` is never taken for one."""

JOB_LINKS: Final = {
    "GetJob": {"operationId": "get_job", "parameters": {"job_id": "$response.body#/job_id"}},
    "StopJob": {"operationId": "stop_job", "parameters": {"job_id": "$response.body#/job_id"}},
}
"""OpenAPI links from an answer holding a job to the routes that read and stop it."""
_BY_ID: Final = {"disruption_id": "$response.body#/disruption_id"}
_NO_JOB: Final = (404, "no such job (unknown, or finished too long ago)")
_REDIS_DOWN: Final = (503, "Redis holds the config (FAILURE_LAB_REDIS_URL) and did not answer")
_GONE: Final = (404, "unknown, or ended long ago")
_SHARED_DOWN: Final = (
    503,
    "Redis holds it for every replica (FAILURE_LAB_REDIS_URL) and did not answer; nothing changed",
)


@dataclass(frozen=True, slots=True)
class ControlRoute:
    """One operation of the control API, as its clients see it."""

    method: str
    path: str
    summary: str
    answer: Any = None
    body: type[BaseModel] | None = None
    status: int = 200
    responses: Mapping[int | str, dict[str, Any]] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    """Path parameters and their types."""
    operation_id: str | None = None
    stream: bool = False

    def route(self) -> dict[str, Any]:
        """Keyword arguments of ``APIRouter.api_route`` for this operation."""
        extra: dict[str, Any] = {"response_class": EventSourceResponse} if self.stream else {}
        return {
            "path": self.path,
            "methods": [self.method],
            "summary": self.summary,
            "response_model": self.answer,
            "status_code": self.status,
            "responses": dict(self.responses),
            "operation_id": self.operation_id,
            **extra,
        }


CONTROL: Final[Mapping[str, ControlRoute]] = MappingProxyType(
    {
        "generate": ControlRoute(
            "POST",
            "/v1/traffic/generate",
            "Generate traffic: single (one result), burst (a list), sustained (202, a job)",
            TrafficResult | list[TrafficResult] | Job,
            TrafficRequest,
            responses={
                202: {
                    "model": Job,
                    "description": "sustained: the job started",
                    "links": JOB_LINKS,
                },
                **errors(
                    (409, "a sustained job past FAILURE_LAB_MAX_ACTIVE_JOBS or the summed rate cap")
                ),
            },
        ),
        "traffic_status": ControlRoute(
            "GET",
            "/v1/traffic/status",
            "Whether a generation runs, and its request count",
            TrafficStatus,
        ),
        "traffic_statistics": ControlRoute(
            "GET",
            "/v1/traffic/statistics",
            "Everything the traffic generator sent since start: totals, per endpoint, "
            "per status, errors by kind, retries, breaker trips, bytes",
            TrafficStatistics,
        ),
        "start_scenario_job": ControlRoute(
            "POST",
            "/v1/traffic/jobs",
            "Start a scenario job: normal, peak, error_injection, latency_degradation, stress",
            Job,
            ScenarioJobRequest,
            status=201,
            responses={
                201: {
                    "links": JOB_LINKS,
                    "headers": {"location": {"schema": {"type": "string"}}},
                },
                **errors(
                    (409, "past FAILURE_LAB_MAX_ACTIVE_JOBS, or the summed rate past the cap")
                ),
            },
        ),
        "list_jobs": ControlRoute(
            "GET",
            "/v1/traffic/jobs",
            "Jobs, running and finished (kept for a while), newest first",
            list[Job],
        ),
        "get_job": ControlRoute(
            "GET",
            "/v1/traffic/jobs/{job_id}",
            "One job: status, live stats, and its summary once completed",
            Job,
            responses=errors(_NO_JOB),
            params={"job_id": str},
            operation_id="get_job",
        ),
        "stop_job": ControlRoute(
            "POST",
            "/v1/traffic/jobs/{job_id}/stop",
            "Stop a running job (a finished one is returned as is)",
            Job,
            responses=errors(_NO_JOB),
            params={"job_id": str},
            operation_id="stop_job",
        ),
        "stream_job": ControlRoute(
            "GET",
            "/v1/traffic/jobs/{job_id}/stream",
            "Server-Sent Events: 'status' while the job runs, then one 'done'",
            responses=errors(_NO_JOB),
            params={"job_id": str},
            stream=True,
        ),
        "get_failure_config": ControlRoute(
            "GET",
            "/v1/config/failure",
            "The failure config applied to every request",
            FailureConfig,
            responses=errors(_REDIS_DOWN),
        ),
        "put_failure_config": ControlRoute(
            "PUT",
            "/v1/config/failure",
            "Replace the whole failure config",
            FailureConfig,
            FailureConfig,
            responses=errors(_REDIS_DOWN),
        ),
        "get_circuit_breaker": ControlRoute(
            "GET",
            "/v1/config/circuit-breaker",
            "The database circuit breaker and its state",
            CircuitBreakerStatus,
        ),
        "put_circuit_breaker": ControlRoute(
            "PUT",
            "/v1/config/circuit-breaker",
            "Replace the circuit breaker config; turning it off resets it to closed",
            CircuitBreakerStatus,
            CircuitBreakerConfig,
            responses=errors(_SHARED_DOWN),
        ),
        "create_disruption": ControlRoute(
            "POST",
            "/v1/disruptions",
            "Start a disruption; it reverts by itself",
            Disruption,
            DisruptionRequest,
            status=201,
            responses={
                201: {
                    "links": {
                        "GetDisruption": {"operationId": "get_disruption", "parameters": _BY_ID},
                        "CancelDisruption": {
                            "operationId": "cancel_disruption",
                            "parameters": _BY_ID,
                        },
                    }
                },
                **errors((409, "FAILURE_LAB_MAX_ACTIVE_DISRUPTIONS are active"), _SHARED_DOWN),
            },
        ),
        "list_disruptions": ControlRoute(
            "GET",
            "/v1/disruptions",
            "The active disruptions, with time remaining and requests affected",
            DisruptionList,
        ),
        "clear_disruptions": ControlRoute(
            "POST",
            "/v1/disruptions/clear-all",
            "Cancel every active disruption",
            DisruptionsCleared,
            responses=errors(_SHARED_DOWN),
        ),
        "get_disruption": ControlRoute(
            "GET",
            "/v1/disruptions/{disruption_id:uuid}",
            "One disruption, active or recently ended",
            Disruption,
            responses=errors(_GONE),
            params={"disruption_id": DisruptionId},
            operation_id="get_disruption",
        ),
        "cancel_disruption": ControlRoute(
            "DELETE",
            "/v1/disruptions/{disruption_id:uuid}",
            "Cancel an active disruption",
            Disruption,
            responses=errors(_GONE, (409, "it has already ended"), _SHARED_DOWN),
            params={"disruption_id": DisruptionId},
            operation_id="cancel_disruption",
        ),
    }
)
"""Every control operation by the simulator's handler name."""
