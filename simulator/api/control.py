"""The control contract (docs/api.md): generate traffic, read its status, set failures.

Caps on count, rate and duration are server settings; a request above one gets 422 naming
the cap and the setting that raises it. Sustained generation answers 202 with a job that
can be read and stopped under ``/v1/traffic/jobs`` (simulator/api/jobs.py). The circuit
breaker's config can be changed at run time too, so a scenario can compare a run with and
without it.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from failure_lab.control import (
    CircuitBreakerConfig,
    CircuitBreakerStatus,
    FailureConfig,
    Job,
    TrafficRequest,
    TrafficResult,
    TrafficStatus,
)
from failure_lab.errors import CapExceeded
from failure_lab.settings import Settings
from simulator.api.deps import RuntimeDep
from simulator.options import PipelineOptions
from simulator.runtime import Runtime

router = APIRouter(tags=["control"])


def check_caps(traffic: TrafficRequest, settings: Settings) -> None:
    if traffic.mode == "burst" and traffic.effective_count > settings.max_burst_count:
        raise CapExceeded(
            "count",
            traffic.effective_count,
            settings.max_burst_count,
            "FAILURE_LAB_MAX_BURST_COUNT",
        )
    if traffic.mode == "sustained":
        if traffic.effective_rps > settings.max_rps:
            raise CapExceeded("rps", traffic.effective_rps, settings.max_rps, "FAILURE_LAB_MAX_RPS")
        duration = traffic.duration or 0.0
        if duration > settings.max_duration_seconds:
            raise CapExceeded(
                "duration",
                duration,
                settings.max_duration_seconds,
                "FAILURE_LAB_MAX_DURATION_SECONDS",
            )


@router.post(
    "/v1/traffic/generate",
    response_model=TrafficResult | list[TrafficResult] | Job,
    responses={202: {"model": Job, "description": "sustained: the job started"}},
    summary="Generate traffic: single (one result), burst (a list), sustained (202, a job)",
)
async def generate(traffic: TrafficRequest, runtime: RuntimeDep) -> object:
    check_caps(traffic, runtime.settings)
    options = PipelineOptions.from_payload(traffic.payload)
    match traffic.mode:
        case "single":
            return await runtime.jobs.single(options)
        case "burst":
            return await runtime.jobs.burst(options, traffic.effective_count)
        case "sustained":
            job = runtime.jobs.start_sustained(
                options, traffic.effective_rps, traffic.duration or 0.0
            )
            return JSONResponse(job.model_dump(mode="json"), status_code=202)


@router.get("/v1/traffic/status", summary="Whether a generation runs, and its request count")
async def traffic_status(runtime: RuntimeDep) -> TrafficStatus:
    return runtime.jobs.status()


@router.get("/v1/config/failure", summary="The failure config applied to every request")
async def get_failure_config(runtime: RuntimeDep) -> FailureConfig:
    return await runtime.config_store.get()


@router.put("/v1/config/failure", summary="Replace the whole failure config")
async def put_failure_config(config: FailureConfig, runtime: RuntimeDep) -> FailureConfig:
    if config.max_retries > runtime.settings.max_retries_cap:
        raise CapExceeded(
            "max_retries",
            config.max_retries,
            runtime.settings.max_retries_cap,
            "FAILURE_LAB_MAX_RETRIES_CAP",
        )
    await runtime.config_store.put(config)
    return config


def _breaker_status(runtime: Runtime) -> CircuitBreakerStatus:
    breaker = runtime.breaker
    return CircuitBreakerStatus(
        **breaker.config.model_dump(),
        state=breaker.state,
        consecutive_failures=breaker.consecutive_failures,
        trips=breaker.trips,
    )


@router.get("/v1/config/circuit-breaker", summary="The database circuit breaker and its state")
async def get_circuit_breaker(runtime: RuntimeDep) -> CircuitBreakerStatus:
    return _breaker_status(runtime)


@router.put(
    "/v1/config/circuit-breaker",
    summary="Replace the circuit breaker config; turning it off resets it to closed",
)
async def put_circuit_breaker(
    config: CircuitBreakerConfig, runtime: RuntimeDep
) -> CircuitBreakerStatus:
    runtime.configure_breaker(config)
    return _breaker_status(runtime)
