"""The read side of the contract: metrics, recent requests, traces, status and health.

Handlers ask the runtime's sources (each call bounded and watched by the monitor) and
translate; a backend failure propagates as the project's own ``SourceError`` and becomes a
503 naming the backend in ``install_error_handlers``, and input the handlers refuse is an
``Unprocessable`` naming its place: one 422 shape with pydantic's own refusals. ``/health``,
``/health/live`` and ``/health/ready`` are :mod:`failure_lab.health` over the runtime's
sources and dependencies.
"""

from __future__ import annotations

import math
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from exporter.errors import TraceNotFound
from exporter.process_status import ProcessFigures, process_figures
from exporter.runtime import ExporterRuntime
from exporter.sources.base import LatencySummary
from exporter.spans import REQUEST_ID, parse_request_id
from exporter.translate import build_trace, iso, metrics_data, summarize
from failure_lab.contract import MetricsData, RequestSummary, TraceResponse
from failure_lab.durations import MIN_WINDOW_SECONDS, parse_window
from failure_lab.errors import Unprocessable
from failure_lab.health import check_all, health_router
from failure_lab.openapi import errors

router = APIRouter(tags=["read"])
BACKEND_DOWN = errors((503, "the metrics or trace backend failed or was slow (named in detail)"))


class StageLatency(BaseModel):
    avg: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    samples: int = Field(
        description="Observations in the window: increase() of the histogram's count, rounded"
    )


class LatencyReport(BaseModel):
    timestamp: str = Field(description="The window's end.")
    window_seconds: float = Field(
        description="The window asked (?window=), default FAILURE_LAB_METRICS_WINDOW_SECONDS"
    )
    source: str
    request: StageLatency
    database: StageLatency
    cache: StageLatency


class BackendStatus(BaseModel):
    name: str
    role: str
    healthy: bool | None
    last_success: str | None
    last_latency_ms: float | None
    last_error: str | None


class Status(ProcessFigures):
    uptime_seconds: float
    started_at: str
    websocket_clients: int
    backends: list[BackendStatus]
    timestamp: str


def exporter_runtime(request: Request) -> ExporterRuntime:
    """The shim's runtime, built in the app's lifespan."""
    runtime: ExporterRuntime = request.app.state.exporter
    return runtime


async def current_exporter_runtime(request: Request) -> ExporterRuntime:
    """The same as a dependency: a plain ``def`` dependency runs in FastAPI's thread pool,
    a hop to another thread and back that costs the request a turn of the event loop, which
    under load is the longest wait it has (docs/benchmarks.md, "Outside overload")."""
    return exporter_runtime(request)


RuntimeDep = Annotated[ExporterRuntime, Depends(current_exporter_runtime)]


def _window(runtime: ExporterRuntime, window: str | None) -> float:
    settings = runtime.settings
    if window is None:
        return settings.metrics_window_seconds
    try:
        return parse_window(window, MIN_WINDOW_SECONDS, settings.max_metrics_window_seconds)
    except ValueError as exc:
        raise Unprocessable(str(exc), loc=("query", "window")) from None


WindowParam = Annotated[
    str | None,
    Query(
        description="A duration: seconds (90, 2.5) or units from the largest, each at most once "
        "(1h, 2m, 30s, 500ms, 1m30s); from 2s to FAILURE_LAB_MAX_METRICS_WINDOW_SECONDS. "
        "Default FAILURE_LAB_METRICS_WINDOW_SECONDS.",
        max_length=64,
    ),
]


CLOCK_SKEW_SECONDS = 5.0
AtParam = Annotated[
    float | None,
    Query(
        allow_inf_nan=False,
        description="Unix seconds: evaluate the window that ended then (default now). The "
        "whole window must lie within the last max window (FAILURE_LAB_MAX_METRICS_WINDOW_SECONDS)"
        f", and end no later than now (with {CLOCK_SKEW_SECONDS:g} s of clock skew).",
    ),
]


def evaluated(
    runtime: ExporterRuntime, window: str | None, at: float | None
) -> tuple[float, float | None]:
    """The window in seconds, and when it ends (None: now), as ``window`` and ``at`` ask."""
    seconds = _window(runtime, window)
    return seconds, _at(runtime, at, seconds)


def _at(runtime: ExporterRuntime, at: float | None, window_seconds: float) -> float | None:
    if at is None:
        return None
    now = time.time()
    horizon = now - runtime.settings.max_metrics_window_seconds
    if not (
        math.isfinite(at) and at - window_seconds >= horizon and at <= now + CLOCK_SKEW_SECONDS
    ):
        raise Unprocessable(
            f"at={at:g}: the window must end by now and start within the last "
            f"{runtime.settings.max_metrics_window_seconds:g}s "
            "(FAILURE_LAB_MAX_METRICS_WINDOW_SECONDS)",
            loc=("query", "at"),
        )
    return min(at, now)


@router.get(
    "/metrics/json",
    responses=BACKEND_DOWN,
    summary="Request rate, error rate, retries, p95/p99 over a window",
)
async def metrics_json(
    runtime: RuntimeDep, window: WindowParam = None, at: AtParam = None
) -> MetricsData:
    seconds, when = evaluated(runtime, window, at)
    red = await runtime.red(seconds, when)
    return metrics_data(red, int((time.time() if when is None else when) * 1000))


def _stage(summary: LatencySummary | None) -> StageLatency:
    if summary is None:
        return StageLatency(avg=None, p50=None, p95=None, p99=None, samples=0)
    return StageLatency(
        avg=summary.avg,
        p50=summary.p50,
        p95=summary.p95,
        p99=summary.p99,
        samples=round(summary.samples),
    )


@router.get(
    "/v1/metrics/latency",
    responses=BACKEND_DOWN,
    summary="avg/p50/p95/p99 and samples per stage",
)
async def latency(
    runtime: RuntimeDep, window: WindowParam = None, at: AtParam = None
) -> LatencyReport:
    seconds, when = evaluated(runtime, window, at)
    stages = await runtime.latency(seconds, when)
    return LatencyReport(
        timestamp=iso(time.time_ns() if when is None else int(when * 1e9)),
        window_seconds=seconds,
        source=runtime.metrics.name,
        request=_stage(stages.get("request")),
        database=_stage(stages.get("database")),
        cache=_stage(stages.get("cache")),
    )


@router.get(
    "/v1/requests/recent", responses=BACKEND_DOWN, summary="The newest requests, newest first"
)
async def recent_requests(
    runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[RequestSummary]:
    lookback = runtime.settings.max_metrics_window_seconds
    spans = await runtime.traces.recent(limit, lookback)
    return [summarize(span) for span in spans[:limit]]


@router.get(
    "/v1/trace/{request_id}",
    summary="A request's trace: events, failure points, retry attempts",
    responses={**BACKEND_DOWN, **errors((404, "unknown, or not yet in the trace backend"))},
)
async def trace(
    runtime: RuntimeDep,
    request_id: Annotated[
        str,
        Path(
            description="The request id: a UUID, or the trace id as 32 hex digits.",
            pattern=f"^(?:{REQUEST_ID.pattern})$",
        ),
    ],
) -> TraceResponse:
    try:
        trace_id = parse_request_id(request_id)
    except ValueError:  # the form is the pattern's: what is left is the all-zero id
        raise TraceNotFound(
            request_id, False, runtime.traces.name, hint="the all-zero id is no trace's"
        ) from None
    spans = await runtime.traces.trace(trace_id)
    return build_trace(spans)


@router.get(
    "/v1/status", summary="Uptime, live-feed clients, each backend's and dependency's state"
)
async def status(runtime: RuntimeDep) -> Status:
    """Sources as their last query left them; dependencies (Redis, the simulator), which no
    query of the read API touches, are probed now, within ``backend_timeout_seconds``."""
    if runtime.dependencies:
        await check_all(runtime.dependencies, runtime.settings.backend_timeout_seconds)
    roles = {c.name: c.role for c in (*runtime.sources(), *runtime.dependencies)}
    states = [runtime.monitor.state(name) for name in roles]
    return Status(
        **process_figures(runtime.loop_lag).model_dump(),
        uptime_seconds=round(time.time() - runtime.started_at, 3),
        started_at=iso(int(runtime.started_at * 1e9)),
        websocket_clients=runtime.websocket_clients(),
        backends=[
            BackendStatus(
                name=state.name,
                role=roles[state.name],
                healthy=state.healthy,
                last_success=iso(int(state.last_success * 1e9)) if state.last_success else None,
                last_latency_ms=(
                    round(state.last_latency_ms, 3) if state.last_latency_ms is not None else None
                ),
                last_error=state.last_error,
            )
            for state in states
        ],
        timestamp=iso(time.time_ns()),
    )


router.include_router(health_router(lambda request: exporter_runtime(request).health()))
