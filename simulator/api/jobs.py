"""Background jobs over HTTP: scenario jobs and the sustained jobs of the control contract.

``POST /v1/traffic/jobs`` starts a scenario job (201 with the job and its ``Location``);
jobs are read, listed and stopped here whichever way they were started. A job's progress is
also a Server-Sent Events stream: a ``status`` event every ``job_stream_interval_seconds``
while it runs and one ``done`` event with its final state (and summary), after which the
stream ends. A client that goes away only ends its own stream; the job runs on.

Caps answer 422 naming the setting (``check_bounds``), ``workers`` among them
(``FAILURE_LAB_MAX_WORKERS``); a job that cannot run next to the running ones (too many, or
their summed rate past the cap) answers 409.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from fastapi.sse import ServerSentEvent

from failure_lab.bounds import bound_of, check_bounds
from failure_lab.control import Job, RequestPayload, ScenarioJobRequest
from failure_lab.control_routes import CONTROL
from failure_lab.errors import Unprocessable
from simulator.api.deps import RuntimeDep
from simulator.generator.job_spec import JobSpec
from simulator.options import PipelineOptions

router = APIRouter(tags=["jobs"])


@router.api_route(**CONTROL["start_scenario_job"].route())
async def start_scenario_job(body: ScenarioJobRequest, runtime: RuntimeDep) -> JSONResponse:
    settings = runtime.settings
    check_bounds(body, settings)
    default_rps = settings.max_rps if body.scenario == "stress" else settings.scenario_default_rps
    max_rps = body.max_rps if body.max_rps is not None else min(default_rps, settings.max_rps)
    options = PipelineOptions.from_payload(body.payload) if body.payload else PipelineOptions()
    spec = JobSpec(
        scenario=body.scenario,
        duration=body.duration,
        max_rps=max_rps,
        options=options,
        endpoints=None if body.endpoints == "all" else tuple(body.endpoints),
        users=settings.simulated_users,
        seed=runtime.rng.getrandbits(64),
        latency_growth_ms=settings.scenario_latency_growth_ms,
        latency_ceiling_ms=bound_of(RequestPayload, "db_latency").cap(settings),
    )
    try:
        job = runtime.jobs.start_scenario(spec, body.name, workers=body.workers)
    except ValueError as exc:
        raise Unprocessable(str(exc), loc=("body",)) from None
    return JSONResponse(
        job.model_dump(mode="json"),
        status_code=201,
        headers={"Location": f"/v1/traffic/jobs/{job.job_id}"},
    )


@router.api_route(**CONTROL["list_jobs"].route())
async def list_jobs(runtime: RuntimeDep) -> list[Job]:
    return runtime.jobs.list()


async def _job(job_id: str, runtime: RuntimeDep) -> Job:
    """The job, or the 404 before any stream starts (async: on the jobs' own event loop,
    never in a worker thread)."""
    return runtime.jobs.get(job_id)


@router.api_route(**CONTROL["get_job"].route())
async def get_job(job: Annotated[Job, Depends(_job)]) -> Job:
    return job


@router.api_route(**CONTROL["stop_job"].route())
async def stop_job(job_id: str, runtime: RuntimeDep) -> Job:
    return await runtime.jobs.stop(job_id)


@router.api_route(**CONTROL["stream_job"].route())
async def stream_job(
    job: Annotated[Job, Depends(_job)], runtime: RuntimeDep
) -> AsyncIterator[ServerSentEvent]:
    interval = runtime.settings.job_stream_interval_seconds
    sequence = 0
    while job.status == "running":
        yield ServerSentEvent(event="status", data=job, id=str(sequence))
        sequence += 1
        job = await runtime.jobs.wait(job.job_id, interval)
    yield ServerSentEvent(event="done", data=job, id=str(sequence))
