"""The control contract (docs/api.md): generate traffic, read its status, set failures.

Caps on count, rate, duration and every number of the failure config are server settings,
declared on the models' fields; a request above one gets 422 naming the cap and the setting
that raises it (``check_bounds``). Sustained generation answers 202 with a job that
can be read and stopped under ``/v1/traffic/jobs`` (simulator/api/jobs.py). The circuit
breaker's config can be changed at run time too, so a scenario can compare a run with and
without it.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from failure_lab.bounds import check_bounds
from failure_lab.control import (
    CircuitBreakerConfig,
    CircuitBreakerStatus,
    FailureConfig,
    Job,
    TrafficRequest,
    TrafficResult,
    TrafficStatus,
)
from failure_lab.openapi import errors
from simulator.api.deps import RuntimeDep
from simulator.api.jobs import JOB_LINKS
from simulator.options import PipelineOptions
from simulator.runtime import Runtime

router = APIRouter(tags=["control"])
REDIS_DOWN = (503, "Redis holds the config (FAILURE_LAB_REDIS_URL) and did not answer")


@router.post(
    "/v1/traffic/generate",
    response_model=TrafficResult | list[TrafficResult] | Job,
    responses={
        202: {"model": Job, "description": "sustained: the job started", "links": JOB_LINKS},
        **errors((409, "a sustained job past FAILURE_LAB_MAX_ACTIVE_JOBS or the summed rate cap")),
    },
    summary="Generate traffic: single (one result), burst (a list), sustained (202, a job)",
)
async def generate(traffic: TrafficRequest, runtime: RuntimeDep) -> object:
    check_bounds(traffic, runtime.settings)
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


@router.get(
    "/v1/config/failure",
    responses=errors(REDIS_DOWN),
    summary="The failure config applied to every request",
)
async def get_failure_config(runtime: RuntimeDep) -> FailureConfig:
    return await runtime.config_store.get()


@router.put(
    "/v1/config/failure", responses=errors(REDIS_DOWN), summary="Replace the whole failure config"
)
async def put_failure_config(config: FailureConfig, runtime: RuntimeDep) -> FailureConfig:
    check_bounds(config, runtime.settings)
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
