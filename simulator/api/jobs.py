"""Background jobs over HTTP: scenario jobs and the sustained jobs of the control contract.

``POST /v1/traffic/jobs`` starts a scenario job (201 with the job and its ``Location``);
jobs are read, listed and stopped here whichever way they were started. A job's progress is
also a Server-Sent Events stream: a ``status`` event every ``job_stream_interval_seconds``
while it runs and one ``done`` event with its final state (and summary), after which the
stream ends. A client that goes away only ends its own stream; the job runs on.

Caps answer 422 naming the setting (``check_bounds``); a job that cannot run next to the
running ones (too many, or their summed rate past the cap) answers 409.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from failure_lab.bounds import bound_of, check_bounds
from failure_lab.control import Job, RequestPayload, ScenarioJobRequest
from failure_lab.errors import Unprocessable
from failure_lab.openapi import errors
from simulator.api.deps import RuntimeDep
from simulator.generator.scenarios import plan_scenario
from simulator.options import PipelineOptions

router = APIRouter(prefix="/v1/traffic/jobs", tags=["jobs"])
JOB_LINKS = {
    "GetJob": {"operationId": "get_job", "parameters": {"job_id": "$response.body#/job_id"}},
    "StopJob": {"operationId": "stop_job", "parameters": {"job_id": "$response.body#/job_id"}},
}
"""OpenAPI links from an answer holding a job to the routes that read and stop it."""
NO_JOB = (404, "no such job (unknown, or finished too long ago)")


@router.post(
    "",
    status_code=201,
    response_model=Job,
    responses={
        201: {"links": JOB_LINKS, "headers": {"location": {"schema": {"type": "string"}}}},
        **errors((409, "past FAILURE_LAB_MAX_ACTIVE_JOBS, or the summed rate past the cap")),
    },
    summary="Start a scenario job: normal, peak, error_injection, latency_degradation, stress",
)
async def start_scenario_job(body: ScenarioJobRequest, runtime: RuntimeDep) -> JSONResponse:
    settings = runtime.settings
    check_bounds(body, settings)
    default_rps = settings.max_rps if body.scenario == "stress" else settings.scenario_default_rps
    max_rps = body.max_rps if body.max_rps is not None else min(default_rps, settings.max_rps)
    options = PipelineOptions.from_payload(body.payload) if body.payload else PipelineOptions()
    try:
        plan = plan_scenario(
            body.scenario,
            duration=body.duration,
            max_rps=max_rps,
            endpoints=None if body.endpoints == "all" else body.endpoints,
            options=options,
            users=settings.simulated_users,
            rng=runtime.rng,
            latency_growth_ms=settings.scenario_latency_growth_ms,
            latency_ceiling_ms=bound_of(RequestPayload, "db_latency").cap(settings),
        )
    except ValueError as exc:
        raise Unprocessable(str(exc), loc=("body",)) from None
    job = runtime.jobs.start_scenario(plan, body.name)
    return JSONResponse(
        job.model_dump(mode="json"),
        status_code=201,
        headers={"Location": f"/v1/traffic/jobs/{job.job_id}"},
    )


@router.get("", summary="Jobs, running and finished (kept for a while), newest first")
async def list_jobs(runtime: RuntimeDep) -> list[Job]:
    return runtime.jobs.list()


async def _job(job_id: str, runtime: RuntimeDep) -> Job:
    """The job, or the 404 before any stream starts (async: on the jobs' own event loop,
    never in a worker thread)."""
    return runtime.jobs.get(job_id)


@router.get(
    "/{job_id}",
    operation_id="get_job",
    responses=errors(NO_JOB),
    summary="One job: status, live stats, and its summary once completed",
)
async def get_job(job: Annotated[Job, Depends(_job)]) -> Job:
    return job


@router.post(
    "/{job_id}/stop",
    operation_id="stop_job",
    responses=errors(NO_JOB),
    summary="Stop a running job (a finished one is returned as is)",
)
async def stop_job(job_id: str, runtime: RuntimeDep) -> Job:
    return await runtime.jobs.stop(job_id)


@router.get(
    "/{job_id}/stream",
    response_class=EventSourceResponse,
    responses=errors(NO_JOB),
    summary="Server-Sent Events: 'status' while the job runs, then one 'done'",
)
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
