"""The control contract (docs/api.md): generate traffic, read its status, set failures.

Caps on count, rate, duration and every number of the failure config are server settings,
declared on the models' fields; a request above one gets 422 naming the cap and the setting
that raises it (``check_bounds``). Sustained generation answers 202 with a job that
can be read and stopped under ``/v1/traffic/jobs`` (simulator/api/jobs.py). The circuit
breaker's config can be changed at run time too, so a scenario can compare a run with and
without it; with Redis the config is every replica's, the state each replica's own.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from failure_lab.bounds import check_bounds
from failure_lab.control import (
    CircuitBreakerConfig,
    CircuitBreakerStatus,
    FailureConfig,
    TrafficRequest,
    TrafficStatus,
)
from failure_lab.control_routes import CONTROL
from simulator.api.deps import RuntimeDep
from simulator.options import PipelineOptions
from simulator.runtime import Runtime

router = APIRouter(tags=["control"])


@router.api_route(**CONTROL["generate"].route())
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
                options, traffic.effective_rps, traffic.duration or 0.0, traffic.workers
            )
            return JSONResponse(job.model_dump(mode="json"), status_code=202)


@router.api_route(**CONTROL["traffic_status"].route())
async def traffic_status(runtime: RuntimeDep) -> TrafficStatus:
    return runtime.jobs.status()


@router.api_route(**CONTROL["get_failure_config"].route())
async def get_failure_config(runtime: RuntimeDep) -> FailureConfig:
    return await runtime.config_store.get()


@router.api_route(**CONTROL["put_failure_config"].route())
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


@router.api_route(**CONTROL["get_circuit_breaker"].route())
async def get_circuit_breaker(runtime: RuntimeDep) -> CircuitBreakerStatus:
    await runtime.read_breaker_config()
    return _breaker_status(runtime)


@router.api_route(**CONTROL["put_circuit_breaker"].route())
async def put_circuit_breaker(
    config: CircuitBreakerConfig, runtime: RuntimeDep
) -> CircuitBreakerStatus:
    await runtime.configure_breaker(config)
    return _breaker_status(runtime)
